// add.cu: element-wise arithmetic on activations: the residual
// connection, biases, scaling, and the weighted sum of experts' rows.
//
// add_f32(dst, x, n): dst[i] += x[i] for i < n (both contiguous).
// CPU reference: kernels/cpu ops.go Add (exact: one float32 addition).
//   Launch: grid-stride, block 256, grid min(ceil(n/256), 2^20).
//   Napkin: 12 B per element; 4096 per token: launch-bound at decode.
//
// add_bias_f32(x, b, rows, cols): x[t][k] += b[k] for t < rows (grid x),
// k < cols. CPU reference: runtime/cpu AddBias (kcpu.Add per row; exact).
//   Launch: grid (rows, ceil(cols/256)), block 256.
//
// scale_f32(x, s, s0, rows, cols): x[t][k] *= s[t], or *= s0 when s is
// null, for t < rows (grid x), k < cols. CPU reference: runtime/cpu Scale
// (exact: one float32 product).
//   Launch: grid (rows, ceil(cols/256)), block 256.
//
// scale_sigmoid_f32(x, g, rows, cols): x[t][k] *= σ(g[t]), σ(v) =
// 1/(1 + exp(-v)), for t < rows (grid x), k < cols: a mixture's shared
// expert scaled by its gate's logit (g is rows × 1) without a copy to the
// host. CPU reference: runtime/cpu ScaleSigmoid (σ in float64, rounded to
// float32; ex2.approx here: ~1e-7 relative), then one float32 product.
//   Launch: grid (rows, ceil(cols/256)), block 256.
//
// add_scaled_rows_f32(dst, x, plan, m, n, cols): runtime/cpu AddScaledRows,
// dst[idx[i]] += w[i]·x[i] for the n pairs (i, idx[i]) of a MoE step, with
// destinations that repeat. The host groups the pairs by destination into
// plan (int32): dest[m], the m distinct destination rows; start[m+1], the
// pairs of dest[k] being start[k] ≤ j < start[k+1]; src[n], the source row
// of each pair, in increasing i within a destination; then w[n] (float32
// bits). Block (k, column tile) owns destination row dest[k] and adds its
// pairs in order, so no two threads write one element and each element
// sees the CPU's additions in the CPU's order, each product rounded on its
// own (mul_rn): exact.
//   Launch: grid (m, ceil(cols/256)), block 256.
//   Napkin: reads n source rows and m destination rows once, writes m rows:
//   bandwidth-bound, (n + 2m)·cols·4 B (a decode step of 8 experts of a
//   2880-wide row: 115 KB, launch-bound).
#include "common.cuh"

KERNEL void add_f32(float* dst, const float* x, int64_t n) {
  for (int64_t i = (int64_t)ctaid_x() * ntid_x() + tid_x(); i < n; i += (int64_t)nctaid_x() * ntid_x())
    dst[i] += x[i];
}

KERNEL void add_bias_f32(float* x, const float* b, int rows, int cols) {
  int t = ctaid_x(), k = ctaid_y() * ntid_x() + tid_x();
  if (t >= rows || k >= cols) return;
  x[(int64_t)t * cols + k] += b[k];
}

KERNEL void scale_f32(float* x, const float* s, float s0, int rows, int cols) {
  int t = ctaid_x(), k = ctaid_y() * ntid_x() + tid_x();
  if (t >= rows || k >= cols) return;
  x[(int64_t)t * cols + k] *= s ? s[t] : s0;
}

KERNEL void scale_sigmoid_f32(float* x, const float* g, int rows, int cols) {
  int t = ctaid_x(), k = ctaid_y() * ntid_x() + tid_x();
  if (t >= rows || k >= cols) return;
  float p = __nvvm_div_rn_f(1.0f, 1.0f + fast_exp(-g[t]));
  x[(int64_t)t * cols + k] = mul_rn(x[(int64_t)t * cols + k], p);
}

KERNEL void add_scaled_rows_f32(float* dst, const float* x, const int* plan, int m, int n, int cols) {
  int k = ctaid_x(), c = ctaid_y() * ntid_x() + tid_x();
  if (k >= m || c >= cols) return;
  const int* start = plan + m;
  const int* src = start + m + 1;
  const float* w = (const float*)(src + n);
  float* d = dst + (int64_t)plan[k] * cols + c;
  float acc = *d;
  for (int j = start[k]; j < start[k + 1]; j++) acc += mul_rn(w[j], x[(int64_t)src[j] * cols + c]);
  *d = acc;
}
