package engine

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/device"
	"github.com/hearth-llm/hearth/runtime/grammar"
	"github.com/hearth-llm/hearth/runtime/sample"
	"github.com/hearth-llm/hearth/scheduler"
)

// BatchConfig sizes a Batched engine.
type BatchConfig struct {
	// KVBudget is the bytes of KV cache storage for all sequences together
	// (default 1 GiB, capped at what the model's full context needs for
	// MaxRunning sequences). Nothing is reserved per sequence up front.
	KVBudget       int64
	BlockSize      int // positions per KV block; default 16
	MaxBatchTokens int // tokens per step; default 512
	// PrefillChunk caps the prompt tokens of a step in which sequences
	// decode, bounding the stall a newly arrived prompt causes them.
	// Default: 64 on the CPU (benchmarks/serve/RESULTS.md: on two cores
	// it cut the worst inter-token stall from 7.6 s to 1.3 s at the same
	// throughput), MaxBatchTokens on a GPU (a full batch costs
	// milliseconds there).
	PrefillChunk int

	// MaxRunning is the sequences decoding together; default 64. A hybrid
	// model runs fewer when their recurrent states would take more than
	// half of KVBudget.
	MaxRunning    int
	MaxQueue      int // waiting requests before Submit fails; default 256
	DefaultNumCtx int // a request's context when it names none; default min(model, 4096)
	// KVType is the cache's storage type: "f16" (default) or "q8_0",
	// which holds about twice the tokens in the same budget.
	KVType string
	// QueueTimeout fails a request not admitted within it (0: no limit).
	QueueTimeout time.Duration
	// StateSnapshots, for hybrid models, is how many recurrent state
	// snapshots the prefix cache keeps (scheduler.Config.StateSnapshots),
	// taken from KVBudget like the running sequences' states. Default:
	// MaxRunning, or as many as a quarter of the budget left after the
	// running states holds; negative: none (no prefix reuse).
	StateSnapshots int
}

// SeqOptions are one request's limits and sampling options.
type SeqOptions struct {
	NumCtx, NumPredict int
	Sample             sample.Options
	// Grammar constrains the output (structured outputs); nil: none.
	Grammar *grammar.Grammar
	// Logprobs asks for each sampled token's log-probability, and
	// TopLogprobs (0..sample.MaxTopLogprobs) for that many alternatives:
	// a *sample.TokenLogprobs rides with each token as its Extra
	// (scheduler.Stream.RecvExtra). They are the raw model's
	// (sample.Logprobs), before any sampling transform or grammar mask.
	Logprobs    bool
	TopLogprobs int
	// Preserve lists control tokens that the grammar may match by their
	// text (NewMatcherPreserving); end-of-generation tokens never are.
	Preserve []int32
	// Adapter names a LoRA adapter registered on the model
	// (Model.LoadAdapter) to run the request with; "": the bare model.
	// Requests of different adapters share a step (each row gets its
	// own adapter's deltas) but never KV blocks.
	Adapter string
}

// Batched runs many sequences at once: a scheduler.Loop plans each step
// (decodes plus prefill chunks under a token budget, over a paged KV pool)
// and Batched executes it as one forward pass, then samples each
// sequence's next token with that sequence's own sampler and seed.
type Batched struct {
	loop     *scheduler.Loop
	st       *stepper
	capacity int
}

// stepper implements scheduler.Engine. Only the loop goroutine calls it
// (Run and End, one at a time), so its fields need no lock.
type stepper struct {
	m        *Model
	pool     backend.KVPool
	states   backend.StatePool // hybrid models: a recurrent state slot per running sequence
	snaps    backend.StatePool // and the prefix cache's state snapshots (SeqStep.Restore, Snapshot)
	rec      backend.Recurrent
	samplers map[scheduler.SeqID]*sample.Sampler
	matchers map[scheduler.SeqID]*grammar.Matcher
	raw      []float32 // a row before its grammar mask, for logprobs
	kvs      []backend.KV
	adapters []arch.Adapter
	batch    arch.Batch
}

