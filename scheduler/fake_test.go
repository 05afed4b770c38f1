package scheduler

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// fakeClock is a manual clock.
type fakeClock struct{ now time.Time }

func (c *fakeClock) Now() time.Time          { return c.now }
func (c *fakeClock) Advance(d time.Duration) { c.now = c.now.Add(d) }

// mix is splitmix64's finaliser.
func mix(x uint64) uint64 {
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	return x ^ x>>31
}

// prefixPrints returns, for each position p of tokens, a fingerprint of
// tokens[0..p]: what the K/V at p depends on in a real model.
func prefixPrints(dst []uint64, tokens []int32) []uint64 {
	dst = dst[:0]
	h := uint64(0x9e3779b97f4a7c15)
	for p, t := range tokens {
		h = mix(h ^ uint64(uint32(t)) ^ uint64(p)<<40)
		dst = append(dst, h|1) // never 0: 0 is "unwritten"
	}
	return dst
}

// fakeEngine runs plans against a simulated KV store and checks each one:
// rows consistent with the sequences' state, positions contiguous from the
// sequence's computed count, block tables covering them, writes only into
// blocks the sequence alone owns and no block written by two sequences,
// and every position read holding the KV of exactly this sequence's
// prefix. It "samples" a token from the prefix it read, so a wrong read or
// a wrong recompute changes the output.
type fakeEngine struct {
	s       *Scheduler
	kv      [][]uint64 // [block][slot]: fingerprint written there, 0 if none
	prints  []uint64
	results []Result
	writer  map[int32]SeqID
	vocab   uint64
	stop    func(id SeqID, gen int) bool // the sampler's end-of-generation, nil: never
	fail    func(step int64) error       // an engine error for this step, nil: none

	steps, rows, prefillRows, decodeRows int64
	fed                                  map[SeqID]int // rows fed per sequence
	// states holds, per recurrent state slot (Config.StateSlots), the
	// prefix whose state it is; snaps the same per snapshot slot
	// (Config.StateSnapshots).
	states, snaps map[int]slotState
	restores      int64 // steps that restored a snapshot
}

// slotState is a recurrent state: at positions absorbed, of the tokens
// whose prefixPrints fingerprint at position at-1 is print.
type slotState struct {
	print uint64
	at    int
}

func newFakeEngine(s *Scheduler) *fakeEngine {
	a := s.Allocator()
	e := &fakeEngine{s: s, kv: make([][]uint64, a.NumBlocks()), writer: map[int32]SeqID{}, vocab: 1000, fed: map[SeqID]int{}}
	for i := range e.kv {
		e.kv[i] = make([]uint64, a.BlockSize())
	}
	return e
}

