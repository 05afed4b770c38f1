// mma.cu: the tensor-core prefill matrix multiply, dst = x·Wᵀ, for batches
// of at least MinMMATokens (16) tokens; matmul.cu's float32 FMA tiles stay
// the fallback for other formats, small batches and odd widths.
//
// mma_<type>(dst, W, rowBytes, rows, cols, aq, ad, x, n), type one of q4_0,
// q8_0, q4_K, q6_K, f16, cols a multiple of 32:
//   dst[t*rows + r] = sum_k f16(W[r][k]) · f16(X[t][k]),  r < rows, t < n,
// products of f16 values summed in float32 by mma.sync.m16n8k16 (f16
// inputs, f32 accumulate). W[r][k] is the weight dequantized exactly as
// quant.DequantizeRow (quant.cuh dq8), then rounded to f16 (cvt.rn); X is
// what the matching matvec sees: for the quantized formats the int8 value
// of quantize_q8 times its scale (aq, ad: exact in float32), rounded to f16;
// for F16 weights x rounded to f16 (as ggml does). So the inputs differ
// from matvec's by one f16 rounding each (relative 2^-11 at most): the
// differential tests hold it to the CPU backend's MatMul with matmul's
// tolerance, where the CPU's own int8 activations are the larger error.
//
// Launch: grid (ceil(rows/128), ceil(n/128)), block 256 (8 warps), 40 KiB of
// static shared memory. A block computes a 128 (weight rows) × 128 (tokens)
// tile of dst, stepping k by 32 through two shared-memory stages (f16, rows
// of 40 halves: the 32 values and 8 of padding, which makes the fragment
// loads below free of bank conflicts):
//   - loader: thread i fills row i/2 of both stages' tiles, 16 values from
//     k offset 16·(i%2): two dq8 of the weight row, and 16 activations of
//     token i/2; the next step's values are loaded into registers while the
//     current stage is multiplied, then stored into the other stage (one
//     __syncthreads per step);
//   - warp w computes rows 64·(w/4)..+64 × tokens 32·(w%4)..+32 of the tile:
//     4 × 4 m16n8 accumulators, 2 k16 steps per stage. Fragments follow the
//     PTX ISA's layout for m16n8k16 (g = lane/4, q = lane%4): A (16×16, row
//     major) a0 = (g, 2q..2q+1), a1 = (g+8, 2q..), a2 = (g, 2q+8..),
//     a3 = (g+8, 2q+8..); B (16×8, column major: token rows of the tile)
//     b0 = (k 2q..2q+1, n g), b1 = (k 2q+8.., n g); C c0,c1 = (g, 2q..2q+1),
//     c2,c3 = (g+8, 2q..).
// Rows past `rows` and tokens past n are zeros in the tiles and are not
// written. The Go model (runtime/cuda kmodel_test.go mmaKernel) follows
// this file line for line with an emulated mma.sync, so the index
// arithmetic is checked on the CPU; the arithmetic on a GPU only by the
// device tests.
//
// Napkin (runtime/cuda/doc.go has the whole prediction): Llama-8B pp512 is
// 7.2 TFLOP of matrix products. Per block and k step: 256 mma (128 tensor
// clocks of an SM at H100/H200 dense f16 rates), against ~4096 weights
// dequantized (~6 instructions each: ~770 warp instructions) and 4096
// activations converted (~200), 256 fragment loads: about 350 issue clocks
// on 4 schedulers, so issue-bound near 35% of the tensor peak, ~200
// TFLOP/s at best, ~100 with stalls: 36-72 ms per 512 tokens, 7,000-14,000
// tok/s. Weights are re-read once per 128 tokens (4 reads of 4.5 GB at
// pp512: ~6 ms at 3 TB/s, hidden under the arithmetic).
// Next: ldmatrix for the fragments, int8 mma (m16n8k32) on the quantized
// activations with per-block scales (llama.cpp's MMQ), wgmma on Hopper.
#include "quant.cuh"