// seqTag travels with a request through the scheduler to Run.
type seqTag struct {
	prompt   []int32
	opts     sample.Options
	grammar  *grammar.Grammar
	logprobs bool
	top      int
	preserve []int32
	adapter  arch.Adapter // nil: the bare model
}

// NewBatched allocates the KV pool and the scheduler. Call Run to serve.
func (m *Model) NewBatched(c BatchConfig) (*Batched, error) {
	info := m.Arch.Info()
	if info.EmbeddingOnly {
		return nil, fmt.Errorf("%s: %w", info.Arch, ErrEmbeddingOnly)
	}
	if c.BlockSize <= 0 {
		c.BlockSize = 16
	}
	if c.MaxRunning <= 0 {
		c.MaxRunning = 64
	}
	if c.PrefillChunk <= 0 && m.place.Kind == device.CPU {
		c.PrefillChunk = 64
	}
	if c.DefaultNumCtx <= 0 {
		c.DefaultNumCtx = min(info.ContextLength, 4096)
	}
	if cs, ok := m.Arch.(arch.ContextSizer); ok {
		cs.SetContext(c.DefaultNumCtx) // one setting for the batch, as llama.cpp's n_ctx_seq
	}
	kvType := quant.F16
	if c.KVType != "" {
		t, err := quant.ParseType(c.KVType)
		if err != nil {
			return nil, fmt.Errorf("KV cache type: %w", err)
		}
		kvType = t
	}
	perPos, err := m.needs.KVBytesPerPosition(kvType)
	if err != nil {
		return nil, fmt.Errorf("KV cache type %v: %w", kvType, err)
	}
	// K and V rows for every layer.
	perBlock := int64(c.BlockSize) * int64(perPos)
	if c.KVBudget <= 0 {
		c.KVBudget = 1 << 30
	}
	// Hybrid models: a fixed recurrent state per running sequence, taken
	// from the budget first (one slot per sequence MaxRunning admits, and
	// MaxRunning lowered to the slots that fit in half the budget).
	sm, _ := m.Arch.(arch.Stateful)
	stateSlots, snapshots := 0, 0
	if sm != nil && len(sm.StateSizes()) > 0 {
		// At most half the budget: fewer sequences run at once when their
		// states would take more (a 9B Qwen 3.5 holds ~50 MiB each).
		stateSlots = int(min(int64(c.MaxRunning), max(1, c.KVBudget/2/max(1, int64(m.needs.StateBytes)))))
		c.MaxRunning = stateSlots
		stateBytes := int64(m.needs.StateBytes) * int64(stateSlots)
		if stateBytes >= c.KVBudget {
			return nil, fmt.Errorf("KV budget of %d bytes does not hold the recurrent state of %d sequences (%d bytes each)", c.KVBudget, stateSlots, m.needs.StateBytes)
		}
		c.KVBudget -= stateBytes
		snapshots = c.StateSnapshots
		if snapshots == 0 {
			snapshots = int(min(int64(c.MaxRunning), c.KVBudget/4/max(1, int64(m.needs.StateBytes))))
		}
		snapshots = max(0, snapshots)
		snapBytes := int64(m.needs.StateBytes) * int64(snapshots)
		if snapBytes >= c.KVBudget {
			return nil, fmt.Errorf("KV budget of %d bytes does not hold %d recurrent state snapshots (%d bytes each)", c.KVBudget, snapshots, m.needs.StateBytes)
		}
		c.KVBudget -= snapBytes
	}
	blocks := c.KVBudget / perBlock
	// More than every sequence's whole context is never useful.
	blocks = min(blocks, int64(c.MaxRunning)*int64((info.ContextLength+c.BlockSize-1)/c.BlockSize)+int64(c.MaxRunning))
	if blocks < 2 {
		return nil, fmt.Errorf("KV budget of %d bytes holds %d blocks of %d tokens (%d bytes each): too small", c.KVBudget, blocks, c.BlockSize, perBlock)
	}
	if avail, ok := memAvailable(); ok && uint64(blocks*perBlock) > avail {
		return nil, fmt.Errorf("%w: a KV cache of %d MiB does not fit in the %d MiB available", ErrOutOfMemory, blocks*perBlock>>20, avail>>20)
	}
	var pool backend.KVPool
	if kvType == quant.F16 {
		pool, err = m.backend.NewKVPool(info.CacheLayers(), int(blocks), c.BlockSize, info.KVDim)
	} else if tp, ok := m.backend.(backend.TypedKVPools); ok {
		pool, err = tp.NewTypedKVPool(info.CacheLayers(), int(blocks), c.BlockSize, info.KVDim, info.HeadDim, kvType)
	} else {
		err = fmt.Errorf("%w: the %s backend stores the KV cache only as F16", quant.ErrUnsupported, m.backend.Name())
	}
	if err != nil {
		return nil, err
	}
	var states, snaps backend.StatePool
	var rec backend.Recurrent
	if stateSlots > 0 {
		if states, err = sm.NewStatePool(stateSlots); err != nil {
			m.backend.Free(pool)
			return nil, err
		}
		if rec, _ = m.backend.(backend.Recurrent); rec == nil {
			snapshots = 0
		}
		if snapshots > 0 {
			if snaps, err = sm.NewStatePool(snapshots); err != nil {
				m.backend.Free(pool)
				return nil, err
			}
		}
	}
	s, err := scheduler.New(scheduler.Config{
		NumBlocks: int(blocks), BlockSize: c.BlockSize,
		MaxBatchTokens: c.MaxBatchTokens, PrefillChunk: c.PrefillChunk, MaxRunning: c.MaxRunning, MaxQueue: c.MaxQueue,
		DefaultNumCtx: min(c.DefaultNumCtx, int(blocks)*c.BlockSize), MaxNumCtx: info.ContextLength,
		QueueTimeout: c.QueueTimeout, StateSlots: stateSlots, StateSnapshots: snapshots,
	})
	if err != nil {
		return nil, err
	}
	st := &stepper{m: m, pool: pool, states: states, snaps: snaps, rec: rec, samplers: map[scheduler.SeqID]*sample.Sampler{}, matchers: map[scheduler.SeqID]*grammar.Matcher{}}
	return &Batched{loop: scheduler.NewLoop(s, st), st: st, capacity: int(blocks) * c.BlockSize}, nil
}

