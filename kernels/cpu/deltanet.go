package cpu

import "math"

// Recurrent-layer kernels (Qwen 3.5's Gated DeltaNet): the causal
// depthwise convolution over a conv state and the gated delta rule over a
// per-head state, one token at a time, as ggml's ssm_conv and
// gated_delta_net CPU ops compute them. Each sequence is processed token
// after token, so results do not depend on how many tokens or sequences
// a step holds (batch and chunk invariance).

// ConvStep is one token of a causal depthwise convolution of kernel k over
// c channels: w holds c rows of k taps, state the k-1 previous inputs
// (k-1 rows of c, oldest first). dst[ch] = Σ_i w[ch][i]·window[i][ch] over
// the window (state, then x); the state then shifts in x.
func ConvStep(dst, x, w, state []float32, c, k int) {
	x, dst, w, state = x[:c], dst[:c], w[:c*k], state[:(k-1)*c]
	for ch := range c {
		wr := w[ch*k : ch*k+k]
		var sum float32
		for i := range k - 1 {
			sum += state[i*c+ch] * wr[i]
		}
		sum += x[ch] * wr[k-1]
		dst[ch] = sum
	}
	copy(state, state[c:])
	copy(state[(k-2)*c:], x)
}

// L2Normalize writes x/max(‖x‖, eps) into dst (ggml_l2_norm: the sum of
// squares in float64, the scale rounded to float32).
func L2Normalize(dst, x []float32, eps float32) {
	var sum float64
	for _, v := range x {
		sum += float64(v * v)
	}
	scale := 1 / max(float32(math.Sqrt(sum)), eps)
	for i, v := range x {
		dst[i] = v * scale
	}
}

// Softplus is log(1+e^x), x itself above 20 (ggml_compute_softplus_f32).
func Softplus(x float32) float32 {
	if x > 20 {
		return x
	}
	return float32(math.Log(float64(1 + float32(math.Exp(float64(x))))))
}

// Sigmoid is 1/(1+e^-x) (ggml_vec_sigmoid_f32).
func Sigmoid(x float32) float32 { return 1 / (1 + float32(math.Exp(float64(-x)))) }

// DeltaStep is one token of the gated delta rule for one head of size d:
// s is the d × d state stored transposed (s[j*d+i] = S[i][j], value j,
// key i), q and k L2-normalised, decay the log gate g, beta the write
// strength. It updates s (S = e^g·S; S += k ⊗ β(v - Sᵀk)) and writes
// out[j] = scale·Σ_i S[i][j]·q[i]. delta is scratch of d values.
func DeltaStep(out, s, q, k, v, delta []float32, g, beta, scale float32, d int) {
	s, q, k, v, out, delta = s[:d*d], q[:d], k[:d], v[:d], out[:d], delta[:d]
	eg := float32(math.Exp(float64(g)))
	for i := range s {
		s[i] *= eg
	}
	for j := range d {
		delta[j] = (v[j] - dot32(s[j*d:j*d+d], k)) * beta
	}
	for j := range d {
		row, dj := s[j*d:j*d+d], delta[j]
		for i, kv := range k {
			row[i] += kv * dj
		}
	}
	for j := range d {
		out[j] = dot32(s[j*d:j*d+d], q) * scale
	}
}

// dot32 is a float32 dot product in four lanes (as ggml's vectorised
// ggml_vec_dot_f32 sums in float32).
func dot32(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3 float32
	i := 0
	for ; i+4 <= len(a); i += 4 {
		s0 += a[i] * b[i]
		s1 += a[i+1] * b[i+1]
		s2 += a[i+2] * b[i+2]
		s3 += a[i+3] * b[i+3]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return (s0 + s1) + (s2 + s3)
}
