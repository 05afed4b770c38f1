// moe.cu: a mixture of experts' routing and weighted sum on the device, so
// that a decode step never copies router logits to the host (llama.cpp's
// argsort_top_k + get_rows + mul_mat_vec_id + the weighted sum). The
// products by expert id are matvec.cu's matvec_id_<type>.
//
// moe_route_f32(ids, w, logits, scale, ne, k, gating, renorm): for token t
// (grid x), from its ne logits (row t of logits), the k experts chosen
// and their weights into ids[t*k..] (int32) and w[t*k..]:
//   gating 0 (SoftmaxTopK): p = softmax of all ne logits (max subtracted,
//     sum over the warp), the k largest p, divided by their sum (at least
//     2^-14) when renorm;
//   gating 1 (TopKSoftmax): the k largest logits, then their softmax.
// Ties go to the lower id; the k pairs are written in increasing id order
// (the order the host's grouped rows add them in); each weight is then
// multiplied by scale[id] when scale is not null. CPU reference:
// backend.RouteRow (runtime/cpu Route): the same choices and arithmetic
// except exp (fast_exp here, float64 there) and the order of the softmax's
// sum, so weights agree to ~1e-6 relative and a choice between two
// probabilities within that of each other may differ. With NaN logits the
// weights are meaningless but the ids stay in [0, ne). k <= MAX_ROUTE_K.
//   Launch: grid n, block 32 (a warp per token): k rounds of a warp
//   arg-max over the unchosen experts. Napkin: 128 experts, k 8: ~40
//   instructions per lane per round, a few µs, launch-bound.
//
// moe_sum_f32(dst, y, w, k, cols): dst[t][c] += Σ_j w[t*k+j]·y[t*k+j][c],
// j in order, each product rounded on its own (mul_rn) before its addition:
// add_scaled_rows_f32's arithmetic, so with the ids in increasing order the
// grouped path's bits. CPU reference: runtime/cpu AddWeightedByID (exact).
//   Launch: grid (n, ceil(cols/256)), block 256.
//   Napkin: reads k+1 rows and writes one per token: launch-bound at decode.
#include "common.cuh"

#define MAX_ROUTE_K 32

DEVINL int shfl_i32(int v, int lane) { return __nvvm_shfl_sync_idx_i32(0xffffffffu, v, lane, 0x1f); }
DEVINL float shfl_f32(float v, int lane) { return __nvvm_shfl_sync_idx_f32(0xffffffffu, v, lane, 0x1f); }
DEVINL int bfly_i32(int v, int o) { return __nvvm_shfl_sync_bfly_i32(0xffffffffu, v, o, 0x1f); }
DEVINL float bfly_f32(float v, int o) { return __nvvm_shfl_sync_bfly_f32(0xffffffffu, v, o, 0x1f); }

KERNEL void moe_route_f32(int* ids, float* w, const float* logits, const float* scale, int ne, int k, int gating,
                          int renorm) {
  int t = ctaid_x(), lane = tid_x();
  const float* l = logits + (int64_t)t * ne;
  float m = NEG_INF;
  for (int e = lane; e < ne; e += 32) m = __builtin_fmaxf(m, l[e]);
  m = warp_max(m);
  float inv = 1.0f;
  if (gating == 0) {
    float s = 0.0f;
    for (int e = lane; e < ne; e += 32) s += fast_exp(l[e] - m);
    inv = 1.0f / warp_sum(s);
  }
  int sel[MAX_ROUTE_K];
  float sv[MAX_ROUTE_K];
  for (int j = 0; j < k; j++) {
    // This lane's best unchosen expert: the largest value, the lower id
    // on ties (ids ascend along the lane's loop); the first unchosen one
    // whatever its value, so a NaN still yields an id.
    float bv = NEG_INF;
    int be = ne;
    for (int e = lane; e < ne; e += 32) {
      bool chosen = false;
      for (int i = 0; i < j; i++) chosen |= sel[i] == e;
      if (chosen) continue;
      float v = gating == 0 ? fast_exp(l[e] - m) * inv : l[e];
      if (be == ne || v > bv) bv = v, be = e;
    }
    for (int o = 16; o > 0; o >>= 1) {
      float ov = bfly_f32(bv, o);
      int oe = bfly_i32(be, o);
      if (oe != ne && (be == ne || ov > bv || (ov == bv && oe < be))) bv = ov, be = oe;
    }
    // Lane 0's choice for everyone (with NaNs the lanes may disagree).
    sel[j] = shfl_i32(be, 0);
    sv[j] = shfl_f32(bv, 0);
  }
  if (lane != 0) return;
  if (gating == 1) {
    float mx = NEG_INF;
    for (int j = 0; j < k; j++) mx = __builtin_fmaxf(mx, sv[j]);
    float s = 0.0f;
    for (int j = 0; j < k; j++) s += sv[j] = fast_exp(sv[j] - mx);
    float is = 1.0f / s;
    for (int j = 0; j < k; j++) sv[j] = mul_rn(sv[j], is);
  } else if (renorm) {
    float s = 0.0f;
    for (int j = 0; j < k; j++) s += sv[j];
    s = __builtin_fmaxf(s, 6.103515625e-5f);
    for (int j = 0; j < k; j++) sv[j] = sv[j] / s;
  }
  // Increasing id order (insertion sort of k pairs).
  for (int j = 1; j < k; j++) {
    int e = sel[j];
    float v = sv[j];
    int i = j - 1;
    for (; i >= 0 && sel[i] > e; i--) sel[i + 1] = sel[i], sv[i + 1] = sv[i];
    sel[i + 1] = e, sv[i + 1] = v;
  }
  for (int j = 0; j < k; j++) {
    int e = sel[j];
    ids[(int64_t)t * k + j] = e;
    w[(int64_t)t * k + j] = scale ? mul_rn(sv[j], scale[e]) : sv[j];
  }
}

KERNEL void moe_sum_f32(float* dst, const float* y, const float* w, int k, int cols) {
  int t = ctaid_x(), c = ctaid_y() * ntid_x() + tid_x();
  if (c >= cols) return;
  float* d = dst + (int64_t)t * cols + c;
  float acc = *d;
  for (int j = 0; j < k; j++) acc += mul_rn(w[(int64_t)t * k + j], y[((int64_t)t * k + j) * cols + c]);
  *d = acc;
}
