// quant.cuh: ggml's weight block formats on the device (quant/doc.go has the
// layouts; quant/dequant.go is the reference these decoders match bit for
// bit). Each format is a struct with two operations:
//
//   dq8(row, k0, cols, v)  writes elements k0..k0+7 of a row as float32,
//                          exactly as quant.DequantizeRow (products rounded
//                          on their own with mul_rn, never fused). k0 is a
//                          multiple of 8; the float formats read nothing at
//                          or past cols and write 0 there.
//   unit<NT>(row, u, ...)  adds unit u's share of the dot products of the
//                          row with NT activation rows into acc[0..nt): the
//                          matrix-vector kernel's inner step (matvec.cu).
//
// Quantized formats (QUANT_ACT = 1) take activations quantized to int8 per
// 32 values (aq, with one float scale per 32 in ad: quantize_q8 in
// matvec.cu) and use dp4a; a unit is 8 weights, so a row has cols/8 units.
// Float formats (QUANT_ACT = 0) take float32 activations, rounded to the
// weight's format as ggml does (F16, BF16); a unit is one element.
#pragma once
#include "common.cuh"

#define MAXT 8  // most tokens (activation rows) one matvec launch handles

// Q4_0: 32 el., 18 B: d f16 | qs[16]; el. j low nibble of qs[j], el. j+16 the
// high one; x = d*(q-8).
struct TQ4_0 {
  enum { QUANT_ACT = 1 };
  DEVINL void dq8(const uint8_t* row, int k0, int cols, float* v) {
    const uint8_t* b = row + (k0 >> 5) * 18;
    float d = h2f(ld16(b));
    int j = k0 & 31;
    const uint8_t* qs = b + 2 + (j & 15);
    int sh = j < 16 ? 0 : 4;
#pragma unroll
    for (int i = 0; i < 8; i++) v[i] = (float)((int)((qs[i] >> sh) & 15) - 8) * d;
  }
  // Unit u: block u/4, qs bytes 4i..4i+3 (i = u%4), elements 4i..4i+3 (low
  // nibbles) and 4i+16..4i+19 (high nibbles). (q-8)·a = q·a - 8·sum(a).
  template <int NT>
  DEVINL void unit(const uint8_t* row, int u, const int8_t* aq, const float* ad, int cols, int nt, float* acc) {
    int blk = u >> 2, i = u & 3;
    const uint8_t* b = row + blk * 18;
    float d = h2f(ld16(b));
    uint32_t q = ld32_2(b + 2 + 4 * i);
    int lo = (int)(q & 0x0F0F0F0Fu), hi = (int)((q >> 4) & 0x0F0F0F0Fu);
#pragma unroll
    for (int t = 0; t < NT; t++) {
      if (t < nt) {
        const int8_t* a = aq + (int64_t)t * cols + blk * 32;
        int a0 = *(const int*)(a + 4 * i), a1 = *(const int*)(a + 16 + 4 * i);
        int s = dp4a(hi, a1, dp4a(lo, a0, 0));
        int sa = dp4a(0x01010101, a1, dp4a(0x01010101, a0, 0));
        acc[t] += d * ad[((int64_t)t * cols >> 5) + blk] * (float)(s - 8 * sa);
      }
    }
  }
};

// Q8_0: 32 el., 34 B: d f16 | qs[32] int8; x = d*q.
struct TQ8_0 {
  enum { QUANT_ACT = 1 };
  DEVINL void dq8(const uint8_t* row, int k0, int cols, float* v) {
    const uint8_t* b = row + (k0 >> 5) * 34;
    float d = h2f(ld16(b));
    const int8_t* qs = (const int8_t*)(b + 2 + (k0 & 31));
#pragma unroll
    for (int i = 0; i < 8; i++) v[i] = (float)qs[i] * d;
  }
  // Unit u: block u/4, elements 8i..8i+7 (i = u%4).
  template <int NT>
  DEVINL void unit(const uint8_t* row, int u, const int8_t* aq, const float* ad, int cols, int nt, float* acc) {
    int blk = u >> 2, i = u & 3;
    const uint8_t* b = row + blk * 34;
    float d = h2f(ld16(b));
    int w0 = (int)ld32_2(b + 2 + 8 * i), w1 = (int)ld32_2(b + 6 + 8 * i);
#pragma unroll
    for (int t = 0; t < NT; t++) {
      if (t < nt) {
        const int8_t* a = aq + (int64_t)t * cols + blk * 32 + 8 * i;
        int s = dp4a(w1, *(const int*)(a + 4), dp4a(w0, *(const int*)a, 0));
        acc[t] += d * ad[((int64_t)t * cols >> 5) + blk] * (float)s;
      }
    }
  }
};

