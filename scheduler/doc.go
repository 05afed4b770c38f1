// Package scheduler is Hearth's continuous-batching policy and the
// metadata of its paged KV cache. It imports nothing of Hearth's: the
// engine (runtime/engine) consumes its StepPlan and answers with sampled
// tokens, and backends hold the K/V storage indexed by the block ids it
// hands out. It knows nothing of tensors.
//
// # KV cache (BlockAllocator)
//
// One pool of NumBlocks blocks of BlockSize token positions, sized by the
// memory budget: nothing is reserved per sequence up front. A sequence's
// block table maps position p to block table[p/B], slot p%B.
//
// Invariants (BlockAllocator.Check verifies them):
//   - every block is exactly one of free (ref 0, on the free stack), cached
//     (ref 0, hashed, in the prefix index and on the LRU list) or used
//     (ref > 0);
//   - a block's ref count equals the number of live tables holding it, and
//     no table holds a block twice;
//   - only full, hashed prefix blocks are shared (ref > 1), and they are
//     only read: a sequence writes KV only at positions it has not
//     computed yet, which lie in blocks it alone owns;
//   - a block enters the prefix index only after its KV is written (Commit,
//     from Complete), under BlockHash(parent hash, its B tokens); a hit is
//     used only when the block's stored tokens equal the request's and its
//     recorded parent is the block matched before it (same id, same
//     generation), so a hash collision is a miss, never wrong KV;
//   - cached blocks are evicted least recently used first, and only when no
//     free block remains; a released sequence's tail is evicted before its
//     prefix.
//
// Plan and apply are apart: PlanNew, PlanGrow, Lookup, Need and Available
// have no side effects; Apply, Release and Commit are the only mutators.
//
// Hybrid models (recurrent layers) resume a cached prefix only with the
// recurrent state at its end. The allocator keeps the books of a bounded
// pool of state snapshot slots (SetSnapshotSlots): each is free, reserved
// by a step in flight, or attached to one indexed block (the state after
// that block's last position, the prefix being the block's chain); a
// block that leaves the index frees its snapshot, and a new snapshot
// evicts the least recently used one (Check verifies all of it).
//
// # Scheduling (Scheduler)
//
// A Scheduler is plain state with synchronous methods, which is how the
// tests drive it with a fake engine and a fake clock: Submit, then Step
// (a StepPlan), the engine runs the plan, Complete (one sampled token per
// output row) or Fail, then Events (tokens and ends). Each Step builds one
// batch under a token budget: decode tokens of running sequences first,
// then prefill chunks of sequences still prefilling, then admissions of
// waiting sequences; see Step for the full policy. The invariants
// (Scheduler.Check):
//   - the waiting and running queues are disjoint and ordered by SeqID,
//     which is submission order; every live sequence is in exactly one;
//   - a running sequence holds a live table covering its computed tokens,
//     and all its tokens while it prefills; a waiting one holds no blocks;
//   - 0 <= computed < len(tokens): the last token (the prompt's last, or
//     the last sampled) is always still to feed, and its logits sample the
//     next one;
//   - prompt + generated <= num_ctx, and num_ctx never exceeds the pool,
//     so a sequence alone can always finish;
//   - at most one plan is in flight; a sequence ended while its plan is in
//     flight keeps its blocks until the plan comes back (Complete or Fail),
//     which is before the next Step: cancellation frees blocks within one
//     step.
//
// Hybrid models (Config.StateSlots) hold a recurrent state slot per
// running sequence; with Config.StateSnapshots a prefix hit is shortened
// to the longest cached prefix whose last block has a snapshot, restored
// into the sequence's slot (SeqStep.Restore), and a prefill chunk ends at
// the block boundaries where a snapshot is to be taken (SeqStep.Snapshot:
// where the sequence leaves the longest cached prefix, and its prompt's
// last boundary). The scheduler only decides; the engine copies states.
//
// Fairness: admission is strictly first come first served (a waiting
// request is never bypassed, so none starves); preemption takes the newest
// running sequence, which recomputes later from the front of the queue
// (its order by SeqID), with its generated tokens appended to its prompt,
// reusing whatever of its blocks stayed cached.
//
// # Serving (Loop)
//
// Loop is the concurrent front: Run is the step loop over an Engine (the
// runtime's batched forward pass and sampler), Submit returns a Stream of
// tokens, and a Stream's Recv cancels its sequence when the client's
// context ends. One mutex guards the scheduler; the step loop holds it
// only between engine runs, so Submit (and ErrQueueFull, for a 503) and
// Metrics never wait for a step, and the engine is called from one
// goroutine only.
package scheduler
