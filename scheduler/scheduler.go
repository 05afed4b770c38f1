package scheduler

import (
	"errors"
	"fmt"
	"slices"
	"time"
)

// Errors returned by Submit or carried by a sequence's final Event; check
// them with errors.Is.
var (
	ErrQueueFull     = errors.New("queue full")                   // Submit: the waiting queue is at Config.MaxQueue
	ErrPromptTooLong = errors.New("prompt too long")              // Submit: the prompt leaves no room to generate
	ErrEmptyPrompt   = errors.New("empty prompt")                 // Submit
	ErrClosed        = errors.New("scheduler closed")             // Submit after Close; sequences ended by Close
	ErrQueueTimeout  = errors.New("timed out waiting for a slot") // not admitted within the queue wait
	ErrCancelled     = errors.New("cancelled")                    // Cancel
	ErrStepFailed    = errors.New("engine step failed")           // Fail
)

// Clock tells the time. Tests inject a fake one (or run under
// testing/synctest, whose time.Now is virtual).
type Clock interface{ Now() time.Time }

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// Config sizes a Scheduler. Zero fields take the defaults named.
type Config struct {
	NumBlocks int // KV pool size in blocks, from the memory budget (required)
	BlockSize int // token positions per block; default 16

	MaxBatchTokens int // tokens per step, decodes and prefill chunks together; default 512
	// PrefillChunk caps the prefill tokens of a step that also decodes, so
	// a long prompt arriving delays the running sequences' next tokens by
	// one chunk's compute, not a whole batch's; default MaxBatchTokens (no
	// extra cap). A step without decodes always takes MaxBatchTokens.
	PrefillChunk int

	MaxRunning int // sequences admitted at once; default min(64, MaxBatchTokens); at most MaxBatchTokens
	MaxQueue   int // waiting sequences before Submit answers ErrQueueFull; default 256

	DefaultNumCtx int           // a request's num_ctx when it names none; default 4096
	MaxNumCtx     int           // cap on any num_ctx (the model's context); 0: none
	QueueTimeout  time.Duration // default queue wait before ErrQueueTimeout; 0: none

	// WatermarkBlocks are kept available when admitting a sequence while
	// others run, so their next decodes do not preempt at once; default
	// NumBlocks/100; negative: none.
	WatermarkBlocks int

	// StateSlots > 0 is for hybrid models, whose sequences each carry a
	// fixed-size recurrent state beside their KV blocks: every running
	// sequence gets a state slot 0..StateSlots-1 (SeqStep.StateSlot), its
	// own from admission until it finishes or is preempted (then it
	// recomputes from position 0, where its state restarts). MaxRunning
	// is capped at StateSlots. A cached prefix's KV blocks resume a
	// sequence only with the recurrent state at their end, so prefix
	// reuse needs StateSnapshots.
	StateSlots int
	// StateSnapshots > 0 (with StateSlots) turns prefix reuse on for
	// hybrid models: snapshot slots 0..StateSnapshots-1 hold recurrent
	// states at the end of indexed KV blocks (BlockAllocator.
	// SetSnapshotSlots), and a hit is shortened to the longest cached
	// prefix whose last block has one (SeqStep.Restore). Snapshots are
	// taken (SeqStep.Snapshot) where prefixes are seen to be shared: at
	// the point where an admitted sequence's tokens leave the longest
	// cached prefix (a system prompt that a second request repeats), and
	// at the last block boundary of its prompt (a repeated prompt, a
	// conversation's next turn). A prefill chunk ends at such a boundary,
	// so the engine copies the state there after the step.
	StateSnapshots int

	Clock Clock // default: the system clock
}