#define MMA_BM 128  // weight rows per block
#define MMA_BN 128  // tokens per block
#define MMA_BK 32   // k per stage
#define MMA_LD 40   // shared-memory row stride in halves (MMA_BK + 8)

typedef unsigned int u32x4 __attribute__((ext_vector_type(4)));

// Two floats rounded to f16 (cvt.rn, as quant.F32ToF16) in one register,
// the first in the low half (the lower k of an mma fragment).
DEVINL uint32_t pack_h2(float lo, float hi) { return (uint32_t)f2h(lo) | ((uint32_t)f2h(hi) << 16); }

// c += a·b for one m16n8k16 tile (f16 inputs, f32 accumulators).
DEVINL void mma16816(float* c, const uint32_t* a, const uint32_t* b) {
  asm("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
      : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
}

// Sixteen activations of token t from element k on, as f16 pairs.
template <class T, bool Q = T::QUANT_ACT>
struct MmaAct;
template <class T>
struct MmaAct<T, true> {
  // int8 values times their block's scale (k..k+15 lie in one block of 32;
  // t·cols + k is a multiple of 16, so the 16-byte load is aligned).
  DEVINL void load(const int8_t* aq, const float* ad, const float* x, int64_t t, int k, int cols, uint32_t* h) {
    int64_t i = t * cols + k;
    u32x4 q = *(const u32x4*)(aq + i);
    float d = ad[i >> 5];
#pragma unroll
    for (int w = 0; w < 4; w++) {
      uint32_t v = q[w];
      h[2 * w] = pack_h2((float)(int8_t)(v & 255) * d, (float)(int8_t)((v >> 8) & 255) * d);
      h[2 * w + 1] = pack_h2((float)(int8_t)((v >> 16) & 255) * d, (float)(int8_t)(v >> 24) * d);
    }
  }
};
template <class T>
struct MmaAct<T, false> {
  DEVINL void load(const int8_t* aq, const float* ad, const float* x, int64_t t, int k, int cols, uint32_t* h) {
    const float* p = x + t * cols + k;
#pragma unroll
    for (int i = 0; i < 8; i++) h[i] = pack_h2(p[2 * i], p[2 * i + 1]);
  }
};

template <class T>
DEVINL void mma_matmul(float* dst, const uint8_t* W, uint64_t rowBytes, int rows, int cols, const int8_t* aq,
                       const float* ad, const float* x, int n) {
  __shared__ __attribute__((aligned(16))) uint16_t ws[2][MMA_BM * MMA_LD];
  __shared__ __attribute__((aligned(16))) uint16_t xs[2][MMA_BN * MMA_LD];
  const int tid = tid_x(), warp = tid >> 5, lane = tid & 31;
  const int g = lane >> 2, q = lane & 3;
  const int r0 = ctaid_x() * MMA_BM, t0 = ctaid_y() * MMA_BN;
  // Loader: row lrow of the weight tile and of the token tile, 16 values
  // from k offset lk.
  const int lrow = tid >> 1, lk = (tid & 1) * 16;
  const bool wok = r0 + lrow < rows, xok = t0 + lrow < n;
  const uint8_t* wrow = W + (uint64_t)(wok ? r0 + lrow : 0) * rowBytes;
  // This warp's 64 × 32 part of the tile.
  const int wm = (warp >> 2) * 64, wn = (warp & 3) * 32;

  float acc[4][4][4];
#pragma unroll
  for (int mi = 0; mi < 4; mi++)
#pragma unroll
    for (int ni = 0; ni < 4; ni++)
#pragma unroll
      for (int c = 0; c < 4; c++) acc[mi][ni][c] = 0.0f;

  uint32_t wreg[8], xreg[8];
#define MMA_LOAD(k0)                                                   \
  {                                                                    \
    float v[16];                                                       \
    if (wok) {                                                         \
      T::dq8(wrow, (k0) + lk, cols, v);                                \
      T::dq8(wrow, (k0) + lk + 8, cols, v + 8);                        \
    } else {                                                           \
      _Pragma("unroll") for (int i = 0; i < 16; i++) v[i] = 0.0f;      \
    }                                                                  \
    _Pragma("unroll") for (int i = 0; i < 8; i++) wreg[i] = pack_h2(v[2 * i], v[2 * i + 1]); \
    if (xok) {                                                         \
      MmaAct<T>::load(aq, ad, x, t0 + lrow, (k0) + lk, cols, xreg);    \
    } else {                                                           \
      _Pragma("unroll") for (int i = 0; i < 8; i++) xreg[i] = 0u;      \
    }                                                                  \
  }
#define MMA_STORE(s)                                                          \
  {                                                                           \
    u32x4* wp = (u32x4*)(ws[s] + lrow * MMA_LD + lk);                         \
    u32x4* xp = (u32x4*)(xs[s] + lrow * MMA_LD + lk);                         \
    wp[0] = (u32x4){wreg[0], wreg[1], wreg[2], wreg[3]};                      \
    wp[1] = (u32x4){wreg[4], wreg[5], wreg[6], wreg[7]};                      \
    xp[0] = (u32x4){xreg[0], xreg[1], xreg[2], xreg[3]};                      \
    xp[1] = (u32x4){xreg[4], xreg[5], xreg[6], xreg[7]};                      \
  }

  MMA_LOAD(0);
  MMA_STORE(0);
  __syncthreads();
  const int nk = cols / MMA_BK;
  for (int kt = 0; kt < nk; kt++) {
    const int cur = kt & 1;
    if (kt + 1 < nk) MMA_LOAD((kt + 1) * MMA_BK);
    const uint16_t* wsc = ws[cur];
    const uint16_t* xsc = xs[cur];
#pragma unroll
    for (int kk = 0; kk < MMA_BK; kk += 16) {
      uint32_t b[4][2];
#pragma unroll
      for (int ni = 0; ni < 4; ni++) {
        const uint16_t* p = xsc + (wn + 8 * ni + g) * MMA_LD + kk + 2 * q;
        b[ni][0] = *(const uint32_t*)p;
        b[ni][1] = *(const uint32_t*)(p + 8);
      }
#pragma unroll
      for (int mi = 0; mi < 4; mi++) {
        const uint16_t* p = wsc + (wm + 16 * mi + g) * MMA_LD + kk + 2 * q;
        uint32_t a[4];
        a[0] = *(const uint32_t*)p;
        a[1] = *(const uint32_t*)(p + 8 * MMA_LD);
        a[2] = *(const uint32_t*)(p + 8);
        a[3] = *(const uint32_t*)(p + 8 * MMA_LD + 8);
#pragma unroll
        for (int ni = 0; ni < 4; ni++) mma16816(acc[mi][ni], a, b[ni]);
      }
    }
    if (kt + 1 < nk) MMA_STORE(cur ^ 1);
    __syncthreads();
  }
#undef MMA_LOAD
#undef MMA_STORE

#pragma unroll
  for (int mi = 0; mi < 4; mi++) {
#pragma unroll
    for (int ni = 0; ni < 4; ni++) {
      const int r = r0 + wm + 16 * mi + g, t = t0 + wn + 8 * ni + 2 * q;
#pragma unroll
      for (int c = 0; c < 4; c++) {
        const int rr = r + (c >> 1) * 8, tt = t + (c & 1);
        if (rr < rows && tt < n) dst[(int64_t)tt * rows + rr] = acc[mi][ni][c];
      }
    }
  }
}

#define MMA_KERNEL(name, T)                                                                                          \
  KERNEL void __attribute__((launch_bounds(256))) mma_##name(float* dst, const uint8_t* W, uint64_t rowBytes, int rows, \
                                                             int cols, const int8_t* aq, const float* ad, const float* x, \
                                                             int n) {                                                 \
    mma_matmul<T>(dst, W, rowBytes, rows, cols, aq, ad, x, n);                                                       \
  }
MMA_KERNEL(q4_0, TQ4_0)
MMA_KERNEL(q8_0, TQ8_0)
MMA_KERNEL(q4_K, TQ4_K)
MMA_KERNEL(q6_K, TQ6_K)
MMA_KERNEL(f16, TF16)
