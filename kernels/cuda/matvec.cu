// matvec.cu: the decode matrix multiply, dst = x·Wᵀ for up to MAXT (8)
// tokens, and the activation quantizer it reads.
//
// quantize_q8(aq, ad, x, n): x (n floats, n a multiple of 32) to int8 per 32
// values as ggml's x86 CPU quantizes activations (quantize_row_q8_0's AVX2
// form): d = amax/127, q = x·(127/amax) rounded to nearest even, the scale
// kept as the f16-rounded d (as block_q8_0 stores it), widened to float in
// ad[i/32]. CPU reference: quant.QuantizeAct(Q8_0), byte for byte in aq.
//   Launch: grid ceil(n/256), block 256; a warp per 32 values.
//
// matvec_<type>(dst, W, rowBytes, rows, cols, aq, ad, x, nt):
//   dst[t*rows + r] = dot(row r of W, activation row t), t < nt <= 8.
// Quantized types (Q4_0, Q8_0, Q4_K, Q6_K) read aq/ad from quantize_q8 and
// sum exact int32 dp4a products per 4..8 weights, scaled in float32 (quant.cuh
// units); float types (F32, F16, BF16) read the float32 activations x.
// CPU reference: kernels/cpu MatMul (activations as the vec-dot type,
// quant.VecDot): Q8_0 activations for Q4_0/Q8_0 (byte for byte the same
// here), F16/BF16-rounded activations for F16/BF16 weights (the same).
// Differences: K-quants here see activations quantized per 32 values (the
// CPU's Q8_K uses one scale per 256: the GPU is the more precise of the
// two), and sums run in another order. The differential tests hold the
// products to 2e-2 relative (K-quants; ~1e-6 for the others).
//   Launch: grid ceil(rows/4), block 128: a warp per weight row, its 32 lanes
//   striding over the row's units (8 weights each), a row's weights read
//   once for all nt tokens; warp-shuffle sum, lane 0 writes.
//   Napkin (DESIGN.md): decode reads each weight byte once: a 4096×14336
//   Q4_0 matrix is 33 MB, 11 µs at 3 TB/s. Measured on an H200 by the
//   prototype of this scheme (four lanes per Q4_0 block, 16-bit loads,
//   int8 activations, dp4a): 3,222 GB/s, 76% of the copy bandwidth.
//   Later: 128-bit loads of several blocks per lane, and a split over
//   columns for matrices with few rows.
//
// matvec_id_<type>(dst, W, rowBytes, rows, cols, aq, ad, x, ids, k, xslot,
//                  bias, ne): a mixture's decode products by expert id
// (ggml's mul_mat_vec_id). For each pair p = t*k + j (token t, its choice
// j; grid y), e = ids[p], and xr = p when xslot (x has a row per pair: the
// down product) else t (a row per token: gate and up):
//   dst[p*rows + r] = dot(row r of expert e's matrix, activation row xr)
//                     + (bias ? bias[e][r] : 0).
// W and bias are device tables of ne addresses (uint64), one per expert:
// every expert's matrix of one format and shape (rowBytes, rows, cols), and
// its 1 × rows float32 bias. An id outside [0, ne) writes 0 (Route never
// makes one). The inner loop is matvec's, for one token: the product of a
// pair is bit for bit what matvec gives that token's row with that expert
// alone (so the grouped path's decode results). CPU reference: runtime/cpu
// MatMulByID.
//   Launch: grid (ceil(rows/4), n*k), block 128: a warp per weight row.
//   Napkin: a decode step reads each chosen expert's matrix once per pair
//   (k matrices per token; a token's k experts are distinct): 8 experts of
//   a 2880 × 2880 Q8_0 gpt-oss matrix, 70 MB per layer and token at 3 TB/s
//   is 23 µs. Pairs of several tokens that chose the same expert read it
//   again (from L2 when it fits), which is why prefill groups by expert.
#include "quant.cuh"

