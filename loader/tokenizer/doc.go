// Package tokenizer converts text to token ids and back exactly as llama.cpp
// does (llama_tokenize, llama_token_to_piece, llama_detokenize), from the
// tokenizer metadata of a GGUF file.
//
// Models (tokenizer.ggml.model):
//   - "llama" (SPM): SentencePiece BPE. Spaces become U+2581, a space is put in
//     front of the text (add_space_prefix) and after every special token, the
//     adjacent pair whose concatenation is the highest-scoring token is merged
//     until none is left, and characters that never became a token are spelled
//     as <0xXX> byte tokens. When no token joins a character to a following
//     U+2581 (Llama's and Phi-3's vocabularies), each word is merged on its
//     own, which gives the same tokens with much smaller queues.
//   - "gpt2" (BPE): byte-level BPE. A pre-tokenizer chosen by
//     tokenizer.ggml.pre splits the text into words with llama.cpp's regexes;
//     each word is written in GPT-2's byte-to-unicode alphabet and merged by
//     merge rank (lowest first). With ignore_merges (Llama 3) a word that is a
//     token is taken whole. When every merge joins two tokens into a token
//     (true of real vocabularies) merges are looked up by token ids rather
//     than by text; a test checks the two agree.
//   - "bert" (WPM): WordPiece, greedy longest match after BERT's
//     normalization (lowercase, accents stripped, punctuation split).
//   - "gemma4": BPE as for "gpt2" but SentencePiece-style, whatever
//     tokenizer.ggml.pre says: spaces become U+2581, the text is split only
//     into runs of newlines and runs of anything else, words are merged by
//     merge rank as UTF-8 characters (no GPT-2 byte alphabet), a run of
//     newlines that is itself a token is taken whole, and what never became
//     a token is spelled as <0xXX> byte tokens. add_bos is always true
//     (llama.cpp overrides the metadata). Pieces turn U+2581 back into
//     spaces and byte tokens into their byte. The BPE pre-tokenizers
//     "granite-embed-multi-311m" (the same) and "sarvam-moe" (the same
//     without the newline rule, forced BOS and space clean-up) share this
//     path; only Gemma 4 has test vectors.
//
// Before any of these, special tokens are split out of the text, longest
// first: user-defined tokens always, control tokens only with parseSpecial.
//
// Pre-tokenizer regexes: Go's regexp has no look-ahead, so they run on
// github.com/dlclark/regexp2, on llama.cpp's "collapsed" text (every non-ASCII
// code point replaced by a marker of its Unicode category), which makes the
// result independent of regexp2's own \s and \p{..} tables. The two regexes
// that matter most (GPT-2's and Llama 3's) are also written out by hand, as
// llama.cpp does; tests check the two against each other. Unicode categories
// come from Go's unicode tables (Unicode 15.0), llama.cpp's from its own
// tables: the two can differ only for code points assigned since.
//
// Invariants:
//   - A Tokenizer is immutable after New; all methods are safe for concurrent
//     use except on a StreamDecoder, which belongs to one sequence.
//   - Encode never fails: any byte string tokenizes (invalid UTF-8 as
//     llama.cpp treats it), and every returned id is in [0, NumTokens()).
//   - Piece returns llama_token_to_piece(special=true); Decode returns
//     llama_detokenize(remove_special=false, unparse_special=false), including
//     SPM's removal of the leading space and BPE's clean-up of " ." etc.
//
// Only gguf.go depends on the GGUF reader: New takes a plain Vocab, so tests
// and tools can build tokenizers without a file.
package tokenizer
