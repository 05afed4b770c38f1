package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"sync"
	"unsafe"

	kcuda "github.com/hearth-llm/hearth/kernels/cuda"
)

// MinDriverVersion is the oldest driver that JIT-compiles the PTX (ISA
// 7.0): CUDA 11.0.
const MinDriverVersion = 11000

// MinComputeCapability is what the PTX targets (sm_80): Ampere and later.
var MinComputeCapability = [2]int{8, 0}

// Device is one GPU with its primary context and a stream, owned by one
// goroutine locked to its OS thread (CUDA contexts are per thread: a call
// from any other thread fails with CUDA_ERROR_INVALID_CONTEXT). Every
// driver call goes through Do (wait for the result) or Go (queue it and
// go on; its error is kept and reported by Err and every later Do).
// Calls run in the order they were made. Safe for concurrent use.
type Device struct {
	Ordinal  int
	Name     string
	CC       [2]int // compute capability
	TotalMem uint64
	SMs      int
	Driver   int // driver version, 12080 for 12.8

	drv    Driver
	stream Stream
	work   chan func()
	done   chan struct{}

	mu     sync.Mutex // guards closed and the sends on work
	closed bool
	errMu  sync.Mutex // apart from mu: the worker reads err while a sender may wait on a full queue under mu
	err    error      // the first failure of a queued call; sticky

	// Set by the worker goroutine before OpenDriver returns; read-only
	// after.
	funcs map[string]Function

	rec *recorder // decode-step graphs (graph.go); nil when off
}

// Open opens GPU ordinal through libcuda.so.1. Without a usable GPU it
// returns an error wrapping ErrNoDevice that says why, and never panics.
func Open(ordinal int) (*Device, error) {
	drv, err := Load()
	if err != nil {
		return nil, err
	}
	return OpenDriver(drv, ordinal)
}

// OpenDriver opens a GPU through the given driver (tests pass a fake): it
// starts the device's goroutine, which initialises the driver, checks the
// driver version and the compute capability, makes the primary context
// current on its thread, creates a stream and loads the kernel modules.
func OpenDriver(drv Driver, ordinal int) (*Device, error) {
	d := &Device{Ordinal: ordinal, drv: drv, work: make(chan func(), 4096), done: make(chan struct{})}
	ready := make(chan error, 1)
	go d.loop(ready)
	if err := <-ready; err != nil {
		return nil, err
	}
	return d, nil
}

func (d *Device) loop(ready chan<- error) {
	runtime.LockOSThread() // never unlocked: the thread exits with the goroutine
	defer close(d.done)
	ctx, err := d.setup()
	ready <- err
	if err != nil {
		return
	}
	for fn := range d.work {
		fn()
	}
	// Closed: wait for the queued work, then release what we hold.
	d.drv.StreamSynchronize(d.stream)
	d.drv.StreamDestroy(d.stream)
	_ = ctx
	d.drv.PrimaryCtxRelease(d.Ordinal)
}

