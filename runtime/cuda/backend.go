package cuda

import (
	"fmt"
	"log/slog"
	"math"
	"runtime"
	"slices"
	"sync"
	"unsafe"

	kcpu "github.com/hearth-llm/hearth/kernels/cpu"
	kcuda "github.com/hearth-llm/hearth/kernels/cuda"
	"github.com/hearth-llm/hearth/quant"
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
	b := &Backend{dev: dev, pool: map[uint64][]DevicePtr{}, ropes: map[string]*ropeTable{}}
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
// Memory: weights are uploaded once, in their GGUF block layout; tensors
// are device buffers recycled through a pool by size when the Go value
// that owns them is collected (reuse is safe because all work runs on one
// stream, in order); the KV pools hold f16 rows as runtime/cpu's do.
type Backend struct {
	dev *Device
	mma bool // tensor-core matmul for batches of MinMMATokens and more

	mu      sync.Mutex // guards pool (collector cleanups return buffers)
	pool    map[uint64][]DevicePtr
	sinceGC uint64 // bytes allocated since the last forced collection

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

// Close waits for the queued work and releases the device.
func (b *Backend) Close() error {
	if b.stage != nil {
		p := b.stage
		b.dev.Do(func(drv Driver, _ Stream) error { return drv.MemFreeHost(p) })
		b.stage = nil
	}
	return b.dev.Close()
}

// Err reports the first device error so far.
func (b *Backend) Err() error { return b.dev.Err() }

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

// weight is a parameter tensor on the device. Types without kernels are
// stored as F16 (dequantized on the host at load), 1-row weights (norm
// vectors) as F32.
type weight struct {
	name       string
	typ        quant.Type // as in the file
	dev        quant.Type // as stored on the device
	rows, cols int
	rowBytes   int
	buf        *buffer
}

func (w *weight) Name() string            { return w.name }
func (w *weight) Type() quant.Type        { return w.typ }
func (w *weight) Shape() (rows, cols int) { return w.rows, w.cols }

func (b *Backend) Weight(name string, t quant.Type, rows, cols int, data []byte) (backend.Weight, error) {
	m, err := kcpu.NewMatrix(t, rows, cols, data) // checks the type and the size
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	w := &weight{name: name, typ: t, dev: t, rows: rows, cols: cols, rowBytes: m.RowBytes}
	_, ok := kcuda.Suffix(t)
	switch {
	case rows == 1 && t != quant.F32:
		// Norm vectors: float32 for rmsnorm_f32 (exact: dequantization).
		f := make([]float32, cols)
		m.DequantizeRow(0, f)
		w.dev, w.rowBytes, data = quant.F32, 4*cols, unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*cols)
	case !ok:
		// No kernel reads this format: store it as F16, row by row.
		f := make([]float32, cols)
		h := make([]uint16, rows*cols)
		for r := range rows {
			m.DequantizeRow(r, f)
			kcpu.ToF16(h[r*cols:(r+1)*cols], f)
		}
		w.dev, w.rowBytes = quant.F16, 2*cols
		data = unsafe.Slice((*byte)(unsafe.Pointer(&h[0])), 2*len(h))
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("tensor %q: empty", name)
	}
	buf, err := b.alloc(uint64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	w.buf = buf
	err = b.dev.Do(func(drv Driver, s Stream) error {
		// Synchronous: data (often the model's memory map) is only
		// borrowed for this call.
		if err := drv.MemcpyHtoDAsync(buf.ptr, unsafe.Pointer(&data[0]), uint64(len(data)), s); err != nil {
			return err
		}
		return drv.StreamSynchronize(s)
	})
	runtime.KeepAlive(data)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: upload: %w", name, err)
	}
	return w, nil
}

// WeightBytes is the device memory a weight of type t and shape rows ×
// cols takes once uploaded (Weight's storage rules: norm vectors as F32,
// formats without kernels as F16, the rest as in the file), for planning
// what fits before anything is uploaded. 0 for a type it cannot size.
func WeightBytes(t quant.Type, rows, cols int) uint64 {
	_, ok := kcuda.Suffix(t)
	switch {
	case rows == 1 && t != quant.F32, t == quant.F32:
		return 4 * uint64(rows) * uint64(cols)
	case !ok:
		return 2 * uint64(rows) * uint64(cols)
	}
	rb, err := t.RowBytes(cols)
	if err != nil {
		return 0
	}
	return uint64(rows) * uint64(rb)
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

// Launch geometry helpers.
func grid1(x int) [3]uint32    { return [3]uint32{uint32(max(x, 1)), 1, 1} }
func grid2(x, y int) [3]uint32 { return [3]uint32{uint32(max(x, 1)), uint32(max(y, 1)), 1} }
func block(x int) [3]uint32    { return [3]uint32{uint32(x), 1, 1} }
func ceilDiv(a, b int) int     { return (a + b - 1) / b }

// stride is the grid of a grid-stride loop over n elements, 256 a block.
func stride(n int64) [3]uint32 { return grid1(int(min((n+255)/256, 1<<20))) }

func (b *Backend) Embed(dst backend.Tensor, table backend.Weight, ids []int32) error {
	d, w := dst.(*tensor), table.(*weight)
	for _, id := range ids {
		if id < 0 || int(id) >= w.rows {
			return fmt.Errorf("token id %d out of range [0, %d)", id, w.rows)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	if d.cols != w.cols || d.rows < len(ids) {
		return fmt.Errorf("cuda: embed of %d ids of width %d into %dx%d", len(ids), w.cols, d.rows, d.cols)
	}
	p := b.stepInput(&b.ids, int32Bytes(ids))
	suf, _ := kcuda.Suffix(w.dev)
	b.dev.launch("embed_"+suf, grid2(len(ids), ceilDiv(w.cols, 8*128)), block(128),
		argPtr(d.ptr()), argPtr(w.buf.ptr), argU64(uint64(w.rowBytes)), argPtr(p), argInt(len(ids)), argInt(w.cols))
	return b.dev.Err()
}

// RMSNorm normalises each run of w's width (whole rows, or the heads of
// per-head norms when w is narrower): one block per run.
func (b *Backend) RMSNorm(dst, x backend.Tensor, w backend.Weight, eps float32) {
	d, s, nw := dst.(*tensor), x.(*tensor), w.(*weight)
	seg := nw.cols
	if nw.dev != quant.F32 || nw.rows != 1 || seg == 0 || s.cols%seg != 0 {
		panic(fmt.Sprintf("cuda: rmsnorm weight %s is %v of %dx%d for rows of %d", nw.name, nw.dev, nw.rows, nw.cols, s.cols))
	}
	if d.cols != s.cols || d.rows < s.rows {
		panic(fmt.Sprintf("cuda: rmsnorm of %dx%d into %dx%d", s.rows, s.cols, d.rows, d.cols))
	}
	if s.rows == 0 {
		return
	}
	b.dev.launch("rmsnorm_f32", grid1(s.rows*(s.cols/seg)), block(normThreads(seg)),
		argPtr(d.ptr()), argPtr(s.ptr()), argPtr(nw.buf.ptr), argInt(seg), argF32(eps))
}

// normThreads is the block size of a norm over rows of cols values: 256,
// or the multiple of 32 that covers a shorter row (a head of 64 or 128).
func normThreads(cols int) int { return min(256, max(32, (cols+31)&^31)) }

func (b *Backend) MatMul(dst, x backend.Tensor, w backend.Weight) {
	d, s, m := dst.(*tensor), x.(*tensor), w.(*weight)
	n := s.rows
	if s.cols != m.cols || d.cols != m.rows || d.rows < n {
		panic(fmt.Sprintf("cuda: matmul of %dx%d by %s (%dx%d) into %dx%d", s.rows, s.cols, m.name, m.rows, m.cols, d.rows, d.cols))
	}
	if n == 0 {
		return
	}
	suf, _ := kcuda.Suffix(m.dev)
	var aq, ad DevicePtr
	if m.dev != quant.F32 && m.dev != quant.F16 && m.dev != quant.BF16 {
		// Quantized weights read int8 activations with a scale per 32.
		total := s.n()
		aq = b.scratch(&b.aq, uint64(total))
		ad = b.scratch(&b.ad, uint64(4*(total/32)))
		b.dev.launch("quantize_q8", grid1(int((total+255)/256)), block(256),
			argPtr(aq), argPtr(ad), argPtr(s.ptr()), argU64(uint64(total)))
	}
	args := []uint64{argPtr(d.ptr()), argPtr(m.buf.ptr), argU64(uint64(m.rowBytes)), argInt(m.rows), argInt(m.cols),
		argPtr(aq), argPtr(ad), argPtr(s.ptr()), argInt(n)}
	switch {
	case n <= kcuda.MaxMatvecTokens:
		b.dev.launch("matvec_"+suf, grid1(ceilDiv(m.rows, 4)), block(128), args...)
	case b.useMMA(m, n):
		b.dev.launch("mma_"+suf, grid2(ceilDiv(m.rows, kcuda.MMATileRows), ceilDiv(n, kcuda.MMATileTokens)),
			block(kcuda.MMAThreads), args...)
	default:
		b.dev.launch("matmul_"+suf, grid2(ceilDiv(m.rows, 64), ceilDiv(n, 64)), block(256), args...)
	}
}

// useMMA reports whether an n-token product with m goes to the tensor-core
// kernel: on, enough tokens, a format it reads, a width it tiles.
func (b *Backend) useMMA(m *weight, n int) bool {
	return b.mma && n >= kcuda.MinMMATokens && kcuda.HasMMA(m.dev) && m.cols%kcuda.MMAColsMultiple == 0
}

// ropeTable is the cos/sin table of one set of RoPE parameters on the
// device, for positions 0..n-1.
type ropeTable struct {
	buf *buffer
	n   int
}

func ropeKey(r *backend.RoPE) string {
	return fmt.Sprintf("%d/%v/%v/%v/%v/%v/%v/%v/%v/%d", r.Dims, r.Base, r.Scale, r.NeoX, r.Factors, r.ExtFactor,
		r.AttnFactor, r.BetaFast, r.BetaSlow, r.CtxOrig)
}

// ropeTableFor returns a table covering positions 0..maxPos, computed on
// the host with the CPU backend's own RoPE.Tables (so the angles are
// bitwise the CPU's) and grown by doubling.
func (b *Backend) ropeTableFor(r *backend.RoPE, maxPos int) *ropeTable {
	key := ropeKey(r)
	t := b.ropes[key]
	if t != nil && maxPos < t.n {
		return t
	}
	n := 256
	for n <= maxPos {
		n *= 2
	}
	half := r.Dims / 2
	tab := make([]float32, n*half*2)
	cos, sin := make([]float32, half), make([]float32, half)
	for p := range n {
		r.Tables(int32(p), cos, sin)
		for i := range half {
			tab[2*(p*half+i)] = cos[i]
			tab[2*(p*half+i)+1] = sin[i]
		}
	}
	t = &ropeTable{buf: b.mustAlloc(uint64(4 * len(tab))), n: n}
	if len(tab) > 0 {
		b.upload(t.buf.ptr, unsafe.Slice((*byte)(unsafe.Pointer(&tab[0])), 4*len(tab)))
	}
	b.ropes[key] = t
	return t
}

func (b *Backend) RoPE(x backend.Tensor, heads, headDim int, pos []int32, r *backend.RoPE) {
	s := x.(*tensor)
	if s.rows == 0 || r.Dims == 0 {
		return
	}
	if len(pos) < s.rows || heads*headDim > s.cols || r.Dims > headDim {
		panic(fmt.Sprintf("cuda: rope of %dx%d with %d positions, %d heads of %d, %d dims", s.rows, s.cols, len(pos), heads, headDim, r.Dims))
	}
	maxPos := 0
	for _, p := range pos[:s.rows] {
		if p < 0 {
			panic(fmt.Sprintf("cuda: rope at negative position %d", p))
		}
		maxPos = max(maxPos, int(p))
	}
	tab := b.ropeTableFor(r, maxPos)
	// The positions are the same for q and k and for every layer of a
	// forward pass: uploaded when they change (or when the step-input
	// slot they were in is gone).
	if ep := b.dev.inputEpoch(); b.ropeDev == 0 || ep != b.ropeEpoch || !slices.Equal(b.ropePos, pos[:s.rows]) {
		b.ropeDev = b.stepInput(&b.i32, int32Bytes(pos[:s.rows]))
		b.ropeEpoch = b.dev.inputEpoch()
		b.ropePos = append(b.ropePos[:0], pos[:s.rows]...)
	}
	pp := b.ropeDev
	neox := 0
	if r.NeoX {
		neox = 1
	}
	b.dev.launch("rope_f32", grid1(s.rows), block(128),
		argPtr(s.ptr()), argPtr(tab.buf.ptr), argPtr(pp), argInt(heads), argInt(headDim), argInt(r.Dims/2), argInt(neox), argInt(s.cols))
}

// kvPool is paged f16 storage on the device, runtime/cpu's layout: for
// each layer, blocks × blockSize rows of kvDim values; K and V in one
// allocation each, layer l at l·layerStride values.
type kvPool struct {
	layers, blocks, blockSize, kvDim int
	k, v                             *buffer
}

func (c *kvPool) Blocks() int    { return c.blocks }
func (c *kvPool) BlockSize() int { return c.blockSize }

func (c *kvPool) layerStride() int64 { return int64(c.blocks) * int64(c.blockSize) * int64(c.kvDim) }

func (b *Backend) NewKVPool(layers, blocks, blockSize, kvDim int) (backend.KVPool, error) {
	if layers <= 0 || blocks <= 0 || blockSize <= 0 || kvDim <= 0 {
		return nil, fmt.Errorf("cuda: KV pool of %d layers, %d blocks of %d, width %d", layers, blocks, blockSize, kvDim)
	}
	if int64(blocks)*int64(blockSize) > math.MaxInt32 {
		return nil, fmt.Errorf("cuda: KV pool of %d blocks of %d positions: too many rows", blocks, blockSize)
	}
	c := &kvPool{layers: layers, blocks: blocks, blockSize: blockSize, kvDim: kvDim}
	size := uint64(layers) * uint64(c.layerStride()) * 2
	var err error
	if c.k, err = b.alloc(size); err != nil {
		return nil, fmt.Errorf("KV cache: %w", err)
	}
	if c.v, err = b.alloc(size); err != nil {
		return nil, fmt.Errorf("KV cache: %w", err)
	}
	return c, nil
}

// NewKV is a pool of one block of ctx positions seen through a one-entry
// block table, as on the CPU.
func (b *Backend) NewKV(layers, ctx, kvDim int) (backend.KV, error) {
	return backend.NewContiguousKV(b.NewKVPool, layers, ctx, kvDim)
}

func (b *Backend) Attention(dst, q, k, v backend.Tensor, kvs []backend.KV, seq []int32, layer int, pos []int32, p backend.AttentionParams) error {
	if err := b.dev.Err(); err != nil {
		return err
	}
	qt, kt, vt, ot := q.(*tensor), k.(*tensor), v.(*tensor), dst.(*tensor)
	n := qt.rows
	kvDim := p.KVHeads * p.HeadDim
	switch {
	case p.HeadDim <= 0 || p.HeadDim > 256 || p.KVHeads <= 0 || p.Heads%p.KVHeads != 0:
		return fmt.Errorf("cuda: attention of %d heads, %d KV heads of %d: unsupported (head size <= 256)", p.Heads, p.KVHeads, p.HeadDim)
	case len(pos) < n || len(seq) < n || kt.cols != kvDim || vt.cols != kvDim || qt.cols != p.Heads*p.HeadDim || ot.cols != qt.cols:
		return fmt.Errorf("cuda: attention shapes q %dx%d k %dx%d v %dx%d out %dx%d for %d heads, %d KV heads of %d",
			qt.rows, qt.cols, kt.rows, kt.cols, vt.rows, vt.cols, ot.rows, ot.cols, p.Heads, p.KVHeads, p.HeadDim)
	}
	var sinks DevicePtr
	if p.Sinks != nil {
		sw, ok := p.Sinks.(*weight)
		if !ok || sw.dev != quant.F32 || sw.rows != 1 || sw.cols != p.Heads {
			r, c := p.Sinks.Shape()
			return fmt.Errorf("cuda: attention sinks %s of %dx%d for %d heads", p.Sinks.Name(), r, c, p.Heads)
		}
		sinks = sw.buf.ptr
	}
	if n == 0 {
		return nil
	}
	// Host-side metadata, validated as the CPU backend does: the block
	// tables of all sequences end to end, and for each token its table's
	// start, its position, its physical row and its pool.
	pools := make([]*kvPool, len(kvs))
	tabStart := make([]int32, len(kvs))
	var tables []int32
	for s, c := range kvs {
		pk, ok := c.(*backend.PagedKV)
		if !ok {
			return fmt.Errorf("cuda: KV cache of type %T", c)
		}
		pool, ok := pk.Pool.(*kvPool)
		if !ok {
			return fmt.Errorf("cuda: KV pool of type %T", pk.Pool)
		}
		if pool.kvDim != kvDim || layer < 0 || layer >= pool.layers {
			return fmt.Errorf("cuda: layer %d of a KV pool of %d layers of width %d, want width %d", layer, pool.layers, pool.kvDim, kvDim)
		}
		for _, blk := range pk.Table {
			if blk < 0 || int(blk) >= pool.blocks {
				return fmt.Errorf("cuda: block %d outside the pool of %d", blk, pool.blocks)
			}
		}
		pools[s] = pool
		tabStart[s] = int32(len(tables))
		tables = append(tables, pk.Table...)
	}
	if len(tables) == 0 {
		tables = []int32{0}
	}
	tabOff := make([]int32, n)
	slot := make([]int32, n)
	kvb := make([]uint64, 4*n)
	for t := range n {
		s := seq[t]
		if s < 0 || int(s) >= len(kvs) {
			return fmt.Errorf("token %d: sequence %d out of range", t, s)
		}
		ps := pos[t]
		if ps < 0 || int(ps) >= kvs[s].Len() {
			return fmt.Errorf("position %d: %w (%d positions)", ps, backend.ErrContextFull, kvs[s].Len())
		}
		pool := pools[s]
		table := kvs[s].(*backend.PagedKV).Table
		tabOff[t] = tabStart[s]
		slot[t] = table[int(ps)/pool.blockSize]*int32(pool.blockSize) + ps%int32(pool.blockSize)
		kvb[4*t], kvb[4*t+1] = uint64(pool.k.ptr), uint64(pool.v.ptr)
		kvb[4*t+2], kvb[4*t+3] = uint64(pool.layerStride()), uint64(pool.blockSize)
	}
	// The last position each token sees: its own, or (encoders) the last
	// of its sequence in the batch, as runtime/cpu's attnOpts.
	last := pos[:n]
	if p.NonCausal {
		end := make(map[int32]int32, len(kvs))
		for t := range n {
			end[seq[t]] = max(end[seq[t]], pos[t])
		}
		last = make([]int32, n)
		for t := range n {
			last[t] = end[seq[t]]
		}
	}
	meta := b.attentionMeta(tables, tabOff, pos[:n], slot, last, kvb)
	at := func(i int) DevicePtr { return meta + DevicePtr(4*b.attN[i]) }
	b.dev.launch("kv_store", grid1(n), block(128),
		argPtr(at(4)), argPtr(kt.ptr()), argPtr(vt.ptr()), argPtr(at(3)), argInt(layer), argInt(kvDim), argInt(n))
	b.dev.launch("attention_f16", grid2(n, p.Heads), block(128),
		argPtr(ot.ptr()), argPtr(qt.ptr()), argPtr(at(4)), argPtr(at(0)), argPtr(at(1)), argPtr(at(2)), argPtr(at(5)),
		argInt(layer), argInt(p.Heads), argInt(p.KVHeads), argInt(p.HeadDim), argF32(p.Scale),
		argInt(min(max(p.Window, 0), math.MaxInt32)), argF32(max(p.SoftCap, 0)), argPtr(sinks))
	return b.dev.Err()
}

// attentionMeta uploads the step's attention metadata into one device
// buffer, unless it equals what is already there (every layer of a
// forward pass asks with the same), and returns its address. Layout, in
// int32 elements: tabOff, pos, slot, last, then kvb as uint64 at an
// 8-byte aligned offset, then the tables last, so that the offsets of the
// parts depend only on the token count (a growing block table moves no
// kernel argument of a recorded graph).
func (b *Backend) attentionMeta(tables, tabOff, pos, slot, last []int32, kvb []uint64) DevicePtr {
	key := make([]int64, 0, 4+len(tables)+4*len(pos)+len(kvb))
	key = append(key, int64(len(tables)), int64(len(tabOff)), int64(len(pos)), int64(len(kvb)))
	for _, part := range [][]int32{tables, tabOff, pos, slot, last} {
		for _, v := range part {
			key = append(key, int64(v))
		}
	}
	for _, v := range kvb {
		key = append(key, int64(v))
	}
	if ep := b.dev.inputEpoch(); b.attDev != 0 && ep == b.attEpoch && slices.Equal(key, b.attKey) {
		return b.attDev
	}
	o := 0
	var host []int32
	for _, part := range []struct {
		at int // its index in attN
		v  []int32
	}{{1, tabOff}, {2, pos}, {3, slot}, {5, last}} {
		b.attN[part.at] = o
		host = append(host, part.v...)
		o += len(part.v)
	}
	if o%2 == 1 {
		host = append(host, 0)
		o++
	}
	b.attN[4] = o
	for _, v := range kvb {
		host = append(host, int32(uint32(v)), int32(uint32(v>>32)))
	}
	b.attN[0] = len(host)
	host = append(host, tables...)
	// Direct: a fresh buffer when it grows; the old one stays valid for
	// the work queued before (it returns to the pool only when collected,
	// and the pool hands it out again only to work queued later).
	b.attDev = b.stepInput(&b.meta, int32Bytes(host))
	b.attEpoch = b.dev.inputEpoch()
	b.attKey = key
	return b.attDev
}

func (b *Backend) Gather(dst, x backend.Tensor, idx []int) {
	d, s := dst.(*tensor), x.(*tensor)
	if len(idx) == 0 {
		return
	}
	if d.cols != s.cols || d.rows < len(idx) {
		panic(fmt.Sprintf("cuda: gather of %d rows of %dx%d into %dx%d", len(idx), s.rows, s.cols, d.rows, d.cols))
	}
	ix := make([]int32, len(idx))
	for i, r := range idx {
		if r < 0 || r >= s.rows {
			panic(fmt.Sprintf("cuda: gather of row %d of %d", r, s.rows))
		}
		ix[i] = int32(r)
	}
	p := b.stepInput(&b.ids, int32Bytes(ix))
	b.dev.launch("gather_rows", grid2(len(ix), ceilDiv(s.cols, 256)), block(256),
		argPtr(d.ptr()), argPtr(s.ptr()), argPtr(p), argInt(len(ix)), argInt(s.cols))
}

func (b *Backend) SwiGLU(dst, gate, up backend.Tensor) {
	d, g, u := dst.(*tensor), gate.(*tensor), up.(*tensor)
	if g.n() < d.n() || u.n() < d.n() {
		panic(fmt.Sprintf("cuda: swiglu of %dx%d and %dx%d into %dx%d", g.rows, g.cols, u.rows, u.cols, d.rows, d.cols))
	}
	if d.n() == 0 {
		return
	}
	b.dev.launch("swiglu_f32", stride(d.n()), block(256), argPtr(d.ptr()), argPtr(g.ptr()), argPtr(u.ptr()), argU64(uint64(d.n())))
}

func (b *Backend) Add(dst, x backend.Tensor) {
	d, s := dst.(*tensor), x.(*tensor)
	if s.n() < d.n() {
		panic(fmt.Sprintf("cuda: add of %dx%d into %dx%d", s.rows, s.cols, d.rows, d.cols))
	}
	if d.n() == 0 {
		return
	}
	b.dev.launch("add_f32", stride(d.n()), block(256), argPtr(d.ptr()), argPtr(s.ptr()), argU64(uint64(d.n())))
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

// Argmax writes the index of the largest value of each row of x into out
// (len rows), the first one on ties, NaN never winning (sample.Greedy's
// rule): greedy sampling without copying the logits back.
func (b *Backend) Argmax(x backend.Tensor, out []int32) error {
	s := x.(*tensor)
	if len(out) < s.rows {
		return fmt.Errorf("cuda: argmax of %d rows into %d", s.rows, len(out))
	}
	if s.rows == 0 {
		return nil
	}
	p := b.scratch(&b.ids, uint64(4*s.rows))
	b.dev.launch("argmax_f32", grid1(s.rows), block(256), argPtr(p), argPtr(s.ptr()), argInt(s.cols))
	return b.download(int32Bytes(out[:s.rows]), p)
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
