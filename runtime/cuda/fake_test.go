package cuda

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"sync"
	"syscall"
	"unsafe"

	kcpu "github.com/hearth-llm/hearth/kernels/cpu"
	"github.com/hearth-llm/hearth/quant"
)

// fakeDriver is a Driver over host memory that runs each kernel launch at
// once with a Go model of the kernel (kmodel_test.go for the weight
// formats), reading the arguments in the order of the .cu signature. With
// it the backend's host side (buffers, offsets, metadata, argument order,
// the worker thread) runs end to end on the CPU.
type fakeDriver struct {
	mu sync.Mutex

	version, count int
	cc             [2]int
	initErr        error
	failLaunch     string // a kernel whose launch fails
	noKernels      bool   // launches do nothing (for tests of the plumbing)

	tid        int // the OS thread the context was made current on
	threadErrs []string

	next   uint64
	allocs map[uint64][]byte // base address -> memory
	bases  []uint64
	freed  int

	launches map[string]int // kernels run, directly or as graph nodes

	// Graphs: built node by node or captured from the stream (launches
	// while capturing are recorded, not run); an instantiated graph is a
	// copy of its nodes, run in order with the memory as it is at each
	// GraphLaunch.
	failGraph  bool // building or instantiating a graph fails
	capturing  *fakeGraph
	graphs     map[Graph]*fakeGraph
	execs      map[GraphExec]*fakeGraph
	nextGraph  uintptr
	graphCalls map[string]int // driver graph calls by name

	// memLimit, when set, is the device's memory: allocations beyond it
	// fail with CUDA_ERROR_OUT_OF_MEMORY and cuMemGetInfo reports what is
	// left of it.
	memLimit, used uint64
	htod           uint64 // bytes copied host to device
	dtoh           int    // copies device to host
}

func newFake() *fakeDriver {
	return &fakeDriver{version: 12080, count: 1, cc: [2]int{9, 0}, next: 1 << 32,
		allocs: map[uint64][]byte{}, launches: map[string]int{},
		graphs: map[Graph]*fakeGraph{}, execs: map[GraphExec]*fakeGraph{}, graphCalls: map[string]int{}}
}

// launchCount is the number of kernels run so far.
func (f *fakeDriver) launchCount() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for _, c := range f.launches {
		n += c
	}
	return n
}

// usedBytes is the device memory allocated and not freed.
func (f *fakeDriver) usedBytes() uint64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.used
}

// ctxCall records a call that needs the context and checks its thread.
func (f *fakeDriver) ctxCall(op string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if tid := syscall.Gettid(); f.tid != 0 && tid != f.tid {
		f.threadErrs = append(f.threadErrs, fmt.Sprintf("%s on thread %d, the context is current on %d", op, tid, f.tid))
	}
}

func (f *fakeDriver) Init() error                 { return f.initErr }
func (f *fakeDriver) DriverVersion() (int, error) { return f.version, nil }
func (f *fakeDriver) DeviceCount() (int, error)   { return f.count, nil }
func (f *fakeDriver) DeviceName(int) (string, error) {
	return "Fake GPU", nil
}
func (f *fakeDriver) DeviceAttribute(_ int, a Attribute) (int, error) {
	switch a {
	case AttrComputeCapabilityMajor:
		return f.cc[0], nil
	case AttrComputeCapabilityMinor:
		return f.cc[1], nil
	case AttrMultiprocessorCount:
		return 132, nil
	}
	return 0, &Error{Op: "cuDeviceGetAttribute", Code: 1, Name: ResultName(1)}
}
func (f *fakeDriver) DeviceTotalMem(int) (uint64, error)    { return 80 << 30, nil }
func (f *fakeDriver) PrimaryCtxRetain(int) (Context, error) { return 1, nil }
func (f *fakeDriver) PrimaryCtxRelease(int) error           { return nil }
func (f *fakeDriver) CtxSetCurrent(Context) error {
	f.mu.Lock()
	f.tid = syscall.Gettid()
	f.mu.Unlock()
	return nil
}
func (f *fakeDriver) CtxSynchronize() error { f.ctxCall("cuCtxSynchronize"); return nil }
func (f *fakeDriver) MemGetInfo() (uint64, uint64, error) {
	f.ctxCall("cuMemGetInfo")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.memLimit > 0 {
		return f.memLimit - f.used, f.memLimit, nil
	}
	return 70 << 30, 80 << 30, nil
}
func (f *fakeDriver) StreamCreate() (Stream, error)                { f.ctxCall("cuStreamCreate"); return 7, nil }
func (f *fakeDriver) StreamDestroy(Stream) error                   { f.ctxCall("cuStreamDestroy"); return nil }
func (f *fakeDriver) StreamSynchronize(Stream) error               { f.ctxCall("cuStreamSynchronize"); return nil }
func (f *fakeDriver) EventCreate() (Event, error)                  { return 1, nil }
func (f *fakeDriver) EventDestroy(Event) error                     { return nil }
func (f *fakeDriver) EventRecord(Event, Stream) error              { return nil }
func (f *fakeDriver) EventSynchronize(Event) error                 { return nil }
func (f *fakeDriver) EventElapsedTime(_, _ Event) (float32, error) { return 1, nil }

