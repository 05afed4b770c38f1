package scheduler

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"testing/synctest"
	"time"
)

func TestConfigDefaults(t *testing.T) {
	s, err := New(Config{NumBlocks: 1000})
	if err != nil {
		t.Fatal(err)
	}
	c := s.Config()
	if c.BlockSize != 16 || c.MaxBatchTokens != 512 || c.MaxRunning != 64 || c.MaxQueue != 256 || c.DefaultNumCtx != 4096 || c.WatermarkBlocks != 10 {
		t.Errorf("defaults: %+v", c)
	}
	for _, bad := range []Config{
		{},
		{NumBlocks: 10, MaxBatchTokens: 8, MaxRunning: 9},
		{NumBlocks: 10, BlockSize: -1},
		{NumBlocks: 10, QueueTimeout: -time.Second},
	} {
		if _, err := New(bad); err == nil {
			t.Errorf("New(%+v) accepted", bad)
		}
	}
}

func TestSingleSequence(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 16, BlockSize: 16})
	q := h.submit(Request{Prompt: seqTokens(1, 40), NumPredict: 5})
	if n := h.run(100); n != 5 {
		t.Errorf("%d steps, want 5 (one prefill, four decodes)", n)
	}
	ev := h.end(q)
	if ev.Reason != FinishLength || ev.Err != nil || len(h.tokens[q.id]) != 5 {
		t.Errorf("end %+v after %d tokens", ev, len(h.tokens[q.id]))
	}
	if !slices.Equal(h.tokens[q.id], q.Generated()) {
		t.Errorf("events %v, generated %v", h.tokens[q.id], q.Generated())
	}
	if h.e.prefillRows != 40 || h.e.decodeRows != 4 {
		t.Errorf("fed %d prefill, %d decode rows", h.e.prefillRows, h.e.decodeRows)
	}
	h.idle()
	m := h.s.Metrics()
	// 40 prompt + 4 fed generated = 44 positions: two full blocks cached.
	if m.BlocksCached != 2 || m.BlocksUsed != 0 || m.Finished != 1 || m.PrefillTokens != 40 || m.DecodeTokens != 4 {
		t.Errorf("metrics %+v", m)
	}
}

func TestChunkedPrefill(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 16, BlockSize: 4, MaxBatchTokens: 16, MaxRunning: 4})
	q := h.submit(Request{Prompt: seqTokens(1, 40), NumPredict: 2})
	chunks := h.runSizes()
	if !slices.Equal(chunks, []int{16, 16, 8, 1}) {
		t.Errorf("chunks %v, want [16 16 8 1]", chunks)
	}
	if ev := h.end(q); ev.Reason != FinishLength || len(h.tokens[q.id]) != 2 {
		t.Errorf("end %+v, %d tokens", ev, len(h.tokens[q.id]))
	}
}

// Decodes go first; what is left of the budget goes to prefill chunks.
func TestDecodesBeforePrefill(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 64, BlockSize: 4, MaxBatchTokens: 8, MaxRunning: 4})
	a := h.submit(Request{Prompt: seqTokens(1, 6)})
	b := h.submit(Request{Prompt: seqTokens(100, 6)})
	h.step() // a: 6 prefill, b: 2 of 6
	c := h.submit(Request{Prompt: seqTokens(200, 30)})
	p := h.s.Step()
	got := map[SeqID]int{}
	for _, ss := range p.Seqs {
		got[ss.ID] = ss.N
	}
	// a decodes (1), b finishes its prompt (4), c is admitted with the rest (3).
	if got[a.id] != 1 || got[b.id] != 4 || got[c.id] != 3 || p.Seqs[0].ID != a.id {
		t.Errorf("step rows %v, order %v", got, p.Seqs)
	}
	res, err := h.e.run(p)
	if err != nil {
		t.Fatal(err)
	}
	h.s.Complete(p, res)
	h.check()
}

