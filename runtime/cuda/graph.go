package cuda

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Decode steps as CUDA graphs.
//
// A decode step launches about ten kernels per layer; on a GPU each launch
// costs a few microseconds of the host's time, which for Llama-8B (32
// layers, ~300 launches) is as long as the ~1.3 ms the step's weights take
// to stream at 3.4 TB/s. With graphs on, the device records the kernels an
// operation asks for instead of launching them, and submits the recorded
// segment when something must wait for it or come after it: a Read or
// Argmax (the end of a forward pass), any other queued work (an upload of
// a weight or of activations), Sync, Close. A segment of at least
// minGraphOps kernels whose topology (the kernels with their grid and block
// sizes, in order) was submitted before becomes a graph: built node by
// node (cuGraphAddKernelNode, each node after the last), instantiated once,
// and from then on launched with one cuGraphLaunch. Only kernel arguments
// may differ between two segments of one topology; those that differ are
// set on the instantiated graph first (cuGraphExecKernelNodeSetParams), so
// a replay always runs exactly the kernels a direct submission would.
//
// For the arguments to stay the same from step to step, the per-step host
// inputs (token ids, positions, sequence ids, block tables, KV slots,
// output rows) do not go through separate uploads while recording: each is
// copied into a slot of the step-input arena (stepInput), a device buffer
// at a fixed address, and the arena is copied to the device in one upload
// just before the segment's kernels. Slots are 256-byte aligned and sized
// to powers of two, so a block table that grows by a block moves nothing.
// What still changes between decode steps of one batch size is small: the
// logits tensor a forward pass allocates (one or two nodes patched), the
// RoPE table when it grows (by doubling). The attention kernel's grid does
// not depend on the context (positions and tables are read from the
// arena), so a growing KV cache never needs a new graph: the graph of a
// decode step is keyed by the batch size alone (and the number of output
// rows). Graphs are cached by topology, the most recently used first, at
// most maxGraphs (older ones are destroyed).
//
// A failed build, instantiation or update is logged once, and the device
// then launches every kernel directly, as without graphs; the segment at
// hand runs directly too.
//
// Opt-in for now: HEARTH_CUDA_GRAPH=1 (or Options.Graphs). The fake driver
// checks the host side (graph_test.go: graph steps give exactly the logits
// of direct steps); the device check (gpu_test.go TestGPUGraphStep and
// TestGPUBench) checks parity on a GPU and measures the gain.

// EnvGraphs turns decode-step graphs on ("1") or off ("0") when
// Options.Graphs is Default. Off by default until a GPU run has checked
// them (scripts/gpu-check.sh).
const EnvGraphs = "HEARTH_CUDA_GRAPH"

// EnvMMA turns the tensor-core prefill matmul (kernels/cuda mma.cu) on
// ("1") or off ("0", the default: matmul.cu's float32 tiles) when
// Options.TensorCores is Default. Off by default until a GPU run has
// checked it (scripts/gpu-check.sh).
const EnvMMA = "HEARTH_CUDA_MMA"

// Toggle is a feature switch: on, off, or Default (its environment
// variable, else the built-in default).
type Toggle int8

const (
	Default Toggle = iota
	On
	Off
)

func (t Toggle) resolve(env string, def bool) bool {
	switch t {
	case On:
		return true
	case Off:
		return false
	}
	switch strings.ToLower(strings.TrimSpace(os.Getenv(env))) {
	case "1", "on", "true", "yes":
		return true
	case "0", "off", "false", "no":
		return false
	}
	return def
}

const (
	minGraphOps = 16 // shorter segments are launched directly
	maxGraphs   = 8  // instantiated graphs kept
	slotAlign   = 256
)