// The 6-bit scale and min of sub-block j (0-7) of a Q4_K block (ggml's
// get_scale_min_k4; quant.scaleMinK4).
DEVINL void scale_min_k4(int j, const uint8_t* s, int* sc, int* m) {
  if (j < 4) {
    *sc = s[j] & 63;
    *m = s[j + 4] & 63;
  } else {
    *sc = (s[j + 4] & 15) | ((s[j - 4] >> 6) << 4);
    *m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
  }
}

// Q4_K: 256 el., 144 B: d f16 | dmin f16 | scales[12] | qs[128]; sub-block 2k
// is the low nibbles of qs[32k..32k+32), 2k+1 the high ones;
// x = (d*sc)*q - dmin*m.
struct TQ4_K {
  enum { QUANT_ACT = 1 };
  DEVINL void dq8(const uint8_t* row, int k0, int cols, float* v) {
    const uint8_t* b = row + (k0 >> 8) * 144;
    float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
    int e = k0 & 255, k = e >> 6, hi = (e >> 5) & 1, l = e & 31;
    int sc, m;
    scale_min_k4(2 * k + hi, b + 4, &sc, &m);
    float d1 = mul_rn(d, (float)sc), m1 = mul_rn(dmin, (float)m);
    const uint8_t* qs = b + 16 + 32 * k + l;
#pragma unroll
    for (int i = 0; i < 8; i++) v[i] = mul_rn(d1, (float)((qs[i] >> (4 * hi)) & 15)) - m1;
  }
  // Unit u: super-block u/32; w = u%32, k = w/8, i = w%8: qs bytes
  // 32k+4i..+3, whose low nibbles are elements 64k+4i..+3 (sub-block 2k) and
  // high nibbles elements 64k+32+4i..+3 (sub-block 2k+1).
  template <int NT>
  DEVINL void unit(const uint8_t* row, int u, const int8_t* aq, const float* ad, int cols, int nt, float* acc) {
    int sb = u >> 5, w = u & 31, k = w >> 3, i = w & 7;
    const uint8_t* b = row + sb * 144;
    float d = h2f(ld16(b)), dmin = h2f(ld16(b + 2));
    int sc0, m0, sc1, m1;
    scale_min_k4(2 * k, b + 4, &sc0, &m0);
    scale_min_k4(2 * k + 1, b + 4, &sc1, &m1);
    uint32_t q = ld32_4(b + 16 + 32 * k + 4 * i);
    int lo = (int)(q & 0x0F0F0F0Fu), hi = (int)((q >> 4) & 0x0F0F0F0Fu);
    float ds0 = d * (float)sc0, dm0 = dmin * (float)m0, ds1 = d * (float)sc1, dm1 = dmin * (float)m1;
    int e = sb * 256 + 64 * k + 4 * i;  // element of the low-nibble quants
#pragma unroll
    for (int t = 0; t < NT; t++) {
      if (t < nt) {
        const int8_t* a = aq + (int64_t)t * cols + e;
        const float* da = ad + ((int64_t)t * cols >> 5) + (e >> 5);
        int a0 = *(const int*)a, a1 = *(const int*)(a + 32);
        float s0 = ds0 * (float)dp4a(lo, a0, 0) - dm0 * (float)dp4a(0x01010101, a0, 0);
        float s1 = ds1 * (float)dp4a(hi, a1, 0) - dm1 * (float)dp4a(0x01010101, a1, 0);
        acc[t] += da[0] * s0 + da[1] * s1;
      }
    }
  }
};