// While a sequence decodes, a long prompt arrives in PrefillChunk pieces;
// alone, it takes whole batches.
func TestPrefillChunkWhileDecoding(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 64, BlockSize: 4, MaxBatchTokens: 16, PrefillChunk: 3, MaxRunning: 4})
	a := h.submit(Request{Prompt: seqTokens(1, 4), NumPredict: 6})
	h.step() // a's prompt
	b := h.submit(Request{Prompt: seqTokens(100, 40), NumPredict: 1})
	sizes := h.runSizes()
	// a decodes 5 more times with 3 of b's tokens each (5 steps, 15 of 40),
	// then b alone takes 16 and the last 9.
	if want := []int{4, 4, 4, 4, 4, 16, 9}; !slices.Equal(sizes, want) {
		t.Errorf("step sizes %v, want %v", sizes, want)
	}
	if ev := h.end(a); ev.Reason != FinishLength {
		t.Errorf("a: %+v", ev)
	}
	if ev := h.end(b); ev.Reason != FinishLength {
		t.Errorf("b: %+v", ev)
	}
	if _, err := New(Config{NumBlocks: 4, PrefillChunk: -1}); err == nil {
		t.Error("PrefillChunk -1 accepted")
	}
}

// A result with Err ends that sequence alone with FinishError.
func TestResultErr(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 16, BlockSize: 4})
	a := h.submit(Request{Prompt: seqTokens(1, 5), NumPredict: 3})
	b := h.submit(Request{Prompt: seqTokens(50, 5), NumPredict: 3})
	p := h.s.Step()
	res, err := h.e.run(p)
	if err != nil {
		t.Fatal(err)
	}
	bad := errors.New("logits not finite")
	for i := range p.Seqs {
		if p.Seqs[i].ID == a.id {
			res[p.Seqs[i].Output] = Result{Token: -1, Err: bad}
		}
	}
	h.s.Complete(p, res)
	h.check()
	h.drain()
	h.run(100)
	if ev := h.end(a); ev.Reason != FinishError || !errors.Is(ev.Err, ErrStepFailed) || !errors.Is(ev.Err, bad) {
		t.Errorf("a: %+v", ev)
	}
	if ev := h.end(b); ev.Reason != FinishLength || len(h.tokens[b.id]) != 3 {
		t.Errorf("b: %+v after %d tokens", ev, len(h.tokens[b.id]))
	}
	h.idle()
}

func TestSubmitLimits(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 4, BlockSize: 8, MaxQueue: 2, MaxRunning: 1, MaxBatchTokens: 4, MaxNumCtx: 30})
	for _, c := range []struct {
		r    Request
		err  error
		text string
	}{
		{Request{}, ErrEmptyPrompt, ""},
		{Request{Prompt: seqTokens(0, 10), NumCtx: 10}, ErrPromptTooLong, "num_ctx is 10"},
		{Request{Prompt: seqTokens(0, 30), NumCtx: 100}, ErrPromptTooLong, "num_ctx is 30"}, // capped by MaxNumCtx
	} {
		if _, err := h.s.Submit(c.r); !errors.Is(err, c.err) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("Submit(%d tokens, num_ctx %d): %v, want %v %q", len(c.r.Prompt), c.r.NumCtx, err, c.err, c.text)
		}
	}
	h2 := newHarness(t, Config{NumBlocks: 4, BlockSize: 8, MaxNumCtx: 1000})
	if _, err := h2.s.Submit(Request{Prompt: seqTokens(0, 32), NumCtx: 100}); !errors.Is(err, ErrPromptTooLong) || !strings.Contains(err.Error(), "pool holds 32") {
		t.Errorf("prompt longer than the pool: %v", err)
	}
	// num_ctx above the pool is capped at the pool: the sequence stops there.
	q := h2.submit(Request{Prompt: seqTokens(0, 20), NumCtx: 100})
	if q.NumCtx() != 32 {
		t.Errorf("num_ctx %d, want 32 (the pool)", q.NumCtx())
	}
	h2.run(100)
	if ev := h2.end(q); ev.Reason != FinishLength || len(q.tokens) != 32 {
		t.Errorf("end %+v at %d tokens", ev, len(q.tokens))
	}
	h2.idle()

	// Huge limits are limits, not allocations.
	big := h2.submit(Request{Prompt: seqTokens(0, 5), NumCtx: 1 << 62, NumPredict: 1<<63 - 1})
	if big.NumCtx() != 32 || cap(big.tokens) > 32 {
		t.Errorf("num_ctx %d, token buffer %d", big.NumCtx(), cap(big.tokens))
	}
	h2.s.Cancel(big.id)

	// Queue full.
	h.submit(Request{Prompt: seqTokens(0, 5)})
	h.submit(Request{Prompt: seqTokens(0, 5)})
	if _, err := h.s.Submit(Request{Prompt: seqTokens(0, 5)}); !errors.Is(err, ErrQueueFull) {
		t.Errorf("third submit: %v, want ErrQueueFull", err)
	}
	if h.s.Metrics().Rejected != 1 || h.s.Metrics().Waiting != 2 {
		t.Errorf("metrics %+v", h.s.Metrics())
	}
	h.step() // one admitted: room again
	h.submit(Request{Prompt: seqTokens(0, 5)})
}

