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
// This first version is portable Go over quant's reference dot products;
// SIMD paths plug in behind the same functions.
package cpu
