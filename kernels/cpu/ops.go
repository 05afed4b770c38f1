package cpu

import (
	"math"

	"github.com/hearth-llm/hearth/kernels/libmf"
	"github.com/hearth-llm/hearth/kernels/rope"
	"github.com/hearth-llm/hearth/quant"
)

// RMSNorm writes dst = x / rms(x) * w for one row. The sum of squares is
// accumulated in float64 and the mean rounded to float32, then the scale is
// 1.0f/sqrtf(mean+eps) in float32 arithmetic, as ggml computes it: taking
// 1/√ in float64 and rounding once differs from it by an ulp now and then,
// which a Q8_0 quantization of the normed row can turn into a whole
// quantization step (Gemma 4 showed it: see internal/golden's Tolerance).
func RMSNorm(dst, x, w []float32, eps float32) {
	var sum float64
	for _, v := range x {
		sum += float64(v * v)
	}
	mean := float32(sum / float64(len(x)))
	scale := 1 / float32(math.Sqrt(float64(mean+eps))) // sqrtf, then a float32 division
	if w == nil {
		for i, v := range x {
			dst[i] = v * scale
		}
		return
	}
	w = w[:len(x)]
	for i, v := range x {
		dst[i] = (v * scale) * w[i]
	}
}

// Add computes dst[i] += x[i].
func Add(dst, x []float32) {
	x = x[:len(dst)]
	for i := range dst {
		dst[i] += x[i]
	}
}

// SiLU returns x·sigmoid(x) as ggml's vectorised silu computes it (what
// its swiglu and silu ops run on whole rows): x/(1 + e^(0−x)) with
// ExpGGML.
func SiLU(x float32) float32 {
	return x / (1 + ExpGGML(0-x))
}

// SiLUs sets dst[i] = SiLU(x[i]) (vectorised where the CPU allows, the
// same bits).
func SiLUs(dst, x []float32) {
	x = x[:len(dst)]
	for i := siluAsm(dst, x); i < len(dst); i++ {
		dst[i] = SiLU(x[i])
	}
}

// expShiftGeneric is the reference of expShiftAsm: x[i] = e^(x[i]-m).
func expShiftGeneric(x []float32, m float32) {
	for i, v := range x {
		x[i] = ExpGGML(v - m)
	}
}

// ExpGGML is ggml's vectorised e^x (libmf.ExpGGML), the reference of the
// AVX2 exponential kernels.
func ExpGGML(x float32) float32 { return libmf.ExpGGML(x) }

// SwiGLU computes dst[i] = silu(gate[i]) * up[i]: in eight lanes with a
// polynomial e^x on AVX2 (within a few ulp of SiLU; as ggml's vectorised
// silu does), with SiLU itself below AVX2. Every element takes the same
// path, so results do not depend on how the caller splits its rows.
func SwiGLU(dst, gate, up []float32) {
	gate, up = gate[:len(dst)], up[:len(dst)]
	done := 0
	if activeLevel >= levelAVX2 {
		done = swigluAsm(dst, gate, up)
	}
	swigluGeneric(dst[done:], gate[done:], up[done:])
}

// swigluGeneric is the reference: SiLU per element.
func swigluGeneric(dst, gate, up []float32) {
	for i := range dst {
		dst[i] = SiLU(gate[i]) * up[i]
	}
}

// Softmax replaces x with softmax(x·scale) in place; -Inf entries become 0.
// It is SoftmaxAt(x, 0, scale).
func Softmax(x []float32, scale float32) { SoftmaxAt(x, 0, scale) }

// SoftmaxAt is Softmax bit for bit as ggml's soft_max computes it on an
// AVX-512 build (llama.cpp's reference outputs): x·scale, its maximum m,
// e^(x−m) by ggml_v_expf (ExpGGML), the exponentials summed sixteen at a
// time by reduce16 with the groups added in float64, and every one
// multiplied by float32(1/sum). The groups are aligned as ggml's row is:
// x[0] is element base of it (a query's first visible position), so the
// groups start where base + i is a multiple of 16. The order matters
// beyond the last bit: ggml rounds the probabilities to f16 next.
func SoftmaxAt(x []float32, base int, scale float32) { softmaxAt(x, base, scale, nil) }

// softmaxAt is SoftmaxAt with, where sink is not nil, one more logit in
// the maximum and the sum (its exponential added last, glibc's expf) and
// no output of its own: ggml_soft_max_ext with sinks.
func softmaxAt(x []float32, base int, scale float32, sink *float32) {
	maxv := float32(math.Inf(-1))
	for i := range x {
		x[i] *= scale
		maxv = max(maxv, x[i])
	}
	if sink != nil {
		maxv = max(maxv, *sink)
	}
	if math.IsInf(float64(maxv), -1) {
		clear(x)
		return
	}
	done := 0
	if activeLevel >= levelAVX2 {
		done = expShiftAsm(x, maxv)
	}
	expShiftGeneric(x[done:], maxv)
	var sum float64
	for i := 0; i < len(x); {
		if (base+i)%16 == 0 && len(x)-i >= 16 {
			n := (len(x) - i) &^ 15
			if s, ok := sumGroups16Asm(x[i : i+n]); ok {
				sum += s
				i += n
				continue
			}
		}
		// One of ggml's sixteen-wide groups: positions base+i up to the
		// next multiple of 16; the rest of the group adds zeros.
		var g [16]float32
		l := (base + i) % 16
		for ; l < 16 && i < len(x); l, i = l+1, i+1 {
			g[l] = x[i]
		}
		sum += float64(reduce16(&g))
	}
	if sink != nil {
		sum += float64(libmf.Expf(*sink - maxv))
	}
	inv := float32(1 / sum)
	for i := range x {
		x[i] *= inv
	}
}