func (c Config) withDefaults() (Config, error) {
	if c.BlockSize == 0 {
		c.BlockSize = 16
	}
	if c.MaxBatchTokens == 0 {
		c.MaxBatchTokens = 512
	}
	if c.MaxRunning == 0 {
		c.MaxRunning = min(64, c.MaxBatchTokens)
	}
	if c.StateSlots > 0 {
		c.MaxRunning = min(c.MaxRunning, c.StateSlots)
	}
	if c.PrefillChunk == 0 {
		c.PrefillChunk = c.MaxBatchTokens
	}
	if c.MaxQueue == 0 {
		c.MaxQueue = 256
	}
	if c.DefaultNumCtx == 0 {
		c.DefaultNumCtx = 4096
	}
	if c.WatermarkBlocks == 0 {
		c.WatermarkBlocks = c.NumBlocks / 100
	}
	c.WatermarkBlocks = max(0, c.WatermarkBlocks)
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	switch {
	case c.MaxBatchTokens < 1:
		return c, fmt.Errorf("scheduler: MaxBatchTokens %d < 1", c.MaxBatchTokens)
	case c.MaxRunning < 1 || c.MaxRunning > c.MaxBatchTokens:
		// Every running sequence must get its decode token in every step.
		return c, fmt.Errorf("scheduler: MaxRunning %d: want 1..MaxBatchTokens (%d)", c.MaxRunning, c.MaxBatchTokens)
	case c.PrefillChunk < 1:
		return c, fmt.Errorf("scheduler: PrefillChunk %d < 1", c.PrefillChunk)
	case c.MaxQueue < 1:
		return c, fmt.Errorf("scheduler: MaxQueue %d < 1", c.MaxQueue)
	case c.DefaultNumCtx < 2 || c.MaxNumCtx < 0:
		return c, fmt.Errorf("scheduler: DefaultNumCtx %d, MaxNumCtx %d", c.DefaultNumCtx, c.MaxNumCtx)
	case c.StateSlots < 0 || c.StateSnapshots < 0 || c.StateSnapshots > 0 && c.StateSlots == 0:
		return c, fmt.Errorf("scheduler: StateSlots %d, StateSnapshots %d", c.StateSlots, c.StateSnapshots)
	case c.QueueTimeout < 0:
		return c, fmt.Errorf("scheduler: QueueTimeout %v < 0", c.QueueTimeout)
	}
	return c, nil
}

// SeqID names a sequence. IDs increase in submission order, which is the
// order of every queue here.
type SeqID uint64

// Request is what Submit takes.
type Request struct {
	Prompt     []int32 // token ids; copied
	NumCtx     int     // prompt + generated tokens at most; 0: Config.DefaultNumCtx (capped at MaxNumCtx and the pool)
	NumPredict int     // generated tokens at most; <= 0: until num_ctx
	// QueueTimeout is how long the request may wait to be admitted;
	// 0: Config.QueueTimeout; negative: no limit.
	QueueTimeout time.Duration
	// Tag is the caller's: the scheduler hands it to the engine in each
	// SeqStep (sampling options, say) and never reads it.
	Tag any
	// CacheSalt keys the sequence's KV for prefix sharing: only
	// sequences of equal salts share blocks (0: the plain model; the
	// engine gives each LoRA adapter its own, since its KV differs).
	CacheSalt uint64
}

// FinishReason says why a sequence ended.
type FinishReason string

const (
	FinishStop    FinishReason = "stop"    // end-of-generation token, or a stop string (Finish)
	FinishLength  FinishReason = "length"  // num_predict or num_ctx reached
	FinishCancel  FinishReason = "cancel"  // Cancel (the client went away)
	FinishTimeout FinishReason = "timeout" // not admitted within the queue wait
	FinishError   FinishReason = "error"   // the engine step failed, or Close
)

type seqState uint8

const (
	stateWaiting seqState = iota
	stateRunning
	stateDone
)

// Seq is a submitted sequence. Its methods read state owned by the
// scheduler: call them only where the scheduler's methods may be called
// (its goroutine, or under Loop's lock), except ID and Tag, which never
// change.
type Seq struct {
	id         SeqID
	tag        any
	tokens     []int32 // prompt, then generated tokens
	promptLen  int
	numCtx     int
	numPredict int
	deadline   time.Time // admission deadline; zero: none

	state    seqState
	admitted bool // admitted at least once (queue wait no longer applies)
	inflight bool // part of the plan the engine is running
	computed int  // leading tokens whose KV is in the table
	hashes   []BlockHash
	salt     uint64 // Request.CacheSalt
	slot     int    // recurrent state slot while running (Config.StateSlots), else -1
	restore  int    // snapshot slot to restore in the first step after admission, else -1
	snapAt   []int  // positions (block boundaries, ascending) where a snapshot is to be taken
	table    *BlockTable
	preempts int
	reason   FinishReason
	err      error
}

func (q *Seq) ID() SeqID { return q.id }
func (q *Seq) Tag() any  { return q.tag }

// NumCtx is the sequence's effective num_ctx (after the caps).
func (q *Seq) NumCtx() int { return q.numCtx }

// Prompt and Generated are views of the sequence's tokens: read them, do
// not keep them.
func (q *Seq) Prompt() []int32    { return q.tokens[:q.promptLen] }
func (q *Seq) Generated() []int32 { return q.tokens[q.promptLen:] }

func (q *Seq) Done() bool           { return q.state == stateDone }
func (q *Seq) Reason() FinishReason { return q.reason }
func (q *Seq) Err() error           { return q.err }
func (q *Seq) Preemptions() int     { return q.preempts }
func (q *Seq) String() string       { return fmt.Sprintf("seq %d", q.id) }

// remaining is how many tokens are still to feed: 1 while decoding.
func (q *Seq) remaining() int { return len(q.tokens) - q.computed }

// NoToken is Event.Token when the event carries no token.
const NoToken = -1

