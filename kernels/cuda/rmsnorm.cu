// rmsnorm.cu: RMS normalisation of each row, times a weight vector.
//
// rmsnorm_f32(dst, x, w, cols, eps): for each row t (grid x),
//   dst[t][i] = (x[t][i] * scale) * w[i],  scale = 1/sqrt(mean(x[t]^2) + eps).
// CPU reference: kernels/cpu ops.go RMSNorm. As there, each square is
// rounded to float32 and summed in float64, the mean is rounded to float32
// and the scale computed in float64 then rounded; only the summation order
// differs (a tree here), so results agree to an ulp or two. w is float32
// (the backend keeps an f32 copy of any 1-row weight); dst may equal x.
//   Launch: grid (n rows), block 256 (any multiple of 32 up to 1024).
//   Napkin: 8 B per element (read + write), one pass; 4096-wide rows are
//   tiny, so this is launch-bound at decode (~3 µs), bandwidth-bound in
//   prefill (512 × 4096 × 8 B = 16 MiB: ~5 µs at 3 TB/s).
#include "common.cuh"

KERNEL void rmsnorm_f32(float* dst, const float* x, const float* w, int cols, float eps) {
  __shared__ double part[32];
  const float* xr = x + (int64_t)ctaid_x() * cols;
  float* dr = dst + (int64_t)ctaid_x() * cols;
  double s = 0;
  for (int i = tid_x(); i < cols; i += ntid_x()) {
    float v = xr[i];
    s += (double)mul_rn(v, v);
  }
  // Reduce the doubles: within each warp by shuffles of the two halves,
  // then across warps through shared memory.
  for (int o = 16; o > 0; o >>= 1) {
    long long bits = __builtin_bit_cast(long long, s);
    int lo = __nvvm_shfl_sync_bfly_i32(0xffffffffu, (int)bits, o, 0x1f);
    int hi = __nvvm_shfl_sync_bfly_i32(0xffffffffu, (int)(bits >> 32), o, 0x1f);
    s += __builtin_bit_cast(double, ((long long)hi << 32) | (long long)(unsigned)lo);
  }
  int warp = tid_x() >> 5, lane = tid_x() & 31, warps = ntid_x() >> 5;
  if (lane == 0) part[warp] = s;
  __syncthreads();
  double sum = 0;
  for (int i = 0; i < warps; i++) sum += part[i];
  float mean = (float)(sum / (double)cols);
  float scale = (float)(1.0 / __nvvm_sqrt_rn_d((double)(mean + eps)));
  for (int i = tid_x(); i < cols; i += ntid_x()) dr[i] = mul_rn(xr[i], scale) * w[i];
}
