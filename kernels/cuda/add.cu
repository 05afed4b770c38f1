// add.cu: the residual connection.
//
// add_f32(dst, x, n): dst[i] += x[i] for i < n (both contiguous).
// CPU reference: kernels/cpu ops.go Add (exact: one float32 addition).
//   Launch: grid-stride, block 256, grid min(ceil(n/256), 65535·8).
//   Napkin: 12 B per element; 4096 per token: launch-bound at decode.
#include "common.cuh"

KERNEL void add_f32(float* dst, const float* x, int64_t n) {
  for (int64_t i = (int64_t)ctaid_x() * ntid_x() + tid_x(); i < n; i += (int64_t)nctaid_x() * ntid_x())
    dst[i] += x[i];
}