func (f *fakeDriver) MemAlloc(n uint64) (DevicePtr, error) {
	f.ctxCall("cuMemAlloc")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.memLimit > 0 && f.used+n > f.memLimit {
		return 0, &Error{Op: "cuMemAlloc_v2", Code: 2, Name: ResultName(2)}
	}
	f.used += n
	p := f.next
	f.next += (n + 255) &^ 255
	f.next += 256 // a gap, so a read past the end faults
	mem := make([]byte, n)
	for i := range mem {
		mem[i] = 0xA5 // poison: unwritten memory shows
	}
	f.allocs[p] = mem
	f.bases = append(f.bases, p)
	return DevicePtr(p), nil
}

func (f *fakeDriver) MemFree(p DevicePtr) error {
	f.ctxCall("cuMemFree")
	f.mu.Lock()
	defer f.mu.Unlock()
	a, ok := f.allocs[uint64(p)]
	if !ok {
		panic(fmt.Sprintf("fake: free of %#x, not an allocation", p))
	}
	f.used -= uint64(len(a))
	delete(f.allocs, uint64(p))
	i := sort.Search(len(f.bases), func(i int) bool { return f.bases[i] >= uint64(p) })
	f.bases = append(f.bases[:i], f.bases[i+1:]...)
	f.freed++
	return nil
}

func (f *fakeDriver) MemHostAlloc(n uint64) (unsafe.Pointer, error) {
	b := make([]byte, n)
	f.mu.Lock()
	f.allocs[uint64(uintptr(unsafe.Pointer(&b[0])))|1<<63] = b // keeps it alive
	f.mu.Unlock()
	return unsafe.Pointer(&b[0]), nil
}
func (f *fakeDriver) MemFreeHost(p unsafe.Pointer) error {
	f.mu.Lock()
	delete(f.allocs, uint64(uintptr(p))|1<<63)
	f.mu.Unlock()
	return nil
}

// mem returns n bytes of device memory at p; it panics outside an
// allocation (a kernel reading or writing past a buffer).
func (f *fakeDriver) mem(p uint64, n uint64) []byte {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := sort.Search(len(f.bases), func(i int) bool { return f.bases[i] > p }) - 1
	if i < 0 || p == 0 {
		panic(fmt.Sprintf("fake: access at %#x: not device memory", p))
	}
	base := f.bases[i]
	a := f.allocs[base]
	off := p - base
	if off+n > uint64(len(a)) {
		panic(fmt.Sprintf("fake: access of %d bytes at offset %d of a %d-byte allocation", n, off, len(a)))
	}
	return a[off : off+n]
}

