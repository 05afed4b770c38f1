package cpu

import (
	"runtime"
	"sync"
)

// Pool is a fixed set of worker goroutines that split loops by index range.
// It exists so that kernels do not start a goroutine per row or per op.
// Run may be called from one goroutine at a time.
type Pool struct {
	n    int
	work chan task
}

type task struct {
	fn         func(start, end int)
	start, end int
	wg         *sync.WaitGroup
}

// NewPool starts n workers (n <= 0: one per CPU). The caller's goroutine
// works too, so n-1 goroutines are started.
func NewPool(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{n: n, work: make(chan task, n)}
	for i := 1; i < n; i++ {
		go func() {
			for t := range p.work {
				t.fn(t.start, t.end)
				t.wg.Done()
			}
		}()
	}
	return p
}

// Threads returns the number of threads that run a loop.
func (p *Pool) Threads() int { return p.n }

// Close stops the workers.
func (p *Pool) Close() { close(p.work) }

// Run calls fn over [0, n) split into contiguous ranges of at least grain
// indices, one range per thread, and waits for all of them.
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
	var wg sync.WaitGroup
	chunk := (n + parts - 1) / parts
	wg.Add(parts - 1)
	for i := 1; i < parts; i++ {
		s, e := i*chunk, min(n, (i+1)*chunk)
		if s >= e {
			wg.Done()
			continue
		}
		p.work <- task{fn, s, e, &wg}
	}
	fn(0, min(n, chunk))
	wg.Wait()
}
