// Package device decides where a model runs and opens the backend for it:
// the CPU, a CUDA GPU, or a split of the two (the model's last layers on
// the GPU, the others on the CPU: runtime/split). It weighs what the
// model needs (arch.Needs, from its metadata, before any weight is bound)
// against the GPU's free memory, and reports the decision as a Placement.
//
// The engine, `hearth bench` and `hearth serve` open backends here and
// read the Placement; nothing else switches on concrete backend types.
package device

import (
	"fmt"
	"log/slog"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
	"github.com/hearth-llm/hearth/runtime/cuda"
	"github.com/hearth-llm/hearth/runtime/split"
)

// ErrOutOfMemory is wrapped when a model does not fit the device it was
// asked to run on (checked with errors.Is; binding weights on a full GPU
// wraps it too).
var ErrOutOfMemory = cuda.ErrOutOfMemory

// Kind is where a model runs.
type Kind int

const (
	CPU   Kind = iota // every layer on the CPU
	CUDA              // every layer and the output on one GPU
	Split             // the last layers (maybe the output) on a GPU, the rest on the CPU
)

func (k Kind) String() string {
	switch k {
	case CUDA:
		return "cuda"
	case Split:
		return "cuda+cpu"
	}
	return "cpu"
}

// Options say what the caller asks for.
type Options struct {
	Threads int // CPU threads; <= 0: all
	// Device picks the backend: "" or "auto" runs on the GPU when one is
	// usable and on the CPU otherwise; "cpu" and "cuda" (or "gpu") insist.
	Device string
	// GPULayers, when a GPU is in use, is how many of the model's
	// repeating layers run there, counted from the last as llama.cpp's
	// -ngl counts; a count above the model's layers puts the output layer
	// there too (99: everything). 0 decides by the GPU's free memory:
	// everything when it fits, else as many layers as fit. Device "cpu"
	// offloads nothing.
	GPULayers int
	// KVBytes is the KV cache the caller will allocate, all layers
	// together: the automatic split keeps room for the offloaded layers'
	// share. <= 0: DefaultKVBytes.
	KVBytes int64
	// Log receives the placement decision; nil: slog.Default().
	Log *slog.Logger
	// CUDADriver, when set, replaces libcuda.so.1 (tests run the engine
	// on runtime/cuda's fake driver with it).
	CUDADriver cuda.Driver
}

// Placement is where a model's parts run.
type Placement struct {
	Kind Kind
	// Layers is the model's repeating layers; GPULayers of them (the
	// last) run on the GPU, and the output layer too when Output.
	Layers, GPULayers int
	Output            bool
	// VRAM is the bytes of the model's weights held in GPU memory (their
	// file sizes): all on CUDA, the offloaded ones of a split, none on
	// the CPU.
	VRAM int64
	// Threads is the CPU threads the backend runs (0 on a GPU alone).
	Threads int
}

// DefaultKVBytes is the KV cache the automatic split plans for when the
// caller does not say: one sequence of min(context, 4096) positions of
// F16 keys and values.
func DefaultKVBytes(n *arch.Needs) int64 {
	ctx := n.Info.ContextLength
	if ctx <= 0 || ctx > 4096 {
		ctx = 4096
	}
	b, err := n.KVBytes(ctx, quant.F16)
	if err != nil {
		return 0
	}
	return int64(b)
}

// Open opens the backend o asks for and places the model of f (whose
// needs are n) on it. The caller binds the model on it (arch.Load) and
// closes it with Close when done.
func Open(f *gguf.File, n *arch.Needs, o Options) (backend.Backend, Placement, error) {
	if o.GPULayers < 0 {
		return nil, Placement{}, fmt.Errorf("%d GPU layers: want a count, or 0 to fit by free memory (Device \"cpu\" for none)", o.GPULayers)
	}
	log := o.Log
	if log == nil {
		log = slog.Default()
	}
	onCPU := func() (backend.Backend, Placement, error) {
		c := cpu.New(o.Threads)
		return c, Placement{Kind: CPU, Layers: len(n.KV), Threads: c.Threads()}, nil
	}
	var gpu *cuda.Backend
	var err error
	switch o.Device {
	case "", "auto":
		if gpu, err = cuda.New(cuda.Options{Log: log, Driver: o.CUDADriver}); err != nil {
			return onCPU()
		}
	case "cpu":
		return onCPU()
	case "cuda", "gpu":
		if gpu, err = cuda.New(cuda.Options{Log: log, Driver: o.CUDADriver}); err != nil {
			return nil, Placement{}, err
		}
	default:
		return nil, Placement{}, fmt.Errorf("unknown device %q (want auto, cpu or cuda)", o.Device)
	}
	kv := o.KVBytes
	if kv <= 0 {
		kv = DefaultKVBytes(n)
	}
	off, err := gpu.Offload(f, o.GPULayers, kv)
	if err != nil {
		gpu.Close()
		return nil, Placement{}, err
	}
	log.Info("cuda: " + off.String())
	p := Placement{Layers: off.Plan.Layers, GPULayers: off.Plan.Offloaded, Output: off.Plan.Output}
	switch {
	case off.Plan.All():
		p.Kind, p.VRAM = CUDA, int64(n.WeightBytes)
		return gpu, p, nil
	case off.Plan.None():
		gpu.Close()
		if o.Device != "" && o.Device != "auto" {
			return nil, Placement{}, fmt.Errorf("%w: not one layer fits in the GPU's %d MiB free", ErrOutOfMemory, off.Free>>20)
		}
		return onCPU()
	}
	host := cpu.New(o.Threads)
	p.Kind, p.VRAM, p.Threads = Split, vram(f, off.Plan), host.Threads()
	return split.New(gpu, host, off.Plan), p, nil
}

// vram is the bytes of f's tensors that plan puts on the device.
func vram(f *gguf.File, plan split.Plan) int64 {
	var n int64
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if _, dev := plan.Place(t.Name); dev {
			n += int64(t.Size)
		}
	}
	return n
}

// Close stops a backend's threads or releases its device; errors on
// release are reported by the backend's own log.
func Close(b backend.Backend) error {
	switch c := b.(type) {
	case interface{ Close() error }:
		return c.Close()
	case interface{ Close() }:
		c.Close()
	}
	return nil
}
