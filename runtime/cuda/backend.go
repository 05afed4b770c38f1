package cuda

import (
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"unsafe"

	"github.com/hearth-llm/hearth/runtime/backend"
)

// Options configure NewBackend.
type Options struct {
	Device int          // GPU ordinal
	Log    *slog.Logger // where the one line about a missing GPU goes; nil: slog.Default()
	// Driver, when set, replaces libcuda.so.1 (tests use a fake).
	Driver Driver
	// Graphs records kernels and submits repeated segments (decode steps)
	// as CUDA graphs (graph.go). Default: $HEARTH_CUDA_GRAPH, off unless
	// "1".
	Graphs Toggle
	// TensorCores sends matrix products of at least 16 tokens in the
	// formats of kernels/cuda MMATypes to the mma.sync kernel (mma.cu).
	// Default: $HEARTH_CUDA_MMA, off unless "1" (until a GPU run of
	// scripts/gpu-check.sh has checked mma.cu, as for Graphs).
	TensorCores Toggle
}

// NewBackend opens a GPU and returns a backend.Backend running on it.
// Without a usable GPU it logs one line saying why and returns an error
// wrapping ErrNoDevice; the caller then uses the CPU backend.
func NewBackend(o Options) (backend.Backend, error) {
	b, err := New(o)
	if err != nil {
		return nil, err
	}
	return b, nil
}

// New is NewBackend with the concrete type (its extra methods: Argmax,
// Device, Close).
func New(o Options) (*Backend, error) {
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	drv := o.Driver
	var err error
	if drv == nil {
		drv, err = Load()
	}
	var dev *Device
	if err == nil {
		dev, err = OpenDriver(drv, o.Device)
	}
	if err != nil {
		log.Info("cuda: no GPU in use", "reason", err.Error())
		return nil, err
	}
	b := &Backend{dev: dev, live: map[DevicePtr]*buffer{}, ropes: map[string]*ropeTable{}}
	// mma.sync.m16n8k16 with f16 inputs needs sm_80, which Open requires
	// today; the check keeps the FMA kernel for older GPUs should that
	// floor ever drop.
	b.mma = o.TensorCores.resolve(EnvMMA, false) && dev.CC[0] >= 8
	graphs := o.Graphs.resolve(EnvGraphs, false)
	if graphs {
		dev.enableGraphs(true, log)
	}
	log.Info("cuda: GPU in use", "device", o.Device, "name", dev.Name,
		"cc", fmt.Sprintf("%d.%d", dev.CC[0], dev.CC[1]), "memory_mib", dev.TotalMem>>20,
		"driver", fmt.Sprintf("%d.%d", dev.Driver/1000, dev.Driver%1000/10), "tensor_cores", b.mma, "graphs", graphs)
	return b, nil
}

// Backend runs backend.Backend's operations on one GPU. Operations are
// queued on the device's stream and run in order; Read, Argmax and errors
// are the only waits. Not safe for concurrent use (one forward pass at a
// time), like every backend.
//
// Memory: the backend owns every byte it allocates, in a ledger (live).
// Weights are uploaded once, in their GGUF block layout, and live as long
// as the backend (the loaded model); KV pools hold f16 rows as
// runtime/cpu's do, until Free or Close; activation tensors are allocated
// by the model once per largest batch (its arena, runtime/arch/blocks)
// and reused step after step, until Free or Close. Free returns memory
// after the work queued before it; Close returns everything left. The Go
// collector plays no part.
type Backend struct {
	dev *Device
	mma bool  // tensor-core matmul for batches of MinMMATokens and more
	err error // the first error of the operations, until Err takes it

	mu        sync.Mutex // guards live and liveBytes
	live      map[DevicePtr]*buffer
	liveBytes uint64

	// Scratch reused from call to call (stream order makes reuse safe).
	aq, ad, ids, meta, i32 *buffer
	rowIn                  *buffer        // per-row arguments: Scale's scales, AddScaledRows' plan
	stage                  unsafe.Pointer // pinned host memory for reads
	stageLen               uint64
	ropes                  map[string]*ropeTable
	ropePos                []int32   // the positions at ropeDev
	ropeDev                DevicePtr // in i32, or a step-input slot
	ropeEpoch              uint64    // the step-input epoch of ropeDev

	// The step's attention metadata, uploaded once per forward pass and
	// reused by every layer while it does not change.
	attKey   []int64
	attDev   DevicePtr // tabOff | pos | slot | last (int32), kvb (uint64, 8-aligned), tables (int32)
	attEpoch uint64    // the step-input epoch of attDev
	attN     [6]int    // int32-element offsets of tables, tabOff, pos, slot, kvb, last

	// The step's recurrent-state table (recurrent.go stateMeta), likewise.
	recMeta  *buffer
	recKey   []int32
	recDev   DevicePtr
	recEpoch uint64

	// AddLoRA's task table (lora.go), its device copy and the shrink's
	// coefficients.
	loraTab         []int32
	loraMeta, loraC *buffer
}

