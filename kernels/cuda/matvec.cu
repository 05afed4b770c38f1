// matvec.cu: the decode matrix multiply, dst = x·Wᵀ for up to MAXT (8)
// tokens, and the activation quantizer it reads.
//
// quantize_q8(aq, ad, x, n): x (n floats, n a multiple of 32) to int8 per 32
// values, ggml's quantize_row_q8_0: d = amax/127, q = roundf(x/d) (id = 1/d
// in float32), the scale kept as the f16-rounded d (as block_q8_0 stores
// it), widened to float in ad[i/32]. CPU reference: quant.QuantizeRow(Q8_0),
// byte for byte in aq.
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
#include "quant.cuh"

KERNEL void quantize_q8(int8_t* aq, float* ad, const float* x, int64_t n) {
  int64_t i = (int64_t)ctaid_x() * ntid_x() + tid_x();
  // n is a multiple of 32 and blocks are multiples of 32 threads, so a warp
  // is either wholly inside or wholly outside.
  if (i >= n) return;
  float v = x[i];
  float amax = warp_max(__builtin_fabsf(v));
  float d = amax / 127.0f;
  float id = d != 0.0f ? 1.0f / d : 0.0f;
  aq[i] = (int8_t)(int)__builtin_roundf(v * id);
  if ((tid_x() & 31) == 0) ad[i >> 5] = f16round(d);
}

template <class T, bool Q = T::QUANT_ACT>
struct MatvecUnit;
template <class T>
struct MatvecUnit<T, true> {
  DEVINL void run(const uint8_t* row, int cols, int lane, const int8_t* aq, const float* ad, const float* x, int nt, float* acc) {
    for (int u = lane; u < cols / 8; u += 32) T::template unit<MAXT>(row, u, aq, ad, cols, nt, acc);
  }
};
template <class T>
struct MatvecUnit<T, false> {
  DEVINL void run(const uint8_t* row, int cols, int lane, const int8_t* aq, const float* ad, const float* x, int nt, float* acc) {
    for (int e = lane; e < cols; e += 32) T::template unit<MAXT>(row, e, x, cols, nt, acc);
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
  MatvecUnit<T>::run(W + (uint64_t)r * rowBytes, cols, lane, aq, ad, x, nt, acc);
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
