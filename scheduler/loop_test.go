package scheduler

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// loopEngine reads only the plan, as a real engine does, takes stepTime
// per step (virtual time under synctest) and samples token pos+1 for the
// row at position pos, so a sequence's i-th generated token is
// promptLen+i+1 whatever preemption did.
type loopEngine struct {
	stepTime time.Duration
	panicAt  int  // step number that panics; 0: none
	failAt   int  // step number that fails; 0: none
	extra    bool // each result carries Extra: its token as an int

	mu    sync.Mutex
	steps int
	ended map[SeqID]bool
	err   error // first plan inconsistency
}

func (e *loopEngine) Run(ctx context.Context, p *StepPlan, results []Result) error {
	e.mu.Lock()
	e.steps++
	n := e.steps
	e.mu.Unlock()
	if n == e.panicAt {
		panic("kernel fault")
	}
	if n == e.failAt {
		return errEngine
	}
	time.Sleep(e.stepTime)
	for i, ss := range p.Seqs {
		for j := range ss.N {
			r := ss.Offset + j
			if p.Seq[r] != int32(i) || p.Pos[r] != int32(ss.Start+j) || len(ss.Blocks)*p.BlockSize <= int(p.Pos[r]) {
				e.fail(fmt.Errorf("step %d: row %d of seq %d inconsistent", n, r, ss.ID))
			}
		}
	}
	if len(results) != len(p.Outputs) {
		e.fail(fmt.Errorf("step %d: %d results for %d outputs", n, len(results), len(p.Outputs)))
	}
	for i, r := range p.Outputs {
		results[i] = Result{Token: p.Pos[r] + 1}
		if e.extra {
			results[i].Extra = int(p.Pos[r] + 1)
		}
	}
	return nil
}

func (e *loopEngine) fail(err error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err == nil {
		e.err = err
	}
}

func (e *loopEngine) End(id SeqID) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.ended[id] {
		e.err = fmt.Errorf("End(%d) twice", id)
	}
	e.ended[id] = true
}

func (e *loopEngine) check(t *testing.T) {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		t.Error(e.err)
	}
}

// startLoop runs a Loop in the bubble; stop cancels it and checks Run's
// answer.
func startLoop(t *testing.T, cfg Config, e *loopEngine) (l *Loop, stop func()) {
	t.Helper()
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.ended = map[SeqID]bool{}
	l = NewLoop(s, e)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- l.Run(ctx) }()
	return l, func() {
		cancel()
		if err := <-done; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
		e.check(t)
	}
}

// recvAll reads a stream to its end.
func recvAll(ctx context.Context, st *Stream) ([]int32, error) {
	var toks []int32
	for {
		var err error
		toks, err = st.Recv(ctx, toks)
		if err != nil {
			return toks, err
		}
	}
}

func TestLoopServesConcurrentClients(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		e := &loopEngine{stepTime: 20 * time.Millisecond}
		// A small pool: the clients preempt one another.
		l, stop := startLoop(t, Config{NumBlocks: 12, BlockSize: 4, MaxBatchTokens: 16, MaxRunning: 4, WatermarkBlocks: -1}, e)
		var wg sync.WaitGroup
		for i := range 8 {
			wg.Go(func() {
				prompt := seqTokens(100*i, 3+i)
				st, err := l.Submit(Request{Prompt: prompt, NumPredict: 5 + i})
				if err != nil {
					t.Error(err)
					return
				}
				toks, err := recvAll(context.Background(), st)
				if err != io.EOF || st.Reason() != FinishLength || len(toks) != 5+i {
					t.Errorf("client %d: %d tokens, %v, %s", i, len(toks), err, st.Reason())
				}
				for j, tok := range toks {
					if tok != int32(len(prompt)+j) {
						t.Errorf("client %d token %d: %d, want %d", i, j, tok, len(prompt)+j)
						break
					}
				}
			})
		}
		wg.Wait()
		synctest.Wait() // the loop has told the engine about the last end
		m := l.Metrics()
		if m.Finished != 8 || m.BlocksUsed != 0 || m.Running != 0 {
			t.Errorf("metrics %+v", m)
		}
		t.Logf("8 clients: %d steps, %d preemptions, %v of virtual time", m.Steps, m.Preemptions, time.Since(start))
		stop()
		if len(e.ended) != 8 {
			t.Errorf("engine told of %d ends", len(e.ended))
		}
	})
}

// Submit answers at once, ErrQueueFull included, while a long step runs.
func TestLoopSubmitDoesNotWaitForTheStep(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &loopEngine{stepTime: time.Hour}
		l, stop := startLoop(t, Config{NumBlocks: 64, BlockSize: 4, MaxQueue: 3, MaxRunning: 1, MaxBatchTokens: 8}, e)
		first, err := l.Submit(Request{Prompt: seqTokens(1, 5), NumPredict: 1})
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait() // the loop is inside the hour-long step
		start := time.Now()
		var full error
		for range 5 {
			if _, err := l.Submit(Request{Prompt: seqTokens(1, 5)}); err != nil {
				full = err
				break
			}
		}
		if !errors.Is(full, ErrQueueFull) || time.Since(start) != 0 {
			t.Errorf("Submit during a step: %v after %v", full, time.Since(start))
		}
		if _, err := recvAll(context.Background(), first); err != io.EOF || time.Since(start) != time.Hour {
			t.Errorf("first: %v after %v", err, time.Since(start))
		}
		stop()
	})
}

