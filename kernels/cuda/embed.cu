// embed.cu: row gathers.
//
// embed_<type>(dst, table, rowBytes, ids, n, cols): dst[t][k] = row ids[t] of
// a weight table, dequantized (k < cols), for t < n. The table stays in its
// GGUF block format (F32, F16, BF16, Q4_0, Q8_0, Q4_K, Q6_K). CPU reference:
// runtime/cpu Backend.Embed = kcpu.Matrix.DequantizeRow = quant.DequantizeRow,
// matched bit for bit (quant.cuh's dq8). The ids are checked on the host.
//   Launch: grid (n, ceil(cols/8/128)), block 128; thread = 8 elements.
//   Napkin: a few rows per step (n·cols·4 B written): launch-bound, ~3 µs.
//
// gather_rows(dst, x, idx, n, cols): dst row i = x row idx[i], float32, for
// i < n (Backend.Gather: the rows whose logits are wanted).
//   Launch: grid (n, ceil(cols/256)), block 256.
#include "quant.cuh"

template <class T>
DEVINL void embed(float* dst, const uint8_t* table, uint64_t rowBytes, const int* ids, int n, int cols) {
  int t = ctaid_x();
  int k0 = (ctaid_y() * ntid_x() + tid_x()) * 8;
  if (t >= n || k0 >= cols) return;
  float v[8];
  T::dq8(table + (uint64_t)ids[t] * rowBytes, k0, cols, v);
  float* o = dst + (int64_t)t * cols + k0;
#pragma unroll
  for (int i = 0; i < 8; i++)
    if (k0 + i < cols) o[i] = v[i];
}

#define EMBED(name, T)                                                                                      \
  KERNEL void embed_##name(float* dst, const uint8_t* table, uint64_t rowBytes, const int* ids, int n, int cols) { \
    embed<T>(dst, table, rowBytes, ids, n, cols);                                                           \
  }
FOR_EACH_TYPE(EMBED)

KERNEL void gather_rows(float* dst, const float* x, const int* idx, int n, int cols) {
  int i = ctaid_x();
  int k = ctaid_y() * ntid_x() + tid_x();
  if (i >= n || k >= cols) return;
  dst[(int64_t)i * cols + k] = x[(int64_t)idx[i] * cols + k];
}
