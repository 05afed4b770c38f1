// recurrent.cu: Qwen 3.5's Gated DeltaNet layers on the device: the causal
// depthwise convolution over each sequence's conv state (ggml's ssm_conv)
// and the gated delta rule over each sequence's per-head state (ggml's
// gated_delta_net, with Qwen 3.5's preprocessing fused in).
//
// State: a pool holds, per slot, every part (a conv state and a delta
// state per recurrent layer) back to back; a kernel gets each sequence's
// slot address and the part's offset (in floats) within a slot. Which
// tokens belong to which sequence comes from the host (runtime/cuda
// recurrent.go stateMeta), once per forward pass, in one buffer:
//   uint64 slot[ns]    the address of sequence s's slot
//   int32  start[ns+1] its tokens are toks[start[s] .. start[s+1])
//   int32  toks[n]     2·t, or 2·t+1 when token t is at position 0 (it
//                      restarts the sequence from a zero state)
// Tokens of a sequence are listed in the batch's order (increasing
// positions): each block runs one sequence's tokens in order, so results
// do not depend on how many tokens or sequences a step holds. The host
// has checked the positions (ErrStateLost) before any launch.
//
// causal_conv_f32(dst, x, w, meta, part, c, k): for sequence s (grid x)
// and channel ch (grid y · block + thread), with window the k-1 previous
// inputs of the channel (the state's column, oldest first, zero after a
// restart) then x[t][ch]:
//   dst[t][ch] = Σ_i window[i]·w[ch][i], summed in order, each product
//   rounded on its own (mul_rn);
// the state then holds the last k-1 inputs. CPU reference: kernels/cpu
// ConvStep (runtime/cpu CausalConv): the same operations in the same
// order, so bit for bit where Go does not fuse the products into FMAs
// (amd64 below GOAMD64=v3). w is c rows of k float32 taps; k ≤ MAX_CONV_K.
//   Launch: grid (ns, ceil(c/128)), block 128.
//   Napkin: per token and channel k reads (x and the window, kept in the
//   thread's registers/local memory) and one write; the state (k-1)·c
//   floats read and written once per sequence: bandwidth-bound and tiny
//   (Qwen 3.5 27B: c = 10240, k = 4: 160 KB per layer and sequence).
//
// gated_delta_net_f32(dst, qkv, alpha, beta, a, dtb, meta, part, kh, vh, hd,
//                     eps, scale): for sequence s (grid x) and value head h
// (grid y), key head kq = h mod kh, over the sequence's tokens t in order:
//   q̂, k̂ = q, k of head kq (row t of qkv: q of kh heads, k of kh heads,
//     v of vh heads, each hd wide) times 1/max(‖·‖, eps), the squares
//     rounded to float32 and summed in float64 (kernels/cpu L2Normalize);
//   β = 1/(1+e^-beta[t][h]);  g = softplus(alpha[t][h] + dtb[h])·a[h]
//     (softplus(x) = x above 20, else log(1+e^x));
//   S = e^g·S;  δ_j = (v_j - Σ_i S[j][i]·k̂_i)·β;  S[j][i] += k̂_i·δ_j;
//   dst[t][h·hd + j] = (Σ_i S[j][i]·q̂_i)·scale
// with S the hd × hd state of head h (state part at h·hd², stored as
// S[j][i] = value j, key i), zeroed at a restart. CPU reference:
// kernels/cpu DeltaStep, L2Normalize, Softplus, Sigmoid (runtime/cpu
// GatedDeltaNet). The exps and the log are ex2.approx/lg2.approx (the CPU's
// are float64), and the dot products are per-lane FMA chains summed over
// the warp (the CPU's four float32 lanes): ~1e-6 relative per step.
//   Launch: grid (ns, vh), block 512 (16 warps); hd ≤ MAX_DN_HEAD. Warp w
//   owns rows j = w + 16·r of S, lane l its columns i = l + 32·v: S lives
//   in registers (8 × 4 per lane at hd = 128) for the whole sequence and
//   is read and written once. q̂, k̂, v, e^g and β go through shared memory,
//   two barriers per token.
//   Napkin: per token and head 4·hd² flops on registers plus 3·hd loads:
//   decode is launch- and latency-bound (Qwen 3.5 27B: 48 heads × 64 KB of
//   state read and written per layer and sequence, 6 MB per layer at a
//   batch of one, ~2 µs at 3 TB/s); long prefills are serial per
//   (sequence, head) — ~4·hd²/512 ≈ 128 FMA per thread per token, a few
//   µs per 16 tokens (llama.cpp's chunked form would be faster there).
#include "common.cuh"

#define MAX_CONV_K 64
#define MAX_DN_HEAD 128
#define DN_WARPS 16
#define DN_ROWS (MAX_DN_HEAD / DN_WARPS)  // rows of S per warp, at most
#define DN_COLS (MAX_DN_HEAD / 32)        // columns of S per lane, at most

// The sequence table of a pass (see above).
struct seqs {
  const uint64_t* slot;
  const int* start;
  const int* toks;
};
DEVINL seqs read_meta(const uint8_t* meta, int ns) {
  seqs m;
  m.slot = (const uint64_t*)meta;
  m.start = (const int*)(meta + 8 * (int64_t)ns);
  m.toks = m.start + ns + 1;
  return m;
}