// A client that goes away cancels its sequence; its blocks are free once
// the step in flight comes back.
func TestLoopClientGone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &loopEngine{stepTime: 10 * time.Millisecond}
		l, stop := startLoop(t, Config{NumBlocks: 64, BlockSize: 4}, e)
		st, err := l.Submit(Request{Prompt: seqTokens(1, 5)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 55*time.Millisecond)
		defer cancel()
		toks, err := recvAll(ctx, st)
		if !errors.Is(err, context.DeadlineExceeded) || len(toks) < 4 {
			t.Errorf("%d tokens, %v", len(toks), err)
		}
		time.Sleep(10 * time.Millisecond) // one step at most
		synctest.Wait()
		if m := l.Metrics(); m.Cancelled != 1 || m.BlocksUsed != 0 || m.Running != 0 {
			t.Errorf("metrics %+v", m)
		}
		stop()
		if !e.ended[st.ID()] {
			t.Error("engine not told of the cancelled sequence")
		}
	})
}

func TestLoopQueueTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &loopEngine{stepTime: 10 * time.Millisecond}
		l, stop := startLoop(t, Config{NumBlocks: 128, BlockSize: 4, MaxRunning: 1, MaxBatchTokens: 8, QueueTimeout: time.Second}, e)
		long, _ := l.Submit(Request{Prompt: seqTokens(1, 5), NumPredict: 300})
		start := time.Now()
		waiting, _ := l.Submit(Request{Prompt: seqTokens(1, 5)})
		_, err := recvAll(context.Background(), waiting)
		if !errors.Is(err, ErrQueueTimeout) || waiting.Reason() != FinishTimeout {
			t.Errorf("waiting: %v, %s", err, waiting.Reason())
		}
		if d := time.Since(start); d < time.Second || d > time.Second+10*time.Millisecond {
			t.Errorf("timed out after %v, want 1s (+ at most a step)", d)
		}
		if toks, err := recvAll(context.Background(), long); err != io.EOF || len(toks) != 300 {
			t.Errorf("long: %d tokens, %v", len(toks), err)
		}
		stop()
	})
}

func TestLoopEngineFailures(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &loopEngine{stepTime: time.Millisecond, panicAt: 2, failAt: 4}
		l, stop := startLoop(t, Config{NumBlocks: 64, BlockSize: 4}, e)
		for i, want := range []string{"engine panic: kernel fault", "device lost", ""} {
			st, _ := l.Submit(Request{Prompt: seqTokens(1, 5), NumPredict: 3})
			_, err := recvAll(context.Background(), st)
			if want == "" {
				if err != io.EOF {
					t.Errorf("request %d after failures: %v", i, err)
				}
				continue
			}
			if !errors.Is(err, ErrStepFailed) || st.Reason() != FinishError || !contains(err.Error(), want) {
				t.Errorf("request %d: %v, want %q", i, err, want)
			}
		}
		stop()
	})
}

func TestLoopShutdownAndStopString(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &loopEngine{stepTime: 10 * time.Millisecond}
		l, stop := startLoop(t, Config{NumBlocks: 64, BlockSize: 4}, e)
		stopped, _ := l.Submit(Request{Prompt: seqTokens(1, 5)})
		toks, err := stopped.Recv(context.Background(), nil)
		if err != nil || len(toks) == 0 {
			t.Fatalf("%v %v", toks, err)
		}
		stopped.Finish(FinishStop) // the server found a stop string
		if _, err := recvAll(context.Background(), stopped); err != io.EOF || stopped.Reason() != FinishStop {
			t.Errorf("stop string: %v %s", err, stopped.Reason())
		}
		live, _ := l.Submit(Request{Prompt: seqTokens(1, 5)})
		time.Sleep(100 * time.Millisecond)
		stop()
		if _, err := recvAll(context.Background(), live); !errors.Is(err, ErrClosed) || !errors.Is(err, context.Canceled) {
			t.Errorf("after shutdown: %v", err)
		}
		if _, err := l.Submit(Request{Prompt: seqTokens(1, 5)}); !errors.Is(err, ErrClosed) {
			t.Errorf("Submit after shutdown: %v", err)
		}
	})
}

func contains(s, sub string) bool {
	for i := 0; i+len(sub) <= len(s); i++ {
		if s[i:i+len(sub)] == sub {
			return true
		}
	}
	return false
}

// TestLoopExtra: each token's Result.Extra reaches RecvExtra beside it, the
// last token (on the final event) included, across preemptions.
func TestLoopExtra(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		e := &loopEngine{stepTime: time.Millisecond, extra: true}
		l, stop := startLoop(t, Config{NumBlocks: 12, BlockSize: 4, MaxBatchTokens: 16, MaxRunning: 4, WatermarkBlocks: -1}, e)
		var wg sync.WaitGroup
		for i := range 4 {
			wg.Go(func() {
				st, err := l.Submit(Request{Prompt: seqTokens(100*i, 3+i), NumPredict: 6})
				if err != nil {
					t.Error(err)
					return
				}
				var toks []int32
				var extra []any
				for err == nil {
					toks, extra, err = st.RecvExtra(context.Background(), toks, extra)
				}
				if err != io.EOF || len(toks) != 6 || len(extra) != 6 {
					t.Errorf("client %d: %v, %d tokens, %d extras", i, err, len(toks), len(extra))
					return
				}
				for j := range toks {
					if extra[j] != int(toks[j]) {
						t.Errorf("client %d token %d: %d with extra %v", i, j, toks[j], extra[j])
					}
				}
			})
		}
		wg.Wait()
		stop()
	})
}
