package scheduler

import (
	"errors"
	"math/rand/v2"
	"testing"
	"time"
)

// chooser is where the op machine's choices come from: a seeded PRNG or
// fuzz input.
type chooser interface {
	intn(n int) int // in [0, n)
	done() bool
}

type rngChooser struct{ r *rand.Rand }

func (c *rngChooser) intn(n int) int { return c.r.IntN(n) }
func (c *rngChooser) done() bool     { return false }

type byteChooser struct{ b []byte }

func (c *byteChooser) intn(n int) int {
	if len(c.b) == 0 {
		return 0
	}
	v := int(c.b[0])
	c.b = c.b[1:]
	return v % n
}
func (c *byteChooser) done() bool { return len(c.b) == 0 }

// machine runs random operations against a scheduler with the checking
// fake engine, calling Check after every one.
type machine struct {
	h        *harness
	c        chooser
	prefixes [][]int32
	inflight *StepPlan
	ops      int
}

func newMachine(t testing.TB, c chooser, collide bool) *machine {
	return newMachineSlots(t, c, collide, false, false)
}

// newMachineSlots is newMachine; with slots, for a hybrid model, with
// recurrent state slots (Config.StateSlots), sometimes fewer than
// MaxRunning, and with snaps 1..4 state snapshot slots for prefix reuse.
func newMachineSlots(t testing.TB, c chooser, collide, slots, snaps bool) *machine {
	bs := []int{1, 2, 4, 8, 16}[c.intn(5)]
	budget := 4 + c.intn(61)
	cfg := Config{
		NumBlocks:       4 + c.intn(40),
		BlockSize:       bs,
		MaxBatchTokens:  budget,
		MaxRunning:      1 + c.intn(min(8, budget)),
		MaxQueue:        1 + c.intn(10),
		WatermarkBlocks: c.intn(4) - 1,
		DefaultNumCtx:   8 + c.intn(120),
		QueueTimeout:    time.Duration(c.intn(4)) * time.Second,
		PrefillChunk:    c.intn(budget + 1), // 0: the default
	}
	if slots {
		cfg.StateSlots = 1 + c.intn(cfg.MaxRunning+1)
		if snaps {
			cfg.StateSnapshots = 1 + c.intn(4)
		}
	}
	h := newHarness(t, cfg)
	if collide {
		// Everything collides into a handful of hashes: no lookup may
		// ever share KV it should not (the engine's reads would catch it).
		h.s.alloc.hash = func(p BlockHash, toks []int32) BlockHash { return BlockHash{0, uint64(toks[0]) % 3} }
	}
	m := &machine{h: h, c: c}
	for i := range 3 {
		m.prefixes = append(m.prefixes, seqTokens(100*i, 1+c.intn(24)))
	}
	if c.intn(4) == 0 {
		h.e.stop = func(id SeqID, gen int) bool { return (uint64(id)*7+uint64(gen))%11 == 0 }
	}
	return m
}

func (m *machine) live() *Seq {
	s := m.h.s
	n := len(s.waiting) + len(s.running)
	if n == 0 {
		return nil
	}
	i := m.c.intn(n)
	if i < len(s.waiting) {
		return s.waiting[i]
	}
	return s.running[i-len(s.waiting)]
}

func (m *machine) op() {
	h, c := m.h, m.c
	m.ops++
	switch c.intn(10) {
	case 0, 1, 2: // submit
		var prompt []int32
		if k := c.intn(4); k < 3 {
			prompt = append(prompt, m.prefixes[k]...)
		}
		for range c.intn(12) {
			prompt = append(prompt, int32(c.intn(6)))
		}
		r := Request{Prompt: prompt, NumPredict: c.intn(16)}
		if c.intn(2) == 0 {
			r.NumCtx = len(prompt) + c.intn(40)
		}
		r.QueueTimeout = time.Duration(c.intn(4)-1) * time.Second
		_, err := h.s.Submit(r)
		switch {
		case err == nil, errors.Is(err, ErrQueueFull), errors.Is(err, ErrEmptyPrompt), errors.Is(err, ErrPromptTooLong):
		default:
			h.t.Fatalf("Submit: %v", err)
		}
	case 3, 4, 5: // a whole step
		if m.inflight == nil {
			if c.intn(16) == 0 {
				h.e.fail = func(int64) error { return errEngine }
			}
			h.step()
			h.e.fail = nil
		}
	case 6: // start a step, or finish the one in flight
		if m.inflight == nil {
			m.inflight = h.s.Step()
		} else {
			m.completeInflight()
		}
	case 7: // cancel
		if q := m.live(); q != nil {
			h.s.Cancel(q.id)
		}
	case 8: // stop string
		if q := m.live(); q != nil {
			h.s.Finish(q.id, FinishStop)
		}
	case 9:
		h.clock.Advance(time.Duration(c.intn(1500)) * time.Millisecond)
	}
	h.check()
	h.drain()
}

func (m *machine) completeInflight() {
	if m.inflight == nil {
		return
	}
	res, err := m.h.e.run(m.inflight)
	if err != nil {
		m.h.t.Fatalf("op %d: %v", m.ops, err)
	}
	m.h.s.Complete(m.inflight, res)
	m.inflight = nil
	m.h.check()
	m.h.drain()
}

