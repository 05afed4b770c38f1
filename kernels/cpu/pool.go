package cpu

import (
	"runtime"
	"runtime/debug"
	"sync"
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
type Pool struct {
	n    int
	work chan task
}

type task struct {
	fn         func(start, end int)
	start, end int
	wg         *sync.WaitGroup
	fail       *failure
}

// failure records the first panic of a Run.
type failure struct {
	once sync.Once
	val  any
}

func (f *failure) record(v any) { f.once.Do(func() { f.val = v }) }

// NewPool starts n workers (n <= 0: one per CPU). The caller's goroutine
// works too, so n-1 goroutines are started.
func NewPool(n int) *Pool {
	if n <= 0 {
		n = runtime.GOMAXPROCS(0)
	}
	p := &Pool{n: n, work: make(chan task, n)}
	for i := 1; i < n; i++ {
		go func() {
			debug.SetPanicOnFault(true)
			for t := range p.work {
				t.run()
			}
		}()
	}
	return p
}

func (t task) run() {
	defer t.wg.Done()
	defer func() {
		if r := recover(); r != nil {
			t.fail.record(r)
		}
	}()
	t.fn(t.start, t.end)
}

// Threads returns the number of threads that run a loop.
func (p *Pool) Threads() int { return p.n }

// Close stops the workers.
func (p *Pool) Close() { close(p.work) }

// Run calls fn over [0, n) split into contiguous ranges of at least grain
// indices, one range per thread, and waits for all of them. A panic in any
// range is re-raised here after every range has finished.
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
	var fail failure
	chunk := (n + parts - 1) / parts
	for i := 1; i < parts; i++ {
		s, e := i*chunk, min(n, (i+1)*chunk)
		if s >= e {
			continue
		}
		wg.Add(1)
		p.work <- task{fn, s, e, &wg, &fail}
	}
	wg.Add(1)
	task{fn, 0, min(n, chunk), &wg, &fail}.run()
	wg.Wait()
	if fail.val != nil {
		panic(fail.val)
	}
}