func (f *fakeDriver) MemcpyHtoDAsync(dst DevicePtr, src unsafe.Pointer, n uint64, _ Stream) error {
	f.ctxCall("cuMemcpyHtoDAsync")
	f.mu.Lock()
	f.htod += n
	f.mu.Unlock()
	copy(f.mem(uint64(dst), n), unsafe.Slice((*byte)(src), n))
	return nil
}
func (f *fakeDriver) MemcpyDtoHAsync(dst unsafe.Pointer, src DevicePtr, n uint64, _ Stream) error {
	f.ctxCall("cuMemcpyDtoHAsync")
	f.mu.Lock()
	f.dtoh++
	f.mu.Unlock()
	copy(unsafe.Slice((*byte)(dst), n), f.mem(uint64(src), n))
	return nil
}
func (f *fakeDriver) MemcpyDtoDAsync(dst, src DevicePtr, n uint64, _ Stream) error {
	f.ctxCall("cuMemcpyDtoDAsync")
	copy(f.mem(uint64(dst), n), f.mem(uint64(src), n))
	return nil
}
func (f *fakeDriver) MemsetD8Async(dst DevicePtr, v byte, n uint64, _ Stream) error {
	f.ctxCall("cuMemsetD8Async")
	b := f.mem(uint64(dst), n)
	for i := range b {
		b[i] = v
	}
	return nil
}

func (f *fakeDriver) ModuleLoadData(ptx []byte) (Module, error) {
	f.ctxCall("cuModuleLoadData")
	return 1, nil
}
func (f *fakeDriver) ModuleUnload(Module) error { return nil }

// Functions are indices into fnames.
var (
	fnamesMu sync.Mutex
	fnames   = []string{""}
)

func (f *fakeDriver) ModuleGetFunction(_ Module, name string) (Function, error) {
	f.ctxCall("cuModuleGetFunction")
	fnamesMu.Lock()
	defer fnamesMu.Unlock()
	fnames = append(fnames, name)
	return Function(len(fnames) - 1), nil
}

func (f *fakeDriver) LaunchKernel(fn Function, grid, block [3]uint32, _ uint32, _ Stream, args []uint64) error {
	f.ctxCall("cuLaunchKernel")
	f.mu.Lock()
	if g := f.capturing; g != nil {
		g.nodes = append(g.nodes, fakeNode{fn, grid, block, slices.Clone(args)})
		f.mu.Unlock()
		return nil
	}
	f.mu.Unlock()
	return f.exec(fn, grid, block, args)
}

// exec runs one kernel: a direct launch or a graph node.
func (f *fakeDriver) exec(fn Function, grid, block [3]uint32, args []uint64) error {
	fnamesMu.Lock()
	name := fnames[fn]
	fnamesMu.Unlock()
	f.mu.Lock()
	f.launches[name]++
	f.mu.Unlock()
	if name == f.failLaunch {
		return &Error{Op: "cuLaunchKernel", Code: 700, Name: ResultName(700)}
	}
	if grid[0] == 0 || grid[1] == 0 || grid[2] == 0 || block[0] == 0 || block[0] > 1024 || block[0]%32 != 0 {
		panic(fmt.Sprintf("fake: %s launched with grid %v block %v", name, grid, block))
	}
	if f.noKernels {
		return nil
	}
	f.run(name, grid, args)
	return nil
}

// fakeGraph is a graph's (or an instantiated graph's) kernel nodes, a
// chain in order.
type fakeGraph struct {
	nodes []fakeNode
}

type fakeNode struct {
	fn          Function
	grid, block [3]uint32
	args        []uint64
}

var errGraphFake = &Error{Op: "cuGraphAddKernelNode_v2", Code: 801, Name: "CUDA_ERROR_NOT_SUPPORTED"}

func (f *fakeDriver) graphCall(op string) {
	f.ctxCall(op)
	f.mu.Lock()
	f.graphCalls[op]++
	f.mu.Unlock()
}

func (f *fakeDriver) StreamBeginCapture(Stream) error {
	f.graphCall("cuStreamBeginCapture")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.capturing != nil {
		panic("fake: capture begun twice")
	}
	f.capturing = &fakeGraph{}
	return nil
}

func (f *fakeDriver) StreamEndCapture(Stream) (Graph, error) {
	f.graphCall("cuStreamEndCapture")
	f.mu.Lock()
	defer f.mu.Unlock()
	g := f.capturing
	if g == nil {
		return 0, &Error{Op: "cuStreamEndCapture", Code: 901, Name: ResultName(901)}
	}
	f.capturing = nil
	f.nextGraph++
	f.graphs[Graph(f.nextGraph)] = g
	return Graph(f.nextGraph), nil
}

