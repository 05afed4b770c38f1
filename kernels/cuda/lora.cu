// lora.cu: the low-rank deltas of LoRA adapters, many adapters in one step
// (the S-LoRA / Punica scheme: the base product runs once for every row,
// then each row adds its own adapter's s·B·(A·x)), as a shrink and an
// expand kernel over a table of tasks built by the host for the step.
//
// A task is one adapter pair and up to LORA_ROWS rows of the step that run
// with it (rows grouped by adapter, so A and B are read once per task, not
// once per row). The table (int32, LORA_REC per task, a step input) holds:
//   [0,1]  A's address (rank rows of in values, row-major; lo, hi words)
//   [2,3]  Bᵀ's address (rank rows of out values: B transposed, so that a
//          warp reading one rank's row reads consecutive outputs)
//   [4]    the scale s (float32 bits): alpha/rank × the user's
//   [5]    rank; [6] the pair's type (0 F32, 1 F16); [7] rows (1..8)
//   [8,16) the rows of x and dst; [16,24) lora_shrink_embed: their token ids
// One call's tasks are for one product (the same in and out), rows never
// repeat (a sequence runs with one adapter), so no two blocks write one
// element of dst. Tasks of different adapters may differ in rank and type.
//
// lora_shrink(c, x, meta, in, maxRank): c[task][r][j] = s · Σ_i A[j][i] ·
// x[row r][i] for j < rank: the shrink (A·x, rank-wide) with the scale
// folded in. F16 pairs round x to f16 first, as the CPU's F16 dot kernel
// and ggml's F16 products do. c is ntask × LORA_ROWS × maxRank floats.
//   Launch: grid (ntask, ceil(maxRank/4)), block 128: a warp per rank j,
//   its lanes across i, up to LORA_ROWS rows at once (A read once).
//   Napkin: a rank-16 F16 pair on a 4096-wide x reads 128 KB of A per task
//   (x from L1/L2). Llama-3-8B with rank-16 F16 adapters on q/k/v/o and the
//   FFN holds 84 MB of A and B per adapter: a decode step of 8 sequences
//   with 8 different adapters reads 671 MB on top of the 4.6 GB of Q4_K
//   weights, so it should run at ≥ 0.87× the base step's rate where both
//   are bandwidth-bound (benchmarks/NOTES.md, "LoRA").
//
// lora_shrink_embed(c, meta, in, maxRank): c[task][r][j] = s · A[j][id_r]
// (mul_rn): the token embedding's delta gathers column id of A (in is the
// vocabulary), bit for bit the CPU's AddLoRAEmbed coefficients.
//   Launch: grid ntask, block 32.
//
// lora_expand(dst, c, meta, out, maxRank): dst[row r][o] += Σ_j
// c[task][r][j] · Bᵀ[j][o], j in order, one fused multiply-add each (the
// CPU's F16 axpys: AxpyF16, an FMA per product; its F32 path sums four
// products per pass, so F32 pairs agree to rounding, not bitwise).
//   Launch: grid (ntask, ceil(out/256)), block 256.
//   Napkin: reads rank × out values of Bᵀ per task (coalesced) and the
//   task's rows of dst: bandwidth-bound, launch-bound at decode.
//
// CPU reference: runtime/cpu lora.go (AddLoRA: the type's dot kernel over
// QuantizeAct'ed x, then Bᵀ axpys; AddLoRAEmbed). The sums of the shrink
// run in another order (lanes, then a butterfly), so results agree to
// float rounding.
#include "common.cuh"

#define LORA_ROWS 8
#define LORA_REC 24

DEVINL const void* rec_ptr(const int* rec, int k) {
  return (const void*)((uint64_t)(uint32_t)rec[k] | ((uint64_t)(uint32_t)rec[k + 1] << 32));
}

KERNEL void lora_shrink(float* c, const float* x, const int* meta, int in, int maxRank) {
  int task = ctaid_x(), warp = tid_x() >> 5, lane = tid_x() & 31;
  const int* rec = meta + (int64_t)task * LORA_REC;
  int j = ctaid_y() * 4 + warp, rank = rec[5];
  if (j >= rank) return;  // the whole warp
  int f16 = rec[6], nr = rec[7];
  float s = __builtin_bit_cast(float, rec[4]);
  const float* xr[LORA_ROWS];
  float acc[LORA_ROWS];
#pragma unroll
  for (int r = 0; r < LORA_ROWS; r++) {
    xr[r] = x + (int64_t)rec[8 + (r < nr ? r : 0)] * in;
    acc[r] = 0.0f;
  }
  if (f16) {
    const uint16_t* a = (const uint16_t*)rec_ptr(rec, 0) + (int64_t)j * in;
    for (int i = lane; i < in; i += 32) {
      float w = h2f(a[i]);
#pragma unroll
      for (int r = 0; r < LORA_ROWS; r++)
        if (r < nr) acc[r] += w * f16round(xr[r][i]);
    }
  } else {
    const float* a = (const float*)rec_ptr(rec, 0) + (int64_t)j * in;
    for (int i = lane; i < in; i += 32) {
      float w = a[i];
#pragma unroll
      for (int r = 0; r < LORA_ROWS; r++)
        if (r < nr) acc[r] += w * xr[r][i];
    }
  }
#pragma unroll
  for (int r = 0; r < LORA_ROWS; r++) {
    if (r < nr) {
      float v = warp_sum(acc[r]);
      if (lane == 0) c[((int64_t)task * LORA_ROWS + r) * maxRank + j] = mul_rn(s, v);
    }
  }
}

KERNEL void lora_shrink_embed(float* c, const int* meta, int in, int maxRank) {
  int task = ctaid_x();
  const int* rec = meta + (int64_t)task * LORA_REC;
  int rank = rec[5], f16 = rec[6], nr = rec[7];
  float s = __builtin_bit_cast(float, rec[4]);
  const void* a = rec_ptr(rec, 0);
  for (int j = tid_x(); j < rank; j += ntid_x()) {
    for (int r = 0; r < nr; r++) {
      int64_t k = (int64_t)j * in + rec[16 + r];
      float v = f16 ? h2f(((const uint16_t*)a)[k]) : ((const float*)a)[k];
      c[((int64_t)task * LORA_ROWS + r) * maxRank + j] = mul_rn(s, v);
    }
  }
}

KERNEL void lora_expand(float* dst, const float* c, const int* meta, int out, int maxRank) {
  int task = ctaid_x(), o = ctaid_y() * ntid_x() + tid_x();
  if (o >= out) return;
  const int* rec = meta + (int64_t)task * LORA_REC;
  int rank = rec[5], f16 = rec[6], nr = rec[7];
  const void* bt = rec_ptr(rec, 2);
  for (int r = 0; r < nr; r++) {
    const float* cr = c + ((int64_t)task * LORA_ROWS + r) * maxRank;
    float* d = dst + (int64_t)rec[8 + r] * out + o;
    float acc = *d;
    if (f16) {
      const uint16_t* b = (const uint16_t*)bt + o;
      for (int j = 0; j < rank; j++) acc = __builtin_fmaf(cr[j], h2f(b[(int64_t)j * out]), acc);
    } else {
      const float* b = (const float*)bt + o;
      for (int j = 0; j < rank; j++) acc = __builtin_fmaf(cr[j], b[(int64_t)j * out], acc);
    }
    *d = acc;
  }
}
