// Package rope holds the parameters of a rotary position embedding and the
// reference computation of its cos/sin tables, shared by every backend
// (the CPU kernels rotate with them; the CUDA backend uploads them). It
// imports only kernels/libmf (glibc's sinf, cosf and logf, which ggml's
// tables are made with), so the backend interface can name its type
// without depending on one implementation.
package rope

import (
	"math"

	"github.com/hearth-llm/hearth/kernels/libmf"
)

// Params describes a rotary position embedding, with ggml's parameters.
type Params struct {
	Dims       int       // rotated dimensions per head (n_rot), even
	Base       float32   // freq_base
	Scale      float32   // freq_scale: 1 / linear scaling factor
	NeoX       bool      // rotate pairs (i, i+Dims/2) instead of (2i, 2i+1)
	Factors    []float32 // per-pair frequency divisors (rope_freqs), or nil
	ExtFactor  float32   // YaRN extrapolation mix; 0 disables YaRN
	AttnFactor float32   // YaRN magnitude scale (1 when unused)
	BetaFast   float32
	BetaSlow   float32
	CtxOrig    int // n_ctx_orig, for YaRN's correction dims
}

// corrDims returns YaRN's correction range [lo, hi] of pair indices, in
// float32 with logf as ggml_rope_yarn_corr_dims computes it.
func (r *Params) corrDims() (float32, float32) {
	dim := func(nRot float32) float32 {
		return float32(r.Dims) * libmf.Logf(float32(r.CtxOrig)/(nRot*2*float32(math.Pi))) / (2 * libmf.Logf(r.Base))
	}
	lo := float32(math.Floor(float64(dim(r.BetaFast))))
	hi := float32(math.Ceil(float64(dim(r.BetaSlow))))
	return max(0, lo), min(float32(r.Dims-1), hi)
}

// Tables fills cos and sin (len Dims/2 each) for position pos as ggml's
// rope cache does, bit for bit: theta iterated in float32, glibc's cosf
// and sinf, YaRN's mix and magnitude with the multiply-adds GCC fuses.
func (r *Params) Tables(pos int32, cos, sin []float32) {
	thetaScale := float32(math.Pow(float64(r.Base), float64(-2/float32(r.Dims))))
	theta := float32(pos)
	var lo, hi float32
	mscale := r.AttnFactor
	if mscale == 0 {
		mscale = 1
	}
	scale := r.Scale
	if scale == 0 {
		scale = 1
	}
	if r.ExtFactor != 0 {
		lo, hi = r.corrDims()
		mscale *= libmf.FMA32(0.1, libmf.Logf(1/scale), 1)
	}
	for i := 0; i < r.Dims/2; i++ {
		extrap := theta
		if r.Factors != nil {
			extrap = theta / r.Factors[i]
		}
		th := scale * extrap
		if r.ExtFactor != 0 {
			y := (float32(i) - lo) / max(0.001, hi-lo)
			ramp := (1 - min(1, max(0, y))) * r.ExtFactor
			th = libmf.FMA32(th, 1-ramp, extrap*ramp)
		}
		cos[i] = libmf.Cosf(th) * mscale
		sin[i] = libmf.Sinf(th) * mscale
		theta *= thetaScale
	}
}