// Q6_K: 256 el., 210 B: ql[128] | qh[64] | scales[16] int8 | d f16. In half h
// (128 el.), element 32g+l (g 0-3) has its low bits in the low (g < 2) or
// high nibble of ql[64h + l + 32*(g%2)], its high bits at bit pair g of
// qh[32h + l], and scale scales[8h + l/16 + 2g]; x = (d*sc)*(q-32).
struct TQ6_K {
  enum { QUANT_ACT = 1 };
  DEVINL void dq8(const uint8_t* row, int k0, int cols, float* v) {
    const uint8_t* b = row + (k0 >> 8) * 210;
    float d = h2f(ld16(b + 208));
    int e = k0 & 255, h = e >> 7, g = (e >> 5) & 3, l = e & 31;
    const uint8_t* ql = b + 64 * h + 32 * (g & 1) + l;
    const uint8_t* qh = b + 128 + 32 * h + l;
    const int8_t* sc = (const int8_t*)(b + 192 + 8 * h + 2 * g);
    int sh = g < 2 ? 0 : 4;
#pragma unroll
    for (int i = 0; i < 8; i++) {
      int q = (int)(((ql[i] >> sh) & 15) | (((qh[i] >> (2 * g)) & 3) << 4)) - 32;
      v[i] = mul_rn(mul_rn(d, (float)sc[(l + i) >> 4]), (float)q);
    }
  }
  // Unit u: super-block u/32; w = u%32, h = w/16, p = (w/8)%2, l0 = 4(w%8):
  // ql bytes 64h+32p+l0..+3 give elements 128h+32p+l0..+3 (low nibbles, g = p)
  // and 128h+64+32p+l0..+3 (high nibbles, g = p+2).
  template <int NT>
  DEVINL void unit(const uint8_t* row, int u, const int8_t* aq, const float* ad, int cols, int nt, float* acc) {
    int sb = u >> 5, w = u & 31, h = w >> 4, p = (w >> 3) & 1, l0 = 4 * (w & 7);
    const uint8_t* b = row + sb * 210;
    float d = h2f(ld16(b + 208));
    uint32_t ql = ld32_2(b + 64 * h + 32 * p + l0);
    uint32_t qh = ld32_2(b + 128 + 32 * h + l0);
    int lo = (int)((ql & 0x0F0F0F0Fu) | (((qh >> (2 * p)) & 0x03030303u) << 4));
    int hi = (int)(((ql >> 4) & 0x0F0F0F0Fu) | (((qh >> (2 * p + 4)) & 0x03030303u) << 4));
    const int8_t* sc = (const int8_t*)(b + 192 + 8 * h + (l0 >> 4));
    float dlo = d * (float)sc[2 * p], dhi = d * (float)sc[2 * p + 4];
    int e = sb * 256 + 128 * h + 32 * p + l0;  // element of the low-nibble quants
#pragma unroll
    for (int t = 0; t < NT; t++) {
      if (t < nt) {
        const int8_t* a = aq + (int64_t)t * cols + e;
        const float* da = ad + ((int64_t)t * cols >> 5) + (e >> 5);
        int a0 = *(const int*)a, a1 = *(const int*)(a + 64);
        int s0 = dp4a(lo, a0, 0) - 32 * dp4a(0x01010101, a0, 0);
        int s1 = dp4a(hi, a1, 0) - 32 * dp4a(0x01010101, a1, 0);
        acc[t] += da[0] * dlo * (float)s0 + da[2] * dhi * (float)s1;
      }
    }
  }
};

// Float formats: one element per unit, float32 activations rounded to the
// weight's own format first (L::act), as ggml converts them to the vec-dot
// type (F16 for F16 weights, BF16 for BF16) before the dot products.
template <class L>
struct TFloat {
  enum { QUANT_ACT = 0 };
  DEVINL void dq8(const uint8_t* row, int k0, int cols, float* v) {
#pragma unroll
    for (int i = 0; i < 8; i++) v[i] = k0 + i < cols ? L::load(row, k0 + i) : 0.0f;
  }
  DEVINL float act(float x) { return L::act(x); }
  template <int NT>
  DEVINL void unit(const uint8_t* row, int e, const float* x, int cols, int nt, float* acc) {
    float w = L::load(row, e);
#pragma unroll
    for (int t = 0; t < NT; t++)
      if (t < nt) acc[t] += w * L::act(x[(int64_t)t * cols + e]);
  }
};
struct LoadF32 {
  DEVINL float load(const uint8_t* row, int e) { return ((const float*)row)[e]; }
  DEVINL float act(float x) { return x; }
};
struct LoadF16 {
  DEVINL float load(const uint8_t* row, int e) { return h2f(((const uint16_t*)row)[e]); }
  DEVINL float act(float x) { return f16round(x); }
};
struct LoadBF16 {
  DEVINL float load(const uint8_t* row, int e) { return bf2f(((const uint16_t*)row)[e]); }
  DEVINL float act(float x) { return bf2f(f2bf(x)); }
};
typedef TFloat<LoadF32> TF32;
typedef TFloat<LoadF16> TF16;
typedef TFloat<LoadBF16> TBF16;

// FOR_EACH_TYPE(X) expands X(name, struct) for every weight format the
// kernels support; the entry points are named <kernel>_<name>.
#define FOR_EACH_TYPE(X) \
  X(f32, TF32)           \
  X(f16, TF16)           \
  X(bf16, TBF16)         \
  X(q4_0, TQ4_0)         \
  X(q8_0, TQ8_0)         \
  X(q4_K, TQ4_K)         \
  X(q6_K, TQ6_K)
