// attention.cu: grouped-query attention over a paged f16 KV cache: causal,
// sliding-window, soft-capped, with sinks, or non-causal (encoders).
//
// Cache layout (runtime/cpu kvPool's): a pool holds, for every layer,
// blocks × blockSize rows of `stride` f16 values, K and V apart, layer l's
// rows starting layerStride values after layer l-1's. A layer stores
// kvDim = kvHeads·headDim values at the front of each row: stride is the
// widest layer's kvDim (Gemma 4's sliding and global layers differ).
// Position p of a sequence lives at row table[p/blockSize]·blockSize +
// p%blockSize of its pool. Tokens of one batch may come from different
// pools, so every token carries its pool: kvb[4t..4t+3] = (K base, V base
// (device addresses of layer 0), layerStride, blockSize).
//
// kv_store(kvb, k, v, slot, layer, kvDim, stride, n): rounds row t of k
// and v (kvDim float32) to f16 and stores them at the front of row slot[t]
// (rows of stride values) of layer `layer` of token t's pool (slot computed on the host from the block tables), t < n
// (grid x). CPU reference: runtime/cpu Attention's kcpu.ToF16 stores
// (quant.F32ToF16, bit for bit).
//   Launch: grid (n), block 128.
//
// attention_f16(out, q, kvb, tables, tabOff, pos, last, layer, heads,
// kvHeads, headDim, stride, scale, window, softCap, sinks), and
// attention_f16_h512 (the same for heads up to 512: Gemma 4's global
// layers; twice the registers per lane): for token t (grid x)
// and query head h (grid y), the softmax-weighted sum of V over positions
// lo..last[t] of the sequence whose block table starts at
// tables[tabOff[t]], with KV head h/(heads/kvHeads). last[t] is pos[t]
// (causal) or, for an encoder's tokens (NonCausal), the last position of
// t's sequence in the batch; lo is 0, or max(0, pos[t]-window+1) when
// window > 0 (a sliding window). softCap > 0 caps each scaled score s to
// softCap·tanh(s/softCap) (Gemma 2); sinks, when not null, holds per query
// head a logit that joins the softmax's max and sum with no value behind
// it (gpt-oss). One kernel serves decode (one token per sequence) and
// prefill (many tokens, each with its own limits); kv_store must have run
// first in the same stream (a non-causal token reads rows the same batch
// stored).
// CPU reference: kernels/cpu attention.go Attention (ggml's non-flash path
// over an F16 cache), step for step: q rounded to f16; s_j = dot(q, K_j)
// in float32, times scale; softmax with the max subtracted; each
// probability e_j/sum rounded to f16 before it weights V_j (f32 sums). To
// keep that arithmetic exactly (the probabilities need the final max and
// sum before they are rounded), K is read twice: pass 1 finds the max and
// the sum (online rescaling), pass 2 recomputes the same scores and
// accumulates p·V. Differences: exp is ex2.approx and the sum is float32,
// not float64; summation order; with softCap, tanh is tanh_f32 below (a
// few ulp) where the CPU rounds float64 tanh. The variants follow AttnOpts
// (kernels/cpu attention.go): first, last, softmax, softmaxSink.
//   Launch: grid (n, heads), block 128. Lanes form groups of S = min(32,
//   pow2 ≥ headDim) lanes, one position per group at a time, each lane
//   holding headDim/S dimensions (headDim <= 256, 512 in _h512); the 128/S groups stride
//   over positions, then combine through shared memory.
//   Napkin: per token and head, 2 × (last-lo+1) × headDim × 2 B of K plus the
//   same of V once; the heads of a GQA group re-read the same rows (from
//   L2). Decode at 4k context on Llama-8B: 32 layers × 8 KV heads × 4096 ×
//   128 × 2 B × 2 = 537 MB of K/V, ~0.2 ms at 3 TB/s if the group's re-reads
//   hit L2; the weights are 4.5 GB, so attention is ~10% of a step there.
//   Later: flash-decoding (split the positions of a long context over
//   several blocks and merge their partial (max, sum, acc)), one block per
//   KV head serving its whole query group, and a single online pass once
//   the f16 rounding of the probabilities is dropped.
#include "common.cuh"

