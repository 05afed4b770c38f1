package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"

	"github.com/hearth-llm/hearth/kernels/rope"
	"github.com/hearth-llm/hearth/quant"
)

var matTypes = []quant.Type{quant.F32, quant.F16, quant.BF16, quant.Q4_0, quant.Q4_1, quant.Q5_0, quant.Q5_1,
	quant.Q8_0, quant.Q2_K, quant.Q3_K, quant.Q4_K, quant.Q5_K, quant.Q6_K, quant.IQ4_NL, quant.IQ4_XS, quant.MXFP4}

func randVec(r *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64())
	}
	return v
}

// quantizeMatrix quantizes rows × cols random values to t (F32 stored raw).
func quantizeMatrix(t testing.TB, r *rand.Rand, typ quant.Type, rows, cols int) *Matrix {
	rb, err := typ.RowBytes(cols)
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, rows*rb)
	for i := 0; i < rows; i++ {
		row := randVec(r, cols)
		if err := quant.QuantizeRow(typ, row, data[i*rb:(i+1)*rb]); err != nil {
			t.Fatal(err)
		}
	}
	m, err := NewMatrix(typ, rows, cols, data)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestMatMul checks MatMul against a float64 product of the dequantized
// weights and the dequantized (vec-dot-type) activations, for every type,
// odd row and token counts, and 1 and 3 threads.
func TestMatMul(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, typ := range matTypes {
		for _, threads := range []int{1, 3} {
			t.Run(fmt.Sprintf("%v/%dthreads", typ, threads), func(t *testing.T) {
				p := NewPool(threads)
				defer p.Close()
				cols := 512
				rows, n := 37, 5
				m := quantizeMatrix(t, r, typ, rows, cols)
				x := randVec(r, n*cols)
				dst := make([]float32, n*rows+3)
				guard := float32(12345)
				dst[n*rows], dst[n*rows+1], dst[n*rows+2] = guard, guard, guard
				var s Scratch
				MatMul(p, &s, dst[:n*rows], m, x, n)
				if dst[n*rows] != guard || dst[n*rows+2] != guard {
					t.Fatal("MatMul wrote past the end of dst")
				}
				// Reference: exact float64 sums of dequantized operands.
				vt := typ.VecDotType()
				w := make([]float32, cols)
				xd := make([]float32, cols)
				for tok := 0; tok < n; tok++ {
					xt := x[tok*cols : (tok+1)*cols]
					if typ == quant.F32 {
						copy(xd, xt)
					} else {
						xrb, _ := vt.RowBytes(cols)
						xq := make([]byte, xrb)
						quant.QuantizeRow(vt, xt, xq)
						quant.DequantizeRow(vt, xq, xd)
					}
					for row := 0; row < rows; row++ {
						m.DequantizeRow(row, w)
						var want, mag float64
						for i := range w {
							want += float64(w[i]) * float64(xd[i])
							mag += math.Abs(float64(w[i]) * float64(xd[i]))
						}
						if vt == quant.Q8_1 {
							want += q81Correction(m.Row(row), xq8(vt, xt))
						}
						got := float64(dst[tok*rows+row])
						if math.Abs(got-want) > 1e-5*mag+1e-5 {
							t.Fatalf("token %d row %d: %g, want %g", tok, row, got, want)
						}
					}
				}
			})
		}
	}
}

func TestRMSNorm(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	x, w := randVec(r, 67), randVec(r, 67)
	dst := make([]float32, 67)
	RMSNorm(dst, x, w, 1e-5)
	var ss float64
	for _, v := range x {
		ss += float64(v) * float64(v)
	}
	scale := 1 / math.Sqrt(ss/67+1e-5)
	for i := range x {
		if want := float64(x[i]) * scale * float64(w[i]); math.Abs(float64(dst[i])-want) > 1e-5 {
			t.Fatalf("[%d] = %g, want %g", i, dst[i], want)
		}
	}
}

func TestSoftmax(t *testing.T) {
	x := []float32{1, 2, 3, float32(math.Inf(-1))}
	Softmax(x, 0.5)
	e := []float64{math.Exp(0.5), math.Exp(1), math.Exp(1.5)}
	sum := e[0] + e[1] + e[2]
	for i := 0; i < 3; i++ {
		if math.Abs(float64(x[i])-e[i]/sum) > 1e-6 {
			t.Fatalf("softmax[%d] = %g, want %g", i, x[i], e[i]/sum)
		}
	}
	if x[3] != 0 {
		t.Fatalf("masked entry = %g", x[3])
	}
}

