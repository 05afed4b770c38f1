// norm.cu: the normalisations: RMS norm and layer norm, one row at a time.
//
// rmsnorm_f32(dst, x, w, cols, eps): for each row t (grid x),
//   dst[t][i] = (x[t][i] * scale) * w[i],  scale = 1/sqrt(mean(x[t]^2) + eps).
// CPU reference: kernels/cpu ops.go RMSNorm. As there, each square is
// rounded to float32 and summed in float64, the mean is rounded to float32
// and the scale is 1.0f/sqrtf(mean + eps) in float32 (ggml's; rounding a
// float64 1/sqrt once differs by an ulp now and then); only the summation
// order differs (a tree here), so results agree to an ulp or two. w is float32
// (the backend keeps an f32 copy of any 1-row weight); dst may equal x.
// A "row" is any run of cols contiguous values: per-head norms (a weight
// of headDim on rows of heads·headDim, runtime/cpu RMSNorm's segments)
// launch one block per head of every token, with cols = headDim.
//   Launch: grid (rows), block 256 (any multiple of 32 up to 1024; the
//   backend uses the smallest multiple of 32 covering a short row).
//   Napkin: 8 B per element (read + write), one pass; 4096-wide rows are
//   tiny, so this is launch-bound at decode (~3 µs), bandwidth-bound in
//   prefill (512 × 4096 × 8 B = 16 MiB: ~5 µs at 3 TB/s).
//
// layernorm_f32(dst, x, w, b, cols, eps): for each row t (grid x),
//   c_i = x[t][i] - mean,  dst[t][i] = ((c_i * scale) * w[i]) + b[i],
//   scale = 1/sqrt(mean(c^2) + eps); w and b may each be null (left out).
// CPU reference: kernels/cpu ops.go LayerNorm (ggml's arithmetic): the sum
// of x and the sum of the rounded squares c_i·c_i in float64, mean and
// variance rounded to float32, var + eps added in float32, the scale
// 1.0f/sqrtf(var + eps) in float32, each product rounded on its own (mul_rn: no FMA
// with the bias). Only the summation order differs. dst may equal x.
//   Launch: grid (rows), block 256. Napkin: x read three times (from L1/L2
//   after the first), dst written once: bandwidth-bound like rmsnorm.
#include "common.cuh"

// block_sum_d is the sum of every thread's s over the block, returned to
// every thread: within each warp by shuffles of the two halves of the
// double, then across warps through part (32 doubles of shared memory,
// free again when it returns).
DEVINL double block_sum_d(double s, double* part) {
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
  __syncthreads();
  return sum;
}

KERNEL void rmsnorm_f32(float* dst, const float* x, const float* w, int cols, float eps) {
  __shared__ double part[32];
  const float* xr = x + (int64_t)ctaid_x() * cols;
  float* dr = dst + (int64_t)ctaid_x() * cols;
  double s = 0;
  for (int i = tid_x(); i < cols; i += ntid_x()) {
    float v = xr[i];
    s += (double)mul_rn(v, v);
  }
  float mean = (float)(block_sum_d(s, part) / (double)cols);
  float scale = __nvvm_div_rn_f(1.0f, __nvvm_sqrt_rn_f(mean + eps));
  for (int i = tid_x(); i < cols; i += ntid_x()) dr[i] = mul_rn(xr[i], scale) * w[i];
}

KERNEL void layernorm_f32(float* dst, const float* x, const float* w, const float* b, int cols, float eps) {
  __shared__ double part[32];
  const float* xr = x + (int64_t)ctaid_x() * cols;
  float* dr = dst + (int64_t)ctaid_x() * cols;
  double s = 0;
  for (int i = tid_x(); i < cols; i += ntid_x()) s += (double)xr[i];
  float mean = (float)(block_sum_d(s, part) / (double)cols);
  double s2 = 0;
  for (int i = tid_x(); i < cols; i += ntid_x()) {
    float c = xr[i] - mean;
    s2 += (double)mul_rn(c, c);
  }
  float var = (float)(block_sum_d(s2, part) / (double)cols);
  float scale = __nvvm_div_rn_f(1.0f, __nvvm_sqrt_rn_f(var + eps));
  // Each thread reads and writes only its own elements: in place is safe.
  for (int i = tid_x(); i < cols; i += ntid_x()) {
    float v = mul_rn(xr[i] - mean, scale);
    if (w) v = mul_rn(v, w[i]);
    if (b) v += b[i];
    dr[i] = v;
  }
}