func (d *Device) setup() (Context, error) {
	drv := d.drv
	if err := drv.Init(); err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoDevice, err)
	}
	v, err := drv.DriverVersion()
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoDevice, err)
	}
	d.Driver = v
	if v < MinDriverVersion {
		return 0, fmt.Errorf("%w: driver supports CUDA %d.%d, the kernels need %d.%d or later",
			ErrNoDevice, v/1000, v%1000/10, MinDriverVersion/1000, MinDriverVersion%1000/10)
	}
	n, err := drv.DeviceCount()
	if err != nil {
		return 0, fmt.Errorf("%w: %w", ErrNoDevice, err)
	}
	if d.Ordinal < 0 || d.Ordinal >= n {
		return 0, fmt.Errorf("%w: device %d asked for, %d present", ErrNoDevice, d.Ordinal, n)
	}
	if d.Name, err = drv.DeviceName(d.Ordinal); err != nil {
		return 0, err
	}
	if d.CC[0], err = drv.DeviceAttribute(d.Ordinal, AttrComputeCapabilityMajor); err != nil {
		return 0, err
	}
	if d.CC[1], err = drv.DeviceAttribute(d.Ordinal, AttrComputeCapabilityMinor); err != nil {
		return 0, err
	}
	if d.CC[0] < MinComputeCapability[0] || d.CC[0] == MinComputeCapability[0] && d.CC[1] < MinComputeCapability[1] {
		return 0, fmt.Errorf("%w: %s has compute capability %d.%d, the kernels need %d.%d (sm_80) or later",
			ErrNoDevice, d.Name, d.CC[0], d.CC[1], MinComputeCapability[0], MinComputeCapability[1])
	}
	if d.TotalMem, err = drv.DeviceTotalMem(d.Ordinal); err != nil {
		return 0, err
	}
	if d.SMs, err = drv.DeviceAttribute(d.Ordinal, AttrMultiprocessorCount); err != nil {
		return 0, err
	}
	ctx, err := drv.PrimaryCtxRetain(d.Ordinal)
	if err != nil {
		return 0, err
	}
	fail := func(err error) (Context, error) {
		drv.PrimaryCtxRelease(d.Ordinal)
		return 0, err
	}
	if err := drv.CtxSetCurrent(ctx); err != nil {
		return fail(err)
	}
	if d.stream, err = drv.StreamCreate(); err != nil {
		return fail(err)
	}
	d.funcs = map[string]Function{}
	for _, m := range kcuda.Modules() {
		ptx, err := kcuda.PTX(m)
		if err != nil {
			return fail(err)
		}
		mod, err := drv.ModuleLoadData(ptx)
		if err != nil {
			return fail(fmt.Errorf("loading kernels %s.ptx: %w", m, err))
		}
		for _, k := range kcuda.Kernels {
			if k.Module != m {
				continue
			}
			f, err := drv.ModuleGetFunction(mod, k.Name)
			if err != nil {
				return fail(fmt.Errorf("kernel %s: %w", k.Name, err))
			}
			d.funcs[k.Name] = f
		}
	}
	return ctx, nil
}

// free queues the release of device allocations and of pinned host memory
// (nil: none) after the work queued before them, which may still read
// them. It runs after a device error too, so that nothing is left behind.
//
// While a segment is being recorded for a graph (graph.go), the device
// pointers wait for its submission instead: freeing does not cut the step
// into two segments.
func (d *Device) free(ptrs []DevicePtr, host unsafe.Pointer) {
	if r := d.rec; r != nil && len(ptrs) > 0 {
		r.mu.Lock()
		if len(r.ops) > 0 || len(r.host) > 0 {
			r.frees = append(r.frees, ptrs...)
			ptrs = nil
		}
		r.mu.Unlock()
	}
	d.release(ptrs, host)
}

// release queues the frees behind everything queued (nothing recorded is
// pending when it is called).
func (d *Device) release(ptrs []DevicePtr, host unsafe.Pointer) {
	if len(ptrs) == 0 && host == nil {
		return
	}
	d.enqueue(func() {
		d.drv.StreamSynchronize(d.stream)
		for _, p := range ptrs {
			d.drv.MemFree(p)
		}
		if host != nil {
			d.drv.MemFreeHost(host)
		}
	})
}

// ErrClosed is returned by calls on a closed Device.
var ErrClosed = errors.New("cuda: device closed")

// Do runs fn on the device's goroutine, after everything queued before it
// (kernels recorded for a graph are submitted first), and returns its
// error. After a queued call failed, Do runs nothing and returns that
// first error. (fn's own error is not kept: an allocation that fails
// leaves the device usable.)
func (d *Device) Do(fn func(drv Driver, s Stream) error) error {
	d.flush()
	return d.call(fn)
}

// call is Do without submitting recorded kernels first, for driver calls
// that are not stream work (allocation, memory info): a step being
// recorded stays one segment.
func (d *Device) call(fn func(drv Driver, s Stream) error) error {
	res := make(chan error, 1)
	if !d.enqueue(func() {
		if err := d.Err(); err != nil {
			res <- err
			return
		}
		res <- fn(d.drv, d.stream)
	}) {
		return ErrClosed
	}
	return <-res
}

// Go queues fn on the device's goroutine and returns at once (after the
// kernels recorded before it, when graphs are on). Its error, if any, is
// kept: Err and every later Do report it. After a failure, queued work is
// skipped.
func (d *Device) Go(fn func(drv Driver, s Stream) error) {
	d.flush()
	d.enqueue(func() {
		if d.Err() != nil {
			return
		}
		if err := fn(d.drv, d.stream); err != nil {
			d.fail(err)
		}
	})
}

func (d *Device) enqueue(fn func()) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closed {
		return false
	}
	d.work <- fn
	return true
}