// finish runs everything out, then checks that no block is owned.
func (m *machine) finish() {
	m.completeInflight()
	h := m.h
	// Every sequence ends by num_ctx at the latest; 10000 steps is far
	// more than any of these configurations needs.
	h.run(10000)
	if len(h.s.seqs) != 0 {
		h.t.Fatalf("%d sequences left after running out", len(h.s.seqs))
	}
	h.idle()
	for id := range h.tokens {
		if _, ok := h.ends[id]; !ok {
			h.t.Fatalf("seq %d produced tokens but never ended", id)
		}
	}
}

// Random submit/step/cancel/finish/clock sequences, Check after every
// operation, and at the end, after everything ran out, no block owned.
// Half the runs use a hash that collides all the time. The runs must also
// reach the interesting states (preemption, queue timeouts, prefix hits,
// evictions, a full queue), or they prove little.
func TestPropertyNoLeaks(t *testing.T) {
	seeds, ops := 24, 3000
	if testing.Short() {
		seeds, ops = 6, 1000
	}
	var total Metrics
	for seed := range seeds {
		for _, collide := range []bool{false, true} {
			c := &rngChooser{r: rand.New(rand.NewPCG(uint64(seed), 99))}
			m := newMachine(t, c, collide)
			for m.ops < ops {
				m.op()
			}
			m.finish()
			met := m.h.s.Metrics()
			total.Submitted += met.Submitted
			total.Steps += met.Steps
			total.Preemptions += met.Preemptions
			total.TimedOut += met.TimedOut
			total.Rejected += met.Rejected
			if !collide {
				total.PrefixHits += met.PrefixHits
				total.Evictions += met.Evictions
			}
		}
	}
	t.Logf("%d runs of %d ops: %d submitted, %d steps, %d preemptions, %d timeouts, %d rejected, %d prefix hits, %d evictions",
		2*seeds, ops, total.Submitted, total.Steps, total.Preemptions, total.TimedOut, total.Rejected, total.PrefixHits, total.Evictions)
	if total.Preemptions == 0 || total.TimedOut == 0 || total.PrefixHits == 0 || total.Evictions == 0 || total.Rejected == 0 {
		t.Errorf("the random runs miss a state")
	}
}

// TestPropertyStateSlots is TestPropertyNoLeaks for hybrid models: the
// fake engine requires every step of a sequence to continue the state in
// its slot from exactly the prefix it holds (or start afresh at 0), and
// a restored snapshot to hold the state of the very prefix the sequence
// shares; Check that every running sequence holds a slot of its own and
// that snapshot slots are free, reserved or on one indexed block. Without
// snapshot slots prefixes are never reused; with them they are (also
// under a hash that collides all the time), and the runs must preempt (a
// preempted sequence recomputes) and evict snapshots.
func TestPropertyStateSlots(t *testing.T) {
	seeds, ops := 16, 3000
	if testing.Short() {
		seeds, ops = 4, 1000
	}
	for _, snaps := range []bool{false, true} {
		var total Metrics
		var restores int64
		for seed := range seeds {
			for _, collide := range []bool{false, true} {
				if collide && !snaps {
					continue
				}
				c := &rngChooser{r: rand.New(rand.NewPCG(uint64(seed), 7))}
				m := newMachineSlots(t, c, collide, true, snaps)
				for m.ops < ops {
					m.op()
				}
				m.finish()
				met := m.h.s.Metrics()
				total.Steps += met.Steps
				total.Preemptions += met.Preemptions
				total.PrefixHits += met.PrefixHits
				total.SnapshotEvictions += met.SnapshotEvictions
				restores += m.h.e.restores
			}
		}
		t.Logf("snapshots %v: %d steps, %d preemptions, %d prefix hits, %d restores, %d snapshot evictions",
			snaps, total.Steps, total.Preemptions, total.PrefixHits, restores, total.SnapshotEvictions)
		if !snaps && total.PrefixHits != 0 {
			t.Errorf("%d prefix hits with recurrent state and no snapshots", total.PrefixHits)
		}
		if snaps && (total.PrefixHits == 0 || restores == 0 || restores > total.PrefixHits || total.SnapshotEvictions == 0) { // a failed step restores nothing
			t.Errorf("snapshot runs: %d prefix hits, %d restores, %d snapshot evictions", total.PrefixHits, restores, total.SnapshotEvictions)
		}
		if total.Preemptions == 0 {
			t.Errorf("the random runs never preempt")
		}
	}
}

func FuzzScheduler(f *testing.F) {
	f.Add([]byte{})
	f.Add([]byte("\x02\x10\x05\x01\x03\x00\x01\x02\x00\x00\x03\x03\x06\x07\x06\x03\x03\x03"))
	rng := rand.New(rand.NewPCG(7, 7))
	for range 8 {
		b := make([]byte, 400)
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		if len(data) > 4096 {
			data = data[:4096]
		}
		c := &byteChooser{b: data}
		collide := c.intn(2) == 1
		m := newMachine(t, c, collide)
		for !c.done() {
			m.op()
		}
		m.finish()
	})
}
