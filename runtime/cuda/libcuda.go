package cuda

import (
	"fmt"
	"runtime"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// LibraryName is the driver library Load opens.
const LibraryName = "libcuda.so.1"

// libcuda is the Driver bound to libcuda.so.1 with purego: every call is a
// purego.SyscallN on the symbol's address (no cgo, no CUDA headers). The
// addresses are resolved once, by Load; a call never looks a name up.
type libcuda struct {
	getErrorName                 sym // cuGetErrorName
	init                         sym // cuInit
	driverGetVersion             sym // cuDriverGetVersion
	deviceGetCount               sym // cuDeviceGetCount
	deviceGet                    sym // cuDeviceGet
	deviceGetName                sym // cuDeviceGetName
	deviceGetAttribute           sym // cuDeviceGetAttribute
	deviceTotalMem               sym // cuDeviceTotalMem_v2
	devicePrimaryCtxRetain       sym // cuDevicePrimaryCtxRetain
	devicePrimaryCtxRelease      sym // cuDevicePrimaryCtxRelease_v2
	ctxSetCurrent                sym // cuCtxSetCurrent
	ctxSynchronize               sym // cuCtxSynchronize
	memGetInfo                   sym // cuMemGetInfo_v2
	streamCreate                 sym // cuStreamCreate
	streamDestroy                sym // cuStreamDestroy_v2
	streamSynchronize            sym // cuStreamSynchronize
	memAlloc                     sym // cuMemAlloc_v2
	memFree                      sym // cuMemFree_v2
	memHostAlloc                 sym // cuMemHostAlloc
	memFreeHost                  sym // cuMemFreeHost
	memcpyHtoDAsync              sym // cuMemcpyHtoDAsync_v2
	memcpyDtoHAsync              sym // cuMemcpyDtoHAsync_v2
	memcpyDtoDAsync              sym // cuMemcpyDtoDAsync_v2
	memsetD8Async                sym // cuMemsetD8Async
	moduleLoadData               sym // cuModuleLoadData
	moduleUnload                 sym // cuModuleUnload
	moduleGetFunction            sym // cuModuleGetFunction
	launchKernel                 sym // cuLaunchKernel
	eventCreate                  sym // cuEventCreate
	eventDestroy                 sym // cuEventDestroy_v2
	eventRecord                  sym // cuEventRecord
	eventSynchronize             sym // cuEventSynchronize
	eventElapsedTime             sym // cuEventElapsedTime
	streamBeginCapture           sym // cuStreamBeginCapture_v2
	streamEndCapture             sym // cuStreamEndCapture
	graphInstantiateWithFlags    sym // cuGraphInstantiateWithFlags
	graphLaunch                  sym // cuGraphLaunch
	graphExecDestroy             sym // cuGraphExecDestroy
	graphDestroy                 sym // cuGraphDestroy
	graphCreate                  sym // cuGraphCreate
	graphAddKernelNode           sym // cuGraphAddKernelNode
	graphExecKernelNodeSetParams sym // cuGraphExecKernelNodeSetParams
}

// sym is one bound driver function: its name (for errors) and address (0
// when an optional symbol is missing).
type sym struct {
	name string
	addr uintptr
}

// symbols are the driver functions bound, by their exported names (the
// _v2 ones are what cuda.h maps the plain names to). Each lists the names
// to try in order; a missing required one means the driver is too old.
var symbols = []struct {
	name     string
	try      []string
	optional bool // only the device tests and benchmarks use it
	at       func(*libcuda) *sym
}{
	{"cuGetErrorName", nil, false, func(l *libcuda) *sym { return &l.getErrorName }},
	{"cuInit", nil, false, func(l *libcuda) *sym { return &l.init }},
	{"cuDriverGetVersion", nil, false, func(l *libcuda) *sym { return &l.driverGetVersion }},
	{"cuDeviceGetCount", nil, false, func(l *libcuda) *sym { return &l.deviceGetCount }},
	{"cuDeviceGet", nil, false, func(l *libcuda) *sym { return &l.deviceGet }},
	{"cuDeviceGetName", nil, false, func(l *libcuda) *sym { return &l.deviceGetName }},
	{"cuDeviceGetAttribute", nil, false, func(l *libcuda) *sym { return &l.deviceGetAttribute }},
	{"cuDeviceTotalMem_v2", nil, false, func(l *libcuda) *sym { return &l.deviceTotalMem }},
	{"cuDevicePrimaryCtxRetain", nil, false, func(l *libcuda) *sym { return &l.devicePrimaryCtxRetain }},
	{"cuDevicePrimaryCtxRelease_v2", []string{"cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"}, false, func(l *libcuda) *sym { return &l.devicePrimaryCtxRelease }},
	{"cuCtxSetCurrent", nil, false, func(l *libcuda) *sym { return &l.ctxSetCurrent }},
	{"cuCtxSynchronize", nil, false, func(l *libcuda) *sym { return &l.ctxSynchronize }},
	{"cuMemGetInfo_v2", nil, false, func(l *libcuda) *sym { return &l.memGetInfo }},
	{"cuStreamCreate", nil, false, func(l *libcuda) *sym { return &l.streamCreate }},
	{"cuStreamDestroy_v2", []string{"cuStreamDestroy_v2", "cuStreamDestroy"}, false, func(l *libcuda) *sym { return &l.streamDestroy }},
	{"cuStreamSynchronize", nil, false, func(l *libcuda) *sym { return &l.streamSynchronize }},
	{"cuMemAlloc_v2", nil, false, func(l *libcuda) *sym { return &l.memAlloc }},
	{"cuMemFree_v2", nil, false, func(l *libcuda) *sym { return &l.memFree }},
	{"cuMemHostAlloc", nil, false, func(l *libcuda) *sym { return &l.memHostAlloc }},
	{"cuMemFreeHost", nil, false, func(l *libcuda) *sym { return &l.memFreeHost }},
	{"cuMemcpyHtoDAsync_v2", nil, false, func(l *libcuda) *sym { return &l.memcpyHtoDAsync }},
	{"cuMemcpyDtoHAsync_v2", nil, false, func(l *libcuda) *sym { return &l.memcpyDtoHAsync }},
	{"cuMemcpyDtoDAsync_v2", nil, false, func(l *libcuda) *sym { return &l.memcpyDtoDAsync }},
	{"cuMemsetD8Async", nil, false, func(l *libcuda) *sym { return &l.memsetD8Async }},
	{"cuModuleLoadData", nil, false, func(l *libcuda) *sym { return &l.moduleLoadData }},
	{"cuModuleUnload", nil, false, func(l *libcuda) *sym { return &l.moduleUnload }},
	{"cuModuleGetFunction", nil, false, func(l *libcuda) *sym { return &l.moduleGetFunction }},
	{"cuLaunchKernel", nil, false, func(l *libcuda) *sym { return &l.launchKernel }},
	{"cuEventCreate", nil, true, func(l *libcuda) *sym { return &l.eventCreate }},
	{"cuEventDestroy_v2", []string{"cuEventDestroy_v2", "cuEventDestroy"}, true, func(l *libcuda) *sym { return &l.eventDestroy }},
	{"cuEventRecord", nil, true, func(l *libcuda) *sym { return &l.eventRecord }},
	{"cuEventSynchronize", nil, true, func(l *libcuda) *sym { return &l.eventSynchronize }},
	// CUDA 12.8 added _v2 (same signature); CUDA 13's header maps to it.
	{"cuEventElapsedTime", []string{"cuEventElapsedTime_v2", "cuEventElapsedTime"}, true, func(l *libcuda) *sym { return &l.eventElapsedTime }},
	{"cuStreamBeginCapture_v2", nil, true, func(l *libcuda) *sym { return &l.streamBeginCapture }},
	{"cuStreamEndCapture", nil, true, func(l *libcuda) *sym { return &l.streamEndCapture }},
	{"cuGraphInstantiateWithFlags", nil, true, func(l *libcuda) *sym { return &l.graphInstantiateWithFlags }},
	{"cuGraphLaunch", nil, true, func(l *libcuda) *sym { return &l.graphLaunch }},
	{"cuGraphExecDestroy", nil, true, func(l *libcuda) *sym { return &l.graphExecDestroy }},
	{"cuGraphDestroy", nil, true, func(l *libcuda) *sym { return &l.graphDestroy }},
	{"cuGraphCreate", nil, true, func(l *libcuda) *sym { return &l.graphCreate }},
	// CUDA 12 added _v2 with CUkernel and CUcontext at the end of the
	// parameters; the first fields are the same, so the v2 layout serves
	// both (an older driver reads only the fields it knows).
	{"cuGraphAddKernelNode", []string{"cuGraphAddKernelNode_v2", "cuGraphAddKernelNode"}, true, func(l *libcuda) *sym { return &l.graphAddKernelNode }},
	{"cuGraphExecKernelNodeSetParams", []string{"cuGraphExecKernelNodeSetParams_v2", "cuGraphExecKernelNodeSetParams"}, true, func(l *libcuda) *sym { return &l.graphExecKernelNodeSetParams }},
}

var (
	loadOnce sync.Once
	loaded   *libcuda
	loadErr  error
)

// Load opens libcuda.so.1 and binds the driver API (once per process). It
// returns an error wrapping ErrNoDevice when the library or a required
// symbol is missing.
func Load() (Driver, error) {
	loadOnce.Do(func() {
		// dlopen's reason is read with dlerror, which is per thread: the
		// goroutine must not move to another thread in between (it did,
		// and the reason came back empty).
		runtime.LockOSThread()
		h, err := purego.Dlopen(LibraryName, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		runtime.UnlockOSThread()
		if err != nil {
			why := strings.TrimSpace(err.Error())
			if why == "" {
				why = "cannot be loaded"
			}
			if !strings.Contains(why, LibraryName) {
				why = LibraryName + ": " + why
			}
			loadErr = fmt.Errorf("%w: %s", ErrNoDevice, why)
			return
		}
		l := &libcuda{}
		for _, s := range symbols {
			at := s.at(l)
			at.name = s.name
			names := s.try
			if names == nil {
				names = []string{s.name}
			}
			for _, n := range names {
				if p, err := purego.Dlsym(h, n); err == nil {
					at.addr = p
					break
				}
			}
			if at.addr == 0 && !s.optional {
				loadErr = fmt.Errorf("%w: %s lacks %s (driver too old?)", ErrNoDevice, LibraryName, s.name)
				return
			}
		}
		loaded = l
	})
	if loadErr != nil {
		return nil, loadErr
	}
	return loaded, nil
}

// call runs a driver function and turns its CUresult into an error.
func (l *libcuda) call(s *sym, args ...uintptr) error {
	if s.addr == 0 {
		return &Error{Op: s.name, Code: 500, Name: "CUDA_ERROR_NOT_FOUND (not in this driver)"}
	}
	r, _, _ := purego.SyscallN(s.addr, args...)
	if code := int(uint32(r)); code != 0 {
		return &Error{Op: s.name, Code: code, Name: l.errorName(code)}
	}
	return nil
}

func (l *libcuda) errorName(code int) string {
	var p *byte
	r, _, _ := purego.SyscallN(l.getErrorName.addr, uintptr(code), uintptr(unsafe.Pointer(&p)))
	if r != 0 || p == nil {
		return ResultName(code)
	}
	return cString(p)
}

// cString copies a NUL-terminated C string.
func cString(p *byte) string {
	var b []byte
	for q := unsafe.Pointer(p); *(*byte)(q) != 0; q = unsafe.Add(q, 1) {
		b = append(b, *(*byte)(q))
	}
	return string(b)
}

func (l *libcuda) device(ordinal int) (int32, error) {
	var d int32
	err := l.call(&l.deviceGet, uintptr(unsafe.Pointer(&d)), uintptr(ordinal))
	return d, err
}

func (l *libcuda) Init() error { return l.call(&l.init, 0) }

func (l *libcuda) DriverVersion() (int, error) {
	var v int32
	err := l.call(&l.driverGetVersion, uintptr(unsafe.Pointer(&v)))
	return int(v), err
}

func (l *libcuda) DeviceCount() (int, error) {
	var n int32
	err := l.call(&l.deviceGetCount, uintptr(unsafe.Pointer(&n)))
	return int(n), err
}

func (l *libcuda) DeviceName(ordinal int) (string, error) {
	d, err := l.device(ordinal)
	if err != nil {
		return "", err
	}
	buf := make([]byte, 256)
	if err := l.call(&l.deviceGetName, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), uintptr(d)); err != nil {
		return "", err
	}
	return cString(&buf[0]), nil
}

func (l *libcuda) DeviceAttribute(ordinal int, a Attribute) (int, error) {
	d, err := l.device(ordinal)
	if err != nil {
		return 0, err
	}
	var v int32
	err = l.call(&l.deviceGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(a), uintptr(d))
	return int(v), err
}

func (l *libcuda) DeviceTotalMem(ordinal int) (uint64, error) {
	d, err := l.device(ordinal)
	if err != nil {
		return 0, err
	}
	var n uint64
	err = l.call(&l.deviceTotalMem, uintptr(unsafe.Pointer(&n)), uintptr(d))
	return n, err
}

func (l *libcuda) PrimaryCtxRetain(ordinal int) (Context, error) {
	d, err := l.device(ordinal)
	if err != nil {
		return 0, err
	}
	var c Context
	err = l.call(&l.devicePrimaryCtxRetain, uintptr(unsafe.Pointer(&c)), uintptr(d))
	return c, err
}

func (l *libcuda) PrimaryCtxRelease(ordinal int) error {
	d, err := l.device(ordinal)
	if err != nil {
		return err
	}
	return l.call(&l.devicePrimaryCtxRelease, uintptr(d))
}

func (l *libcuda) CtxSetCurrent(c Context) error { return l.call(&l.ctxSetCurrent, uintptr(c)) }
func (l *libcuda) CtxSynchronize() error         { return l.call(&l.ctxSynchronize) }

func (l *libcuda) MemGetInfo() (free, total uint64, err error) {
	err = l.call(&l.memGetInfo, uintptr(unsafe.Pointer(&free)), uintptr(unsafe.Pointer(&total)))
	return
}

func (l *libcuda) StreamCreate() (Stream, error) {
	var s Stream
	const nonBlocking = 1 // CU_STREAM_NON_BLOCKING: no implicit sync with stream 0
	err := l.call(&l.streamCreate, uintptr(unsafe.Pointer(&s)), nonBlocking)
	return s, err
}
func (l *libcuda) StreamDestroy(s Stream) error     { return l.call(&l.streamDestroy, uintptr(s)) }
func (l *libcuda) StreamSynchronize(s Stream) error { return l.call(&l.streamSynchronize, uintptr(s)) }

func (l *libcuda) EventCreate() (Event, error) {
	var e Event
	err := l.call(&l.eventCreate, uintptr(unsafe.Pointer(&e)), 0) // CU_EVENT_DEFAULT: timed
	return e, err
}
func (l *libcuda) EventDestroy(e Event) error { return l.call(&l.eventDestroy, uintptr(e)) }
func (l *libcuda) EventRecord(e Event, s Stream) error {
	return l.call(&l.eventRecord, uintptr(e), uintptr(s))
}
func (l *libcuda) EventSynchronize(e Event) error { return l.call(&l.eventSynchronize, uintptr(e)) }
func (l *libcuda) EventElapsedTime(a, b Event) (float32, error) {
	var ms float32
	err := l.call(&l.eventElapsedTime, uintptr(unsafe.Pointer(&ms)), uintptr(a), uintptr(b))
	return ms, err
}

func (l *libcuda) MemAlloc(bytes uint64) (DevicePtr, error) {
	var p DevicePtr
	err := l.call(&l.memAlloc, uintptr(unsafe.Pointer(&p)), uintptr(bytes))
	return p, err
}
func (l *libcuda) MemFree(p DevicePtr) error { return l.call(&l.memFree, uintptr(p)) }

func (l *libcuda) MemHostAlloc(bytes uint64) (unsafe.Pointer, error) {
	var p unsafe.Pointer
	const portable = 1 // CU_MEMHOSTALLOC_PORTABLE
	err := l.call(&l.memHostAlloc, uintptr(unsafe.Pointer(&p)), uintptr(bytes), portable)
	return p, err
}
func (l *libcuda) MemFreeHost(p unsafe.Pointer) error { return l.call(&l.memFreeHost, uintptr(p)) }

// The host side of a copy must stay valid and unmoved during the call:
// Go heap memory (never moved by the collector) or pinned host memory. A
// copy from pageable memory has been staged when the call returns, so the
// source may be reused at once; a copy into pageable memory is complete
// only after the stream is synchronized.
func (l *libcuda) MemcpyHtoDAsync(dst DevicePtr, src unsafe.Pointer, n uint64, s Stream) error {
	return l.call(&l.memcpyHtoDAsync, uintptr(dst), uintptr(src), uintptr(n), uintptr(s))
}
func (l *libcuda) MemcpyDtoHAsync(dst unsafe.Pointer, src DevicePtr, n uint64, s Stream) error {
	return l.call(&l.memcpyDtoHAsync, uintptr(dst), uintptr(src), uintptr(n), uintptr(s))
}
func (l *libcuda) MemcpyDtoDAsync(dst, src DevicePtr, n uint64, s Stream) error {
	return l.call(&l.memcpyDtoDAsync, uintptr(dst), uintptr(src), uintptr(n), uintptr(s))
}
func (l *libcuda) MemsetD8Async(dst DevicePtr, v byte, n uint64, s Stream) error {
	return l.call(&l.memsetD8Async, uintptr(dst), uintptr(v), uintptr(n), uintptr(s))
}

func (l *libcuda) ModuleLoadData(ptx []byte) (Module, error) {
	img := make([]byte, len(ptx)+1) // NUL-terminated text
	copy(img, ptx)
	var m Module
	err := l.call(&l.moduleLoadData, uintptr(unsafe.Pointer(&m)), uintptr(unsafe.Pointer(&img[0])))
	runtime.KeepAlive(img)
	return m, err
}
func (l *libcuda) ModuleUnload(m Module) error { return l.call(&l.moduleUnload, uintptr(m)) }

func (l *libcuda) ModuleGetFunction(m Module, name string) (Function, error) {
	cname := append([]byte(name), 0)
	var f Function
	err := l.call(&l.moduleGetFunction, uintptr(unsafe.Pointer(&f)), uintptr(m), uintptr(unsafe.Pointer(&cname[0])))
	runtime.KeepAlive(cname)
	return f, err
}

func (l *libcuda) LaunchKernel(f Function, grid, block [3]uint32, shared uint32, s Stream, args []uint64) error {
	// kernelParams is an array of pointers, one to each argument's value.
	// Both arrays live on the Go heap and are pinned for the call.
	vals := make([]uint64, max(1, len(args)))
	copy(vals, args)
	ptrs := make([]unsafe.Pointer, max(1, len(args)))
	var pin runtime.Pinner
	pin.Pin(&vals[0])
	for i := range args {
		ptrs[i] = unsafe.Pointer(&vals[i])
	}
	defer pin.Unpin()
	return l.call(&l.launchKernel, uintptr(f),
		uintptr(grid[0]), uintptr(grid[1]), uintptr(grid[2]),
		uintptr(block[0]), uintptr(block[1]), uintptr(block[2]),
		uintptr(shared), uintptr(s), uintptr(unsafe.Pointer(&ptrs[0])), 0)
}

func (l *libcuda) StreamBeginCapture(s Stream) error {
	// CU_STREAM_CAPTURE_MODE_RELAXED: the worker thread may still allocate
	// while a capture is open (allocation is not stream work and is not
	// recorded); illegal stream work still invalidates the capture.
	const relaxed = 2
	return l.call(&l.streamBeginCapture, uintptr(s), relaxed)
}
func (l *libcuda) StreamEndCapture(s Stream) (Graph, error) {
	var g Graph
	err := l.call(&l.streamEndCapture, uintptr(s), uintptr(unsafe.Pointer(&g)))
	return g, err
}
func (l *libcuda) GraphInstantiate(g Graph) (GraphExec, error) {
	var e GraphExec
	err := l.call(&l.graphInstantiateWithFlags, uintptr(unsafe.Pointer(&e)), uintptr(g), 0)
	return e, err
}
func (l *libcuda) GraphLaunch(e GraphExec, s Stream) error {
	return l.call(&l.graphLaunch, uintptr(e), uintptr(s))
}
func (l *libcuda) GraphExecDestroy(e GraphExec) error {
	return l.call(&l.graphExecDestroy, uintptr(e))
}
func (l *libcuda) GraphDestroy(g Graph) error { return l.call(&l.graphDestroy, uintptr(g)) }

func (l *libcuda) GraphCreate() (Graph, error) {
	var g Graph
	err := l.call(&l.graphCreate, uintptr(unsafe.Pointer(&g)), 0)
	return g, err
}

// kernelNodeParams is CUDA_KERNEL_NODE_PARAMS_v2 (cuda.h, 72 bytes):
// func, grid, block, shared memory, kernelParams, extra, kern, ctx.
type kernelNodeParams struct {
	fn           Function
	grid, block  [3]uint32
	sharedMem    uint32
	_            uint32
	kernelParams unsafe.Pointer
	extra        unsafe.Pointer
	kern         uintptr
	ctx          uintptr
}

// nodeParams fills the node parameters of a kernel with its arguments and
// pins everything the driver reads during the call.
func nodeParams(pin *runtime.Pinner, f Function, grid, block [3]uint32, shared uint32, args []uint64) *kernelNodeParams {
	vals := make([]uint64, max(1, len(args)))
	copy(vals, args)
	ptrs := make([]unsafe.Pointer, max(1, len(args)))
	pin.Pin(&vals[0])
	for i := range args {
		ptrs[i] = unsafe.Pointer(&vals[i])
	}
	pin.Pin(&ptrs[0])
	p := &kernelNodeParams{fn: f, grid: grid, block: block, sharedMem: shared, kernelParams: unsafe.Pointer(&ptrs[0])}
	pin.Pin(p)
	return p
}

func (l *libcuda) GraphAddKernelNode(g Graph, dep GraphNode, f Function, grid, block [3]uint32, shared uint32, args []uint64) (GraphNode, error) {
	var pin runtime.Pinner
	defer pin.Unpin()
	p := nodeParams(&pin, f, grid, block, shared, args)
	deps := []GraphNode{dep}
	pin.Pin(&deps[0])
	ndeps := uintptr(1)
	if dep == 0 {
		ndeps = 0
	}
	var n GraphNode
	err := l.call(&l.graphAddKernelNode, uintptr(unsafe.Pointer(&n)), uintptr(g), uintptr(unsafe.Pointer(&deps[0])), ndeps,
		uintptr(unsafe.Pointer(p)))
	return n, err
}

func (l *libcuda) GraphExecKernelNodeSetParams(e GraphExec, n GraphNode, f Function, grid, block [3]uint32, shared uint32, args []uint64) error {
	var pin runtime.Pinner
	defer pin.Unpin()
	p := nodeParams(&pin, f, grid, block, shared, args)
	return l.call(&l.graphExecKernelNodeSetParams, uintptr(e), uintptr(n), uintptr(unsafe.Pointer(p)))
}
