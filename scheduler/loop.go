package scheduler

import (
	"context"
	"fmt"
	"io"
	"sync"
)

// Engine runs step plans for a Loop; the runtime implements it. The Loop
// calls both methods from its own goroutine, one call at a time.
type Engine interface {
	// Run evaluates p: one forward pass over its rows, reading and writing
	// KV through its block tables, then one sampled token per output row
	// into results[i] (for row p.Outputs[i]). It reads only p, and keeps
	// nothing of it. An error fails p's sequences; the Loop goes on.
	Run(ctx context.Context, p *StepPlan, results []Result) error
	// End says a sequence ended (it will not be in a plan again), so the
	// engine can drop what it keeps per sequence, such as its sampler.
	// A preempted sequence has not ended.
	End(id SeqID)
}

// Loop serves a Scheduler with an Engine: Run is the step loop, and
// Submit, Stream and Metrics may be called from any goroutine. The
// scheduler's state is guarded by one mutex that the step loop holds only
// between engine runs, never during one, so Submit answers at once
// (ErrQueueFull included) even while a long prefill runs, and a cancelled
// sequence's blocks are freed when the step in flight comes back.
type Loop struct {
	e    Engine
	wake chan struct{}

	mu      sync.Mutex
	s       *Scheduler
	streams map[SeqID]*Stream
	ended   []SeqID // to pass to Engine.End
}

// NewLoop serves s with e. Once Run starts, s belongs to the Loop.
func NewLoop(s *Scheduler, e Engine) *Loop {
	return &Loop{e: e, s: s, wake: make(chan struct{}, 1), streams: make(map[SeqID]*Stream)}
}

// Run steps until ctx is done, then ends every sequence with ErrClosed and
// returns ctx's error. A plan in flight is passed ctx, so the engine may
// stop early; a panic in the engine fails that step's sequences, as an
// error would.
func (l *Loop) Run(ctx context.Context) error {
	var results []Result
	for {
		l.mu.Lock()
		if err := ctx.Err(); err != nil {
			l.s.Close(fmt.Errorf("%w: %w", ErrClosed, err))
			l.deliver()
			l.mu.Unlock()
			l.endSeqs()
			return err
		}
		p := l.s.Step()
		l.deliver() // queue timeouts
		l.mu.Unlock()
		l.endSeqs()
		if p == nil {
			select {
			case <-l.wake:
			case <-ctx.Done():
			}
			continue
		}
		if cap(results) < len(p.Outputs) {
			results = make([]Result, len(p.Outputs), 2*len(p.Outputs))
		}
		results = results[:len(p.Outputs)]
		clear(results)
		err := l.run(ctx, p, results)
		l.mu.Lock()
		if err != nil {
			l.s.Fail(p, err)
		} else {
			l.s.Complete(p, results)
		}
		l.deliver()
		l.mu.Unlock()
		l.endSeqs()
	}
}

func (l *Loop) run(ctx context.Context, p *StepPlan, results []Result) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("engine panic: %v", r)
		}
	}()
	return l.e.Run(ctx, p, results)
}

// deliver hands the scheduler's events to their streams. l.mu is held.
func (l *Loop) deliver() {
	for _, ev := range l.s.Events() {
		st := l.streams[ev.ID]
		if st == nil {
			continue
		}
		st.push(ev)
		if ev.Done {
			delete(l.streams, ev.ID)
			l.ended = append(l.ended, ev.ID)
		}
	}
}

// endSeqs tells the engine which sequences ended; only Run's goroutine
// calls it, so Engine calls never overlap.
func (l *Loop) endSeqs() {
	l.mu.Lock()
	ended := l.ended
	l.ended = nil
	l.mu.Unlock()
	for _, id := range ended {
		l.e.End(id)
	}
}

func (l *Loop) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// Submit queues a request; it fails as Scheduler.Submit does, at once.
// The tokens come out of the returned Stream.
func (l *Loop) Submit(r Request) (*Stream, error) {
	l.mu.Lock()
	q, err := l.s.Submit(r)
	if err != nil {
		l.mu.Unlock()
		return nil, err
	}
	st := &Stream{id: q.id, l: l, ready: make(chan struct{}, 1)}
	l.streams[q.id] = st
	l.mu.Unlock()
	l.poke()
	return st, nil
}

