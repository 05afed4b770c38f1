// Package cpu holds the hot CPU kernels: quantized matrix multiplication,
// norms, RoPE, softmax and attention helpers, and the worker pool that runs
// them in parallel.
//
// Layouts: activations are row-major float32, one row per token. A weight
// matrix is ggml's layout: rows × cols with each row stored contiguously in
// its quantized block format (cols is ggml's ne[0]); y = W·x means
// y[r] = dot(row r of W, x).
//
// Numerics follow llama.cpp's CPU backend, so results match its golden
// outputs to float rounding: activations are converted to the weight type's
// vec-dot type (Q8_0, Q8_1, Q8_K, F16, BF16) before the dot products, exactly
// as ggml_compute_forward_mul_mat does.
//
// # Dot-product kernels
//
// Dot(t) returns the dot product for weight type t, chosen once at start-up
// from the CPU's features (golang.org/x/sys/cpu): "amx" (the avx512vnni
// level plus AMX-INT8 tiles for prefill, where the CPU has them and Linux
// grants the tile state), "avx512vnni" (AVX-512 F/BW/VL + VNNI), "avx2"
// (AVX2 + FMA + F16C) or "generic" (quant.VecDot, always compiled, the
// reference every other variant is tested against). The environment
// variable HEARTH_CPU=generic|avx2|avx512|amx lowers the level; Level
// reports it. The amx level differs from avx512vnni only where a type has
// an AMX kernel (Q4_K, Q6_K, Q8_0, Q4_0: gemm_amx.go, and amx_amd64.s,
// written by hand since avo has no AMX instructions), used for groups of 16
// rows × 16 tokens in products of enough tokens (32 for Q4_K, 64 for the
// others),
// with the avx512 level's bits. The other amd64 kernels are generated with
// avo by the program in _asm into dot_amd64.s; -tags purego builds without
// them. Every kernel
// computes exact integer sums per block and may differ from the reference
// only in float32 rounding; for a given (row, token) all the kernels of a
// type and level — one-row, four-row and the prefill tiles that take one
// row against up to 16 tokens (gemm.go) — do the same float operations in
// the same order, so MatMul is batch-invariant. At the avx512vnni level the
// K-quant and IQ4_XS kernels read their weights repacked once per matrix
// (NewMatrix copies them, then tells the kernel the source pages may be
// reclaimed, so a model mapped from a file is not resident twice).
// QuantizeAct converts activations byte for byte as quant.QuantizeRow
// does. NOTES.md records the measurements.
package cpu