func TestNumCtxAndNumPredict(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 32, BlockSize: 4})
	a := h.submit(Request{Prompt: seqTokens(1, 10), NumCtx: 14})
	b := h.submit(Request{Prompt: seqTokens(50, 10), NumPredict: 3})
	c := h.submit(Request{Prompt: seqTokens(90, 10), NumPredict: 1})
	h.e.stop = func(id SeqID, gen int) bool { return id == 4 && gen == 2 }
	d := h.submit(Request{Prompt: seqTokens(90, 10)})
	h.run(100)
	for _, w := range []struct {
		q    *Seq
		n    int
		why  FinishReason
		name string
	}{{a, 4, FinishLength, "num_ctx"}, {b, 3, FinishLength, "num_predict"}, {c, 1, FinishLength, "num_predict 1"}, {d, 2, FinishStop, "stop token"}} {
		if ev := h.end(w.q); ev.Reason != w.why || len(h.tokens[w.q.id]) != w.n || ev.Token != h.tokens[w.q.id][w.n-1] {
			t.Errorf("%s: end %+v after %d tokens, want %s after %d, the last on the final event", w.name, ev, len(h.tokens[w.q.id]), w.why, w.n)
		}
	}
	h.idle()
}

func TestAdmissionWaitsForBlocks(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 7, BlockSize: 4, WatermarkBlocks: -1})
	a := h.submit(Request{Prompt: seqTokens(1, 20), NumPredict: 4}) // 5 blocks, 6 at the end
	b := h.submit(Request{Prompt: seqTokens(100, 12)})              // 3 blocks
	h.step()
	if a.state != stateRunning || b.state != stateWaiting {
		t.Fatalf("a %d b %d: b must wait for blocks", a.state, b.state)
	}
	if m := h.s.Metrics(); m.Running != 1 || m.Waiting != 1 || m.BlocksUsed != 5 {
		t.Errorf("metrics %+v", m)
	}
	h.step() // a decodes into a new block: 6 used, 1 available
	if b.state != stateWaiting {
		t.Fatal("b admitted without room")
	}
	for a.state != stateDone {
		h.step()
	}
	h.step()
	if b.state != stateRunning {
		t.Fatalf("b not admitted after a ended: %d", b.state)
	}
	h.s.Cancel(b.id)
	h.run(10)
	h.idle()
}