#define ATT_THREADS 128

KERNEL void kv_store(const uint64_t* kvb, const float* k, const float* v, const int* slot, int layer, int kvDim,
                     int stride, int n) {
  int t = ctaid_x();
  if (t >= n) return;
  const uint64_t* pool = kvb + 4 * t;
  int64_t off = (int64_t)layer * (int64_t)pool[2] + (int64_t)slot[t] * stride;
  uint16_t* kd = (uint16_t*)pool[0] + off;
  uint16_t* vd = (uint16_t*)pool[1] + off;
  const float* ks = k + (int64_t)t * kvDim;
  const float* vs = v + (int64_t)t * kvDim;
  for (int i = tid_x(); i < kvDim; i += ntid_x()) {
    kd[i] = f2h(ks[i]);
    vd[i] = f2h(vs[i]);
  }
}

// tanh_f32 is tanh in float32 to a few ulp without libdevice: Cephes
// tanhf's odd polynomial below 0.625, 1 - 2/(e^(2|x|) + 1) above (e^x
// overflowing to +inf gives ±1).
DEVINL float tanh_f32(float x) {
  float a = __builtin_fabsf(x);
  if (a < 0.625f) {
    float z = x * x;
    return ((((-5.70498872745e-3f * z + 2.06390887954e-2f) * z - 5.37397155531e-2f) * z + 1.33314422036e-1f) * z -
            3.33332819422e-1f) *
               z * x +
           x;
  }
  return __builtin_copysignf(1.0f - 2.0f / (fast_exp(2.0f * a) + 1.0f), x);
}

