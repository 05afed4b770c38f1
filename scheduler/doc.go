// Package scheduler will hold the continuous-batching policy (queue,
// admission by KV blocks, chunked prefill, preemption, cancellation) and the
// paged KV block allocator. It imports nothing of Hearth's and declares the
// small interfaces it consumes, so it can be tested with a fake engine and
// virtual time.
//
// Not built yet: the serving issue builds it. Today runtime/engine runs one
// sequence over a contiguous cache.
package scheduler