// run checks p and fills the results, or returns the first inconsistency.
func (e *fakeEngine) run(p *StepPlan) ([]Result, error) {
	s, a := e.s, e.s.Allocator()
	bs := a.BlockSize()
	if p.BlockSize != bs {
		return nil, fmt.Errorf("plan block size %d, allocator %d", p.BlockSize, bs)
	}
	if len(p.Tokens) != len(p.Pos) || len(p.Tokens) != len(p.Seq) {
		return nil, fmt.Errorf("rows: %d tokens, %d positions, %d seq indexes", len(p.Tokens), len(p.Pos), len(p.Seq))
	}
	if len(p.Tokens) == 0 || len(p.Tokens) > s.cfg.MaxBatchTokens {
		return nil, fmt.Errorf("%d rows, budget %d", len(p.Tokens), s.cfg.MaxBatchTokens)
	}
	clear(e.writer)
	if e.states == nil {
		e.states, e.snaps = map[int]slotState{}, map[int]slotState{}
	}
	// Every restore of the step comes before every snapshot.
	for i := range p.Seqs {
		ss := &p.Seqs[i]
		if ss.Restore < 0 {
			continue
		}
		st, ok := e.snaps[ss.Restore]
		if s.cfg.StateSnapshots == 0 || ss.Restore >= s.cfg.StateSnapshots || !ok {
			return nil, fmt.Errorf("%v restores snapshot slot %d, which holds nothing", ss.seq, ss.Restore)
		}
		e.states[ss.StateSlot] = st
		e.restores++
	}
	seen := map[SeqID]bool{}
	row, outs := 0, 0
	for i := range p.Seqs {
		ss := &p.Seqs[i]
		q := ss.seq
		if seen[ss.ID] || q.id != ss.ID {
			return nil, fmt.Errorf("seq %d twice in a plan or misnamed", ss.ID)
		}
		seen[ss.ID] = true
		if q.state != stateRunning && q.state != stateDone {
			return nil, fmt.Errorf("%v planned while waiting", q)
		}
		if ss.Offset != row || ss.N < 1 {
			return nil, fmt.Errorf("%v: rows at %d (+%d), want %d", q, ss.Offset, ss.N, row)
		}
		if ss.Start != q.computed {
			return nil, fmt.Errorf("%v: feeds from %d, computed %d", q, ss.Start, q.computed)
		}
		end := ss.Start + ss.N
		if s.cfg.StateSlots > 0 {
			// A recurrent state continues only the very prefix it holds,
			// from where it stands; Start 0 begins afresh.
			st, ok := e.states[ss.StateSlot]
			if ss.Start > 0 {
				e.prints = prefixPrints(e.prints, q.tokens[:ss.Start])
			}
			if ss.StateSlot < 0 || ss.StateSlot >= s.cfg.StateSlots || ss.Start > 0 && (!ok || st.at != ss.Start || st.print != e.prints[ss.Start-1]) {
				return nil, fmt.Errorf("%v: feeds %d from %d in state slot %d, which holds %+v", q, ss.N, ss.Start, ss.StateSlot, st)
			}
			if end <= len(q.tokens) {
				e.prints = prefixPrints(e.prints, q.tokens[:end])
				e.states[ss.StateSlot] = slotState{e.prints[end-1], end}
			}
			if ss.Snapshot >= 0 && (ss.Snapshot >= s.cfg.StateSnapshots || end%bs != 0) {
				return nil, fmt.Errorf("%v: snapshot into slot %d at %d", q, ss.Snapshot, end)
			}
		} else if ss.StateSlot != -1 || ss.Restore != -1 || ss.Snapshot != -1 {
			return nil, fmt.Errorf("%v: state slot %d, restore %d, snapshot %d without StateSlots", q, ss.StateSlot, ss.Restore, ss.Snapshot)
		}
		if end > len(q.tokens) || len(ss.Blocks)*bs < end {
			return nil, fmt.Errorf("%v: positions to %d, %d tokens, %d blocks", q, end, len(q.tokens), len(ss.Blocks))
		}
		if ss.Logits != (end == len(q.tokens)) {
			return nil, fmt.Errorf("%v: logits %v at %d of %d tokens", q, ss.Logits, end, len(q.tokens))
		}
		if ss.Logits {
			if ss.Output != outs || p.Outputs[outs] != ss.Offset+ss.N-1 {
				return nil, fmt.Errorf("%v: output %d row %d", q, ss.Output, p.Outputs[ss.Output])
			}
			outs++
		} else if ss.Output != -1 {
			return nil, fmt.Errorf("%v: output %d without logits", q, ss.Output)
		}
		e.prints = prefixPrints(e.prints, q.tokens[:end])
		for j := range ss.N {
			r, pos := row+j, ss.Start+j
			if p.Seq[r] != int32(i) || p.Pos[r] != int32(pos) || p.Tokens[r] != q.tokens[pos] {
				return nil, fmt.Errorf("%v row %d: seq %d pos %d token %d, want %d %d %d", q, r, p.Seq[r], p.Pos[r], p.Tokens[r], i, pos, q.tokens[pos])
			}
			b := ss.Blocks[pos/bs]
			if w, ok := e.writer[b]; ok && w != q.id {
				return nil, fmt.Errorf("block %d written by seq %d and %d in one step", b, w, q.id)
			}
			e.writer[b] = q.id
			if m := a.meta[b]; m.ref != 1 || m.hashed {
				return nil, fmt.Errorf("%v writes block %d with ref %d, hashed %v", q, b, m.ref, m.hashed)
			}
			e.kv[b][pos%bs] = e.prints[pos]
		}
		row += ss.N
	}
	if row != len(p.Tokens) || outs != len(p.Outputs) {
		return nil, fmt.Errorf("plan has %d rows, %d outputs; sequences cover %d, %d", len(p.Tokens), len(p.Outputs), row, outs)
	}
	for i := range p.Seqs {
		if ss := &p.Seqs[i]; ss.Snapshot >= 0 {
			e.snaps[ss.Snapshot] = e.states[ss.StateSlot]
		}
	}
	// Reads, after every write of the step: each row attends to all its
	// sequence's positions up to its own.
	e.results = e.results[:0]
	for i := range p.Seqs {
		ss := &p.Seqs[i]
		q := ss.seq
		end := ss.Start + ss.N
		e.prints = prefixPrints(e.prints, q.tokens[:end])
		for pos := range end {
			b := ss.Blocks[pos/bs]
			if got := e.kv[b][pos%bs]; got != e.prints[pos] {
				return nil, fmt.Errorf("%v reads wrong KV at position %d (block %d slot %d)", q, pos, b, pos%bs)
			}
		}
		e.fed[q.id] += ss.N
		if ss.N == 1 && ss.Start > 0 && ss.Logits {
			e.decodeRows++
		} else {
			e.prefillRows += int64(ss.N)
		}
		if ss.Logits {
			gen := len(q.tokens) - q.promptLen + 1
			tok := int32(e.prints[end-1] % e.vocab)
			e.results = append(e.results, Result{Token: tok, Stop: e.stop != nil && e.stop(q.id, gen)})
		}
	}
	e.steps++
	e.rows += int64(len(p.Tokens))
	return e.results, nil
}

