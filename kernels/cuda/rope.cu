// rope.cu: rotary position embedding, in place.
//
// rope_f32(x, cs, pos, heads, headDim, half, neox, cols): for each token t
// (grid x) and head h, rotates the pairs of dimensions (2i, 2i+1) (normal)
// or (i, i+half) (neox) for i < half by the angle of position pos[t]:
//   x0' = x0*cos - x1*sin,  x1' = x0*sin + x1*cos.
// Dimensions past 2·half are left alone; cols is the row stride.
// cs holds, for every position p up to the largest in use, the pairs
// cs[2(p·half+i)] = cos, cs[2(p·half+i)+1] = sin, already scaled: the host
// fills it with kernels/cpu RoPE.Tables, the very code the CPU backend uses
// (ggml's theta_scale^i iteration in float32, freq factors, YaRN ramp and
// mscale), so the angles are the CPU's bit for bit. CPU reference for the
// rotation: kernels/cpu ops.go RoPE.Apply; the products are rounded on
// their own (mul_rn), so the results are bitwise the same too.
//   Launch: grid (n), block 128; a thread per (head, pair).
//   Napkin: 8 B per element of q and k; launch-bound at decode.
#include "common.cuh"

KERNEL void rope_f32(float* x, const float* cs, const int* pos, int heads, int headDim, int half, int neox, int cols) {
  int t = ctaid_x();
  float* row = x + (int64_t)t * cols;
  const float* tab = cs + (int64_t)pos[t] * half * 2;
  for (int j = tid_x(); j < heads * half; j += ntid_x()) {
    int h = j / half, i = j - h * half;
    float* v = row + h * headDim;
    int a = neox ? i : 2 * i, b = neox ? i + half : 2 * i + 1;
    float c = tab[2 * i], s = tab[2 * i + 1];
    float x0 = v[a], x1 = v[b];
    v[a] = mul_rn(x0, c) - mul_rn(x1, s);
    v[b] = mul_rn(x0, s) + mul_rn(x1, c);
  }
}
