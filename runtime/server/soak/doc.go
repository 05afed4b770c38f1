// Package soak holds the server's reliability tests (no code of its own):
// many streamed requests through the continuous-batching runner over the
// shared stories260K model, with clients that hang up mid-stream and a
// queue small enough to refuse some, checking that every request ends,
// that the KV cache stays within its pool, and that goroutines, heap and
// KV blocks return to their idle level afterwards.
//
// TestSoak sends 1,000 requests at concurrency 64 (200 under -short or
// the race detector, 1,000 again with HEARTH_SOAK=1); TestBurst sends 200
// at once. Both are bounded in requests and time.
package soak
