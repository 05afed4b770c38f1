package cpu

import (
	"math"

	"github.com/hearth-llm/hearth/kernels/libmf"
	"github.com/hearth-llm/hearth/quant"
)

// Recurrent-layer kernels (Qwen 3.5's Gated DeltaNet): the causal
// depthwise convolution over a conv state and the gated delta rule over a
// per-head state, one token at a time, as ggml's ssm_conv and
// gated_delta_net CPU ops compute them. Each sequence is processed token
// after token, so results do not depend on how many tokens or sequences
// a step holds (batch and chunk invariance). The float operations are
// ggml's, in its order (its C loops as GCC contracts them into FMAs, its
// AVX-512 vector code): llama.cpp's bits.

// ConvStep is one token of a causal depthwise convolution of kernel k over
// c channels: w holds c rows of k taps, state the k-1 previous inputs
// (k-1 rows of c, oldest first). dst[ch] = Σ_i w[ch][i]·window[i][ch] over
// the window (state, then x); the state then shifts in x.
func ConvStep(dst, x, w, state []float32, c, k int) {
	x, dst, w, state = x[:c], dst[:c], w[:c*k], state[:(k-1)*c]
	if convStepAsm(dst, x, w, state, c, k) {
		copy(state, state[c:])
		copy(state[(k-2)*c:], x)
		return
	}
	for ch := range c {
		wr := w[ch*k : ch*k+k]
		var sum float32
		for i := range k - 1 {
			sum = quant.FMA32(state[i*c+ch], wr[i], sum)
		}
		dst[ch] = quant.FMA32(x[ch], wr[k-1], sum)
	}
	copy(state, state[c:])
	copy(state[(k-2)*c:], x)
}

// L2Normalize writes x/max(‖x‖, eps) into dst (ggml_l2_norm: the sum of
// squares in float64, rounded to float32 before sqrtf).
func L2Normalize(dst, x []float32, eps float32) {
	var sum float64
	for _, v := range x {
		sum += float64(v * v)
	}
	scale := 1 / max(float32(math.Sqrt(float64(float32(sum)))), eps)
	for i, v := range x {
		dst[i] = v * scale
	}
}

// Softplus is logf(1+expf(x)), x itself above 20
// (ggml_compute_softplus_f32, with glibc's logf and expf).
func Softplus(x float32) float32 {
	if x > 20 {
		return x
	}
	return libmf.Logf(1 + libmf.Expf(x))
}

// Sigmoid is 1/(1+expf(-x)) (ggml_vec_sigmoid_f32, glibc's expf).
func Sigmoid(x float32) float32 { return 1 / (1 + libmf.Expf(-x)) }

// DeltaStep is one token of the gated delta rule for one head of size d:
// s is the d × d state stored transposed (s[j*d+i] = S[i][j], value j,
// key i), q and k L2-normalised, decay the log gate g, beta the write
// strength. It updates s (S = e^g·S; S += k ⊗ β(v - Sᵀk)) and writes
// out[j] = scale·Σ_i S[i][j]·q[i]. delta is scratch of d values.
func DeltaStep(out, s, q, k, v, delta []float32, g, beta, scale float32, d int) {
	s, q, k, v, out, delta = s[:d*d], q[:d], k[:d], v[:d], out[:d], delta[:d]
	eg := libmf.Expf(g)
	for i := scaleAsm(s, eg); i < len(s); i++ {
		s[i] *= eg
	}
	for j := range d {
		delta[j] = (v[j] - DotF32(s[j*d:j*d+d], k)) * beta
	}
	for j := range d {
		row, dj := s[j*d:j*d+d], delta[j]
		for i := madAsm(row, k, dj); i < d; i++ {
			row[i] = quant.FMA32(k[i], dj, row[i]) // ggml_vec_mad_f32
		}
	}
	for j := range d {
		out[j] = DotF32(s[j*d:j*d+d], q) * scale
	}
}