// Event is a sampled token, or a sequence's end, or both.
type Event struct {
	ID     SeqID
	Token  int32        // the sampled token, or NoToken
	Extra  any          // Result.Extra of Token (opaque; nil when none)
	Done   bool         // the sequence ended; no events follow
	Reason FinishReason // why, when Done
	Err    error        // with FinishCancel, FinishTimeout, FinishError
}

// StepPlan is one engine step: the tokens of every scheduled sequence,
// flattened the way runtime/arch.Batch wants them. Row r feeds Tokens[r]
// at position Pos[r] of sequence Seqs[Seq[r]], whose KV lives in that
// sequence's Blocks (position p in block Blocks[p/BlockSize], slot
// p%BlockSize); the row attends to positions 0..Pos[r] of its sequence.
// The logits of rows Outputs are wanted, one per sequence with Logits.
//
// The plan belongs to the scheduler and is reused: the engine reads it
// (from any goroutine) until it hands it back to Complete or Fail, and
// keeps nothing.
type StepPlan struct {
	Seqs      []SeqStep
	Tokens    []int32
	Pos       []int32
	Seq       []int32 // index into Seqs, per row
	Outputs   []int   // rows whose logits are wanted, in Seqs order
	BlockSize int
}

// SeqStep is one sequence's part of a step: N tokens at positions
// Start..Start+N-1, rows Offset..Offset+N-1. Positions before Start are
// already in the blocks (computed earlier, or shared from the prefix
// cache); the engine writes the KV of the new positions, all in blocks
// this sequence alone owns.
type SeqStep struct {
	ID     SeqID
	Tag    any     // Request.Tag
	Blocks []int32 // covers at least positions 0..Start+N-1
	Start  int
	N      int
	Offset int
	Logits bool // the last row's logits are wanted: a token is sampled
	Output int  // index into Outputs (and Complete's results), or -1
	// StateSlot is the sequence's recurrent state slot (Config.StateSlots;
	// -1 without). A step with Start 0 begins the sequence afresh.
	StateSlot int
	// Restore >= 0 names a snapshot slot (Config.StateSnapshots) holding
	// the state at Start, of a shared prefix: the engine copies it into
	// StateSlot before the forward pass. Snapshot >= 0 names a snapshot
	// slot into which the engine copies StateSlot after the forward pass
	// (the state at Start+N, a block boundary). Every restore of a step
	// comes before every snapshot of it (a slot may be both).
	Restore, Snapshot int
	seq               *Seq
}

// Result is the engine's answer for one output row.
type Result struct {
	Token int32 // the sampled token
	Stop  bool  // it ends generation (end-of-generation token)
	// Extra is the engine's: it rides with Token to the stream (per-token
	// data such as logprobs) and the scheduler never reads it.
	Extra any
	// Err fails this sequence alone (FinishError, wrapping ErrStepFailed):
	// its logits were unusable (not finite, say); the others go on.
	Err error
}

// Metrics is a snapshot of the scheduler's gauges and counters.
type Metrics struct {
	Waiting, Running int // queue depth; sequences admitted

	BlocksTotal, BlocksUsed, BlocksFree, BlocksCached int // used + free + cached = total
	BlockSize                                         int

	PrefixQueries, PrefixHits          int64 // admissions looked up; those that reused blocks
	PrefixQueryTokens, PrefixHitTokens int64 // tokens looked up; tokens not prefilled again thanks to the cache
	Evictions                          int64 // cached blocks reused for other content

	StateSnapshots    int   // recurrent state snapshots kept (Config.StateSnapshots)
	SnapshotEvictions int64 // snapshots dropped for new ones

	Submitted, Rejected, TimedOut, Cancelled, Finished int64 // Finished counts every end, the others included
	Preemptions                                        int64
	Steps, PrefillTokens, DecodeTokens                 int64
}

// PrefixHitRate is the share of looked-up prompt tokens served from the
// prefix cache.
func (m Metrics) PrefixHitRate() float64 {
	if m.PrefixQueryTokens == 0 {
		return 0
	}
	return float64(m.PrefixHitTokens) / float64(m.PrefixQueryTokens)
}

// Scheduler is continuous batching over a paged KV cache. It is plain
// state, not safe for concurrent use: one goroutine calls its methods (or
// Loop, which serialises them under a lock). An engine drives it as:
//
//	for {
//		p := s.Step()        // nil: nothing to run until Submit
//		if p == nil { wait for work }
//		err := run(p, results) // one forward pass, sample one token per output row
//		if err != nil { s.Fail(p, err) } else { s.Complete(p, results) }
//		deliver(s.Events())
//	}
//
// Submit, Cancel and Finish may come between any two calls, also while the
// engine runs a plan: a sequence of the plan in flight ends at once (its
// Event is queued) and its blocks are freed when the plan comes back.
type Scheduler struct {
	cfg       Config
	alloc     *BlockAllocator
	clock     Clock
	nextID    SeqID
	seqs      map[SeqID]*Seq
	waiting   []*Seq // by ID
	running   []*Seq // by ID
	plan      StepPlan
	flying    bool
	closed    bool
	events    []Event
	freeSlots []int // recurrent state slots no running sequence holds (Config.StateSlots)
	spare     []Event
	m         Metrics
}