// GraphStats reports what the graph recorder has done (zero when graphs
// are off).
func (b *Backend) GraphStats() GraphStats { return b.dev.graphStats() }

// setGraphs turns decode-step graphs on or off from now on (tests and
// benchmarks compare the two on one loaded model).
func (b *Backend) setGraphs(on bool) { b.dev.enableGraphs(on, slog.Default()) }

// Device is the GPU the backend runs on.
func (b *Backend) Device() *Device { return b.dev }

func (b *Backend) Name() string { return "cuda" }

// Close waits for the queued work, frees all the device memory the
// backend still holds (weights, KV pools, tensors, scratch, tables; after
// a device fault too) and releases the device. Nothing the backend made
// may be used after.
func (b *Backend) Close() error {
	b.mu.Lock()
	ptrs := make([]DevicePtr, 0, len(b.live))
	for p, buf := range b.live {
		ptrs = append(ptrs, p)
		buf.ptr = 0
	}
	clear(b.live)
	b.liveBytes = 0
	b.mu.Unlock()
	clear(b.ropes)
	b.aq, b.ad, b.ids, b.meta, b.i32, b.rowIn, b.recMeta = nil, nil, nil, nil, nil, nil, nil
	b.loraMeta, b.loraC = nil, nil
	b.recDev, b.recKey = 0, nil
	b.dev.free(ptrs, b.stage)
	b.stage, b.stageLen = nil, 0
	return b.dev.Close()
}

// Err returns the first error recorded by the operations since the last
// Err and clears it (backend.Backend's contract): a token id or position
// out of range, memory that ran out. A device fault (a failed kernel or
// copy) is never cleared: the context is unusable, and Err returns it from
// then on.
func (b *Backend) Err() error {
	err := b.err
	b.err = nil
	if d := b.dev.Err(); d != nil {
		return d
	}
	return err
}

// fail records err unless an error is already pending.
func (b *Backend) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// errNoMemory is recorded by an operation on a tensor without device
// memory: its allocation failed (that error was recorded too), or it was
// freed.
var errNoMemory = errors.New("cuda: operation on a tensor without device memory (its allocation failed, or it was freed)")

// ready reports whether an operation on ts may run: no error pending (a
// recorded one or a device fault) and every tensor holding device memory
// (else errNoMemory is recorded).
func (b *Backend) ready(ts ...*tensor) bool {
	if b.err != nil || b.dev.Err() != nil {
		return false
	}
	for _, t := range ts {
		if t.buf.ptr == 0 {
			b.fail(errNoMemory)
			return false
		}
	}
	return true
}

// launch queues a kernel (Device.launch) unless an error is pending: an
// operation whose scratch or step input could not be allocated (a zero
// address) launches nothing.
func (b *Backend) launch(name string, grid, block [3]uint32, args ...arg) {
	if b.err != nil {
		return
	}
	b.dev.launch(name, grid, block, args...)
}

// Argmaxer is the optional interface of backends that pick the greedy
// token on the device.
type Argmaxer interface {
	Argmax(x backend.Tensor, out []int32) error
}

var (
	_ backend.Backend = (*Backend)(nil)
	_ Argmaxer        = (*Backend)(nil)
)