func (d *Device) fail(err error) {
	d.errMu.Lock()
	if d.err == nil {
		d.err = err
	}
	d.errMu.Unlock()
}

// Err returns the first error of any call so far (nil if none). A device
// error is sticky: a failed kernel leaves the context unusable.
func (d *Device) Err() error {
	d.errMu.Lock()
	defer d.errMu.Unlock()
	return d.err
}

// Sync waits for everything queued and returns the first error. An error
// of the stream (a kernel that faulted) is kept.
func (d *Device) Sync() error {
	err := d.Do(func(drv Driver, s Stream) error { return drv.StreamSynchronize(s) })
	if err != nil {
		d.fail(err)
	}
	return err
}

// Close waits for the queued work, then releases the stream and the
// context and stops the goroutine. Device memory not yet freed goes with
// the context when its last user releases it.
func (d *Device) Close() error {
	d.releaseGraphs() // submits what is recorded, frees graphs and arena
	d.mu.Lock()
	if d.closed {
		d.mu.Unlock()
		return nil
	}
	d.closed = true
	close(d.work)
	d.mu.Unlock()
	<-d.done
	return d.Err()
}

// arg is one kernel argument: its 64-bit slot (see Driver.LaunchKernel)
// and the parameter type it fills.
type arg struct {
	v uint64
	t kcuda.Param
}

// Kernel arguments, typed as the launch table checks them.
func argPtr(p DevicePtr) arg { return arg{uint64(p), kcuda.U64} }
func argInt(v int) arg       { return arg{uint64(uint32(int32(v))), kcuda.U32} }
func argU64(v uint64) arg    { return arg{v, kcuda.U64} }
func argF32(v float32) arg   { return arg{uint64(math.Float32bits(v)), kcuda.F32} }

// launch queues a kernel by name, or records it when graphs are on. The
// name and the argument types are checked against the launch table
// generated from the PTX (kcuda.Kernels): a mismatch is a programmer
// error, caught by the fake driver's tests.
func (d *Device) launch(name string, grid, block [3]uint32, args ...arg) {
	k, ok := kcuda.Lookup(name)
	if !ok || len(k.Params) != len(args) {
		panic(fmt.Sprintf("cuda: launch of %s with %d arguments; the launch table has %+v", name, len(args), k))
	}
	vals := make([]uint64, len(args))
	for i, a := range args {
		if a.t != k.Params[i] {
			panic(fmt.Sprintf("cuda: launch of %s: argument %d is %v, the kernel takes %v", name, i, a.t, k.Params[i]))
		}
		vals[i] = a.v
	}
	if d.record(name, grid, block, vals) {
		return
	}
	f := d.funcs[name]
	d.Go(func(drv Driver, s Stream) error {
		return drv.LaunchKernel(f, grid, block, 0, s, vals)
	})
}

// CapturedGraph is work recorded from the device's stream into a CUDA
// graph, to be replayed with one launch (the decode step's many small
// kernels become one submission).
type CapturedGraph struct {
	d    *Device
	g    Graph
	exec GraphExec
}

// Capture records the work fn queues (kernel launches and device-to-device
// copies only: a copy from pageable host memory or a wait inside fn would
// invalidate the capture) into a graph, runs none of it, and instantiates
// the graph.
func (d *Device) Capture(fn func()) (*CapturedGraph, error) {
	if err := d.Do(func(drv Driver, s Stream) error { return drv.StreamBeginCapture(s) }); err != nil {
		return nil, err
	}
	fn()
	cg := &CapturedGraph{d: d}
	err := d.Do(func(drv Driver, s Stream) error {
		g, err := drv.StreamEndCapture(s)
		if err != nil {
			return err
		}
		cg.g = g
		cg.exec, err = drv.GraphInstantiate(g)
		if err != nil {
			drv.GraphDestroy(g)
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cuda: graph capture: %w", err)
	}
	return cg, nil
}

// Launch queues one replay of the graph on the device's stream.
func (g *CapturedGraph) Launch() {
	g.d.Go(func(drv Driver, s Stream) error { return drv.GraphLaunch(g.exec, s) })
}

// Destroy releases the graph.
func (g *CapturedGraph) Destroy() error {
	return g.d.Do(func(drv Driver, _ Stream) error {
		err := drv.GraphExecDestroy(g.exec)
		if e := drv.GraphDestroy(g.g); err == nil {
			err = e
		}
		return err
	})
}