// New makes a scheduler with an empty pool of cfg.NumBlocks blocks.
func New(cfg Config) (*Scheduler, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	a, err := NewBlockAllocator(cfg.NumBlocks, cfg.BlockSize)
	if err != nil {
		return nil, fmt.Errorf("scheduler: %w", err)
	}
	a.SetSnapshotSlots(cfg.StateSnapshots)
	s := &Scheduler{
		cfg:   cfg,
		alloc: a,
		clock: cfg.Clock,
		seqs:  make(map[SeqID]*Seq),
		plan:  StepPlan{BlockSize: cfg.BlockSize},
	}
	for i := cfg.StateSlots - 1; i >= 0; i-- {
		s.freeSlots = append(s.freeSlots, i)
	}
	return s, nil
}

// Config returns the configuration with its defaults filled in.
func (s *Scheduler) Config() Config { return s.cfg }

// Allocator exposes the block allocator for inspection (Check, counters).
// Do not mutate it.
func (s *Scheduler) Allocator() *BlockAllocator { return s.alloc }

// Lookup returns a live sequence, or nil.
func (s *Scheduler) Lookup(id SeqID) *Seq { return s.seqs[id] }

// Submit queues a request. It fails with ErrEmptyPrompt, ErrPromptTooLong
// (the error says which limit: num_ctx or the KV pool), ErrQueueFull (the
// server answers 503 with Retry-After) or ErrClosed. The sequence is
// admitted by a later Step; its events come out of Events.
func (s *Scheduler) Submit(r Request) (*Seq, error) {
	if s.closed {
		return nil, ErrClosed
	}
	if len(r.Prompt) == 0 {
		return nil, ErrEmptyPrompt
	}
	numCtx := r.NumCtx
	if numCtx <= 0 {
		numCtx = s.cfg.DefaultNumCtx
	}
	if s.cfg.MaxNumCtx > 0 {
		numCtx = min(numCtx, s.cfg.MaxNumCtx)
	}
	if len(r.Prompt) >= numCtx {
		return nil, fmt.Errorf("%w: %d tokens, num_ctx is %d (prompt and generated tokens together)", ErrPromptTooLong, len(r.Prompt), numCtx)
	}
	pool := s.alloc.NumBlocks() * s.alloc.BlockSize()
	if len(r.Prompt) >= pool {
		return nil, fmt.Errorf("%w: %d tokens, the KV cache pool holds %d", ErrPromptTooLong, len(r.Prompt), pool)
	}
	// A sequence alone in the pool can always grow to num_ctx.
	numCtx = min(numCtx, pool)
	if len(s.waiting) >= s.cfg.MaxQueue {
		s.m.Rejected++
		return nil, fmt.Errorf("%w: %d requests waiting", ErrQueueFull, len(s.waiting))
	}
	s.nextID++
	extra := 64 // room for generated tokens before the first growth
	if r.NumPredict > 0 {
		extra = min(r.NumPredict, 4096)
	}
	capHint := len(r.Prompt) + extra
	q := &Seq{
		slot:       -1,
		restore:    -1,
		id:         s.nextID,
		tag:        r.Tag,
		tokens:     make([]int32, len(r.Prompt), min(numCtx, capHint)),
		promptLen:  len(r.Prompt),
		numCtx:     numCtx,
		numPredict: max(0, r.NumPredict),
		salt:       r.CacheSalt,
	}
	copy(q.tokens, r.Prompt)
	q.hashes = make([]BlockHash, 0, cap(q.tokens)/s.cfg.BlockSize+1)
	wait := r.QueueTimeout
	if wait == 0 {
		wait = s.cfg.QueueTimeout
	}
	if wait > 0 {
		q.deadline = s.clock.Now().Add(wait)
	}
	s.seqs[q.id] = q
	s.waiting = append(s.waiting, q) // IDs increase: stays sorted
	s.m.Submitted++
	return q, nil
}

// Cancel ends a sequence (the client went away): it reports whether the
// sequence was live. Its blocks are freed now, or when its plan in flight
// comes back.
func (s *Scheduler) Cancel(id SeqID) bool {
	q := s.seqs[id]
	if q == nil {
		return false
	}
	s.m.Cancelled++
	s.finish(q, FinishCancel, ErrCancelled, NoToken)
	return true
}

