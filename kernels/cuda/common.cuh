// common.cuh: the definitions every kernel file shares. No CUDA SDK header
// is used (clang-16 -nocudainc -nocudalib): the CUDA keywords are clang's
// attributes, thread indices are __nvvm_read_ptx_sreg_* builtins, and f16
// conversion and dp4a are inline PTX. Nothing here may call a libdevice
// function (__nv_expf, ...): with -nocudalib it would stay an unresolved
// .extern in the PTX and the driver's JIT would refuse the module.
//
// Conventions shared by all kernels:
//   - activations are row-major float32, one row per token, row stride =
//     the tensor's columns; tokens always go on grid x (limit 2^31-1);
//   - weights are ggml's layout: each row contiguous in its block format,
//     rowBytes apart (quant/doc.go), uploaded as they are in the GGUF file;
//   - f16 values are kept as uint16_t bits (_Float16 is refused in structs).
#pragma once

typedef unsigned char uint8_t;
typedef signed char int8_t;
typedef unsigned short uint16_t;
typedef short int16_t;
typedef unsigned int uint32_t;
typedef int int32_t;
typedef unsigned long long uint64_t;
typedef long long int64_t;

#define __global__ __attribute__((global))
#define __device__ __attribute__((device))
#define __shared__ __attribute__((shared))
#define DEVINL __device__ static inline __attribute__((always_inline))
#define KERNEL extern "C" __global__

DEVINL int tid_x() { return __nvvm_read_ptx_sreg_tid_x(); }
DEVINL int ntid_x() { return __nvvm_read_ptx_sreg_ntid_x(); }
DEVINL int ctaid_x() { return __nvvm_read_ptx_sreg_ctaid_x(); }
DEVINL int ctaid_y() { return __nvvm_read_ptx_sreg_ctaid_y(); }
DEVINL int nctaid_x() { return __nvvm_read_ptx_sreg_nctaid_x(); }

// f16 bits -> f32 (exact) and f32 -> f16 bits (round to nearest even, as
// quant.F32ToF16 and ggml's GGML_FP32_TO_FP16).
DEVINL float h2f(uint16_t h) {
  float f;
  asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(h));
  return f;
}
DEVINL uint16_t f2h(float f) {
  uint16_t h;
  asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}
DEVINL float f16round(float f) { return h2f(f2h(f)); }
DEVINL float bf2f(uint16_t h) { return __builtin_bit_cast(float, (uint32_t)h << 16); }
// f32 -> bf16 bits, round to nearest even (quant.F32ToBF16 for non-NaN).
DEVINL uint16_t f2bf(float f) {
  uint16_t h;
  asm("cvt.rn.bf16.f32 %0, %1;" : "=h"(h) : "f"(f));
  return h;
}

// dp4a: c + the dot product of the four signed bytes of a and of b.
DEVINL int dp4a(int a, int b, int c) {
  int r;
  asm("dp4a.s32.s32 %0, %1, %2, %3;" : "=r"(r) : "r"(a), "r"(b), "r"(c));
  return r;
}

// Products rounded on their own: a*b+c written with mul_rn is never fused
// into an FMA, so dequantization gives quant.DequantizeRow's bits. (clang
// contracts across statements and turns __nvvm_mul_rn_f back into a plain
// fmul first; an asm is opaque to it, and ptxas never fuses a mul with an
// explicit .rn.)
DEVINL float mul_rn(float a, float b) {
  float r;
  asm("mul.rn.f32 %0, %1, %2;" : "=f"(r) : "f"(a), "f"(b));
  return r;
}

// exp(x) as ex2.approx(x·log2 e): about 2 ulp plus the rounding of the
// product, far inside the parity tolerances (the CPU computes exp in f64).
DEVINL float fast_exp(float x) { return __nvvm_ex2_approx_f(x * 1.4426950408889634f); }

// Loads of little-endian fields at 2-byte aligned addresses (Q4_0, Q8_0 and
// Q6_K blocks are 18, 34 and 210 bytes long, so only 2-byte alignment holds).
DEVINL uint16_t ld16(const uint8_t* p) { return *(const uint16_t*)p; }
DEVINL uint32_t ld32_2(const uint8_t* p) {
  return (uint32_t)ld16(p) | ((uint32_t)ld16(p + 2) << 16);
}
DEVINL uint32_t ld32_4(const uint8_t* p) { return *(const uint32_t*)p; }

// Warp reductions over all 32 lanes (every lane gets the result), and over
// aligned groups of width lanes (width a power of two <= 32).
DEVINL float warp_sum(float v) {
  for (int o = 16; o > 0; o >>= 1) v += __nvvm_shfl_sync_bfly_f32(0xffffffffu, v, o, 0x1f);
  return v;
}
DEVINL float group_sum(float v, int width) {
  for (int o = width >> 1; o > 0; o >>= 1) v += __nvvm_shfl_sync_bfly_f32(0xffffffffu, v, o, 0x1f);
  return v;
}
DEVINL float warp_max(float v) {
  for (int o = 16; o > 0; o >>= 1) v = __builtin_fmaxf(v, __nvvm_shfl_sync_bfly_f32(0xffffffffu, v, o, 0x1f));
  return v;
}

#define NEG_INF (-__builtin_inff())