func TestPreemptionRecomputes(t *testing.T) {
	// A reference run with room for everything, then the same requests in
	// a pool that runs dry: preemption must not change any output.
	reqs := []Request{
		{Prompt: seqTokens(1, 10), NumPredict: 20},
		{Prompt: seqTokens(100, 7), NumPredict: 20},
		{Prompt: seqTokens(200, 9), NumPredict: 20},
	}
	want := map[SeqID][]int32{}
	ref := newHarness(t, Config{NumBlocks: 64, BlockSize: 4})
	for _, r := range reqs {
		ref.submit(r)
	}
	ref.run(1000)
	for id, toks := range ref.tokens {
		want[id] = toks
	}

	h := newHarness(t, Config{NumBlocks: 16, BlockSize: 4, WatermarkBlocks: -1})
	var qs []*Seq
	for _, r := range reqs {
		qs = append(qs, h.submit(r))
	}
	preemptedAt := -1
	for i := 0; h.step(); i++ {
		if preemptedAt < 0 && h.s.Metrics().Preemptions > 0 {
			preemptedAt = i
			// The newest running sequence went back to the front of the
			// queue, with its generated tokens to recompute.
			if len(h.s.waiting) == 0 || h.s.waiting[0] != qs[2] || qs[2].computed != 0 || len(qs[2].Generated()) == 0 {
				t.Errorf("after preemption: waiting %v, seq 3 computed %d, generated %d", h.s.waiting, qs[2].computed, len(qs[2].Generated()))
			}
		}
	}
	if preemptedAt < 0 {
		t.Fatal("the pool never ran dry")
	}
	for _, q := range qs {
		if got := h.tokens[q.id]; !slices.Equal(got, want[q.id]) {
			t.Errorf("%v (preempted %d times): %v, want %v", q, q.Preemptions(), got, want[q.id])
		}
		if h.end(q).Reason != FinishLength {
			t.Errorf("%v: %+v", q, h.end(q))
		}
	}
	if qs[0].Preemptions() != 0 {
		t.Errorf("the oldest sequence was preempted %d times", qs[0].Preemptions())
	}
	h.idle()
}

func TestCancel(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 32, BlockSize: 4, MaxBatchTokens: 8, MaxRunning: 4})
	prefilling := h.submit(Request{Prompt: seqTokens(1, 30)})
	h.step()
	if prefilling.computed != 8 {
		t.Fatalf("computed %d", prefilling.computed)
	}
	if !h.s.Cancel(prefilling.id) || h.s.Cancel(prefilling.id) {
		t.Error("Cancel's report")
	}
	h.check()
	h.drain()
	if ev := h.end(prefilling); ev.Reason != FinishCancel || !errors.Is(ev.Err, ErrCancelled) {
		t.Errorf("end %+v", ev)
	}
	h.idle()

	decoding := h.submit(Request{Prompt: seqTokens(1, 5)})
	h.step()
	h.step()
	h.s.Cancel(decoding.id)
	h.drain()
	h.idle()

	// Cancel while the plan is in flight: blocks come back with the plan,
	// and the sampled token is dropped.
	inflight := h.submit(Request{Prompt: seqTokens(1, 5)})
	other := h.submit(Request{Prompt: seqTokens(40, 3), NumPredict: 2})
	p := h.s.Step()
	res, err := h.e.run(p)
	if err != nil {
		t.Fatal(err)
	}
	h.s.Cancel(inflight.id)
	h.check()
	if h.s.Allocator().Used() == 0 {
		t.Error("blocks of a plan in flight freed early")
	}
	h.s.Complete(p, res)
	h.check()
	h.drain()
	if len(h.tokens[inflight.id]) != 0 || len(h.tokens[other.id]) != 1 {
		t.Errorf("tokens after cancel in flight: %v, other %v", h.tokens[inflight.id], h.tokens[other.id])
	}
	h.run(10)
	h.idle()

	// A waiting request.
	h2 := newHarness(t, Config{NumBlocks: 4, BlockSize: 4, WatermarkBlocks: -1})
	big := h2.submit(Request{Prompt: seqTokens(1, 14)})
	w := h2.submit(Request{Prompt: seqTokens(1, 5)})
	h2.step()
	h2.s.Cancel(w.id)
	h2.s.Cancel(big.id)
	h2.drain()
	h2.idle()
	if m := h2.s.Metrics(); m.Cancelled != 2 || m.Finished != 2 {
		t.Errorf("metrics %+v", m)
	}
}