// Serve steps until ctx ends, then fails what is still queued or running.
// It must run (in its own goroutine) for submitted requests to progress.
func (b *Batched) Serve(ctx context.Context) error { return b.loop.Run(ctx) }

// Capacity is the token positions the KV pool holds: the longest context
// one sequence can have.
func (b *Batched) Capacity() int { return b.capacity }

// Metrics returns the scheduler's gauges and counters.
func (b *Batched) Metrics() scheduler.Metrics { return b.loop.Metrics() }

// Submit queues a prompt. Tokens come out of the returned stream; it fails
// at once with scheduler.ErrQueueFull when the queue is full.
func (b *Batched) Submit(prompt []int32, o SeqOptions) (*scheduler.Stream, error) {
	if err := o.Sample.Validate(); err != nil {
		return nil, err
	}
	ad, err := b.st.m.adapter(o.Adapter)
	if err != nil {
		return nil, err
	}
	tag := &seqTag{prompt: append([]int32(nil), prompt...), opts: o.Sample, grammar: o.Grammar,
		logprobs: o.Logprobs, top: o.TopLogprobs, preserve: o.Preserve}
	var salt uint64
	if ad != nil {
		tag.adapter, salt = ad.ad, ad.salt
	}
	return b.loop.Submit(scheduler.Request{
		Prompt: prompt, NumCtx: o.NumCtx, NumPredict: o.NumPredict, Tag: tag, CacheSalt: salt,
	})
}

