// Package synth writes synthetic models: GGUF files with the shape of a
// real model (architecture, layer count, widths, heads, experts, sliding
// windows, vocabulary size), random weights and a generated vocabulary,
// quantized with Hearth's own quantizers. They exist so that speed can be
// measured on real shapes with no download (`hearth gen`, `hearth bench
// --shape`), and so that llama.cpp can be measured on the very same file.
//
// Architectures: llama (dense, or Mixtral-style experts), qwen3, qwen3moe,
// gemma3 and gpt-oss, each with the tensors and keys llama.cpp's loader
// for it creates (src/models/<arch>.cpp): q/k norms, Gemma's post-norms,
// gpt-oss's biases and sinks, stacked experts ffn_{gate,up,down}_exps of
// ggml shape [n_embd, n_ff_exp, n_expert] (down: [n_ff_exp, n_embd,
// n_expert]) with the router ffn_gate_inp.
//
// Invariants of a written file:
//   - it is a GGUF v3 file that Hearth's loader and llama.cpp both load,
//     with llama.cpp's metadata keys and tensor names, a SentencePiece
//     ("llama") vocabulary of exactly Shape.Vocab tokens (<unk>, <s>, </s>,
//     the 256 byte tokens, then unique generated pieces; the real models'
//     BPE vocabularies are not reproduced, only their sizes) and
//     general.file_type set as llama-quantize sets it;
//   - tensor types follow llama-quantize's recipe for the file type without
//     an importance matrix (Plan lists them), in llama-quantize's tensor
//     order; norms, routers, biases and sinks are F32; the expert stacks
//     follow the ffn_* rules, or, in MXFP4_MOE files, are MXFP4 with every
//     other quantized tensor Q8_0;
//   - weights are deterministic: the value of every element depends only on
//     the seed, the tensor name and its position, never on the thread count,
//     so two runs write byte-identical files;
//   - matrices are drawn from N(0, 1/n_in) (n_in the row length, ggml's
//     ne[0]), the output matrix from N(0, 16/n_in), norms are 1, biases
//     N(0, 0.1²) and attention sinks N(0, 1), so activations keep unit
//     scale through the layers and logits have a standard deviation near
//     4, as a trained model's: finite and peaked;
//   - the file is streamed: rows are generated and quantized in parallel a
//     chunk at a time and written in order, so memory stays at a few
//     megabytes per thread whatever the model size; it is written to a
//     temporary file renamed into place only when complete.
package synth
