package cuda

import (
	"errors"
	"fmt"
	"unsafe"
)

// ErrNoDevice is returned (wrapped, with the reason) when there is no
// usable GPU: no libcuda.so.1, a driver older than CUDA 11, no device, or a
// device older than compute capability 8.0. Callers fall back to the CPU.
var ErrNoDevice = errors.New("no CUDA device")

// ErrOutOfMemory is matched (errors.Is) by a driver error saying the
// device is out of memory (CUDA_ERROR_OUT_OF_MEMORY).
var ErrOutOfMemory = errors.New("out of GPU memory")

// Handles of the driver API, as opaque values.
type (
	DevicePtr uint64  // CUdeviceptr
	Context   uintptr // CUcontext
	Stream    uintptr // CUstream (0: the legacy default stream)
	Event     uintptr // CUevent
	Module    uintptr // CUmodule
	Function  uintptr // CUfunction
	Graph     uintptr // CUgraph
	GraphExec uintptr // CUgraphExec
	GraphNode uintptr // CUgraphNode
)

// Attribute is a CUdevice_attribute.
type Attribute int32

// The attributes Hearth reads.
const (
	AttrMaxThreadsPerBlock     Attribute = 1
	AttrMultiprocessorCount    Attribute = 16
	AttrL2CacheSize            Attribute = 38
	AttrComputeCapabilityMajor Attribute = 75
	AttrComputeCapabilityMinor Attribute = 76
	AttrMaxSharedPerBlockOptin Attribute = 97
)

// Driver is the part of the CUDA driver API that Hearth uses, one method
// per call, in Go types. The real one (libcuda.go) binds libcuda.so.1 with
// purego; tests use a fake. Every call that needs a context must run on
// the OS thread where that context is current: Device funnels them all to
// one locked goroutine.
//
// LaunchKernel takes each kernel argument as one 64-bit slot holding its
// value (pointers and 64-bit integers whole; 32-bit ints and floats in
// the low four bytes, little-endian), in the order of the kernel's
// parameters.
type Driver interface {
	Init() error
	DriverVersion() (int, error) // 12080 for CUDA 12.8
	DeviceCount() (int, error)
	DeviceName(ordinal int) (string, error)
	DeviceAttribute(ordinal int, a Attribute) (int, error)
	DeviceTotalMem(ordinal int) (uint64, error)
	PrimaryCtxRetain(ordinal int) (Context, error)
	PrimaryCtxRelease(ordinal int) error
	CtxSetCurrent(c Context) error
	CtxSynchronize() error
	MemGetInfo() (free, total uint64, err error)

	StreamCreate() (Stream, error)
	StreamDestroy(s Stream) error
	StreamSynchronize(s Stream) error
	EventCreate() (Event, error)
	EventDestroy(e Event) error
	EventRecord(e Event, s Stream) error
	EventSynchronize(e Event) error
	EventElapsedTime(start, end Event) (ms float32, err error)

	MemAlloc(bytes uint64) (DevicePtr, error)
	MemFree(p DevicePtr) error
	MemHostAlloc(bytes uint64) (unsafe.Pointer, error) // pinned, portable
	MemFreeHost(p unsafe.Pointer) error
	MemcpyHtoDAsync(dst DevicePtr, src unsafe.Pointer, bytes uint64, s Stream) error
	MemcpyDtoHAsync(dst unsafe.Pointer, src DevicePtr, bytes uint64, s Stream) error
	MemcpyDtoDAsync(dst, src DevicePtr, bytes uint64, s Stream) error
	MemsetD8Async(dst DevicePtr, v byte, n uint64, s Stream) error

	ModuleLoadData(ptx []byte) (Module, error)
	ModuleUnload(m Module) error
	ModuleGetFunction(m Module, name string) (Function, error)
	LaunchKernel(f Function, grid, block [3]uint32, sharedMem uint32, s Stream, args []uint64) error

	StreamBeginCapture(s Stream) error // relaxed capture mode
	StreamEndCapture(s Stream) (Graph, error)
	GraphInstantiate(g Graph) (GraphExec, error)
	GraphLaunch(e GraphExec, s Stream) error
	GraphExecDestroy(e GraphExec) error
	GraphDestroy(g Graph) error

	// Graphs built node by node (the decode-step graphs, graph.go): an
	// empty graph, a kernel node after dep (0: a root) with its arguments
	// as LaunchKernel takes them (their values are copied), and a change
	// of an instantiated kernel node's arguments, which takes effect from
	// the next GraphLaunch on (launches already queued keep the old ones).
	GraphCreate() (Graph, error)
	GraphAddKernelNode(g Graph, dep GraphNode, f Function, grid, block [3]uint32, sharedMem uint32, args []uint64) (GraphNode, error)
	GraphExecKernelNodeSetParams(e GraphExec, n GraphNode, f Function, grid, block [3]uint32, sharedMem uint32, args []uint64) error
}

