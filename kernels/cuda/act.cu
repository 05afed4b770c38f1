// act.cu: activation functions, alone and as the gated units of the
// feed-forward blocks. All are element-wise over contiguous float32
// (n = tokens × width, every operand the same layout); dst may equal an
// input.
//
// swiglu_f32(dst, gate, up, n): dst[i] = silu(gate[i]) * up[i],
//   silu(g) = g / (1 + exp(-g)).
// CPU reference: kernels/cpu ops.go SwiGLU/SiLU, which takes exp in float64;
// here exp is ex2.approx (a few ulp), so results agree to ~1e-6 relative.
//
// geglu_f32(dst, gate, up, n): dst[i] = gelu(gate[i]) * up[i].
// gelu_f32(dst, x, n): dst[i] = gelu(x[i]).
//   gelu is GELU's tanh approximation as ggml's CPU computes it (kernels/cpu
//   ops.go GELU, GeGLU): 0 at or below -10, x at or above 10, otherwise the
//   input rounded to f16, 0.5·h·(1+tanh(√(2/π)·h·(1+0.044715·h²))), the
//   result rounded to f16 (ggml looks it up in an f16 table of exactly
//   that). Here 0.5·(1+tanh(u)) is computed as the equal 1/(1+e^(-2u)),
//   which has no cancellation, where the CPU rounds tanh to f32 and adds
//   1. So the outputs are the same f16 value except: in the negative tail
//   (x in about [-6, -3], |gelu| < 1e-4), where the CPU's 1+tanh cancels,
//   within 2^-22 absolute (a few f16 subnormal steps; ~800 of the 196k
//   inputs checked); elsewhere one f16 step (2^-11 relative) apart where
//   the exact value lies within a few f32 ulps of an f16 rounding boundary
//   (~40 of them). Checked on the CPU with a Go model of this code over
//   every f16 input and its f32 neighbours (runtime/cuda kmodel_test.go
//   TestKernelModelGELU); ex2.approx's own error is not modelled.
//
// swiglu_oai_f32(dst, gate, up, n, alpha, limit): gpt-oss's clamped unit,
//   x = min(gate[i], limit), y = clamp(up[i], -limit, limit),
//   dst[i] = x / (1 + exp(-alpha·x)) · (y + 1); NaN inputs stay NaN, as
//   with Go's min and max.
// CPU reference: kernels/cpu ops.go SwiGLUOAI (exp in float64; ex2.approx
// here: ~1e-6 relative).
//
// sigmoid_glu_f32(dst, gate, up, n): dst[i] = σ(gate[i])·up[i],
//   σ(g) = 1/(1 + exp(-g)) (Qwen 3.5's attention output gate). CPU
//   reference: runtime/cpu GLU with ActSigmoid (kernels/cpu Sigmoid, exp in
//   float64; ex2.approx here: ~1e-7 relative), the product rounded on its
//   own.
//
// silu_f32(dst, x, n): dst[i] = silu(x[i]) (kernels/cpu SiLU).
//
//   Launch: grid-stride, block 256, grid min(ceil(n/256), 2^20).
//   Napkin: 12 B per element (8 alone); at decode n_ff = 14336 (172 KB):
//   launch-bound; prefill 512 tokens: 88 MB, ~30 µs at 3 TB/s.
#include "common.cuh"

#define GRID_STRIDE(i, n) \
  for (int64_t i = (int64_t)ctaid_x() * ntid_x() + tid_x(); i < n; i += (int64_t)nctaid_x() * ntid_x())

DEVINL float silu(float g) { return g / (1.0f + fast_exp(-g)); }

DEVINL float gelu(float x) {
  if (x <= -10.0f) return 0.0f;
  if (x >= 10.0f) return x;
  float h = f16round(x);
  // u = (√(2/π)·h)·(1 + (0.044715·h)·h), in ggml's order, each product
  // rounded (no FMA: the CPU's float32 arithmetic).
  float u = mul_rn(mul_rn(0.7978845608028654f, h), 1.0f + mul_rn(mul_rn(0.044715f, h), h));
  return f16round(h / (1.0f + fast_exp(-2.0f * u)));
}

KERNEL void swiglu_f32(float* dst, const float* gate, const float* up, int64_t n) {
  GRID_STRIDE(i, n) {
    float g = gate[i];
    dst[i] = silu(g) * up[i];
  }
}

KERNEL void geglu_f32(float* dst, const float* gate, const float* up, int64_t n) {
  GRID_STRIDE(i, n) dst[i] = mul_rn(gelu(gate[i]), up[i]);
}

KERNEL void swiglu_oai_f32(float* dst, const float* gate, const float* up, int64_t n, float alpha, float limit) {
  GRID_STRIDE(i, n) {
    float x = gate[i], y = up[i];
    x = x > limit ? limit : x;  // a NaN stays
    y = y > limit ? limit : (y < -limit ? -limit : y);
    dst[i] = x / (1.0f + fast_exp(-(alpha * x))) * (y + 1.0f);
  }
}

KERNEL void sigmoid_glu_f32(float* dst, const float* gate, const float* up, int64_t n) {
  GRID_STRIDE(i, n) dst[i] = mul_rn(__nvvm_div_rn_f(1.0f, 1.0f + fast_exp(-gate[i])), up[i]);
}

KERNEL void silu_f32(float* dst, const float* x, int64_t n) {
  GRID_STRIDE(i, n) dst[i] = silu(x[i]);
}

KERNEL void gelu_f32(float* dst, const float* x, int64_t n) {
  GRID_STRIDE(i, n) dst[i] = gelu(x[i]);
}