// ApplyRoPE rotates each head of x (nHeads × headDim) in place using tables
// from r.Tables. Dimensions past r.Dims are left as they are.
func ApplyRoPE(r *rope.Params, x []float32, nHeads, headDim int, cos, sin []float32) {
	half := r.Dims / 2
	for h := 0; h < nHeads; h++ {
		v := x[h*headDim : (h+1)*headDim]
		for i := 0; i < half; i++ {
			a, b := 2*i, 2*i+1
			if r.NeoX {
				a, b = i, i+half
			}
			// ggml's rotate_pairs as GCC contracts it (-ffp-contract=fast
			// with FMA): the first product fused with the rounded second.
			x0, x1 := v[a], v[b]
			v[a] = quant.FMA32(x0, cos[i], -(x1 * sin[i]))
			v[b] = quant.FMA32(x0, sin[i], x1*cos[i])
		}
	}
}

// DotF16 is the dot product of two float16 vectors accumulated in float32,
// the arithmetic of ggml's F16 vec_dot (used for attention over an F16 KV
// cache).
func DotF16(a, b []uint16) float32 {
	b = b[:len(a)]
	var s [4]float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s[0] += quant.F16ToF32(a[i]) * quant.F16ToF32(b[i])
		s[1] += quant.F16ToF32(a[i+1]) * quant.F16ToF32(b[i+1])
		s[2] += quant.F16ToF32(a[i+2]) * quant.F16ToF32(b[i+2])
		s[3] += quant.F16ToF32(a[i+3]) * quant.F16ToF32(b[i+3])
	}
	for ; i < len(a); i++ {
		s[0] += quant.F16ToF32(a[i]) * quant.F16ToF32(b[i])
	}
	return (s[0] + s[1]) + (s[2] + s[3])
}

// ToF16 rounds src into dst as float16.
func ToF16(dst []uint16, src []float32) {
	src = src[:len(dst)]
	for i, v := range src {
		dst[i] = quant.F32ToF16(v)
	}
}

// GELU is the tanh approximation of GELU as ggml's CPU computes it: the
// input rounded to float16, looked up in a float16 table of
// 0.5·x·(1+tanh(√(2/π)·x·(1+0.044715·x²))), exact outside (-10, 10).
func GELU(x float32) float32 {
	switch {
	case x <= -10:
		return 0
	case x >= 10:
		return x
	}
	return geluTable[quant.F32ToF16(x)]
}

// geluTable is ggml_table_gelu_f16, widened: the tanh GELU of every
// float16 value, rounded to float16.
var geluTable = func() *[1 << 16]float32 {
	var t [1 << 16]float32
	for i := range t {
		x := quant.F16ToF32(uint16(i))
		// ggml_gelu_f32 as GCC compiles it: 1 + a·x·x fused into one
		// FMA (tanhf rounds as Go's float64 tanh does on every float16).
		inner := quant.FMA32(0.044715*x, x, 1)
		g := 0.5 * x * (1 + float32(math.Tanh(float64(0.7978845608028654*x*inner))))
		t[i] = quant.F16ToF32(quant.F32ToF16(g))
	}
	return &t
}()

// GeGLU computes dst[i] = GELU(gate[i])·up[i].
func GeGLU(dst, gate, up []float32) {
	gate, up = gate[:len(dst)], up[:len(dst)]
	for i := range dst {
		g := gate[i]
		if g >= 10 {
			dst[i] = g * up[i]
			continue
		}
		dst[i] = GELU(g) * up[i]
	}
}

// SwiGLUOAI is gpt-oss's clamped gated unit: with x = min(gate, limit) and
// y = clamp(up, -limit, limit), dst = x·σ(alpha·x)·(y+1).
func SwiGLUOAI(dst, gate, up []float32, alpha, limit float32) {
	gate, up = gate[:len(dst)], up[:len(dst)]
	for i := range dst {
		x := min(gate[i], limit)
		y := min(max(up[i], -limit), limit)
		dst[i] = x / (1 + float32(math.Exp(float64(alpha*-x)))) * (y + 1)
	}
}

// LayerNorm writes dst = (x - mean)/sqrt(var + eps)·w + b for one row (w
// and b may be nil), with ggml's arithmetic: sums in float64, the centred
// values and the scale in float32.
func LayerNorm(dst, x, w, b []float32, eps float32) {
	var sum float64
	for _, v := range x {
		sum += float64(v)
	}
	mean := float32(sum / float64(len(x)))
	var sum2 float64
	for i, v := range x {
		c := v - mean
		dst[i] = c
		sum2 += float64(c * c)
	}
	scale := 1 / float32(math.Sqrt(float64(float32(sum2/float64(len(x)))+eps))) // 1.0f/sqrtf(var+eps)
	for i := range dst[:len(x)] {
		dst[i] *= scale
		if w != nil {
			dst[i] *= w[i]
		}
		if b != nil {
			dst[i] += b[i]
		}
	}
}