// Run implements scheduler.Engine: one forward pass over the plan, then
// one sampled token per output row.
func (b *stepper) Run(_ context.Context, p *scheduler.StepPlan, results []scheduler.Result) error {
	b.kvs, b.adapters = b.kvs[:0], b.adapters[:0]
	adapted := false
	for i := range p.Seqs {
		b.kvs = append(b.kvs, &backend.PagedKV{Pool: b.pool, Table: p.Seqs[i].Blocks, States: b.states, Slot: p.Seqs[i].StateSlot})
		var ad arch.Adapter
		if tag, ok := p.Seqs[i].Tag.(*seqTag); ok && tag.adapter != nil {
			ad, adapted = tag.adapter, true
		}
		b.adapters = append(b.adapters, ad)
	}
	// Snapshots of shared prefixes: restored before the pass, taken after
	// it (a slot may be restored from and written in one step).
	b.copyStates(p, true)
	b.batch = arch.Batch{IDs: p.Tokens, Pos: p.Pos, Seq: p.Seq, KVs: b.kvs, Outputs: p.Outputs}
	if adapted {
		b.batch.Adapters = b.adapters
	}
	if err := b.m.forward(&b.batch, func(logits []float32) error { return b.sample(p, logits, results) }); err != nil {
		return err
	}
	b.copyStates(p, false)
	return nil
}

// copyStates copies the plan's restores (snapshot to sequence) or its
// snapshots (sequence to snapshot), under the model's lock as the backend
// keeps its error state.
func (b *stepper) copyStates(p *scheduler.StepPlan, restore bool) {
	if b.snaps == nil {
		return
	}
	b.m.mu.Lock()
	defer b.m.mu.Unlock()
	for i := range p.Seqs {
		switch ss := &p.Seqs[i]; {
		case restore && ss.Restore >= 0:
			b.rec.CopyState(b.states, ss.StateSlot, b.snaps, ss.Restore)
		case !restore && ss.Snapshot >= 0:
			b.rec.CopyState(b.snaps, ss.Snapshot, b.states, ss.StateSlot)
		}
	}
}

// sample draws each output row's next token with its sequence's sampler.
func (b *stepper) sample(p *scheduler.StepPlan, logits []float32, results []scheduler.Result) error {
	vocab := b.m.Arch.Info().VocabSize
	for i := range p.Seqs {
		s := &p.Seqs[i]
		if s.Output < 0 {
			continue
		}
		tag, ok := s.Tag.(*seqTag)
		if !ok {
			return errors.New("engine: step without sampling options")
		}
		smp := b.samplers[s.ID]
		if smp == nil {
			var err error
			if smp, err = sample.New(tag.opts, vocab); err != nil {
				return err
			}
			for _, t := range tag.prompt {
				smp.Accept(t)
			}
			b.samplers[s.ID] = smp
			if tag.grammar != nil {
				b.matchers[s.ID] = b.m.NewMatcherPreserving(tag.grammar, tag.preserve)
			}
		}
		row := logits[s.Output*vocab : (s.Output+1)*vocab]
		if err := checkFinite(row); err != nil {
			// This sequence fails; the others in the step go on.
			results[s.Output] = scheduler.Result{Token: -1, Err: err}
			continue
		}
		matcher := b.matchers[s.ID]
		raw := row
		if tag.logprobs && matcher != nil {
			b.raw = append(b.raw[:0], row...) // the mask writes row
			raw = b.raw
		}
		constrain(matcher, row)
		tok := smp.Sample(row)
		smp.Accept(tok)
		done := accept(matcher, tok)
		results[s.Output] = scheduler.Result{Token: tok, Stop: b.m.Tok.IsEOG(tok) || done}
		if tag.logprobs {
			lp := sample.Logprobs(raw, tok, tag.top)
			results[s.Output].Extra = &lp
		}
	}
	return nil
}

// End implements scheduler.Engine.
func (b *stepper) End(id scheduler.SeqID) {
	delete(b.samplers, id)
	delete(b.matchers, id)
}

var _ scheduler.Engine = (*stepper)(nil)
