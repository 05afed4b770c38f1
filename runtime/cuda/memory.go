package cuda

import (
	"fmt"
	"slices"
	"unsafe"

	"github.com/hearth-llm/hearth/runtime/backend"
)

// buffer is one device allocation of the backend. Every buffer not yet
// freed is in the backend's ledger (Backend.live), and Close frees them
// all: device memory never waits for the Go collector.
type buffer struct {
	ptr  DevicePtr // 0 once freed
	size uint64
}

// MemStats is what a backend holds on its device: the bytes and the number
// of its allocations not yet freed (weights, KV pools, activation tensors,
// scratch and tables; the step-input arena of graphs is the device's).
type MemStats struct {
	Bytes   uint64
	Buffers int
}

// MemStats reports the device memory the backend holds now.
func (b *Backend) MemStats() MemStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	return MemStats{Bytes: b.liveBytes, Buffers: len(b.live)}
}

// alloc returns a fresh buffer of size bytes (at least 1), entered in the
// ledger. Allocation is not stream work: a step being recorded stays one
// segment.
func (b *Backend) alloc(size uint64) (*buffer, error) {
	size = max(size, 1)
	var p DevicePtr
	err := b.dev.call(func(drv Driver, _ Stream) (err error) {
		p, err = drv.MemAlloc(size)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("cuda: allocating %d MiB: %w", size>>20, err)
	}
	buf := &buffer{ptr: p, size: size}
	b.mu.Lock()
	b.live[p] = buf
	b.liveBytes += size
	b.mu.Unlock()
	return buf, nil
}

// free takes buf out of the ledger and returns its memory to the driver
// once the work queued before has run (it may still read buf). nil or a
// buffer already freed: nothing.
func (b *Backend) free(buf *buffer) {
	if buf == nil || buf.ptr == 0 {
		return
	}
	p := buf.ptr
	b.mu.Lock()
	delete(b.live, p)
	b.liveBytes -= buf.size
	b.mu.Unlock()
	buf.ptr = 0
	b.dev.free([]DevicePtr{p}, nil)
}

// Free returns what x holds to the device at once (after the work queued
// before, which may still read it): a tensor made by NewTensor, a KV pool
// made by NewKVPool, a state pool made by NewStatePool, or a cache made
// by NewKV. A view (Slice), a KV that
// only borrows its pool, nil, or something freed before: nothing.
func (b *Backend) Free(x any) {
	switch v := x.(type) {
	case nil:
	case *tensor:
		if !v.view {
			b.free(v.buf)
		}
	case *kvPool:
		b.free(v.k)
		b.free(v.v)
	case *statePool:
		b.free(v.buf)
	case *backend.PagedKV:
		if v.Own {
			b.Free(v.Pool)
			if v.States != nil {
				b.Free(v.States)
			}
		}
	default:
		panic(fmt.Sprintf("cuda: Free of a %T", x))
	}
}

// allocOp is alloc for the operations, which return no error: a failure
// (out of memory) is recorded (see Err) and allocOp returns nil.
func (b *Backend) allocOp(size uint64) *buffer {
	buf, err := b.alloc(size)
	if err != nil {
		b.fail(err)
		return nil
	}
	return buf
}

// scratch makes *s a buffer of at least size bytes. A buffer it outgrows
// is freed after the work queued before, which may still read it. When
// the larger buffer cannot be had, the failure is recorded, *s is left as
// it was and scratch returns 0.
func (b *Backend) scratch(s **buffer, size uint64) DevicePtr {
	if *s == nil || (*s).size < size {
		buf := b.allocOp(max(size, 2*sizeOf(*s)))
		if buf == nil {
			return 0
		}
		b.free(*s)
		*s = buf
	}
	return (*s).ptr
}

func sizeOf(s *buffer) uint64 {
	if s == nil {
		return 0
	}
	return s.size
}

// upload queues a copy of host bytes to dst. The bytes are copied first,
// so the caller may reuse src at once.
func (b *Backend) upload(dst DevicePtr, src []byte) {
	if len(src) == 0 {
		return
	}
	own := slices.Clone(src)
	b.dev.Go(func(drv Driver, s Stream) error {
		return drv.MemcpyHtoDAsync(dst, unsafe.Pointer(&own[0]), uint64(len(own)), s)
	})
}

// stepInput puts per-step host data (ids, positions, tables) on the
// device and returns its address: a slot of the step-input arena while
// graphs record (graph.go), else the scratch buffer *s, uploaded. When
// memory runs out the failure is recorded and stepInput returns 0 (the
// operation then launches nothing: see launch).
func (b *Backend) stepInput(s **buffer, data []byte) DevicePtr {
	p, ok, err := b.dev.stepInput(data)
	if err != nil {
		b.fail(err)
		return 0
	}
	if ok {
		return p
	}
	if p = b.scratch(s, uint64(len(data))); p != 0 {
		b.upload(p, data)
	}
	return p
}

func int32Bytes(v []int32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

// download copies len(dst) bytes from src into dst through pinned memory
// and waits. The copy into dst happens on the caller's goroutine (dst may
// live on its stack, which may move while it waits).
func (b *Backend) download(dst []byte, src DevicePtr) error {
	n := uint64(len(dst))
	if n == 0 {
		return nil
	}
	err := b.dev.Do(func(drv Driver, s Stream) error {
		if b.stageLen < n {
			if b.stage != nil {
				drv.MemFreeHost(b.stage)
				b.stage, b.stageLen = nil, 0
			}
			size := max(n, 1<<20)
			p, err := drv.MemHostAlloc(size)
			if err != nil {
				return err
			}
			b.stage, b.stageLen = p, size
		}
		if err := drv.MemcpyDtoHAsync(b.stage, src, n, s); err != nil {
			return err
		}
		return drv.StreamSynchronize(s)
	})
	if err != nil {
		b.dev.fail(err) // a failed stream is not recoverable
		return err
	}
	copy(dst, unsafe.Slice((*byte)(b.stage), n))
	return nil
}

// MemInfo reports the device's free and total memory (cuMemGetInfo: what
// this process could still allocate, after its context and kernels).
func (b *Backend) MemInfo() (free, total uint64, err error) {
	err = b.dev.call(func(drv Driver, _ Stream) error {
		var e error
		free, total, e = drv.MemGetInfo()
		return e
	})
	return free, total, err
}

// tensor is a rows × cols float32 matrix in device memory, row-major,
// starting off bytes into buf (a Slice shares its parent's buffer).
type tensor struct {
	buf        *buffer
	off        uint64
	rows, cols int
	view       bool // made by Slice: owns nothing
}

func (t *tensor) Shape() (rows, cols int) { return t.rows, t.cols }
func (t *tensor) ptr() DevicePtr          { return t.buf.ptr + DevicePtr(t.off) }
func (t *tensor) rowPtr(r int) DevicePtr  { return t.ptr() + DevicePtr(4*r*t.cols) }
func (t *tensor) n() int64                { return int64(t.rows) * int64(t.cols) }

// NewTensor allocates the tensor's device memory. When there is not
// enough, the failure is recorded (see Err) and the tensor has none: an
// operation on it records an error and does nothing (ready).
func (b *Backend) NewTensor(rows, cols int) backend.Tensor {
	buf := b.allocOp(uint64(4 * rows * cols))
	if buf == nil {
		buf = &buffer{}
	}
	return &tensor{buf: buf, rows: rows, cols: cols}
}

func (b *Backend) Slice(x backend.Tensor, start, n int) backend.Tensor {
	t := x.(*tensor)
	if start < 0 || n < 0 || start+n > t.rows {
		panic(fmt.Sprintf("cuda: slice [%d, %d) of %d rows", start, start+n, t.rows))
	}
	return &tensor{buf: t.buf, off: t.off + uint64(4*start*t.cols), rows: n, cols: t.cols, view: true}
}

// Read copies rows back to the host (one copy, however many rows) and
// waits for them. A device error (from this or any queued operation) is
// the device's for good (Err); with any error pending, Read copies
// nothing.
func (b *Backend) Read(x backend.Tensor, row int, dst []float32) {
	s := x.(*tensor)
	if row < 0 || row >= s.rows {
		panic(fmt.Sprintf("cuda: read of row %d of %d", row, s.rows))
	}
	n := min(len(dst), (s.rows-row)*s.cols)
	if n == 0 || !b.ready(s) {
		return
	}
	// A failure is the device's (download keeps it): Err reports it.
	_ = b.download(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*n), s.rowPtr(row))
}

// Write queues a copy of whole rows from the host into x (src is copied
// first, so the caller may reuse it at once) and returns without waiting.
func (b *Backend) Write(x backend.Tensor, row int, src []float32) {
	s := x.(*tensor)
	if s.cols == 0 || len(src)%s.cols != 0 || row < 0 || row+len(src)/s.cols > s.rows {
		panic(fmt.Sprintf("cuda: write of %d values at row %d of %dx%d", len(src), row, s.rows, s.cols))
	}
	if len(src) == 0 || !b.ready(s) {
		return
	}
	b.upload(s.rowPtr(row), unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), 4*len(src)))
}