// Error is a failed driver call: the function and its CUresult, by name.
type Error struct {
	Op   string // "cuMemAlloc_v2"
	Code int    // the CUresult
	Name string // "CUDA_ERROR_OUT_OF_MEMORY"
}

func (e *Error) Error() string { return fmt.Sprintf("cuda: %s: %s (%d)", e.Op, e.Name, e.Code) }

// Is makes errors.Is(err, ErrNoDevice) hold for the results that mean
// there is no usable device, and errors.Is(err, ErrOutOfMemory) for
// CUDA_ERROR_OUT_OF_MEMORY.
func (e *Error) Is(target error) bool {
	if target == ErrOutOfMemory {
		return e.Code == 2
	}
	return target == ErrNoDevice && (e.Code == 100 || e.Code == 35 || e.Code == 34 || e.Code == 999 && e.Op == "cuInit")
}

// resultNames are the CUresult names used when the driver cannot name a
// code itself (and by the fake driver).
var resultNames = map[int]string{
	0: "CUDA_SUCCESS", 1: "CUDA_ERROR_INVALID_VALUE", 2: "CUDA_ERROR_OUT_OF_MEMORY",
	3: "CUDA_ERROR_NOT_INITIALIZED", 4: "CUDA_ERROR_DEINITIALIZED", 34: "CUDA_ERROR_STUB_LIBRARY",
	35: "CUDA_ERROR_INSUFFICIENT_DRIVER", 100: "CUDA_ERROR_NO_DEVICE", 101: "CUDA_ERROR_INVALID_DEVICE",
	200: "CUDA_ERROR_INVALID_IMAGE", 201: "CUDA_ERROR_INVALID_CONTEXT", 209: "CUDA_ERROR_NO_BINARY_FOR_GPU",
	218: "CUDA_ERROR_INVALID_PTX", 222: "CUDA_ERROR_UNSUPPORTED_PTX_VERSION", 400: "CUDA_ERROR_INVALID_HANDLE",
	500: "CUDA_ERROR_NOT_FOUND", 600: "CUDA_ERROR_NOT_READY", 700: "CUDA_ERROR_ILLEGAL_ADDRESS",
	701: "CUDA_ERROR_LAUNCH_OUT_OF_RESOURCES", 702: "CUDA_ERROR_LAUNCH_TIMEOUT", 719: "CUDA_ERROR_LAUNCH_FAILED",
	900: "CUDA_ERROR_STREAM_CAPTURE_UNSUPPORTED", 901: "CUDA_ERROR_STREAM_CAPTURE_INVALIDATED",
	999: "CUDA_ERROR_UNKNOWN",
}

// ResultName names a CUresult from the built-in table.
func ResultName(code int) string {
	if n, ok := resultNames[code]; ok {
		return n
	}
	return fmt.Sprintf("CUresult(%d)", code)
}