func TestFinishStopString(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 32, BlockSize: 4})
	q := h.submit(Request{Prompt: seqTokens(1, 5)})
	h.step()
	h.step()
	if !h.s.Finish(q.id, FinishStop) {
		t.Fatal("Finish")
	}
	h.drain()
	if ev := h.end(q); ev.Reason != FinishStop || ev.Err != nil || len(h.tokens[q.id]) != 2 {
		t.Errorf("end %+v, %d tokens", ev, len(h.tokens[q.id]))
	}
	h.idle()
}

func TestQueueTimeout(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 4, BlockSize: 4, QueueTimeout: 2 * time.Second, WatermarkBlocks: -1})
	long := h.submit(Request{Prompt: seqTokens(1, 12), NumPredict: 4})
	late := h.submit(Request{Prompt: seqTokens(100, 8)})
	patient := h.submit(Request{Prompt: seqTokens(200, 8), QueueTimeout: -1})
	h.step()
	h.clock.Advance(time.Second)
	h.step()
	if late.state != stateWaiting {
		t.Fatal("late admitted")
	}
	h.clock.Advance(time.Second)
	h.step()
	ev := h.end(late)
	if ev.Reason != FinishTimeout || !errors.Is(ev.Err, ErrQueueTimeout) {
		t.Errorf("late: %+v", ev)
	}
	h.run(100)
	if h.end(long).Reason != FinishLength || h.end(patient).Reason != FinishLength {
		t.Errorf("long %+v, patient %+v", h.end(long), h.end(patient))
	}
	if h.s.Metrics().TimedOut != 1 {
		t.Errorf("metrics %+v", h.s.Metrics())
	}
	h.idle()
}

// The same, in a synctest bubble with the system clock: time is virtual.
func TestQueueTimeoutSynctest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, err := New(Config{NumBlocks: 4, BlockSize: 4, QueueTimeout: time.Minute, WatermarkBlocks: -1})
		if err != nil {
			t.Fatal(err)
		}
		e := newFakeEngine(s)
		s.Submit(Request{Prompt: seqTokens(1, 12), NumCtx: 16})
		w, _ := s.Submit(Request{Prompt: seqTokens(100, 8)})
		for range 3 {
			p := s.Step()
			res, err := e.run(p)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(25 * time.Second) // a slow step
			s.Complete(p, res)
		}
		s.Step()
		if !w.Done() || !errors.Is(w.Err(), ErrQueueTimeout) {
			t.Errorf("waiting request after 75s: done %v, %v", w.Done(), w.Err())
		}
	})
}

func TestPrefixCacheSystemPrompt(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 64, BlockSize: 16})
	system := seqTokens(1000, 64) // four blocks
	a := h.submit(Request{Prompt: cat(system, seqTokens(1, 10)), NumPredict: 3})
	h.run(100)
	fedA := h.e.fed[a.id]
	b := h.submit(Request{Prompt: cat(system, seqTokens(500, 10)), NumPredict: 3})
	h.run(100)
	if fedA != 74+2 || h.e.fed[b.id] != 10+2 {
		t.Errorf("fed a %d (want 76), b %d (want 12: the non-shared tail and two decodes)", fedA, h.e.fed[b.id])
	}
	m := h.s.Metrics()
	if m.PrefixQueries != 2 || m.PrefixHits != 1 || m.PrefixHitTokens != 64 || m.PrefixQueryTokens != 148 {
		t.Errorf("metrics %+v", m)
	}
	if r := m.PrefixHitRate(); r < 0.43 || r > 0.44 {
		t.Errorf("hit rate %v", r)
	}

	// The same prompt again: all cached but the last block, recomputed
	// for its logits.
	c := h.submit(Request{Prompt: system, NumPredict: 1})
	h.run(100)
	if h.e.fed[c.id] != 16 {
		t.Errorf("repeated prompt fed %d tokens, want 16 (the last block)", h.e.fed[c.id])
	}

	// Concurrent sharing: a long-running sequence holds the prefix while a
	// second one shares it read-only.
	d := h.submit(Request{Prompt: cat(system, seqTokens(7, 3)), NumPredict: 5})
	h.step()
	e := h.submit(Request{Prompt: cat(system, seqTokens(8, 3)), NumPredict: 5})
	h.step()
	if h.e.fed[e.id] != 3 {
		t.Errorf("second sharer fed %d", h.e.fed[e.id])
	}
	for i := range 4 {
		if d.table.blocks[i] != e.table.blocks[i] || h.s.alloc.meta[d.table.blocks[i]].ref != 2 {
			t.Errorf("block %d: %d vs %d, ref %d", i, d.table.blocks[i], e.table.blocks[i], h.s.alloc.meta[d.table.blocks[i]].ref)
		}
	}
	h.run(100)
	h.idle()
}