func (f *fakeDriver) GraphCreate() (Graph, error) {
	f.graphCall("cuGraphCreate")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextGraph++
	f.graphs[Graph(f.nextGraph)] = &fakeGraph{}
	return Graph(f.nextGraph), nil
}

// Graph nodes are (graph << 32) | (index + 1).
func (f *fakeDriver) GraphAddKernelNode(g Graph, dep GraphNode, fn Function, grid, block [3]uint32, shared uint32, args []uint64) (GraphNode, error) {
	f.graphCall("cuGraphAddKernelNode")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failGraph {
		return 0, errGraphFake
	}
	fg := f.graphs[g]
	if fg == nil {
		panic("fake: node added to an unknown graph")
	}
	if want := graphNode(g, len(fg.nodes)-1); len(fg.nodes) > 0 && dep != want || len(fg.nodes) == 0 && dep != 0 {
		panic(fmt.Sprintf("fake: node %d depends on %#x, want the previous node %#x (a chain)", len(fg.nodes), dep, want))
	}
	fg.nodes = append(fg.nodes, fakeNode{fn, grid, block, slices.Clone(args)}) // values are copied
	return graphNode(g, len(fg.nodes)-1), nil
}

func graphNode(g Graph, i int) GraphNode { return GraphNode(uintptr(g)<<32 | uintptr(i+1)) }

func (f *fakeDriver) GraphInstantiate(g Graph) (GraphExec, error) {
	f.graphCall("cuGraphInstantiate")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failGraph {
		return 0, &Error{Op: "cuGraphInstantiateWithFlags", Code: 801, Name: "CUDA_ERROR_NOT_SUPPORTED"}
	}
	fg := f.graphs[g]
	if fg == nil {
		panic("fake: instantiation of an unknown graph")
	}
	f.nextGraph++
	f.execs[GraphExec(f.nextGraph)] = &fakeGraph{nodes: slices.Clone(fg.nodes)}
	return GraphExec(f.nextGraph), nil
}

// GraphExecKernelNodeSetParams changes a node of the instantiated graph
// only; the fake insists that only the arguments change.
func (f *fakeDriver) GraphExecKernelNodeSetParams(e GraphExec, n GraphNode, fn Function, grid, block [3]uint32, shared uint32, args []uint64) error {
	f.graphCall("cuGraphExecKernelNodeSetParams")
	f.mu.Lock()
	defer f.mu.Unlock()
	x := f.execs[e]
	i := int(uintptr(n)&(1<<32-1)) - 1
	if x == nil || i < 0 || i >= len(x.nodes) {
		panic(fmt.Sprintf("fake: set params of node %#x of exec %d", n, e))
	}
	if old := x.nodes[i]; old.fn != fn || old.grid != grid || old.block != block || len(old.args) != len(args) {
		panic("fake: set params changes more than the arguments")
	}
	x.nodes[i].args = slices.Clone(args)
	return nil
}

func (f *fakeDriver) GraphLaunch(e GraphExec, _ Stream) error {
	f.graphCall("cuGraphLaunch")
	f.mu.Lock()
	x := f.execs[e]
	f.mu.Unlock()
	if x == nil {
		return &Error{Op: "cuGraphLaunch", Code: 400, Name: ResultName(400)}
	}
	for _, nd := range x.nodes {
		if err := f.exec(nd.fn, nd.grid, nd.block, nd.args); err != nil {
			return err
		}
	}
	return nil
}

func (f *fakeDriver) GraphExecDestroy(e GraphExec) error {
	f.graphCall("cuGraphExecDestroy")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.execs[e] == nil {
		panic("fake: destroy of an unknown exec")
	}
	delete(f.execs, e)
	return nil
}

func (f *fakeDriver) GraphDestroy(g Graph) error {
	f.graphCall("cuGraphDestroy")
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.graphs[g] == nil {
		panic("fake: destroy of an unknown graph")
	}
	delete(f.graphs, g)
	return nil
}

// Typed views of device memory.
func (f *fakeDriver) f32s(p uint64, n int) []float32 {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&f.mem(p, uint64(4*n))[0])), n)
}

// f32sOrNil is f32s, or nil for a null pointer (an optional operand).
func (f *fakeDriver) f32sOrNil(p uint64, n int) []float32 {
	if p == 0 {
		return nil
	}
	return f.f32s(p, n)
}