KERNEL void causal_conv_f32(float* dst, const float* x, const float* w, const uint8_t* meta, int ns, int64_t part,
                            int c, int k) {
  int s = ctaid_x(), ch = ctaid_y() * ntid_x() + tid_x();
  if (ch >= c) return;
  seqs m = read_meta(meta, ns);
  float* st = (float*)m.slot[s] + part;
  const float* wr = w + (int64_t)ch * k;
  float win[MAX_CONV_K - 1];
  for (int i = 0; i < k - 1; i++) win[i] = st[(int64_t)i * c + ch];
  for (int j = m.start[s]; j < m.start[s + 1]; j++) {
    int tok = m.toks[j], t = tok >> 1;
    if (tok & 1)
      for (int i = 0; i < k - 1; i++) win[i] = 0.0f;
    float xv = x[(int64_t)t * c + ch];
    float sum = 0.0f;
    for (int i = 0; i < k - 1; i++) sum += mul_rn(win[i], wr[i]);
    sum += mul_rn(xv, wr[k - 1]);
    dst[(int64_t)t * c + ch] = sum;
    for (int i = 0; i + 1 < k - 1; i++) win[i] = win[i + 1];
    win[k - 2] = xv;
  }
  for (int i = 0; i < k - 1; i++) st[(int64_t)i * c + ch] = win[i];
}

DEVINL double warp_sum_d(double s) {
  for (int o = 16; o > 0; o >>= 1) {
    long long bits = __builtin_bit_cast(long long, s);
    int lo = __nvvm_shfl_sync_bfly_i32(0xffffffffu, (int)bits, o, 0x1f);
    int hi = __nvvm_shfl_sync_bfly_i32(0xffffffffu, (int)(bits >> 32), o, 0x1f);
    s += __builtin_bit_cast(double, ((long long)hi << 32) | (long long)(unsigned)lo);
  }
  return s;
}

// l2_normalize writes src/max(‖src‖, eps) into out (one warp; every lane).
DEVINL void l2_normalize(float* out, const float* src, int hd, float eps, int lane) {
  double s = 0;
  for (int i = lane; i < hd; i += 32) {
    float v = src[i];
    s += (double)mul_rn(v, v);
  }
  s = warp_sum_d(s);
  float scale = __nvvm_div_rn_f(1.0f, __builtin_fmaxf((float)__nvvm_sqrt_rn_d(s), eps));
  for (int i = lane; i < hd; i += 32) out[i] = mul_rn(src[i], scale);
}

KERNEL void gated_delta_net_f32(float* dst, const float* qkv, const float* alpha, const float* beta, const float* a,
                                const float* dtb, const uint8_t* meta, int ns, int64_t part, int kh, int vh, int hd,
                                float eps, float scale) {
  __shared__ float qn[MAX_DN_HEAD], kn[MAX_DN_HEAD], vv[MAX_DN_HEAD], gb[2];
  int s = ctaid_x(), h = ctaid_y(), warp = tid_x() >> 5, lane = tid_x() & 31;
  int kq = h % kh, width = (2 * kh + vh) * hd;
  seqs m = read_meta(meta, ns);
  float* st = (float*)m.slot[s] + part + (int64_t)h * hd * hd;
  float S[DN_ROWS][DN_COLS];
#pragma unroll
  for (int r = 0; r < DN_ROWS; r++) {
    int j = warp + DN_WARPS * r;
#pragma unroll
    for (int v = 0; v < DN_COLS; v++) {
      int i = lane + 32 * v;
      S[r][v] = j < hd && i < hd ? st[j * hd + i] : 0.0f;
    }
  }
  for (int jt = m.start[s]; jt < m.start[s + 1]; jt++) {
    int tok = m.toks[jt], t = tok >> 1;
    const float* row = qkv + (int64_t)t * width;
    if (warp == 0) l2_normalize(qn, row + kq * hd, hd, eps, lane);
    if (warp == 1) l2_normalize(kn, row + (kh + kq) * hd, hd, eps, lane);
    if (warp == 2)
      for (int i = lane; i < hd; i += 32) vv[i] = row[(2 * kh + h) * hd + i];
    if (warp == 3 && lane == 0) {
      float x = alpha[(int64_t)t * vh + h] + dtb[h];
      float sp = x > 20.0f ? x : mul_rn(__nvvm_lg2_approx_f(1.0f + fast_exp(x)), 0.6931471805599453f);
      gb[0] = fast_exp(mul_rn(sp, a[h]));
      gb[1] = __nvvm_div_rn_f(1.0f, 1.0f + fast_exp(-beta[(int64_t)t * vh + h]));
    }
    __syncthreads();
    float eg = gb[0], bt = gb[1];
    bool restart = tok & 1;
#pragma unroll
    for (int r = 0; r < DN_ROWS; r++) {
      int j = warp + DN_WARPS * r;
      if (j >= hd) break;  // the same for the whole warp
      float d = 0.0f;
#pragma unroll
      for (int v = 0; v < DN_COLS; v++) {
        int i = lane + 32 * v;
        if (restart) S[r][v] = 0.0f;
        S[r][v] = mul_rn(S[r][v], eg);
        if (i < hd) d = __builtin_fmaf(S[r][v], kn[i], d);
      }
      float delta = mul_rn(vv[j] - warp_sum(d), bt);
      float o = 0.0f;
#pragma unroll
      for (int v = 0; v < DN_COLS; v++) {
        int i = lane + 32 * v;
        if (i < hd) {
          S[r][v] = S[r][v] + mul_rn(kn[i], delta);
          o = __builtin_fmaf(S[r][v], qn[i], o);
        }
      }
      o = warp_sum(o);
      if (lane == 0) dst[(int64_t)t * vh * hd + h * hd + j] = mul_rn(o, scale);
    }
    __syncthreads();
  }
#pragma unroll
  for (int r = 0; r < DN_ROWS; r++) {
    int j = warp + DN_WARPS * r;
#pragma unroll
    for (int v = 0; v < DN_COLS; v++) {
      int i = lane + 32 * v;
      if (j < hd && i < hd) st[j * hd + i] = S[r][v];
    }
  }
}