// attention is both kernels, MAX_DPL dimensions per lane (headDim <= 32 ×
// MAX_DPL); red is their shared scratch of ATT_THREADS × MAX_DPL floats.
template <int MAX_DPL>
DEVINL void attention(float* red, float* out, const float* q, const uint64_t* kvb, const int* tables, const int* tabOff,
                      const int* pos, const int* last, int layer, int heads, int kvHeads, int headDim, int stride,
                      float scale, int window, float softCap, const float* sinks) {
  __shared__ float gm[ATT_THREADS], gl[ATT_THREADS];
  int t = ctaid_x(), h = ctaid_y();
  int kvh = h / (heads / kvHeads);
  int qDim = heads * headDim;
  int S = 32;
  while (S > 1 && S / 2 >= headDim) S >>= 1;
  int G = ATT_THREADS / S, g = tid_x() / S, lane = tid_x() % S;
  const uint64_t* pool = kvb + 4 * t;
  const int64_t loff = (int64_t)layer * (int64_t)pool[2];
  const uint16_t* kc = (const uint16_t*)pool[0] + loff;
  const uint16_t* vc = (const uint16_t*)pool[1] + loff;
  const int blockSize = (int)pool[3];
  const int* table = tables + tabOff[t];
  int n = last[t] + 1;
  int lo = window > 0 && pos[t] >= window ? pos[t] - window + 1 : 0;

  float qv[MAX_DPL], acc[MAX_DPL];
  const float* qr = q + (int64_t)t * qDim + h * headDim;
#pragma unroll
  for (int i = 0; i < MAX_DPL; i++) {
    int d = lane + i * S;
    qv[i] = d < headDim ? f16round(qr[d]) : 0.0f;
    acc[i] = 0.0f;
  }
  const int64_t koff = (int64_t)kvh * headDim;

  // score(j): the scaled (and capped) dot product of q with K_j (every lane
  // of the group gets it). All lanes of a warp run the same number of
  // iterations, so the shuffles never see exited lanes; positions past n
  // read position lo.
#define SCORE(j, sv)                                                          \
  {                                                                           \
    int jj = (j) < n ? (j) : lo;                                              \
    int64_t row = (int64_t)table[jj / blockSize] * blockSize + jj % blockSize; \
    const uint16_t* kr = kc + row * stride + koff;                            \
    float part = 0.0f;                                                        \
    _Pragma("unroll") for (int i = 0; i < MAX_DPL; i++) {                     \
      int d = lane + i * S;                                                   \
      if (d < headDim) part += qv[i] * h2f(kr[d]);                            \
    }                                                                         \
    sv = group_sum(part, S) * scale;                                          \
    if (softCap > 0.0f) sv = softCap * tanh_f32(sv / softCap);                \
  }

  // Pass 1: running max m and sum l of exp(s - m) for this group's positions.
  float m = NEG_INF, l = 0.0f;
  for (int j0 = lo; j0 < n; j0 += G) {
    int j = j0 + g;
    float s;
    SCORE(j, s);
    if (j < n) {
      if (s > m) {
        l = l * fast_exp(m - s) + 1.0f;
        m = s;
      } else {
        l += fast_exp(s - m);
      }
    }
  }
  if (lane == 0) {
    gm[g] = m;
    gl[g] = l;
  }
  __syncthreads();
  float M = NEG_INF;
  for (int i = 0; i < G; i++) M = __builtin_fmaxf(M, gm[i]);
  // A sink joins the max and the sum (softmaxSink).
  float sink = sinks ? sinks[h] : NEG_INF;
  M = __builtin_fmaxf(M, sink);
  float L = 0.0f;
  for (int i = 0; i < G; i++)
    if (gl[i] > 0.0f) L += gl[i] * fast_exp(gm[i] - M);
  if (sinks) L += fast_exp(sink - M);
  float inv = 1.0f / L;

  // Pass 2: p_j = f16(exp(s_j - M) / sum), acc += p_j · V_j.
  for (int j0 = lo; j0 < n; j0 += G) {
    int j = j0 + g;
    float s;
    SCORE(j, s);
    if (j < n) {
      float p = f16round(fast_exp(s - M) * inv);
      if (p != 0.0f) {
        int64_t row = (int64_t)table[j / blockSize] * blockSize + j % blockSize;
        const uint16_t* vr = vc + row * stride + koff;
#pragma unroll
        for (int i = 0; i < MAX_DPL; i++) {
          int d = lane + i * S;
          if (d < headDim) acc[i] += p * h2f(vr[d]);
        }
      }
    }
  }
#undef SCORE

  // Sum the groups' accumulators: red[g*headDim + d].
#pragma unroll
  for (int i = 0; i < MAX_DPL; i++) {
    int d = lane + i * S;
    if (d < headDim) red[g * headDim + d] = acc[i];
  }
  __syncthreads();
  float* o = out + (int64_t)t * qDim + h * headDim;
  for (int d = tid_x(); d < headDim; d += ATT_THREADS) {
    float s = 0.0f;
    for (int i = 0; i < G; i++) s += red[i * headDim + d];
    o[d] = s;
  }
}

KERNEL void attention_f16(float* out, const float* q, const uint64_t* kvb, const int* tables, const int* tabOff,
                          const int* pos, const int* last, int layer, int heads, int kvHeads, int headDim, int stride,
                          float scale, int window, float softCap, const float* sinks) {
  __shared__ float red[ATT_THREADS * 8];  // (128/S groups) × headDim <= 4 × 256
  attention<8>(red, out, q, kvb, tables, tabOff, pos, last, layer, heads, kvHeads, headDim, stride, scale, window,
               softCap, sinks);
}

KERNEL void attention_f16_h512(float* out, const float* q, const uint64_t* kvb, const int* tables, const int* tabOff,
                               const int* pos, const int* last, int layer, int heads, int kvHeads, int headDim,
                               int stride, float scale, int window, float softCap, const float* sinks) {
  __shared__ float red[ATT_THREADS * 16];  // 4 groups × headDim <= 512
  attention<16>(red, out, q, kvb, tables, tabOff, pos, last, layer, heads, kvHeads, headDim, stride, scale, window,
                softCap, sinks);
}
