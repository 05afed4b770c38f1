// Package synth writes synthetic models: GGUF files with the shape of a
// real model (layer count, widths, heads, vocabulary size), random weights
// and a generated vocabulary, quantized with Hearth's own quantizers. They
// exist so that speed can be measured on real shapes with no download
// (`hearth gen`, `hearth bench --shape`), and so that llama.cpp can be
// measured on the very same file.
//
// Invariants of a written file:
//   - it is a llama-architecture GGUF v3 file that Hearth's loader and
//     llama.cpp both load, with llama.cpp's metadata keys, a SentencePiece
//     ("llama") vocabulary of exactly Shape.Vocab tokens (<unk>, <s>, </s>,
//     the 256 byte tokens, then unique generated pieces) and
//     general.file_type set as llama-quantize sets it;
//   - tensor types follow llama-quantize's recipe for the file type without
//     an importance matrix (Plan lists them), in llama-quantize's tensor
//     order; norms are F32;
//   - weights are deterministic: the value of every element depends only on
//     the seed, the tensor name and its position, never on the thread count,
//     so two runs write byte-identical files;
//   - matrices are drawn from N(0, 1/n_in) (n_in the row length, ggml's
//     ne[0]), the output matrix from N(0, 16/n_in), norms are 1, so
//     activations keep unit scale through the layers and logits have a
//     standard deviation near 4, as a trained model's: finite and peaked;
//   - the file is streamed: rows are generated and quantized in parallel a
//     chunk at a time and written in order, so memory stays at a few
//     megabytes per thread whatever the model size; it is written to a
//     temporary file renamed into place only when complete.
package synth