KERNEL void quantize_q8(int8_t* aq, float* ad, const float* x, int64_t n) {
  int64_t i = (int64_t)ctaid_x() * ntid_x() + tid_x();
  // n is a multiple of 32 and blocks are multiples of 32 threads, so a warp
  // is either wholly inside or wholly outside.
  if (i >= n) return;
  float v = x[i];
  float amax = warp_max(__builtin_fabsf(v));
  float d = amax / 127.0f;
  float id = amax != 0.0f ? 127.0f / amax : 0.0f;
  aq[i] = (int8_t)(int)__builtin_rintf(v * id);
  if ((tid_x() & 31) == 0) ad[i >> 5] = f16round(d);
}

// MatvecUnit runs a lane's units of a row against up to NT activation rows.
template <class T, int NT, bool Q = T::QUANT_ACT>
struct MatvecUnit;
template <class T, int NT>
struct MatvecUnit<T, NT, true> {
  DEVINL void run(const uint8_t* row, int cols, int lane, const int8_t* aq, const float* ad, const float* x, int nt, float* acc) {
    for (int u = lane; u < cols / 8; u += 32) T::template unit<NT>(row, u, aq, ad, cols, nt, acc);
  }
};
template <class T, int NT>
struct MatvecUnit<T, NT, false> {
  DEVINL void run(const uint8_t* row, int cols, int lane, const int8_t* aq, const float* ad, const float* x, int nt, float* acc) {
    for (int e = lane; e < cols; e += 32) T::template unit<NT>(row, e, x, cols, nt, acc);
  }
};

template <class T>
DEVINL void matvec(float* dst, const uint8_t* W, uint64_t rowBytes, int rows, int cols, const int8_t* aq, const float* ad,
                   const float* x, int nt) {
  int warp = tid_x() >> 5, lane = tid_x() & 31;
  int r = ctaid_x() * (ntid_x() >> 5) + warp;
  if (r >= rows) return;  // the whole warp leaves together
  float acc[MAXT];
#pragma unroll
  for (int t = 0; t < MAXT; t++) acc[t] = 0.0f;
  MatvecUnit<T, MAXT>::run(W + (uint64_t)r * rowBytes, cols, lane, aq, ad, x, nt, acc);
#pragma unroll
  for (int t = 0; t < MAXT; t++) {
    if (t < nt) {
      float s = warp_sum(acc[t]);
      if (lane == 0) dst[(int64_t)t * rows + r] = s;
    }
  }
}

#define MATVEC(name, T)                                                                                    \
  KERNEL void matvec_##name(float* dst, const uint8_t* W, uint64_t rowBytes, int rows, int cols, const int8_t* aq, \
                            const float* ad, const float* x, int nt) {                                     \
    matvec<T>(dst, W, rowBytes, rows, cols, aq, ad, x, nt);                                                \
  }
FOR_EACH_TYPE(MATVEC)

template <class T>
DEVINL void matvec_id(float* dst, const uint64_t* W, uint64_t rowBytes, int rows, int cols, const int8_t* aq,
                      const float* ad, const float* x, const int* ids, int k, int xslot, const uint64_t* bias, int ne) {
  int warp = tid_x() >> 5, lane = tid_x() & 31;
  int r = ctaid_x() * (ntid_x() >> 5) + warp;
  if (r >= rows) return;  // the whole warp leaves together
  int p = ctaid_y();
  int e = ids[p];
  float* out = dst + (int64_t)p * rows + r;
  if (e < 0 || e >= ne) {
    if (lane == 0) *out = 0.0f;
    return;
  }
  int64_t xo = (int64_t)(xslot ? p : p / k) * cols;
  float acc[1] = {0.0f};
  MatvecUnit<T, 1>::run((const uint8_t*)W[e] + (uint64_t)r * rowBytes, cols, lane, aq + xo, ad + (xo >> 5), x + xo, 1, acc);
  float s = warp_sum(acc[0]);
  if (lane == 0) *out = bias ? s + ((const float*)bias[e])[r] : s;
}

#define MATVEC_ID(name, T)                                                                                          \
  KERNEL void matvec_id_##name(float* dst, const uint64_t* W, uint64_t rowBytes, int rows, int cols, const int8_t* aq, \
                               const float* ad, const float* x, const int* ids, int k, int xslot, const uint64_t* bias,  \
                               int ne) {                                                                            \
    matvec_id<T>(dst, W, rowBytes, rows, cols, aq, ad, x, ids, k, xslot, bias, ne);                                 \
  }
FOR_EACH_TYPE(MATVEC_ID)