// Two identical prompts admitted in the same step both prefill (neither
// is indexed yet); the second's blocks stay private duplicates, and later
// requests still find the first's chain and continue along it.
func TestPrefixDuplicates(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 64, BlockSize: 4})
	prompt := seqTokens(1, 17)
	a := h.submit(Request{Prompt: prompt, NumPredict: 8})
	b := h.submit(Request{Prompt: prompt, NumPredict: 8})
	h.run(100)
	if !slices.Equal(h.tokens[a.id], h.tokens[b.id]) {
		t.Errorf("same prompt, different outputs: %v %v", h.tokens[a.id], h.tokens[b.id])
	}
	// a's chain covers prompt + 7 fed tokens = 24 positions = 6 blocks.
	c := h.submit(Request{Prompt: cat(prompt, h.tokens[a.id][:7]), NumPredict: 1})
	h.run(100)
	if h.e.fed[c.id] != 4 {
		t.Errorf("continuation fed %d tokens, want 4", h.e.fed[c.id])
	}
	h.idle()
}

func TestLRUReuse(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 8, BlockSize: 4, WatermarkBlocks: -1})
	// Three prompts of two full blocks + one token each; each run leaves
	// two (prompt) or more blocks cached.
	p1, p2 := seqTokens(100, 9), seqTokens(200, 9)
	h.submit(Request{Prompt: p1, NumPredict: 1})
	h.run(10)
	h.submit(Request{Prompt: p2, NumPredict: 1})
	h.run(10)
	if h.s.Metrics().BlocksCached != 4 {
		t.Fatalf("cached %d", h.s.Metrics().BlocksCached)
	}
	// Touch p1 again: it becomes the most recently used.
	q := h.submit(Request{Prompt: p1, NumPredict: 1})
	h.run(10)
	if h.e.fed[q.id] != 1 {
		t.Errorf("p1 again fed %d", h.e.fed[q.id])
	}
	// A request needing 6 blocks: 4 free, so 2 cached blocks are evicted,
	// p2's (least recently used), tail first.
	big := h.submit(Request{Prompt: seqTokens(500, 23), NumPredict: 1})
	h.step()
	if st := h.s.alloc.Stats(); st.Evictions != 2 {
		t.Errorf("evictions %d", st.Evictions)
	}
	h.run(10)
	_ = big
	q1 := h.submit(Request{Prompt: p1, NumPredict: 1})
	h.run(10)
	q2 := h.submit(Request{Prompt: p2, NumPredict: 1})
	h.run(10)
	if h.e.fed[q1.id] != 1 || h.e.fed[q2.id] != 9 {
		t.Errorf("after eviction: p1 fed %d (want 1), p2 fed %d (want 9)", h.e.fed[q1.id], h.e.fed[q2.id])
	}
	h.idle()
}

// A long request at the head of the queue is never bypassed by later
// short ones that would fit.
func TestNoStarvation(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 16, BlockSize: 4, MaxRunning: 8, MaxBatchTokens: 64, WatermarkBlocks: -1})
	for i := range 3 {
		h.submit(Request{Prompt: seqTokens(10*i, 8), NumPredict: 6})
	}
	h.step()
	long := h.submit(Request{Prompt: seqTokens(1000, 40), NumPredict: 2}) // 10 blocks: waits
	admittedAfter := 0
	for i := 0; long.state == stateWaiting && i < 100; i++ {
		// Short requests keep arriving; each would fit alone.
		q := h.submit(Request{Prompt: seqTokens(100+i, 3), NumPredict: 2})
		h.step()
		if q.state != stateWaiting && long.state == stateWaiting {
			admittedAfter++
		}
	}
	if long.state == stateWaiting {
		t.Fatal("the long request starved")
	}
	if admittedAfter != 0 {
		t.Errorf("%d later requests bypassed the waiting long one", admittedAfter)
	}
	h.run(1000)
	if h.end(long).Reason != FinishLength {
		t.Errorf("long: %+v", h.end(long))
	}
	h.idle()
}