// Finish ends a sequence for a reason found outside the scheduler (a stop
// string in the decoded text: FinishStop). It reports whether the sequence
// was live.
func (s *Scheduler) Finish(id SeqID, reason FinishReason) bool {
	q := s.seqs[id]
	if q == nil {
		return false
	}
	s.finish(q, reason, nil, NoToken)
	return true
}

// Close ends every sequence with ErrClosed (or err) and refuses new ones.
func (s *Scheduler) Close(err error) {
	if err == nil {
		err = ErrClosed
	}
	s.closed = true
	for len(s.running) > 0 {
		s.finish(s.running[len(s.running)-1], FinishError, err, NoToken)
	}
	for len(s.waiting) > 0 {
		s.finish(s.waiting[len(s.waiting)-1], FinishError, err, NoToken)
	}
}

// Events returns the events queued since the last call, in order: the
// tokens of each Complete, and ends from Submit's deadline, Cancel, Finish,
// Fail and Close. The slice is valid until the next call.
func (s *Scheduler) Events() []Event {
	ev := s.events
	s.events = s.spare[:0]
	s.spare = ev
	return ev
}

// Metrics returns a snapshot.
func (s *Scheduler) Metrics() Metrics {
	m := s.m
	m.Waiting, m.Running = len(s.waiting), len(s.running)
	a := s.alloc
	m.BlocksTotal, m.BlocksUsed, m.BlocksFree, m.BlocksCached = a.NumBlocks(), a.Used(), a.Free(), a.Cached()
	m.BlockSize = a.BlockSize()
	st := a.Stats()
	m.PrefixQueries, m.PrefixHits, m.PrefixQueryTokens, m.PrefixHitTokens = st.Queries, st.Hits, st.QueryTokens, st.HitTokens
	m.Evictions = st.Evictions
	m.StateSnapshots, m.SnapshotEvictions = a.Snapshots(), st.SnapshotEvictions
	return m
}

// Step plans the next engine step, or returns nil when there is nothing to
// run. The policy, in order:
//
//  1. Waiting requests past their queue deadline end with ErrQueueTimeout.
//  2. Decodes: every running sequence with one token left to feed gets it,
//     oldest first. When its next block cannot be had, the newest running
//     sequence is preempted (its blocks freed, cached where hashed; it
//     goes back to the waiting queue in ID order, to recompute its prompt
//     and generated tokens), again until the block fits or the sequence
//     preempted itself.
//  3. Prefill chunks: running sequences still prefilling, oldest first,
//     take what is left of the token budget, and at most PrefillChunk
//     tokens together when the step decodes.
//  4. Admission, strictly first come first served: while budget and a
//     running slot remain, the oldest waiting sequence is admitted if the
//     blocks for all its tokens fit (less its cached prefix, and less the
//     watermark while others run); if it does not fit, nothing behind it
//     is admitted, so no request is bypassed forever. It gets its first
//     chunk in the same step.
//
// The plan must be handed back to Complete or Fail before the next Step.
func (s *Scheduler) Step() *StepPlan {
	if s.flying {
		panic("scheduler: Step before the previous plan came back")
	}
	s.expire(s.clock.Now())
	p := &s.plan
	p.Seqs, p.Tokens, p.Pos, p.Seq, p.Outputs = p.Seqs[:0], p.Tokens[:0], p.Pos[:0], p.Seq[:0], p.Outputs[:0]
	budget := s.cfg.MaxBatchTokens

	// 2. Decodes.
	for i := 0; i < len(s.running) && budget > 0; i++ {
		q := s.running[i]
		if q.remaining() != 1 {
			continue
		}
		for {
			ap, err := s.alloc.PlanGrow(q.table, q.computed+1)
			if err == nil {
				s.alloc.Apply(&ap)
				break
			}
			s.preempt(s.running[len(s.running)-1])
			if q.state != stateRunning {
				break
			}
		}
		if q.state == stateRunning {
			s.add(q, 1)
			budget--
		}
	}
	// 3. Prefill chunks.
	if len(p.Tokens) > 0 {
		budget = min(budget, s.cfg.PrefillChunk)
	}
	for i := 0; i < len(s.running) && budget > 0; i++ {
		q := s.running[i]
		if q.remaining() <= 1 {
			continue
		}
		// Its blocks all came at admission.
		budget -= s.add(q, min(q.remaining(), budget))
	}
	// 4. Admission.
	for budget > 0 && len(s.running) < s.cfg.MaxRunning && len(s.waiting) > 0 {
		q := s.waiting[0]
		q.hashes = s.alloc.Hashes(q.salt, q.hashes, q.tokens)
		hashes := q.hashes
		restore, cuts := -1, q.snapAt[:0]
		if s.cfg.StateSlots > 0 {
			if len(s.freeSlots) == 0 { // one finished in flight still holds its slot
				break
			}
			hashes, restore, cuts = s.statePrefix(q, cuts)
		}
		ap, err := s.alloc.PlanNew(q.salt, q.tokens, hashes)
		if err != nil {
			break
		}
		if len(s.running) > 0 && ap.Cost() > s.alloc.Available()-s.cfg.WatermarkBlocks {
			break
		}
		s.waiting = slices.Delete(s.waiting, 0, 1)
		q.table = s.alloc.Apply(&ap)
		if s.cfg.StateSlots > 0 {
			q.slot = s.freeSlots[len(s.freeSlots)-1]
			s.freeSlots = s.freeSlots[:len(s.freeSlots)-1]
		}
		q.computed = ap.SharedBlocks() * s.cfg.BlockSize
		q.restore, q.snapAt = restore, cuts
		q.state = stateRunning
		q.admitted = true
		s.running = insertByID(s.running, q)
		budget -= s.add(q, min(q.remaining(), budget))
	}
	if len(p.Seqs) == 0 {
		return nil
	}
	s.flying = true
	s.m.Steps++
	return p
}