// checkGrid holds a (rows, ceil(cols/256)) launch to its shape.
func (f *fakeDriver) checkGrid(name string, grid [3]uint32, rows, cols int) {
	if want := [3]uint32{uint32(max(rows, 1)), uint32(max(ceilDiv(cols, 256), 1)), 1}; grid != want {
		panic(fmt.Sprintf("fake: %s grid %v for %d rows of %d, want %v", name, grid, rows, cols, want))
	}
}

func (f *fakeDriver) i32s(p uint64, n int) []int32 {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*int32)(unsafe.Pointer(&f.mem(p, uint64(4*n))[0])), n)
}
func (f *fakeDriver) u16s(p uint64, n int) []uint16 {
	if n == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&f.mem(p, uint64(2*n))[0])), n)
}
func (f *fakeDriver) u64s(p uint64, n int) []uint64 {
	return unsafe.Slice((*uint64)(unsafe.Pointer(&f.mem(p, uint64(8*n))[0])), n)
}

func i32(a uint64) int     { return int(int32(uint32(a))) }
func f32(a uint64) float32 { return math.Float32frombits(uint32(a)) }

var suffixType = map[string]quant.Type{"f32": quant.F32, "f16": quant.F16, "bf16": quant.BF16,
	"q4_0": quant.Q4_0, "q8_0": quant.Q8_0, "q4_K": quant.Q4_K, "q6_K": quant.Q6_K}

func splitName(name string) (string, quant.Type, bool) {
	for suf, t := range suffixType {
		if len(name) > len(suf)+1 && name[len(name)-len(suf)-1:] == "_"+suf {
			return name[:len(name)-len(suf)-1], t, true
		}
	}
	return name, 0, false
}

