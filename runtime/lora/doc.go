// Package lora reads fine-tune adapters in llama.cpp's GGUF LoRA format,
// checks them against the base model they were made for, and binds them
// on that model's backend for the batched step, where each sequence may
// run with its own adapter (arch.Batch.Adapters).
//
// # Format (llama.cpp src/llama-adapter.cpp)
//
// Metadata: general.type "adapter", general.architecture the base's,
// adapter.type "lora", adapter.lora.alpha (float; missing or 0: no alpha
// scaling). Tensors come in pairs named after the base tensor they adapt:
// "<name>.lora_a" and "<name>.lora_b"; "*_norm.weight" entries are skipped
// (llama.cpp ignores them too); any other name is an error.
//
// Shapes in ggml's ne order, for a base weight W of ne {in, out}: A is
// {in, rank}, B is {rank, out}; llama.cpp checks W.ne[0]==A.ne[0],
// W.ne[1]==B.ne[1], A.ne[1]==B.ne[0]. The token embedding W {n_embd,
// n_vocab} is "flipped": A is {rank, n_vocab} and B {rank, n_embd} (its
// delta for token id is B·A[:, id]). A mixture's expert stack W {in, out,
// experts} (ffn_gate_exps, ffn_up_exps, ffn_down_exps) takes 3-D pairs, A
// {in, rank, experts} and B {rank, out, experts}: expert e's pair is
// their e-th slab (llama.cpp's build_lora_mm_id).
//
// # Application
//
// dst = x·Wᵀ becomes dst + s·B·(A·x) with s = alpha/rank × the user's
// scale (the user's alone when alpha is 0), rank = B.ne[0], applied after
// the base product and before its bias, as llama.cpp's build_lora_mm.
// The token embedding gets s·B·A[:, id] added before any embedding scale
// (build_inp_embd). An expert's delta is added to the rows routed to it
// (per selected expert per row, before the expert's bias); a step where
// an adapter adapts the experts routes on the host (the grouped path),
// since its deltas are grouped by expert and adapter there. A tied output matrix takes no adapter (llama.cpp binds
// it as a tensor of its own; an adapter for token_embd there would not
// even fit its shape).
//
// # Memory
//
// A and B are copied to the backend (runtime/cpu keeps A and Bᵀ) as F16
// when the file has them so (half the memory and bandwidth; the products
// round their activations to f16 as ggml's F16 products do), else as F32
// (from F32 or BF16), so the adapter file is closed once bound. An adapter's memory is its model's backend's until the
// model closes.
package lora