// statePrefix is admission's prefix lookup for a hybrid model: it returns
// the block hashes to share (the longest cached prefix whose last block
// has a state snapshot, nil for none), that snapshot's slot (-1 for none),
// and cuts extended with the boundaries where q should leave snapshots:
// where its tokens leave the longest cached prefix, when that is beyond
// the restored one (a prefix now seen shared), and its prompt's last block
// boundary.
func (s *Scheduler) statePrefix(q *Seq, cuts []int) ([]BlockHash, int, []int) {
	if s.cfg.StateSnapshots == 0 {
		return nil, -1, cuts
	}
	bs := s.cfg.BlockSize
	match := s.alloc.Lookup(q.salt, q.tokens, q.hashes, (len(q.tokens)-1)/bs)
	k := len(match)
	j, restore := k, -1
	for ; j > 0; j-- {
		if restore = s.alloc.SnapshotOf(match[j-1]); restore >= 0 {
			break
		}
	}
	if k > j {
		cuts = append(cuts, k*bs)
	}
	if end := (q.promptLen - 1) / bs * bs; end > j*bs && end != k*bs {
		cuts = append(cuts, end)
		slices.Sort(cuts)
	}
	return q.hashes[:j], restore, cuts
}

// add schedules q's next tokens, n at most: fewer when a state snapshot is
// to be taken at a boundary before that (the chunk ends there). It returns
// how many.
func (s *Scheduler) add(q *Seq, n int) int {
	p := &s.plan
	ss := SeqStep{ID: q.id, Tag: q.tag, Blocks: q.table.blocks, Start: q.computed, Offset: len(p.Tokens), Output: -1, StateSlot: q.slot, Restore: q.restore, Snapshot: -1, seq: q}
	if q.restore >= 0 {
		s.alloc.UseSnapshot(q.restore)
		q.restore = -1
	}
	for len(q.snapAt) > 0 && q.snapAt[0] <= q.computed {
		q.snapAt = q.snapAt[1:]
	}
	if len(q.snapAt) > 0 && q.snapAt[0] <= q.computed+n {
		if slot := s.alloc.ReserveSnapshot(); slot >= 0 {
			n = q.snapAt[0] - q.computed
			ss.Snapshot = slot
		}
		q.snapAt = q.snapAt[1:]
	}
	ss.N = n
	for j := q.computed; j < q.computed+n; j++ {
		p.Tokens = append(p.Tokens, q.tokens[j])
		p.Pos = append(p.Pos, int32(j))
		p.Seq = append(p.Seq, int32(len(p.Seqs)))
	}
	if q.computed+n == len(q.tokens) {
		ss.Logits = true
		ss.Output = len(p.Outputs)
		p.Outputs = append(p.Outputs, len(p.Tokens)-1)
	}
	if q.remaining() == 1 {
		s.m.DecodeTokens++
	} else {
		s.m.PrefillTokens += int64(n)
	}
	p.Seqs = append(p.Seqs, ss)
	q.inflight = true
	return n
}