// harness drives a scheduler with the fake engine, checking invariants
// after every call, and collects events per sequence.
type harness struct {
	t      testing.TB
	s      *Scheduler
	e      *fakeEngine
	clock  *fakeClock
	tokens map[SeqID][]int32
	ends   map[SeqID]Event
}

func newHarness(t testing.TB, cfg Config) *harness {
	t.Helper()
	clk := &fakeClock{now: time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)}
	if cfg.Clock == nil {
		cfg.Clock = clk
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return &harness{t: t, s: s, e: newFakeEngine(s), clock: clk, tokens: map[SeqID][]int32{}, ends: map[SeqID]Event{}}
}

func (h *harness) check() {
	h.t.Helper()
	if err := h.s.Check(); err != nil {
		h.t.Fatal(err)
	}
}

func (h *harness) drain() {
	h.t.Helper()
	for _, ev := range h.s.Events() {
		if _, done := h.ends[ev.ID]; done {
			h.t.Fatalf("event after the end of seq %d: %+v", ev.ID, ev)
		}
		if ev.Token != NoToken {
			h.tokens[ev.ID] = append(h.tokens[ev.ID], ev.Token)
		}
		if ev.Done {
			h.ends[ev.ID] = ev
		}
	}
}

func (h *harness) submit(r Request) *Seq {
	h.t.Helper()
	q, err := h.s.Submit(r)
	if err != nil {
		h.t.Fatal(err)
	}
	h.check()
	return q
}

// step runs one Step → engine → Complete; it reports whether there was a
// plan.
func (h *harness) step() bool {
	h.t.Helper()
	p := h.s.Step()
	h.check()
	if p == nil {
		h.drain()
		return false
	}
	var err error
	if h.e.fail != nil {
		err = h.e.fail(h.e.steps)
	}
	if err != nil {
		h.e.steps++
		h.s.Fail(p, err)
	} else {
		res, err := h.e.run(p)
		if err != nil {
			h.t.Fatalf("step %d: %v", h.e.steps, err)
		}
		h.s.Complete(p, res)
	}
	h.check()
	h.drain()
	return true
}

// run steps until nothing is left to run (or limit steps).
func (h *harness) run(limit int) int {
	h.t.Helper()
	n := 0
	for ; n < limit && h.step(); n++ {
	}
	return n
}

// runSizes steps until there is nothing to run and returns each step's
// token count.
func (h *harness) runSizes() []int {
	h.t.Helper()
	var sizes []int
	for {
		p := h.s.Step()
		if p == nil {
			return sizes
		}
		sizes = append(sizes, len(p.Tokens))
		res, err := h.e.run(p)
		if err != nil {
			h.t.Fatal(err)
		}
		h.s.Complete(p, res)
		h.check()
		h.drain()
	}
}

func (h *harness) end(q *Seq) Event {
	h.t.Helper()
	ev, ok := h.ends[q.id]
	if !ok {
		h.t.Fatalf("%v has not ended", q)
	}
	return ev
}

// idle checks that nothing is owned: every block free or cached.
func (h *harness) idle() {
	h.t.Helper()
	a := h.s.Allocator()
	if a.Used() != 0 || len(a.tables) != 0 || a.Free()+a.Cached() != a.NumBlocks() {
		h.t.Fatalf("not idle: used %d, tables %d, free %d, cached %d of %d", a.Used(), len(a.tables), a.Free(), a.Cached(), a.NumBlocks())
	}
	if len(h.s.seqs) != 0 || len(h.s.waiting) != 0 || len(h.s.running) != 0 {
		h.t.Fatalf("sequences left: %d live, %d waiting, %d running", len(h.s.seqs), len(h.s.waiting), len(h.s.running))
	}
}

// seqTokens returns n tokens starting from base.
func seqTokens(base, n int) []int32 {
	t := make([]int32, n)
	for i := range t {
		t[i] = int32(base + i)
	}
	return t
}

func cat(parts ...[]int32) []int32 {
	var out []int32
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

var errEngine = errors.New("device lost")