func TestFailedStep(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 32, BlockSize: 4})
	a := h.submit(Request{Prompt: seqTokens(1, 5), NumPredict: 3})
	h.e.fail = func(step int64) error {
		if step == 1 {
			return errEngine
		}
		return nil
	}
	h.step()
	b := h.submit(Request{Prompt: seqTokens(50, 5), NumPredict: 3})
	h.step() // fails a's decode and b's prefill
	if ev := h.end(a); ev.Reason != FinishError || !errors.Is(ev.Err, ErrStepFailed) || !errors.Is(ev.Err, errEngine) {
		t.Errorf("a: %+v", ev)
	}
	h.end(b)
	c := h.submit(Request{Prompt: seqTokens(50, 5), NumPredict: 3})
	h.run(10)
	if h.end(c).Reason != FinishLength {
		t.Errorf("c after a failed step: %+v", h.end(c))
	}
	h.idle()
}

// A step failing while one of its sequences was cancelled in flight, and
// an engine answering with an impossible token.
func TestFailedStepEdges(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 32, BlockSize: 4})
	a := h.submit(Request{Prompt: seqTokens(1, 5)})
	b := h.submit(Request{Prompt: seqTokens(50, 5)})
	p := h.s.Step()
	h.s.Cancel(a.id)
	h.s.Fail(p, errEngine)
	h.check()
	h.drain()
	if h.end(a).Reason != FinishCancel || h.end(b).Reason != FinishError {
		t.Errorf("a %+v, b %+v", h.end(a), h.end(b))
	}
	h.idle()
	c := h.submit(Request{Prompt: seqTokens(1, 5)})
	p = h.s.Step()
	h.s.Complete(p, []Result{{Token: -3}})
	h.check()
	h.drain()
	if ev := h.end(c); ev.Reason != FinishError || !errors.Is(ev.Err, ErrStepFailed) {
		t.Errorf("negative token: %+v", ev)
	}
	h.idle()
}

func TestClose(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 8, BlockSize: 4, WatermarkBlocks: -1})
	a := h.submit(Request{Prompt: seqTokens(1, 20)})
	b := h.submit(Request{Prompt: seqTokens(1, 20)})
	p := h.s.Step()
	h.s.Close(nil)
	h.check()
	res, _ := h.e.run(p)
	h.s.Complete(p, res)
	h.drain()
	for _, q := range []*Seq{a, b} {
		if ev := h.end(q); !errors.Is(ev.Err, ErrClosed) {
			t.Errorf("%v: %+v", q, ev)
		}
	}
	if _, err := h.s.Submit(Request{Prompt: seqTokens(1, 2)}); !errors.Is(err, ErrClosed) {
		t.Errorf("Submit after Close: %v", err)
	}
	h.idle()
}

func TestMisusePanics(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 8, BlockSize: 4})
	h.submit(Request{Prompt: seqTokens(1, 3)})
	p := h.s.Step()
	mustPanic(t, "Step twice", func() { h.s.Step() })
	mustPanic(t, "wrong result count", func() { h.s.Complete(p, nil) })
	h.s.Complete(p, []Result{{Token: 1}})
	h.check()
	mustPanic(t, "Complete with no plan", func() { h.s.Complete(p, []Result{{Token: 1}}) })
}

func mustPanic(t *testing.T, what string, f func()) {
	t.Helper()
	defer func() {
		if recover() == nil {
			t.Errorf("%s: no panic", what)
		}
	}()
	f()
}