// Complete takes back the plan from Step with the engine's results, one
// per output row (results[i] for p.Outputs[i]): the sequences advance,
// full blocks enter the prefix cache, sampled tokens are appended and
// queued as Events, and sequences that hit a stop token, num_predict or
// num_ctx end.
func (s *Scheduler) Complete(p *StepPlan, results []Result) {
	if len(results) != len(p.Outputs) {
		panic(fmt.Sprintf("scheduler: %d results for %d output rows", len(results), len(p.Outputs)))
	}
	s.takeBack(p)
	for i := range p.Seqs {
		ss := &p.Seqs[i]
		q := ss.seq
		q.inflight = false
		if q.state == stateDone { // ended while in flight
			if ss.Snapshot >= 0 {
				s.alloc.FreeSnapshot(ss.Snapshot)
			}
			s.release(q)
			continue
		}
		q.computed += ss.N
		q.hashes = s.alloc.Hashes(q.salt, q.hashes, q.tokens[:q.computed])
		s.alloc.Commit(q.table, q.tokens, q.hashes, q.computed)
		if ss.Snapshot >= 0 {
			s.alloc.AttachSnapshot(ss.Snapshot, q.table, q.computed/s.cfg.BlockSize)
		}
		if !ss.Logits {
			continue
		}
		r := results[ss.Output]
		if r.Err != nil {
			s.finish(q, FinishError, fmt.Errorf("%w: %w", ErrStepFailed, r.Err), NoToken)
			continue
		}
		if r.Token < 0 {
			s.finish(q, FinishError, fmt.Errorf("%w: sampled token %d", ErrStepFailed, r.Token), NoToken)
			continue
		}
		q.tokens = append(q.tokens, r.Token)
		gen := len(q.tokens) - q.promptLen
		switch {
		case r.Stop:
			s.finish(q, FinishStop, nil, r.Token)
		case q.numPredict > 0 && gen >= q.numPredict, len(q.tokens) >= q.numCtx:
			s.finish(q, FinishLength, nil, r.Token)
		default:
			s.events = append(s.events, Event{ID: q.id, Token: r.Token})
		}
		if r.Extra != nil { // the event just queued carries r.Token
			s.events[len(s.events)-1].Extra = r.Extra
		}
	}
}

// Fail takes back the plan from Step when the engine could not run it:
// its sequences end with FinishError and an error wrapping ErrStepFailed
// and err; the others go on.
func (s *Scheduler) Fail(p *StepPlan, err error) {
	s.takeBack(p)
	var e error = fmt.Errorf("%w: %w", ErrStepFailed, err)
	for i := range p.Seqs {
		q := p.Seqs[i].seq
		q.inflight = false
		if p.Seqs[i].Snapshot >= 0 {
			s.alloc.FreeSnapshot(p.Seqs[i].Snapshot)
		}
		if q.state == stateDone {
			s.release(q)
			continue
		}
		s.finish(q, FinishError, e, NoToken)
	}
}

func (s *Scheduler) takeBack(p *StepPlan) {
	if !s.flying || p != &s.plan {
		panic("scheduler: Complete or Fail without a plan in flight")
	}
	s.flying = false
}

// expire ends waiting requests, never admitted, whose deadline has passed.
func (s *Scheduler) expire(now time.Time) {
	for i := 0; i < len(s.waiting); {
		q := s.waiting[i]
		if q.admitted || q.deadline.IsZero() || now.Before(q.deadline) {
			i++
			continue
		}
		s.m.TimedOut++
		s.finish(q, FinishTimeout, fmt.Errorf("%w: %d tokens waited past the queue deadline", ErrQueueTimeout, q.promptLen), NoToken)
	}
}

// preempt sends running q back to the waiting queue to recompute later.
func (s *Scheduler) preempt(q *Seq) {
	s.running = removeSeq(s.running, q)
	s.release(q)
	q.computed = 0
	q.snapAt = q.snapAt[:0]
	q.state = stateWaiting
	q.preempts++
	s.waiting = insertByID(s.waiting, q)
	s.m.Preemptions++
}

// finish ends q; tok, when not NoToken, rides on the final event.
func (s *Scheduler) finish(q *Seq, reason FinishReason, err error, tok int32) {
	if q.state == stateDone {
		return
	}
	switch q.state {
	case stateRunning:
		s.running = removeSeq(s.running, q)
	case stateWaiting:
		s.waiting = removeSeq(s.waiting, q)
	}
	q.state = stateDone
	q.reason, q.err = reason, err
	delete(s.seqs, q.id)
	if !q.inflight {
		s.release(q)
	}
	s.m.Finished++
	s.events = append(s.events, Event{ID: q.id, Token: tok, Done: true, Reason: reason, Err: err})
}

func (s *Scheduler) release(q *Seq) {
	if q.table != nil {
		s.alloc.Release(q.table)
		q.table = nil
	}
	if q.slot >= 0 {
		s.freeSlots = append(s.freeSlots, q.slot)
		q.slot = -1
	}
}

func insertByID(list []*Seq, q *Seq) []*Seq {
	i, _ := slices.BinarySearchFunc(list, q.id, func(e *Seq, id SeqID) int {
		switch {
		case e.id < id:
			return -1
		case e.id > id:
			return 1
		}
		return 0
	})
	return slices.Insert(list, i, q)
}

func removeSeq(list []*Seq, q *Seq) []*Seq {
	for i := len(list) - 1; i >= 0; i-- { // usually the newest
		if list[i] == q {
			return slices.Delete(list, i, i+1)
		}
	}
	panic("scheduler: sequence not in its queue")
}