// GraphStats counts what the recorder did (for tests and benchmarks).
type GraphStats struct {
	Segments int // recorded segments submitted
	Kernels  int // kernels recorded
	Direct   int // segments launched kernel by kernel
	Built    int // graphs built and instantiated
	Replays  int // segments submitted as one graph launch (a fresh build's first included)
	Patched  int // kernel nodes whose arguments were set before a replay
	Failures int // failed builds or updates (graphs are off after the first)
}

// recOp is one recorded kernel launch.
type recOp struct {
	name        string
	fn          Function
	grid, block [3]uint32
	args        []uint64
}

// stepGraph is one instantiated graph and the arguments its nodes hold.
type stepGraph struct {
	hash uint64
	topo []recOp // the kernels, with the arguments the instantiated nodes have

	// Set on the worker goroutine.
	g      Graph
	exec   GraphExec
	nodes  []GraphNode
	broken atomic.Bool // its build or an update failed: never launched again
}

// plan is what a submission does: launch directly (sg nil), or build sg
// and launch it, or set the arguments of nodes patch and launch it.
type plan struct {
	sg    *stepGraph
	build bool
	patch []int
	evict *stepGraph // to destroy first
}

// recorder is the device's graph state (nil when graphs are off).
type recorder struct {
	log *slog.Logger

	mu     sync.Mutex
	on     bool
	ops    []recOp
	host   []byte    // the arena's contents for the recorded segment
	dev    DevicePtr // the arena on the device
	cap    uint64
	epoch  uint64 // bumped at every submission: slots handed out before are stale
	graphs []*stepGraph
	seen   map[uint64]int
	stats  GraphStats
	frees  []DevicePtr // freed while a segment was open: released after it

	failed atomic.Bool
	logged atomic.Bool
}

// enableGraphs turns recording on or off. Anything recorded is submitted
// first.
func (d *Device) enableGraphs(on bool, log *slog.Logger) {
	d.flush()
	if d.rec == nil {
		if !on {
			return
		}
		d.rec = &recorder{log: log, seen: map[uint64]int{}}
	}
	d.rec.mu.Lock()
	d.rec.on = on && !d.rec.failed.Load()
	d.rec.epoch++
	d.rec.mu.Unlock()
}

// graphStats returns the recorder's counters.
func (d *Device) graphStats() GraphStats {
	if d.rec == nil {
		return GraphStats{}
	}
	d.rec.mu.Lock()
	defer d.rec.mu.Unlock()
	return d.rec.stats
}