// TestRoPE checks both pair layouts against the textbook rotation.
func TestRoPE(t *testing.T) {
	for _, neox := range []bool{false, true} {
		rp := rope.Params{Dims: 8, Base: 10000, Scale: 1, NeoX: neox}
		headDim, heads := 12, 2
		r := rand.New(rand.NewPCG(5, 6))
		x := randVec(r, heads*headDim)
		orig := append([]float32(nil), x...)
		cos, sin := make([]float32, 4), make([]float32, 4)
		const pos = 37
		rp.Tables(pos, cos, sin)
		ApplyRoPE(&rp, x, heads, headDim, cos, sin)
		for h := 0; h < heads; h++ {
			for i := 0; i < 4; i++ {
				a, b := h*headDim+2*i, h*headDim+2*i+1
				if neox {
					a, b = h*headDim+i, h*headDim+i+4
				}
				th := pos * math.Pow(10000, -2*float64(i)/8)
				wa := float64(orig[a])*math.Cos(th) - float64(orig[b])*math.Sin(th)
				wb := float64(orig[a])*math.Sin(th) + float64(orig[b])*math.Cos(th)
				if math.Abs(float64(x[a])-wa) > 1e-4 || math.Abs(float64(x[b])-wb) > 1e-4 {
					t.Fatalf("neox=%v head %d pair %d: (%g, %g), want (%g, %g)", neox, h, i, x[a], x[b], wa, wb)
				}
			}
			for i := 8; i < headDim; i++ { // past Dims: untouched
				if x[h*headDim+i] != orig[h*headDim+i] {
					t.Fatalf("dimension %d past rope dims changed", i)
				}
			}
		}
	}
}

func xq8(vt quant.Type, x []float32) []byte {
	xrb, _ := vt.RowBytes(len(x))
	xq := make([]byte, xrb)
	quant.QuantizeRow(vt, x, xq)
	return xq
}

// q81Correction is what ggml's Q4_1/Q5_1 dot adds over the exact product of
// dequantized operands: it takes the activation block sum from the stored
// s = fp16(d_f32·Σq) instead of d·Σq (see shared/quant/README.md), so the
// reference adds Σ_blocks m_w·(s − d·Σq). Both weight formats keep m at
// byte 2 of the block; a Q8_1 block is d, s, 32 int8.
func q81Correction(w, xq []byte) float64 {
	h := func(b []byte) float64 { return float64(quant.F16ToF32(uint16(b[0]) | uint16(b[1])<<8)) }
	wbs := len(w) / (len(xq) / 36)
	var c float64
	for b := 0; b < len(xq)/36; b++ {
		xb, wb := xq[b*36:], w[b*wbs:]
		var sum int
		for _, q := range xb[4:36] {
			sum += int(int8(q))
		}
		c += h(wb[2:]) * (h(xb[2:]) - h(xb)*float64(sum))
	}
	return c
}

type flatKV struct {
	k, v     []byte
	rowBytes int
}

func (f flatKV) K(p int) []byte { return f.k[p*f.rowBytes : (p+1)*f.rowBytes] }
func (f flatKV) V(p int) []byte { return f.v[p*f.rowBytes : (p+1)*f.rowBytes] }

// TestAttention compares grouped causal attention over F16 and Q8_0
// caches with float64 attention over the same (rounded) keys and values,
// plain and with each of AttnOpts' variations.
func TestAttention(t *testing.T) {
	optSets := map[string]*AttnOpts{
		"plain":     nil,
		"window":    {Window: 3},
		"softcap":   {SoftCap: 0.7},
		"sinks":     {Sinks: []float32{0.5, -1, 2, 0, 1.5, -0.25}},
		"noncausal": {Last: []int32{10, 10, 10, 10}},
		"all":       {Window: 4, SoftCap: 0.9, Sinks: []float32{1, 1, 1, 1, 1, 1}},
	}
	for _, typ := range KVTypes {
		for name, o := range optSets {
			t.Run(typ.String()+"/"+name, func(t *testing.T) { testAttention(t, typ, o) })
		}
	}
}