// Check verifies the scheduler's invariants and the allocator's: queues
// ordered by ID and disjoint; every live sequence in exactly one;
// running sequences hold a live table covering their computed tokens and,
// while prefilling, all their tokens; waiting ones hold none; limits kept.
// checkSlots checks the recurrent state slots (Config.StateSlots): each
// held by one sequence that owns a live block table, the rest free.
func (s *Scheduler) checkSlots() error {
	if s.cfg.StateSlots == 0 {
		return nil
	}
	held := make([]bool, s.cfg.StateSlots)
	mark := func(slot int, who string) error {
		if slot < 0 || slot >= len(held) || held[slot] {
			return fmt.Errorf("state slot %d (%s) out of range or held twice", slot, who)
		}
		held[slot] = true
		return nil
	}
	for _, q := range s.running {
		if err := mark(q.slot, q.String()); err != nil {
			return err
		}
	}
	for _, slot := range s.freeSlots {
		if err := mark(slot, "free"); err != nil {
			return err
		}
	}
	for _, q := range s.waiting {
		if q.slot >= 0 {
			return fmt.Errorf("%v waits holding state slot %d", q, q.slot)
		}
	}
	// A sequence that finished while its step was in flight still holds
	// its slot until Complete.
	free := len(s.freeSlots) + len(s.running)
	if free > s.cfg.StateSlots || (!s.flying && free != s.cfg.StateSlots) {
		return fmt.Errorf("%d state slots free and %d running of %d", len(s.freeSlots), len(s.running), s.cfg.StateSlots)
	}
	return nil
}

func (s *Scheduler) Check() error {
	if err := s.alloc.Check(); err != nil {
		return fmt.Errorf("allocator: %w", err)
	}
	n := 0
	for name, list := range map[string][]*Seq{"waiting": s.waiting, "running": s.running} {
		for i, q := range list {
			if i > 0 && list[i-1].id >= q.id {
				return fmt.Errorf("%s queue out of ID order at %d", name, i)
			}
			if s.seqs[q.id] != q {
				return fmt.Errorf("%v in %s queue but not live", q, name)
			}
			n++
		}
	}
	if n != len(s.seqs) {
		return fmt.Errorf("%d live sequences, %d in queues", len(s.seqs), n)
	}
	if len(s.running) > s.cfg.MaxRunning {
		return fmt.Errorf("%d running > MaxRunning %d", len(s.running), s.cfg.MaxRunning)
	}
	if err := s.checkSlots(); err != nil {
		return err
	}
	tables := 0
	bs := s.cfg.BlockSize
	for _, q := range s.running {
		if q.state != stateRunning || q.table == nil || !q.table.live {
			return fmt.Errorf("%v running without a live table", q)
		}
		if q.computed < 0 || q.computed >= len(q.tokens) {
			return fmt.Errorf("%v computed %d of %d tokens", q, q.computed, len(q.tokens))
		}
		need := q.computed // decoding: the next block comes with the next step
		if q.remaining() > 1 {
			need = len(q.tokens) // prefilling: all its blocks came at admission
		}
		if len(q.table.blocks)*bs < need {
			return fmt.Errorf("%v: %d blocks for %d tokens (%d computed)", q, len(q.table.blocks), len(q.tokens), q.computed)
		}
		tables++
	}
	for _, q := range s.waiting {
		if q.restore >= 0 || len(q.snapAt) > 0 {
			return fmt.Errorf("%v waits with snapshot restore %d, cuts %v", q, q.restore, q.snapAt)
		}
		if q.state != stateWaiting || q.table != nil || q.computed != 0 || q.inflight {
			return fmt.Errorf("%v waiting with state %d, table %v, computed %d", q, q.state, q.table != nil, q.computed)
		}
	}
	for _, q := range s.seqs {
		if len(q.tokens) > q.numCtx {
			return fmt.Errorf("%v holds %d tokens > num_ctx %d", q, len(q.tokens), q.numCtx)
		}
		if q.inflight != (s.flying && q.state == stateRunning && s.inPlan(q)) {
			return fmt.Errorf("%v in flight %v", q, q.inflight)
		}
	}
	if s.flying {
		for i := range s.plan.Seqs {
			if q := s.plan.Seqs[i].seq; q.state == stateDone {
				tables++ // released when the plan comes back
			}
		}
	}
	if got := len(s.alloc.tables); got != tables {
		return fmt.Errorf("allocator holds %d tables, sequences %d", got, tables)
	}
	return nil
}

func (s *Scheduler) inPlan(q *Seq) bool {
	for i := range s.plan.Seqs {
		if s.plan.Seqs[i].seq == q {
			return true
		}
	}
	return false
}