// Metrics returns the scheduler's snapshot.
func (l *Loop) Metrics() Metrics {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.s.Metrics()
}

func (l *Loop) end(id SeqID, cancel bool, reason FinishReason) {
	l.mu.Lock()
	if cancel {
		l.s.Cancel(id)
	} else {
		l.s.Finish(id, reason)
	}
	l.deliver()
	l.mu.Unlock()
	l.poke()
}

// Stream is one sequence's output. Its methods are safe for concurrent
// use; typically one handler goroutine reads it.
type Stream struct {
	id    SeqID
	l     *Loop
	ready chan struct{} // a token or the end is pending

	mu     sync.Mutex
	toks   []int32
	extras []any // Event.Extra of toks[i], while any was set (nil padded)
	done   bool
	reason FinishReason
	err    error
}

func (st *Stream) ID() SeqID { return st.id }

func (st *Stream) push(ev Event) {
	st.mu.Lock()
	if ev.Token != NoToken {
		st.toks = append(st.toks, ev.Token)
		if ev.Extra != nil || len(st.extras) > 0 {
			for len(st.extras) < len(st.toks)-1 {
				st.extras = append(st.extras, nil)
			}
			st.extras = append(st.extras, ev.Extra)
		}
	}
	if ev.Done {
		st.done, st.reason, st.err = true, ev.Reason, ev.Err
	}
	st.mu.Unlock()
	select {
	case st.ready <- struct{}{}:
	default:
	}
}

// Recv appends the tokens sampled since the last call to dst and returns
// it, waiting until there is at least one or the sequence has ended. At
// the end it returns the last tokens together with io.EOF when the
// sequence finished (Reason says why: stop or length) or the sequence's
// error (cancelled, queue timeout, engine failure, shutdown); like an
// io.Reader's, the tokens come before the error is looked at. When ctx is
// done first, the sequence is cancelled and ctx's error returned.
func (st *Stream) Recv(ctx context.Context, dst []int32) ([]int32, error) {
	dst, _, err := st.recv(ctx, dst, nil, false)
	return dst, err
}

// RecvExtra is Recv that also appends each token's Result.Extra to extra
// (nil for a token without one), so that extra[i] goes with dst[i] when
// both start equally long.
func (st *Stream) RecvExtra(ctx context.Context, dst []int32, extra []any) ([]int32, []any, error) {
	return st.recv(ctx, dst, extra, true)
}

func (st *Stream) recv(ctx context.Context, dst []int32, extra []any, wantExtra bool) ([]int32, []any, error) {
	for {
		st.mu.Lock()
		n := len(dst)
		dst = append(dst, st.toks...)
		if wantExtra {
			for len(extra) < n {
				extra = append(extra, nil)
			}
			extra = append(extra, st.extras...) // empty, or one per token
			for len(extra) < len(dst) {
				extra = append(extra, nil)
			}
		}
		st.toks, st.extras = st.toks[:0], st.extras[:0]
		done, err := st.done, st.err
		st.mu.Unlock()
		if done {
			if err == nil {
				err = io.EOF
			}
			return dst, extra, err
		}
		if len(dst) > n {
			return dst, extra, nil
		}
		select {
		case <-st.ready:
		case <-ctx.Done():
			st.Cancel()
			return dst, extra, ctx.Err()
		}
	}
}

// Reason says why the sequence ended, once Recv has returned an error.
func (st *Stream) Reason() FinishReason {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.reason
}

// Cancel ends the sequence (the client went away).
func (st *Stream) Cancel() { st.l.end(st.id, true, "") }

// Finish ends the sequence for a reason found in its text: a stop string
// (FinishStop). Tokens sampled after the one that completed the stop
// string may still arrive before the end; the caller drops them.
func (st *Stream) Finish(reason FinishReason) { st.l.end(st.id, false, reason) }