func testAttention(t *testing.T, typ quant.Type, o *AttnOpts) {
	{
		{
			r := rand.New(rand.NewPCG(7, 8))
			const heads, kvHeads, hd, ctx, nTok = 6, 2, 32, 11, 4
			kvw := kvHeads * hd
			rb, _ := typ.RowBytes(kvw)
			kv := flatKV{make([]byte, ctx*rb), make([]byte, ctx*rb), rb}
			for p := 0; p < ctx; p++ {
				StoreKV(typ, kv.K(p), randVec(r, kvw))
				StoreKV(typ, kv.V(p), randVec(r, kvw))
			}
			row := func(b []byte) []float32 {
				x := make([]float32, kvw)
				quant.DequantizeRow(typ, b, x)
				return x
			}
			q := randVec(r, nTok*heads*hd)
			pos := []int32{3, 7, 8, 10}
			out := make([]float32, nTok*heads*hd)
			p := NewPool(2)
			defer p.Close()
			scale := float32(1 / math.Sqrt(hd))
			Attention(p, out, q, nTok, pos, []KVView{kv, kv, kv, kv}, typ, heads, kvHeads, hd, scale, o)
			for tk := 0; tk < nTok; tk++ {
				for h := 0; h < heads; h++ {
					kvh := h / (heads / kvHeads)
					n, lo := int(pos[tk])+1, 0
					if o != nil && o.Last != nil {
						n = int(o.Last[tk]) + 1
					}
					if o != nil && o.Window > 0 {
						lo = max(0, int(pos[tk])-o.Window+1)
					}
					s := make([]float64, n)
					maxs := math.Inf(-1)
					for j := lo; j < n; j++ {
						k := row(kv.K(j))
						for d := 0; d < hd; d++ {
							s[j] += float64(q[(tk*heads+h)*hd+d]) * float64(k[kvh*hd+d])
						}
						s[j] *= float64(scale)
						if o != nil && o.SoftCap > 0 {
							s[j] = float64(o.SoftCap) * math.Tanh(s[j]/float64(o.SoftCap))
						}
						maxs = math.Max(maxs, s[j])
					}
					var sum float64
					if o != nil && o.Sinks != nil {
						maxs = math.Max(maxs, float64(o.Sinks[h]))
						sum = math.Exp(float64(o.Sinks[h]) - maxs)
					}
					for j := lo; j < n; j++ {
						s[j] = math.Exp(s[j] - maxs)
						sum += s[j]
					}
					for d := 0; d < hd; d++ {
						var want float64
						for j := lo; j < n; j++ {
							want += s[j] / sum * float64(row(kv.V(j))[kvh*hd+d])
						}
						got := out[(tk*heads+h)*hd+d]
						// q is rounded to the cache's vec-dot type: f16, or
						// 8 bits per value for Q8_0.
						tol := 5e-3
						if typ == quant.Q8_0 {
							tol = 3e-2
						}
						if math.Abs(float64(got)-want) > tol {
							t.Fatalf("token %d head %d dim %d: %g, want %g", tk, h, d, got, want)
						}
					}
				}
			}
		}
	}
}

func TestPoolCoversRange(t *testing.T) {
	p := NewPool(3)
	defer p.Close()
	for _, n := range []int{0, 1, 2, 5, 100} {
		seen := make([]int, n)
		p.Run(n, 1, func(s, e int) {
			for i := s; i < e; i++ {
				seen[i]++
			}
		})
		for i, c := range seen {
			if c != 1 {
				t.Fatalf("n=%d: index %d visited %d times", n, i, c)
			}
		}
	}
}

// TestPoolPanic: a panic in a worker's range reaches the caller, and the
// pool keeps working afterwards.
func TestPoolPanic(t *testing.T) {
	p := NewPool(3)
	defer p.Close()
	func() {
		defer func() {
			if r := recover(); r != "boom" {
				t.Fatalf("recovered %v, want boom", r)
			}
		}()
		p.Run(30, 1, func(s, e int) {
			if s > 0 {
				panic("boom")
			}
		})
		t.Fatal("Run returned without panicking")
	}()
	sum := 0
	var mu sync.Mutex
	p.Run(30, 1, func(s, e int) { mu.Lock(); sum += e - s; mu.Unlock() })
	if sum != 30 {
		t.Fatalf("after a panic the pool covered %d of 30", sum)
	}
}

