package cuda

import (
	"fmt"
	"runtime"
	"slices"
	"unsafe"

	"github.com/hearth-llm/hearth/runtime/backend"
)

// buffer is a device allocation owned by a Go value: when the value is
// collected, the allocation goes back to the backend's pool.
type buffer struct {
	ptr  DevicePtr
	size uint64
}

// alloc returns a buffer of size bytes (at least 1), from the pool when one
// of that size is free.
func (b *Backend) alloc(size uint64) (*buffer, error) {
	size = max(size, 1)
	p := b.fromPool(size)
	if p == 0 {
		var err error
		if p, err = b.allocNew(size); err != nil {
			return nil, fmt.Errorf("cuda: allocating %d MiB: %w", size>>20, err)
		}
	}
	buf := &buffer{ptr: p, size: size}
	runtime.AddCleanup(buf, b.release, [2]uint64{uint64(p), size})
	return buf, nil
}

// gcEvery is how many bytes of new device memory may be allocated before
// the Go collector is run to return the buffers of dead tensors (a
// forward pass makes a logits tensor each time, and the small Go heap
// alone would rarely trigger a collection).
const gcEvery = 512 << 20

// allocNew gets fresh device memory. When the device is full it collects
// garbage and retries, since dead tensors may hold what is needed.
func (b *Backend) allocNew(size uint64) (DevicePtr, error) {
	b.sinceGC += size
	if b.sinceGC > gcEvery {
		b.sinceGC = 0
		b.collect()
		if p := b.fromPool(size); p != 0 {
			return p, nil
		}
	}
	var p DevicePtr
	mem := func(drv Driver, _ Stream) (err error) {
		p, err = drv.MemAlloc(size)
		return err
	}
	err := b.dev.call(mem) // not stream work: a recorded step stays whole
	if err != nil && b.dev.Err() == nil {
		b.collect()
		if p := b.fromPool(size); p != 0 {
			return p, nil
		}
		// Free the pooled buffers of other sizes and try once more.
		b.mu.Lock()
		var all []DevicePtr
		for k, ps := range b.pool {
			all = append(all, ps...)
			delete(b.pool, k)
		}
		b.mu.Unlock()
		b.dev.Do(func(drv Driver, s Stream) error {
			drv.StreamSynchronize(s)
			for _, q := range all {
				drv.MemFree(q)
			}
			return nil
		})
		err = b.dev.call(mem)
	}
	return p, err
}

// collect runs the collector and gives the cleanups of dead buffers a
// moment to return them to the pool.
func (b *Backend) collect() {
	runtime.GC()
	for range 10 {
		runtime.Gosched()
	}
}

func (b *Backend) fromPool(size uint64) DevicePtr {
	b.mu.Lock()
	defer b.mu.Unlock()
	free := b.pool[size]
	if n := len(free); n > 0 {
		p := free[n-1]
		b.pool[size] = free[:n-1]
		return p
	}
	return 0
}

func (b *Backend) release(a [2]uint64) {
	b.mu.Lock()
	b.pool[a[1]] = append(b.pool[a[1]], DevicePtr(a[0]))
	b.mu.Unlock()
}

// mustAlloc is alloc for the operations that cannot return an error: the
// failure becomes a panic, which the engine's forward pass turns into an
// error of that step (engine.ErrFault).
func (b *Backend) mustAlloc(size uint64) *buffer {
	buf, err := b.alloc(size)
	if err != nil {
		panic(err)
	}
	return buf
}

// scratch makes *s a buffer of at least size bytes.
func (b *Backend) scratch(s **buffer, size uint64) DevicePtr {
	if *s == nil || (*s).size < size {
		*s = b.mustAlloc(max(size, 2*sizeOf(*s)))
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
// graphs record (graph.go), else the scratch buffer *s, uploaded.
func (b *Backend) stepInput(s **buffer, data []byte) DevicePtr {
	if p, ok := b.dev.stepInput(data); ok {
		return p
	}
	p := b.scratch(s, uint64(len(data)))
	b.upload(p, data)
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
}

func (t *tensor) Shape() (rows, cols int) { return t.rows, t.cols }
func (t *tensor) ptr() DevicePtr          { return t.buf.ptr + DevicePtr(t.off) }
func (t *tensor) rowPtr(r int) DevicePtr  { return t.ptr() + DevicePtr(4*r*t.cols) }
func (t *tensor) n() int64                { return int64(t.rows) * int64(t.cols) }

func (b *Backend) NewTensor(rows, cols int) backend.Tensor {
	return &tensor{buf: b.mustAlloc(uint64(4 * rows * cols)), rows: rows, cols: cols}
}

func (b *Backend) Slice(x backend.Tensor, start, n int) backend.Tensor {
	t := x.(*tensor)
	if start < 0 || n < 0 || start+n > t.rows {
		panic(fmt.Sprintf("cuda: slice [%d, %d) of %d rows", start, start+n, t.rows))
	}
	return &tensor{buf: t.buf, off: t.off + uint64(4*start*t.cols), rows: n, cols: t.cols}
}

// Read copies rows back to the host (one copy, however many rows) and
// waits for them. A device error (from this or any queued operation)
// panics: the engine's forward pass recovers it as an error of the step
// (engine.ErrFault).
func (b *Backend) Read(x backend.Tensor, row int, dst []float32) {
	s := x.(*tensor)
	if row < 0 || row >= s.rows {
		panic(fmt.Sprintf("cuda: read of row %d of %d", row, s.rows))
	}
	n := min(len(dst), (s.rows-row)*s.cols)
	if n == 0 {
		return
	}
	if err := b.download(unsafe.Slice((*byte)(unsafe.Pointer(&dst[0])), 4*n), s.rowPtr(row)); err != nil {
		panic(fmt.Errorf("cuda: read: %w", err))
	}
}

// Write queues a copy of whole rows from the host into x (src is copied
// first, so the caller may reuse it at once) and returns without waiting.
func (b *Backend) Write(x backend.Tensor, row int, src []float32) {
	s := x.(*tensor)
	if s.cols == 0 || len(src)%s.cols != 0 || row < 0 || row+len(src)/s.cols > s.rows {
		panic(fmt.Sprintf("cuda: write of %d values at row %d of %dx%d", len(src), row, s.rows, s.cols))
	}
	if len(src) == 0 {
		return
	}
	b.upload(s.rowPtr(row), unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), 4*len(src)))
}
