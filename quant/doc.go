// Package quant implements ggml's tensor element types in pure Go: block
// geometry for every type a GGUF file can name, and, for the types Hearth
// computes with, the decoder (DequantizeRow), ggml's reference quantizer
// (QuantizeRow) and the dot product of a weight row with a quantized
// activation row (VecDot). It is a leaf package: standard library only.
//
// # Compatibility contract
//
// Results are pinned to ggml (checked against vectors computed by ggml at
// llama.cpp commit 3f545bec, in shared/quant, and for MXFP4 by a later
// reference build, in testdata/ggml with the script that made them):
//
//   - DequantizeRow is bit-exact with ggml's to_float for every supported type.
//   - QuantizeRow is byte-exact with what ggml_quantize_chunk produces without
//     an importance matrix (and so with llama-quantize), for every supported
//     type: F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K, Q3_K, Q4_K, Q5_K,
//     Q6_K, IQ4_NL, IQ4_XS, MXFP4, and the activation types Q8_0, Q8_1 and Q8_K
//     (byte-exact with the CPU backend's from_float). F32 is copied.
//   - VecDot computes ggml's vec_dot: exact integer sums per block, scaled in
//     float32. It matches ggml to float rounding only, because ggml's SIMD
//     kernels sum in a different order (about 1e-7 of max|y| on the vectors).
//
// Bit-exactness needs float32 arithmetic without fused multiply-add, as
// ggml's portable code is compiled. Go may fuse x*y+z into one instruction on
// arm64, ppc64le, s390x, riscv64 and amd64 with GOAMD64=v3, so every such
// expression in the decoders and quantizers is written float32(x*y) + z; a
// test compiles the package for arm64 and amd64/v3 and fails if a fused
// operation appears outside the dot-product kernels.
//
// # Layouts
//
// All multi-byte fields are little-endian. "fp16" is IEEE binary16, "bf16"
// is bfloat16. A row of n elements is n/BlockSize() blocks laid end to end,
// so a row never splits a block and several rows can be processed as one.
// The fields of each block, in order:
//
//	F32    1 el.   4 B  float32
//	F16    1 el.   2 B  fp16
//	BF16   1 el.   2 B  bf16
//	Q4_0  32 el.  18 B  d fp16 | qs[16]: el. j in the low nibble of qs[j], el. j+16 in
//	                    the high nibble; x = d*(q-8)
//	Q4_1  32 el.  20 B  d fp16 | m fp16 | qs[16] as Q4_0; x = d*q + m
//	Q5_0  32 el.  22 B  d fp16 | qh uint32 (bit j: fifth bit of el. j) | qs[16]; x = d*(q-16)
//	Q5_1  32 el.  24 B  d fp16 | m fp16 | qh uint32 | qs[16]; x = d*q + m
//	Q8_0  32 el.  34 B  d fp16 | qs[32] int8; x = d*q
//	Q8_1  32 el.  36 B  d fp16 | s fp16 | qs[32] int8; x = d*q; s = fp16(d32*sum(q)) with
//	                    the float32 scale d32 before rounding, used by Q4_1/Q5_1 dots
//	Q8_K 256 el. 292 B  d float32 | qs[256] int8 | bsums[16] int16 (sums of 16 quants)
//	Q2_K 256 el.  84 B  scales[16] (low nibble scale, high nibble min, per 16 el.) |
//	                    qs[64] | d fp16 | dmin fp16; el. e is bit pair (e/32)%4 of
//	                    qs[32*(e/128) + e%32]; x = d*sc*q - dmin*m
//	Q3_K 256 el. 110 B  hmask[32] (bit e/32 of byte e%32: high bit of el. e) | qs[64] as
//	                    Q2_K | scales[12] (sixteen 6-bit values, offset 32) | d fp16;
//	                    x = d*(sc-32)*(q-4), q 3 bits
//	Q4_K 256 el. 144 B  d fp16 | dmin fp16 | scales[12] (eight 6-bit scale/min pairs) |
//	                    qs[128]: sub-block 2k in the low nibbles of qs[32k:32k+32],
//	                    2k+1 in the high ones; x = d*sc*q - dmin*m
//	Q5_K 256 el. 176 B  d | dmin | scales[12] | qh[32] (bit 2k, 2k+1 of qh[l]: fifth bit
//	                    of el. 64k+l, 64k+32+l) | qs[128] as Q4_K
//	Q6_K 256 el. 210 B  ql[128] (low 4 bits) | qh[64] (high 2 bits) | scales[16] int8 |
//	                    d fp16; x = d*sc*(q-32)
//	IQ4_NL 32 el. 18 B  d fp16 | qs[16] as Q4_0; x = d*kvalues[q], kvalues the 16
//	                    non-linear levels -127..113
//	IQ4_XS 256 el. 136 B d fp16 | scales_h uint16 | scales_l[4] | qs[128]: eight
//	                    sub-blocks of 32 as IQ4_NL with 6-bit scales (offset 32)
//	MXFP4 32 el.  17 B  e uint8 (E8M0) | qs[16] as Q4_0; x = kvalues[q]·2^(e-128),
//	                    kvalues the E2M1 values doubled (0, ±1, ±2, ±3, ±4, ±6, ±8,
//	                    ±12); 2^(e-128) is subnormal for e = 0, 1 (as ggml builds it)
//
// The other types ggml defines (IQ2_XXS, IQ2_XS, IQ3_XXS, IQ1_S, IQ3_S,
// IQ2_S, IQ1_M, TQ1_0, TQ2_0, NVFP4, Q1_0, Q2_0, I8-I64, F64) are
// Known, with their geometry, so a GGUF loader can size and skip their
// tensors, but not Supported: DequantizeRow and QuantizeRow return errors
// wrapping ErrUnsupported and VecDot panics.
//
// # Conventions
//
// Functions never allocate (the first F16 use builds a 256 KiB lookup table
// once) and are safe for concurrent use; slices are borrowed for the call
// only. DequantizeRow and QuantizeRow validate sizes and return errors;
// VecDot, meant for inner loops, panics on misuse like an index out of range.
// Quantizer inputs should be finite: NaN, infinities and values whose block
// scale overflows give unspecified bytes (never a panic). One deliberate
// difference from ggml: an all-zero Q8_K block gets zero bsums, where ggml
// leaves them unwritten.
package quant
