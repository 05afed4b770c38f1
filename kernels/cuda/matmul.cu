// matmul.cu: the prefill matrix multiply, dst = x·Wᵀ for any number of
// tokens (the backend uses it above MAXT = 8 tokens).
//
// matmul_<type>(dst, W, rowBytes, rows, cols, aq, ad, x, n):
//   dst[t*rows + r] = sum_k W[r][k] · X[t][k],  r < rows, t < n,
// where W[r][k] is the weight dequantized exactly as quant.DequantizeRow
// (quant.cuh dq8) and X the activations as the matching matvec sees them:
// for quantized types the int8 values of quantize_q8 times their scale
// (aq, ad), for float types x rounded to the weight's format (F16, BF16). So prefill and decode multiply
// the same numbers and differ only in summation order. CPU reference:
// kernels/cpu MatMul (see matvec.cu for how the activation types differ).
//
// This is the correct-first version: float32 FMA tiles, not tensor cores.
//   Launch: grid (ceil(rows/64), ceil(n/64)), block 256. A block computes a
//   64 (weight rows) × 64 (tokens) tile, stepping k by 32: each thread
//   dequantizes 8 weights and loads 8 activations into shared memory, then
//   accumulates a 4×4 sub-tile.
//   Napkin: 2·rows·cols·n flops; Llama-8B pp512 is 7.5 TFLOP. float32 FMA
//   peaks at ~60 TFLOP/s on an H100/H200 and a tile this simple reaches
//   perhaps a third of it: ~0.4 s per 512 tokens. Weights are re-read once
//   per 64 tokens (8 reads of 4.5 GB at 512 tokens: far under the flops).
//   Next: dequantize to f16 tiles and mma.sync.m16n8k16 (f32 accumulate),
//   or int8 mma.sync.m16n8k32 on the quantized activations as llama.cpp's
//   MMQ does; then wgmma on Hopper.
#include "quant.cuh"

#define TM 64
#define TN 64
#define TK 32

template <class T, bool Q = T::QUANT_ACT>
struct ActLoad;
template <class T>
struct ActLoad<T, true> {
  // cols is a multiple of 32 for the quantized types.
  DEVINL float get(const int8_t* aq, const float* ad, const float* x, int64_t t, int k, int cols) {
    int64_t i = t * cols + k;
    return (float)aq[i] * ad[i >> 5];
  }
};
template <class T>
struct ActLoad<T, false> {
  DEVINL float get(const int8_t* aq, const float* ad, const float* x, int64_t t, int k, int cols) {
    return T::act(x[t * cols + k]);
  }
};

template <class T>
DEVINL void matmul(float* dst, const uint8_t* W, uint64_t rowBytes, int rows, int cols, const int8_t* aq, const float* ad,
                   const float* x, int n) {
  __shared__ float ws[TK][TM + 4];
  __shared__ float xs[TK][TN + 4];
  int tid = tid_x();
  int r0 = ctaid_x() * TM, t0 = ctaid_y() * TN;
  int lr = tid >> 2, lk = (tid & 3) * 8;  // loader: row/token lr, k offset lk
  int tr = (tid >> 4) * 4, tt = (tid & 15) * 4;  // this thread's 4×4 sub-tile
  float acc[4][4];
#pragma unroll
  for (int i = 0; i < 4; i++)
#pragma unroll
    for (int j = 0; j < 4; j++) acc[i][j] = 0.0f;

  for (int k0 = 0; k0 < cols; k0 += TK) {
    float v[8];
    int r = r0 + lr, k = k0 + lk;
    if (r < rows && k < cols) {
      T::dq8(W + (uint64_t)r * rowBytes, k, cols, v);
    } else {
#pragma unroll
      for (int i = 0; i < 8; i++) v[i] = 0.0f;
    }
#pragma unroll
    for (int i = 0; i < 8; i++) ws[lk + i][lr] = v[i];
    int t = t0 + lr;
#pragma unroll
    for (int i = 0; i < 8; i++)
      xs[lk + i][lr] = (t < n && k + i < cols) ? ActLoad<T>::get(aq, ad, x, t, k + i, cols) : 0.0f;
    __syncthreads();
#pragma unroll 8
    for (int kk = 0; kk < TK; kk++) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; i++) a[i] = ws[kk][tr + i];
#pragma unroll
      for (int j = 0; j < 4; j++) b[j] = xs[kk][tt + j];
#pragma unroll
      for (int i = 0; i < 4; i++)
#pragma unroll
        for (int j = 0; j < 4; j++) acc[i][j] += a[i] * b[j];
    }
    __syncthreads();
  }
#pragma unroll
  for (int j = 0; j < 4; j++) {
    int t = t0 + tt + j;
    if (t >= n) continue;
#pragma unroll
    for (int i = 0; i < 4; i++) {
      int r = r0 + tr + i;
      if (r < rows) dst[(int64_t)t * rows + r] = acc[i][j];
    }
  }
}

#define MATMUL(name, T)                                                                                    \
  KERNEL void matmul_##name(float* dst, const uint8_t* W, uint64_t rowBytes, int rows, int cols, const int8_t* aq, \
                            const float* ad, const float* x, int n) {                                      \
    matmul<T>(dst, W, rowBytes, rows, cols, aq, ad, x, n);                                                 \
  }
FOR_EACH_TYPE(MATMUL)