func TestAxpyF16(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, n := range []int{0, 1, 7, 8, 9, 31, 32, 33, 64, 100} {
		v := make([]uint16, n)
		ToF16(v, randVec(r, n))
		dst := randVec(r, n+1)
		want := append([]float32(nil), dst...)
		guard := dst[n]
		AxpyF16(dst[:n], 0.37, v)
		axpyF16Generic(want[:n], 0.37, v)
		for i := 0; i < n; i++ {
			if math.Abs(float64(dst[i]-want[i])) > 1e-6*(1+math.Abs(float64(want[i]))) {
				t.Fatalf("n=%d [%d]: %v, want %v", n, i, dst[i], want[i])
			}
		}
		if dst[n] != guard {
			t.Fatalf("n=%d: wrote past the end", n)
		}
	}
}

// TestAxpyF16x4 holds AxpyF16x4 to AxpyF16 on each row in turn, bit for
// bit, over odd lengths and strides, with a guard past the end.
func TestAxpyF16x4(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, n := range []int{0, 1, 7, 8, 9, 16, 17, 31, 33, 100, 768} {
		for _, stride := range []int{n, n + 3} {
			v := make([]uint16, 3*stride+n)
			ToF16(v, randVec(r, len(v)))
			w := [4]float32{0.37, -1.5, 2.25, 0.01}
			dst := randVec(r, n+1)
			want := append([]float32(nil), dst...)
			guard := dst[n]
			AxpyF16x4(dst[:n], &w, v, stride)
			for k := range 4 {
				AxpyF16(want[:n], w[k], v[k*stride:k*stride+n])
			}
			for i := range n {
				if math.Float32bits(dst[i]) != math.Float32bits(want[i]) {
					t.Fatalf("n=%d stride %d [%d]: %v, want %v", n, stride, i, dst[i], want[i])
				}
			}
			if dst[n] != guard {
				t.Fatalf("n=%d: wrote past the end", n)
			}
		}
	}
}

// TestSwiGLU holds the SIMD SwiGLU to the per-element reference (a few
// ulp: its e^x is a polynomial), over odd lengths, extreme and NaN gates.
func TestSwiGLU(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, n := range []int{1, 7, 8, 9, 31, 172, 8192} {
		gate, up := make([]float32, n), make([]float32, n)
		for i := range gate {
			gate[i], up[i] = float32(rng.NormFloat64()*4), float32(rng.NormFloat64())
		}
		if n > 8 {
			gate[0], gate[1], gate[2], gate[3], gate[4] = 100, -100, 88.5, -88.5, float32(math.NaN())
		}
		got, want := make([]float32, n), make([]float32, n)
		SwiGLU(got, gate, up)
		swigluGeneric(want, gate, up)
		for i := range got {
			if math.IsNaN(float64(want[i])) != math.IsNaN(float64(got[i])) {
				t.Fatalf("n %d [%d]: gate %v: got %v, want %v", n, i, gate[i], got[i], want[i])
			}
			if d := math.Abs(float64(got[i] - want[i])); d > 1e-6*math.Abs(float64(want[i]))+1e-30 {
				t.Errorf("n %d [%d]: gate %v up %v: got %v, want %v", n, i, gate[i], up[i], got[i], want[i])
			}
		}
	}
}

func BenchmarkSwiGLU(b *testing.B) {
	const n = 8192
	gate, up, dst := make([]float32, n), make([]float32, n), make([]float32, n)
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range gate {
		gate[i], up[i] = float32(rng.NormFloat64()*3), float32(rng.NormFloat64())
	}
	b.SetBytes(n * 4)
	for b.Loop() {
		SwiGLU(dst, gate, up)
	}
}

// TestExpShift holds softmax's SIMD exponentials to the reference (a few
// ulp), with -Inf (masked) entries exactly 0 and NaN kept.
func TestExpShift(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{1, 8, 13, 64, 517} {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64() * 20)
		}
		if n > 8 {
			x[1], x[2], x[3] = float32(math.Inf(-1)), -200, float32(math.NaN())
		}
		const m = 30
		got, want := slices.Clone(x), slices.Clone(x)
		n8 := expShiftAsm(got, m)
		expShiftGeneric(got[n8:], m)
		expShiftGeneric(want, m)
		for i := range got {
			w, g := float64(want[i]), float64(got[i])
			switch {
			case math.IsNaN(w) != math.IsNaN(g):
				t.Fatalf("n %d [%d] x %v: got %v, want %v", n, i, x[i], g, w)
			case w == 0 || x[i] < -57: // e^(x-m) below e^-87: 0 either way
				if g != 0 && g > 1e-37 {
					t.Errorf("n %d [%d] x %v: got %v, want ~0", n, i, x[i], g)
				}
			case !math.IsNaN(w) && math.Abs(g-w) > 3e-7*w:
				t.Errorf("n %d [%d] x %v: got %v, want %v", n, i, x[i], g, w)
			}
		}
		if n > 8 && got[1] != 0 {
			t.Errorf("-Inf gave %v, want 0", got[1])
		}
	}
}