// run executes a kernel's Go model. Arguments are read in the order of the
// kernel's parameters in its .cu file.
func (f *fakeDriver) run(name string, grid [3]uint32, a []uint64) {
	base, typ, typed := splitName(name)
	switch {
	case typed && base == "embed": // dst, table, rowBytes, ids, n, cols
		n, cols, rb := i32(a[4]), i32(a[5]), int(a[2])
		ids := f.i32s(a[3], n)
		dst := f.f32s(a[0], n*cols)
		var v [8]float32
		for t := 0; t < n; t++ {
			row := f.mem(a[1]+uint64(int(ids[t])*rb), uint64(rb))
			for k0 := 0; k0 < cols; k0 += 8 {
				dq8(typ, row, k0, cols, &v)
				for i := 0; i < 8 && k0+i < cols; i++ {
					dst[t*cols+k0+i] = v[i]
				}
			}
		}
	case typed && (base == "matvec" || base == "matmul"): // dst, W, rowBytes, rows, cols, aq, ad, x, n
		rows, cols, n, rb := i32(a[3]), i32(a[4]), i32(a[8]), int(a[2])
		if base == "matvec" && n > 8 {
			panic("fake: matvec of more than 8 tokens")
		}
		dst := f.f32s(a[0], n*rows)
		quantAct := typ != quant.F32 && typ != quant.F16 && typ != quant.BF16
		var aq []int8
		var ad, x []float32
		if quantAct {
			aq = unsafe.Slice((*int8)(unsafe.Pointer(&f.mem(a[5], uint64(n*cols))[0])), n*cols)
			ad = f.f32s(a[6], n*cols/32)
		} else {
			x = f.f32s(a[7], n*cols)
		}
		acc := make([]float32, n)
		w := make([]float32, cols+8)
		var v [8]float32
		for r := 0; r < rows; r++ {
			row := f.mem(a[1]+uint64(r*rb), uint64(rb))
			if base == "matvec" && quantAct { // the units, as the kernel sums them
				clear(acc)
				for u := 0; u < cols/8; u++ {
					unit(typ, row, u, aq, ad, cols, n, acc)
				}
				for t := 0; t < n; t++ {
					dst[t*rows+r] = acc[t]
				}
				continue
			}
			for k0 := 0; k0 < cols; k0 += 8 {
				dq8(typ, row, k0, cols, &v)
				copy(w[k0:], v[:])
			}
			for t := 0; t < n; t++ {
				var s float32
				for k := 0; k < cols; k++ {
					xv := float32(0)
					if quantAct {
						xv = float32(aq[t*cols+k]) * ad[(t*cols+k)/32]
					} else {
						xv = actRound(typ, x[t*cols+k])
					}
					s += w[k] * xv
				}
				dst[t*rows+r] = s
			}
		}
	case typed && base == "mma": // dst, W, rowBytes, rows, cols, aq, ad, x, n
		rows, cols, n, rb := i32(a[3]), i32(a[4]), i32(a[8]), int(a[2])
		if cols%32 != 0 || n < 1 {
			panic(fmt.Sprintf("fake: mma of width %d, %d tokens", cols, n))
		}
		if want := [3]uint32{uint32(ceilDiv(rows, 128)), uint32(ceilDiv(n, 128)), 1}; grid != want {
			panic(fmt.Sprintf("fake: mma grid %v, want %v", grid, want))
		}
		var aq []int8
		var ad, x []float32
		if typ == quant.F16 {
			x = f.f32s(a[7], n*cols)
		} else {
			aq = unsafe.Slice((*int8)(unsafe.Pointer(&f.mem(a[5], uint64(n*cols))[0])), n*cols)
			ad = f.f32s(a[6], n*cols/32)
		}
		w := f.mem(a[1], uint64(rows*rb))
		mmaReference(typ, f.f32s(a[0], n*rows), w, rb, rows, cols, aq, ad, x, n)
	case name == "quantize_q8": // aq, ad, x, n
		n := int(a[3])
		aq := unsafe.Slice((*int8)(unsafe.Pointer(&f.mem(a[0], uint64(n))[0])), n)
		ad := f.f32s(a[1], n/32)
		x := f.f32s(a[2], n)
		for b := 0; b < n/32; b++ {
			ad[b] = quantizeQ8(x[32*b:], aq[32*b:])
		}
	case name == "gather_rows": // dst, x, idx, n, cols
		n, cols := i32(a[3]), i32(a[4])
		idx := f.i32s(a[2], n)
		for i := 0; i < n; i++ {
			copy(f.f32s(a[0]+uint64(4*i*cols), cols), f.f32s(a[1]+uint64(4*int(idx[i])*cols), cols))
		}
	case name == "rmsnorm_f32": // dst, x, w, cols, eps
		cols, eps := i32(a[3]), f32(a[4])
		w := f.f32s(a[2], cols)
		for t := 0; t < int(grid[0]); t++ {
			x := f.f32s(a[1]+uint64(4*t*cols), cols)
			kcpu.RMSNorm(f.f32s(a[0]+uint64(4*t*cols), cols), x, w, eps)
		}
	case name == "layernorm_f32": // dst, x, w, b, cols, eps
		cols, eps := i32(a[4]), f32(a[5])
		w, bias := f.f32sOrNil(a[2], cols), f.f32sOrNil(a[3], cols)
		for t := 0; t < int(grid[0]); t++ {
			x := f.f32s(a[1]+uint64(4*t*cols), cols)
			kcpu.LayerNorm(f.f32s(a[0]+uint64(4*t*cols), cols), x, w, bias, eps)
		}
	case name == "rope_f32": // x, cs, pos, heads, headDim, half, neox, cols
		heads, headDim, half, neox, cols := i32(a[3]), i32(a[4]), i32(a[5]), i32(a[6]), i32(a[7])
		n := int(grid[0])
		pos := f.i32s(a[2], n)
		for t := 0; t < n; t++ {
			tab := f.f32s(a[1]+uint64(8*int(pos[t])*half), 2*half)
			row := f.f32s(a[0]+uint64(4*t*cols), cols)
			for h := 0; h < heads; h++ {
				v := row[h*headDim:]
				for i := 0; i < half; i++ {
					x0i, x1i := 2*i, 2*i+1
					if neox != 0 {
						x0i, x1i = i, i+half
					}
					c, s := tab[2*i], tab[2*i+1]
					x0, x1 := v[x0i], v[x1i]
					v[x0i] = float32(x0*c) - float32(x1*s)
					v[x1i] = float32(x0*s) + float32(x1*c)
				}
			}
		}
	case name == "swiglu_f32": // dst, gate, up, n
		n := int(a[3])
		kcpu.SwiGLU(f.f32s(a[0], n), f.f32s(a[1], n), f.f32s(a[2], n))
	case name == "geglu_f32": // dst, gate, up, n
		n := int(a[3])
		dst, g, u := f.f32s(a[0], n), f.f32s(a[1], n), f.f32s(a[2], n)
		for i := range dst {
			dst[i] = geluKernel(g[i]) * u[i]
		}
	case name == "swiglu_oai_f32": // dst, gate, up, n, alpha, limit
		n, alpha, limit := int(a[3]), f32(a[4]), f32(a[5])
		dst, g, u := f.f32s(a[0], n), f.f32s(a[1], n), f.f32s(a[2], n)
		for i := range dst {
			dst[i] = swigluOAIKernel(g[i], u[i], alpha, limit)
		}
	case name == "silu_f32": // dst, x, n
		n := int(a[2])
		dst, x := f.f32s(a[0], n), f.f32s(a[1], n)
		for i := range dst {
			dst[i] = x[i] / (1 + fastExp(-x[i]))
		}
	case name == "gelu_f32": // dst, x, n
		n := int(a[2])
		dst, x := f.f32s(a[0], n), f.f32s(a[1], n)
		for i := range dst {
			dst[i] = geluKernel(x[i])
		}
	case name == "add_f32": // dst, x, n
		n := int(a[2])
		kcpu.Add(f.f32s(a[0], n), f.f32s(a[1], n))
	case name == "add_bias_f32": // x, b, rows, cols
		rows, cols := i32(a[2]), i32(a[3])
		f.checkGrid(name, grid, rows, cols)
		bias := f.f32s(a[1], cols)
		for t := 0; t < rows; t++ {
			kcpu.Add(f.f32s(a[0]+uint64(4*t*cols), cols), bias)
		}
	case name == "scale_f32": // x, s, s0, rows, cols
		rows, cols := i32(a[3]), i32(a[4])
		f.checkGrid(name, grid, rows, cols)
		sc := f.f32sOrNil(a[1], rows)
		for t := 0; t < rows; t++ {
			k := f32(a[2])
			if sc != nil {
				k = sc[t]
			}
			x := f.f32s(a[0]+uint64(4*t*cols), cols)
			for i := range x {
				x[i] *= k
			}
		}
	case name == "add_scaled_rows_f32": // dst, x, plan, m, n, cols
		m, n, cols := i32(a[3]), i32(a[4]), i32(a[5])
		f.checkGrid(name, grid, m, cols)
		addScaledRowsKernel(f, a[0], a[1], f.i32s(a[2], 2*m+1+2*n), m, n, cols)
	case name == "argmax_f32": // out, x, cols
		cols := i32(a[2])
		out := f.i32s(a[0], int(grid[0]))
		for t := range out {
			x := f.f32s(a[1]+uint64(4*t*cols), cols)
			best, bv := 0, float32(math.Inf(-1))
			for i, v := range x {
				if v > bv {
					best, bv = i, v
				}
			}
			out[t] = int32(best)
		}
	case name == "kv_store": // kvb, k, v, slot, layer, kvDim, stride, n
		layer, kvDim, stride, n := i32(a[4]), i32(a[5]), i32(a[6]), i32(a[7])
		if kvDim > stride {
			panic("fake: kv_store rows wider than the pool's")
		}
		kvb := f.u64s(a[0], 4*n)
		slot := f.i32s(a[3], n)
		for t := 0; t < n; t++ {
			off := uint64(layer)*kvb[4*t+2] + uint64(int(slot[t])*stride)
			kcpu.ToF16(f.u16s(kvb[4*t]+2*off, kvDim), f.f32s(a[1]+uint64(4*t*kvDim), kvDim))
			kcpu.ToF16(f.u16s(kvb[4*t+1]+2*off, kvDim), f.f32s(a[2]+uint64(4*t*kvDim), kvDim))
		}
	case name == "attention_f16" || name == "attention_f16_h512": // out, q, kvb, tables, tabOff, pos, last, layer, heads, kvHeads, headDim, stride, scale, window, softCap, sinks
		layer, heads, kvHeads, headDim, stride, scale := i32(a[7]), i32(a[8]), i32(a[9]), i32(a[10]), i32(a[11]), f32(a[12])
		window, softCap := i32(a[13]), f32(a[14])
		if limit := map[bool]int{false: 256, true: 512}[name == "attention_f16_h512"]; headDim > limit || kvHeads*headDim > stride {
			panic(fmt.Sprintf("fake: %s of heads of %d in rows of %d", name, headDim, stride))
		}
		n := int(grid[0])
		if int(grid[1]) != heads {
			panic("fake: attention grid y is not the head count")
		}
		kvb := f.u64s(a[2], 4*n)
		tabOff := f.i32s(a[4], n)
		pos := f.i32s(a[5], n)
		last := f.i32s(a[6], n)
		sinks := f.f32sOrNil(a[15], heads)
		qDim := heads * headDim
		for t := 0; t < n; t++ {
			loff := uint64(layer) * kvb[4*t+2]
			bs := int(kvb[4*t+3])
			np := int(last[t]) + 1
			lo := 0
			if window > 0 {
				lo = max(0, int(pos[t])-window+1)
			}
			rowOf := func(j int) uint64 {
				blk := f.i32s(a[3]+uint64(4*(int(tabOff[t])+j/bs)), 1)[0]
				return uint64(int(blk)*bs + j%bs)
			}
			for h := 0; h < heads; h++ {
				kvh := h / (heads / kvHeads)
				q := make([]uint16, headDim)
				kcpu.ToF16(q, f.f32s(a[1]+uint64(4*(t*qDim+h*headDim)), headDim))
				s := make([]float32, np)
				for j := lo; j < np; j++ {
					k := f.u16s(kvb[4*t]+2*(loff+rowOf(j)*uint64(stride)+uint64(kvh*headDim)), headDim)
					s[j] = kcpu.DotF16(q, k) * scale
					if softCap > 0 {
						s[j] = softCap * tanhKernel(s[j]/softCap)
					}
				}
				sink := float32(math.Inf(-1))
				if sinks != nil {
					sink = sinks[h]
				}
				attnWeights(s[lo:], sink)
				out := f.f32s(a[0]+uint64(4*(t*qDim+h*headDim)), headDim)
				clear(out)
				for j := lo; j < np; j++ {
					p := s[j]
					if p == 0 {
						continue
					}
					v := f.u16s(kvb[4*t+1]+2*(loff+rowOf(j)*uint64(stride)+uint64(kvh*headDim)), headDim)
					kcpu.AxpyF16(out, p, v)
				}
			}
		}
	case typed && base == "matvec_id":
		matvecIDKernel(f, typ, grid, a)
	case name == "moe_route_f32":
		moeRouteKernel(f, grid, a)
	case name == "causal_conv_f32":
		causalConvKernel(f, grid, a)
	case name == "gated_delta_net_f32":
		deltaNetKernel(f, grid, a)
	case name == "sigmoid_glu_f32": // dst, gate, up, n
		n := int(a[3])
		dst, g, u := f.f32s(a[0], n), f.f32s(a[1], n), f.f32s(a[2], n)
		for i := range dst {
			dst[i] = sigmoidKernel(g[i]) * u[i]
		}
	case name == "scale_sigmoid_f32": // x, g, rows, cols
		rows, cols := i32(a[2]), i32(a[3])
		f.checkGrid(name, grid, rows, cols)
		g := f.f32s(a[1], rows)
		for t := 0; t < rows; t++ {
			p := sigmoidKernel(g[t])
			x := f.f32s(a[0]+uint64(4*t*cols), cols)
			for i := range x {
				x[i] *= p
			}
		}
	case name == "lora_shrink":
		loraShrinkKernel(f, grid, a)
	case name == "lora_shrink_embed":
		loraShrinkEmbedKernel(f, grid, a)
	case name == "lora_expand":
		loraExpandKernel(f, grid, a)
	case name == "moe_sum_f32": // dst, y, w, k, cols
		k, cols := i32(a[3]), i32(a[4])
		f.checkGrid(name, grid, int(grid[0]), cols)
		moeSumKernel(f, a[0], a[1], a[2], int(grid[0]), k, cols)
	default:
		panic("fake: no model of kernel " + name)
	}
}
