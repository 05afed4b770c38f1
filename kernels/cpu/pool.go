package cpu

import (
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"
)

// Pool is a fixed set of worker goroutines that split loops by index range.
// It exists so that kernels do not start a goroutine per row or per op.
// Run may be called from one goroutine at a time.
//
// Weights are read from a memory-mapped file; if that file is truncated
// while mapped, reading it raises SIGBUS. Workers run with
// debug.SetPanicOnFault, so such a fault (or any panic in a kernel) is
// caught in the worker and re-raised in the goroutine that called Run,
// where the engine turns it into an error for the step instead of a crash.
//
// Scheduling. A decode step is a chain of ~200 short loops (a matrix-vector
// product of a 2048×2048 Q4_K matrix takes ~100 µs), so how fast the
// threads start and how evenly they finish matters as much as the kernels:
//
//   - The work is cut into up to chunksPerThread chunks per thread, taken
//     in order from a shared counter by the caller and the workers alike,
//     so a worker that starts late (a wake-up, or its core lent to another
//     process) costs at most a chunk, not half the loop. Before, a decode
//     step on two threads was no faster than on one: the worker's half of
//     each product started ~90 µs late, after the caller had done its own
//     (NOTES.md).
//   - A worker that finishes polls for the next loop for up to spinTime
//     before it blocks, and the caller polls for the workers' completion
//     the same way: a goroutine that blocks has to be woken (8-11 µs here,
//     much more when the core is busy). Between polls the spinner yields
//     both the Go processor and the OS thread's CPU (sched_yield), so that
//     on a machine shared with other processes it does not take time from
//     the thread doing the work.
type Pool struct {
	n    int
	work chan *job
	done chan struct{} // a worker that finishes a Run's last chunk sends one token
}

// chunksPerThread is how many pieces per thread Run cuts a loop into (if
// the grain allows).
const chunksPerThread = 4

// spinTime is how long a worker polls for the next loop, and the caller for
// the end of its loop, before blocking.
const spinTime = 200 * time.Microsecond

// job is one Run: fn over [0, n) in chunks of chunk indices. Whoever
// finishes the last chunk ends the job: the caller sees it itself, a worker
// sends a token on the pool's done channel. A worker that comes late finds
// no chunk left and does nothing, so the caller never waits for a worker
// that has not started.
type job struct {
	fn      func(start, end int)
	n       int
	chunk   int
	chunks  int64
	next    atomic.Int64 // the next chunk to take
	pending atomic.Int64 // chunks not finished
	once    sync.Once
	val     any // the first panic
}

// NewPool starts n workers (n <= 0: one per CPU). The caller's goroutine
// works too, so n-1 goroutines are started.
func NewPool(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{n: n, work: make(chan *job, n), done: make(chan struct{}, 1)}
	for i := 1; i < n; i++ {
		go p.worker()
	}
	return p
}

func (p *Pool) worker() {
	debug.SetPanicOnFault(true)
	for {
		j, ok := p.take()
		if !ok {
			return
		}
		if j.work() {
			p.done <- struct{}{}
		}
	}
}

// take returns the next job, polling for spinTime before it blocks; false
// once the pool is closed.
func (p *Pool) take() (*job, bool) {
	var start time.Time
	for i := 0; ; i++ {
		select {
		case j, ok := <-p.work:
			return j, ok
		default:
		}
		if i == 0 {
			start = time.Now()
		} else if time.Since(start) > spinTime {
			j, ok := <-p.work
			return j, ok
		}
		yield()
	}
}

// work runs chunks until none is left to take, and reports whether it
// finished the job's last one.
func (j *job) work() (last bool) {
	for {
		c := j.next.Add(1) - 1
		if c >= j.chunks {
			return false
		}
		j.run(int(c))
		if j.pending.Add(-1) == 0 {
			return true
		}
	}
}

// run runs chunk c; a panic is recorded for the caller and the chunk counts
// as finished.
func (j *job) run(c int) {
	defer func() {
		if r := recover(); r != nil {
			j.once.Do(func() { j.val = r })
		}
	}()
	s := c * j.chunk
	j.fn(s, min(j.n, s+j.chunk))
}

// Threads returns the number of threads that run a loop.
func (p *Pool) Threads() int { return p.n }

// Close stops the workers.
func (p *Pool) Close() { close(p.work) }

// Run calls fn over [0, n) split into contiguous ranges of at least grain
// indices (at most chunksPerThread per thread), which the threads take in
// order as they become free, and waits for all of them. fn may be called
// several times on the same thread and must not depend on which ranges go
// together. A panic in any range is re-raised here after every range has
// finished or been skipped.
func (p *Pool) Run(n, grain int, fn func(start, end int)) {
	if n <= 0 {
		return
	}
	if grain < 1 {
		grain = 1
	}
	parts := min(p.n, (n+grain-1)/grain)
	if parts <= 1 {
		fn(0, n)
		return
	}
	chunks := min((n+grain-1)/grain, parts*chunksPerThread)
	chunk := (n + chunks - 1) / chunks
	chunks = (n + chunk - 1) / chunk
	j := &job{fn: fn, n: n, chunk: chunk, chunks: int64(chunks)}
	j.pending.Store(int64(chunks))
	for i := 1; i < parts; i++ {
		select {
		case p.work <- j:
		default: // the workers are behind (still on stale jobs): go on without them
		}
	}
	if !j.work() {
		p.wait()
	}
	if j.val != nil {
		panic(j.val)
	}
}

// wait takes the token a worker sends when it finishes the last chunk of a
// Run, polling for spinTime before it blocks.
func (p *Pool) wait() {
	var start time.Time
	for i := 0; ; i++ {
		select {
		case <-p.done:
			return
		default:
		}
		if i == 0 {
			start = time.Now()
		} else if time.Since(start) > spinTime {
			<-p.done
			return
		}
		yield()
	}
}

// yield lets other goroutines of this processor run (one readied by the
// spinner, such as the caller woken by a worker's token) and other threads
// of this CPU.
func yield() {
	runtime.Gosched()
	osYield()
}