func BenchmarkSoftmax(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	x, src := make([]float32, 512), make([]float32, 512)
	for i := range src {
		src[i] = float32(rng.NormFloat64() * 5)
	}
	b.SetBytes(512 * 4)
	for b.Loop() {
		copy(x, src)
		Softmax(x, 0.125)
	}
}

// TestExpKernelsExact: the AVX2 forms of ggml's e^x (softmax's shifted
// exponentials, SiLU, SwiGLU) give their Go references' bits, over normal
// values, the range ends (±88, ±103, ±192·ln2), −Inf, +Inf and NaN.
func TestExpKernelsExact(t *testing.T) {
	r := rand.New(rand.NewPCG(71, 72))
	x := make([]float32, 0, 4000)
	for range 3000 {
		x = append(x, float32(r.NormFloat64()*20))
	}
	for _, v := range []float32{0, -0, 1, -1, 88, 88.8, -87, -103, -104, 133, -133, 134, -134, 200, -200,
		float32(math.Inf(-1)), float32(math.Inf(1)), float32(math.NaN())} {
		x = append(x, v)
	}
	for len(x)%8 != 0 {
		x = append(x, 0.5)
	}
	same := func(a, b float32) bool {
		return math.Float32bits(a) == math.Float32bits(b) || math.IsNaN(float64(a)) && math.IsNaN(float64(b))
	}
	got := append([]float32(nil), x...)
	if expShiftAsm(got, 0.25) > 0 {
		for i, v := range x {
			if w := ExpGGML(v - 0.25); !same(got[i], w) {
				t.Fatalf("expShift(%v): %v, ExpGGML %v", v, got[i], w)
			}
		}
	}
	s := make([]float32, len(x))
	if siluAsm(s, x) > 0 {
		for i, v := range x {
			if w := SiLU(v); !same(s[i], w) {
				t.Fatalf("silu(%v): %v, SiLU %v", v, s[i], w)
			}
		}
	}
	up := make([]float32, len(x))
	for i := range up {
		up[i] = float32(r.NormFloat64())
	}
	g := make([]float32, len(x))
	if swigluAsm(g, x, up) > 0 {
		for i, v := range x {
			if w := SiLU(v) * up[i]; !same(g[i], w) {
				t.Fatalf("swiglu(%v): %v, SiLU·up %v", v, g[i], w)
			}
		}
	}
}

// TestConvStepKernel: ConvStep's kernel-4 vector form gives the Go loop's
// bits and state, over several tokens.
func TestConvStepKernel(t *testing.T) {
	r := rand.New(rand.NewPCG(73, 74))
	const c, k = 72, 4
	w := randVec(r, c*k)
	st1, st2 := randVec(r, (k-1)*c), make([]float32, (k-1)*c)
	copy(st2, st1)
	for tok := range 5 {
		x := randVec(r, c)
		got := make([]float32, c)
		ConvStep(got, x, w, st1, c, k)
		want := make([]float32, c)
		for ch := range c {
			var sum float32
			for i := range k - 1 {
				sum = quant.FMA32(st2[i*c+ch], w[ch*k+i], sum)
			}
			want[ch] = quant.FMA32(x[ch], w[ch*k+k-1], sum)
		}
		copy(st2, st2[c:])
		copy(st2[(k-2)*c:], x)
		for ch := range c {
			if math.Float32bits(got[ch]) != math.Float32bits(want[ch]) {
				t.Fatalf("token %d channel %d: %v, want %v", tok, ch, got[ch], want[ch])
			}
		}
		for i := range st1 {
			if st1[i] != st2[i] {
				t.Fatalf("token %d: state %d differs", tok, i)
			}
		}
	}
}
