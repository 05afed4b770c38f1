// Package split runs a model across two backends: partial offload, the
// last layers on a device (the GPU) and the rest on the host (the CPU).
// Backend implements backend.Backend over any two backends, so it is
// tested with two CPU backends, where a split forward pass must equal the
// plain one bit for bit.
//
// # Placement (Plan)
//
// As llama.cpp's -ngl N: the device takes repeating layers N' … Layers-1
// with N' = Layers-N (the activations then cross to the device once and
// back once per forward pass, whatever N), and the output layer
// (output_norm.weight, output.weight) only when N > Layers, so 99 means
// everything. token_embd.weight stays on the host (a lookup reads a few
// rows; the CPU binds the memory map without copying); when it is also
// the output matrix (tied embeddings) and the output layer is offloaded,
// it is bound on both sides. Weights are placed by their GGUF name alone
// ("blk.N." → layer N): no architecture is named here. Other tensors stay
// on the host.
//
// # Where operations run
//
// MatMul and RMSNorm run where their weight is (the device when it has
// it); Embed where the table is (the host when it has it); Attention for
// layer l on the side holding layer l's KV cache; RoPE, SwiGLU, Add and
// Gather where fewer of their inputs' values would have to move (a tie:
// the device, unless the plan uses none). Read reads where the rows are;
// Write writes to the host.
//
// # Tensors
//
// A Tensor is a view of a store: rows × cols with a tensor on each side,
// made when first needed, and per row the sides that hold its current
// values (every row is current on at least one). An operation first makes
// its input rows current on its side, copying (Read from one backend,
// Write into the other) only the rows that are not, a contiguous run at a
// time, then marks the rows it wrote as current on its side only. A fresh
// tensor is current on both sides (its contents are undefined, as on any
// backend). Per forward pass of a llama-family model this gives one copy
// to the device (the tokens' embeddings, at the first offloaded layer)
// when any layer is offloaded, and one back (the output rows' hidden
// states, before the output norm) unless the output layer is offloaded;
// Stats counts them.
//
// # Errors
//
// Each side records its own operations' errors (backend.Backend's
// contract); the split records its own (a KV cache of another placement,
// a side that cannot allocate a tensor when first needed, whose error it
// takes) and does nothing while it has one. Err returns the split's error
// and both sides', joined when more than one, and clears them.
//
// # KV cache
//
// NewKV, NewKVPool and NewTypedKVPool make a pool on each side for that
// side's layers (host: 0 … Layers-N-1; device: the rest, renumbered from
// 0), with the same block count and size, so one block table addresses
// both; a type one side cannot store is an error wrapping
// quant.ErrUnsupported.
//
// # Fitting a device
//
// Measure sums a model's weights per layer by a device's storage rule,
// and Fit takes layers from the last while they, their KV share and the
// reserves fit in free bytes, then the output layer if it fits too; the
// CUDA backend's Offload applies it to cuMemGetInfo's free memory.
package split