// record appends a launch to the recorded segment; false when not
// recording (the caller launches it).
func (d *Device) record(name string, grid, block [3]uint32, args []uint64) bool {
	r := d.rec
	if r == nil {
		return false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.on {
		return false
	}
	r.ops = append(r.ops, recOp{name: name, fn: d.funcs[name], grid: grid, block: block, args: slices.Clone(args)})
	return true
}

// inputEpoch identifies the step-input slots in use: device addresses
// handed out by stepInput are valid while it stays the same. Constant when
// not recording.
func (d *Device) inputEpoch() uint64 {
	if d.rec == nil {
		return 0
	}
	d.rec.mu.Lock()
	defer d.rec.mu.Unlock()
	return d.rec.epoch
}

// stepInput copies per-step host data into a slot of the step-input
// arena and returns its device address, valid for the kernels recorded
// until the next submission. False when not recording: the caller uploads
// the data itself. An error when a larger arena cannot be allocated.
func (d *Device) stepInput(data []byte) (DevicePtr, bool, error) {
	r := d.rec
	if r == nil {
		return 0, false, nil
	}
	r.mu.Lock()
	if !r.on {
		r.mu.Unlock()
		return 0, false, nil
	}
	off := uint64(len(r.host)+slotAlign-1) &^ (slotAlign - 1)
	size := uint64(slotAlign)
	for size < uint64(len(data)) {
		size *= 2
	}
	if off+size > r.cap {
		// Submit what is recorded (it reads the old arena), then move to
		// an arena twice as large; the old one is freed once the stream
		// is past the work that reads it.
		r.mu.Unlock()
		d.flush()
		newCap := max(64<<10, 2*r.cap, 2*size)
		var p DevicePtr
		if err := d.call(func(drv Driver, _ Stream) (err error) {
			p, err = drv.MemAlloc(newCap)
			return err
		}); err != nil {
			return 0, false, fmt.Errorf("cuda: step inputs: allocating %d KiB: %w", newCap>>10, err)
		}
		r.mu.Lock()
		old := r.dev
		r.dev, r.cap = p, newCap
		if old != 0 {
			d.enqueue(func() {
				d.drv.StreamSynchronize(d.stream)
				d.drv.MemFree(old)
			})
		}
		if !r.on {
			r.mu.Unlock()
			return 0, false, nil
		}
		off = uint64(len(r.host)+slotAlign-1) &^ (slotAlign - 1)
	}
	r.host = append(r.host, make([]byte, int(off)-len(r.host))...)
	r.host = append(r.host, data...)
	p := r.dev + DevicePtr(off)
	r.mu.Unlock()
	return p, true, nil
}

// flush submits the recorded segment: the arena's upload, then its
// kernels, directly or as a graph.
func (d *Device) flush() {
	r := d.rec
	if r == nil {
		return
	}
	r.mu.Lock()
	frees := r.frees
	r.frees = nil
	if len(r.ops) == 0 && len(r.host) == 0 {
		r.mu.Unlock()
		d.release(frees, nil)
		return
	}
	ops, data, arena := r.ops, r.host, r.dev
	r.ops, r.host = nil, nil
	r.epoch++
	p := r.plan(ops)
	if r.failed.Load() {
		r.on = false
	}
	r.mu.Unlock()
	d.enqueue(func() {
		if d.Err() != nil {
			return
		}
		if err := d.submit(arena, data, ops, p); err != nil {
			d.fail(err)
		}
	})
	d.release(frees, nil)
}

// topoHash hashes a segment's kernels with their grids and blocks.
func topoHash(ops []recOp) uint64 {
	h := fnv.New64a()
	var b [8 + 24]byte
	for _, o := range ops {
		binary.LittleEndian.PutUint64(b[:], uint64(o.fn))
		for i := range 3 {
			binary.LittleEndian.PutUint32(b[8+4*i:], o.grid[i])
			binary.LittleEndian.PutUint32(b[20+4*i:], o.block[i])
		}
		h.Write(b[:])
	}
	return h.Sum64()
}

func sameTopo(a, b []recOp) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].fn != b[i].fn || a[i].grid != b[i].grid || a[i].block != b[i].block || len(a[i].args) != len(b[i].args) {
			return false
		}
	}
	return true
}

// plan decides how a segment is submitted (with r.mu held).
func (r *recorder) plan(ops []recOp) plan {
	r.stats.Segments++
	r.stats.Kernels += len(ops)
	if !r.on || r.failed.Load() || len(ops) < minGraphOps {
		r.stats.Direct++
		return plan{}
	}
	h := topoHash(ops)
	for i, sg := range r.graphs {
		if sg.hash != h || !sameTopo(sg.topo, ops) {
			continue
		}
		if sg.broken.Load() {
			r.stats.Direct++
			return plan{}
		}
		copy(r.graphs[1:i+1], r.graphs[:i])
		r.graphs[0] = sg
		var patch []int
		for j := range ops {
			if !slices.Equal(sg.topo[j].args, ops[j].args) {
				patch = append(patch, j)
				sg.topo[j].args = ops[j].args
			}
		}
		r.stats.Replays++
		r.stats.Patched += len(patch)
		return plan{sg: sg, patch: patch}
	}
	// A topology is built into a graph the second time it is submitted:
	// one-off shapes (prompts of every length) are not worth a build.
	if r.seen[h]++; r.seen[h] < 2 {
		if len(r.seen) > 4096 {
			clear(r.seen)
		}
		r.stats.Direct++
		return plan{}
	}
	delete(r.seen, h)
	sg := &stepGraph{hash: h, topo: slices.Clone(ops)}
	var evict *stepGraph
	if len(r.graphs) == maxGraphs {
		evict = r.graphs[maxGraphs-1]
		r.graphs = r.graphs[:maxGraphs-1]
	}
	r.graphs = append([]*stepGraph{sg}, r.graphs...)
	r.stats.Built++
	r.stats.Replays++
	return plan{sg: sg, build: true, evict: evict}
}