// TestPrefixCacheSalt: sequences of different salts (LoRA adapters)
// never share KV, even for the same prompt; the same salt shares as
// before.
func TestPrefixCacheSalt(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 64, BlockSize: 16})
	system := seqTokens(1000, 64) // four blocks
	a := h.submit(Request{Prompt: cat(system, seqTokens(1, 10)), NumPredict: 2, CacheSalt: 7})
	h.run(100)
	b := h.submit(Request{Prompt: cat(system, seqTokens(1, 10)), NumPredict: 2})
	c := h.submit(Request{Prompt: cat(system, seqTokens(1, 10)), NumPredict: 2, CacheSalt: 8})
	h.run(100)
	d := h.submit(Request{Prompt: cat(system, seqTokens(2, 10)), NumPredict: 2, CacheSalt: 7})
	h.run(100)
	for _, q := range []*Seq{a, b, c} {
		if h.e.fed[q.id] != 74+1 {
			t.Errorf("sequence %d fed %d tokens, want 75: nothing shared across salts", q.id, h.e.fed[q.id])
		}
	}
	if h.e.fed[d.id] != 10+1 {
		t.Errorf("same salt fed %d tokens, want 11 (the system prompt shared)", h.e.fed[d.id])
	}
	if SaltRoot(0) != (BlockHash{}) || SaltRoot(1) == SaltRoot(2) {
		t.Error("SaltRoot")
	}
	h.idle()
}

// TestStateSnapshotsSystemPrompt: a hybrid model's prefix reuse. The first
// request leaves a snapshot at its prompt's last block boundary; the
// second, sharing only the system prompt, finds its KV but no snapshot
// there, so it recomputes and leaves one where it leaves the shared
// prefix; from the third on, the system prompt is restored, not
// recomputed, and a repeated prompt is restored up to its last boundary.
// The fake engine checks that each restored state is the very prefix's.
func TestStateSnapshotsSystemPrompt(t *testing.T) {
	h := newHarness(t, Config{NumBlocks: 64, BlockSize: 4, StateSlots: 2, StateSnapshots: 5})
	system := seqTokens(1000, 40) // ten blocks
	prompt := func(u int) []int32 { return cat(system, seqTokens(u, 6)) }
	fed := func(p []int32) (int, int) {
		q := h.submit(Request{Prompt: p, NumPredict: 3})
		steps := h.e.steps
		h.run(100)
		return h.e.fed[q.id] - 2, int(h.e.steps - steps)
	}
	for i, c := range []struct {
		prompt           []int32
		wantFed, wantHit int
	}{
		{prompt(1), 46, 0},   // cold; snapshot at 44
		{prompt(2), 46, 0},   // shares 40 tokens of KV, no snapshot at 40: recomputes, snapshots 40 and 44
		{prompt(3), 6, 40},   // restores the system prompt (and snapshots 44)
		{prompt(4), 6, 40},   // (and snapshots 44: all five slots hold one)
		{prompt(1), 2, 44},   // the first prompt again: restored up to 44
		{system[:30], 30, 0}, // a prefix of the system prompt: no snapshot at 28; takes one there, evicting the least recently used
		{system[:30], 2, 28}, // and restores it
	} {
		before := h.s.Metrics().PrefixHitTokens
		got, steps := fed(c.prompt)
		hit := int(h.s.Metrics().PrefixHitTokens - before)
		t.Logf("request %d: fed %d prompt tokens in %d steps, hit %d", i, got, steps, hit)
		if got != c.wantFed || hit != c.wantHit {
			t.Errorf("request %d: fed %d prompt tokens, hit %d; want %d, %d", i, got, hit, c.wantFed, c.wantHit)
		}
	}
	if m := h.s.Metrics(); m.StateSnapshots != 5 || m.SnapshotEvictions != 1 {
		t.Errorf("snapshots %d, evictions %d; want 5, 1", m.StateSnapshots, m.SnapshotEvictions)
	}
	// The system prompt's snapshot, restored most recently but one, was
	// not the one evicted.
	if got, _ := fed(prompt(5)); got != 6 {
		t.Errorf("system prompt after an eviction: fed %d, want 6", got)
	}
	h.idle()
}
