// Package gguf reads and writes GGUF files, the container llama.cpp uses for
// model weights, tokenizer data and metadata.
//
// Layout of a file (all integers little-endian):
//
//	magic "GGUF" | version u32 (2 or 3) | n_tensors u64 | n_kv u64
//	n_kv × { key string | value type u32 | value }
//	n_tensors × { name string | n_dims u32 | dims u64[n_dims] | type u32 | offset u64 }
//	padding to general.alignment (default 32)
//	tensor data; each tensor at data_start + offset, offset a multiple of the alignment
//
// A string is a u64 length followed by that many bytes (no terminator). An
// array is an element type u32, a u64 count and the elements; arrays may nest.
//
// Invariants the reader guarantees before it returns a File:
//   - every length and count was checked against the bytes left in the file
//     before anything was allocated for it, so a hostile header cannot make the
//     reader allocate more than a small multiple of the file's size;
//   - every tensor has at most 4 dimensions, a known ggml type, an element
//     count that does not overflow, a row length that is a whole number of
//     blocks, and data that lies inside the file without overlapping another
//     tensor's data;
//   - every error names the field and the byte offset where the file went
//     wrong, and wraps ErrInvalid.
//
// Tensor data is served from a read-only memory map of the file: Data returns
// a slice into the map, valid until Close. The map is never written.
package gguf
