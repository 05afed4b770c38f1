// argmax.cu: greedy sampling on the device.
//
// argmax_f32(out, x, cols): out[t] = the index of the largest value of row
// t of x (grid x), the first one on ties; NaN never wins. CPU reference:
// the greedy pick of runtime/sample (first maximum, strict >), as the
// golden tests' argmax does. Copying one int32 back instead of a row of
// logits is what lets a decode step skip the 128 KiB (Llama 3: 500 KiB)
// device-to-host copy when sampling is greedy.
//   Launch: grid (n rows), block 256 (a multiple of 32).
//   Napkin: one read of the logits, 4 B × vocab: launch-bound.
#include "common.cuh"

KERNEL void argmax_f32(int* out, const float* x, int cols) {
  __shared__ float sv[32];
  __shared__ int si[32];
  const float* row = x + (int64_t)ctaid_x() * cols;
  float best = NEG_INF;
  int bi = 0x7fffffff;
  for (int i = tid_x(); i < cols; i += ntid_x()) {
    float v = row[i];
    if (v > best) {  // i grows, so the first maximum of this thread stays
      best = v;
      bi = i;
    }
  }
  // Reduce (value, index): larger value wins, then smaller index.
  for (int o = 16; o > 0; o >>= 1) {
    float ov = __nvvm_shfl_sync_bfly_f32(0xffffffffu, best, o, 0x1f);
    int oi = __nvvm_shfl_sync_bfly_i32(0xffffffffu, bi, o, 0x1f);
    if (ov > best || (ov == best && oi < bi)) {
      best = ov;
      bi = oi;
    }
  }
  int warp = tid_x() >> 5, lane = tid_x() & 31;
  if (lane == 0) {
    sv[warp] = best;
    si[warp] = bi;
  }
  __syncthreads();
  if (tid_x() == 0) {
    for (int w = 1; w < (ntid_x() >> 5); w++) {
      if (sv[w] > best || (sv[w] == best && si[w] < bi)) {
        best = sv[w];
        bi = si[w];
      }
    }
    out[ctaid_x()] = bi == 0x7fffffff ? 0 : bi;
  }
}