// fail turns graphs off after a failed build or update, saying so once.
func (r *recorder) fail(what string, err error) {
	r.failed.Store(true)
	r.mu.Lock()
	r.stats.Failures++
	r.mu.Unlock()
	if !r.logged.Swap(true) {
		r.log.Warn("cuda: graph "+what+" failed; launching kernels directly from now on", "err", err.Error())
	}
}

// submit runs on the worker goroutine: the arena upload, then the kernels.
func (d *Device) submit(arena DevicePtr, data []byte, ops []recOp, p plan) error {
	drv, s := d.drv, d.stream
	if len(data) > 0 {
		if err := drv.MemcpyHtoDAsync(arena, unsafe.Pointer(&data[0]), uint64(len(data)), s); err != nil {
			return err
		}
	}
	if p.evict != nil {
		p.evict.destroy(drv)
	}
	sg := p.sg
	switch {
	case sg == nil:
	case p.build:
		if err := sg.build(drv, ops); err != nil {
			sg.broken.Store(true)
			d.rec.fail("build", err)
			sg = nil
		}
	case sg.broken.Load():
		sg = nil
	default:
		for _, j := range p.patch {
			o := ops[j]
			if err := drv.GraphExecKernelNodeSetParams(sg.exec, sg.nodes[j], o.fn, o.grid, o.block, 0, o.args); err != nil {
				sg.broken.Store(true)
				d.rec.fail("update", err)
				sg = nil
				break
			}
		}
	}
	if sg == nil {
		for _, o := range ops {
			if err := drv.LaunchKernel(o.fn, o.grid, o.block, 0, s, o.args); err != nil {
				return err
			}
		}
		return nil
	}
	return drv.GraphLaunch(sg.exec, s)
}

// build makes the graph of a segment: one kernel node after another.
func (sg *stepGraph) build(drv Driver, ops []recOp) error {
	g, err := drv.GraphCreate()
	if err != nil {
		return err
	}
	sg.g = g
	var prev GraphNode
	sg.nodes = make([]GraphNode, len(ops))
	for i, o := range ops {
		if prev, err = drv.GraphAddKernelNode(g, prev, o.fn, o.grid, o.block, 0, o.args); err != nil {
			return err
		}
		sg.nodes[i] = prev
	}
	sg.exec, err = drv.GraphInstantiate(g)
	return err
}

// destroy releases the graph (on the worker; a launch still in flight
// completes first, as cuGraphExecDestroy promises).
func (sg *stepGraph) destroy(drv Driver) {
	if sg.exec != 0 {
		drv.GraphExecDestroy(sg.exec)
		sg.exec = 0
	}
	if sg.g != 0 {
		drv.GraphDestroy(sg.g)
		sg.g = 0
	}
	sg.broken.Store(true)
}

// releaseGraphs queues the destruction of every graph and of the arena
// (Close).
func (d *Device) releaseGraphs() {
	r := d.rec
	if r == nil {
		return
	}
	d.flush()
	r.mu.Lock()
	graphs, arena := r.graphs, r.dev
	r.graphs, r.dev, r.cap, r.on = nil, 0, 0, false
	r.mu.Unlock()
	d.enqueue(func() {
		d.drv.StreamSynchronize(d.stream)
		for _, sg := range graphs {
			sg.destroy(d.drv)
		}
		if arena != 0 {
			d.drv.MemFree(arena)
		}
	})
}
