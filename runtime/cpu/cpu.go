// Package cpu is the CPU backend: it implements backend.Backend with the
// kernels of kernels/cpu, a persistent worker pool and an F16 KV cache.
package cpu

import (
	"fmt"
	"math"
	"slices"
	"sync"

	kcpu "github.com/hearth-llm/hearth/kernels/cpu"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// Backend is the CPU backend. Not safe for concurrent use: one forward pass
// at a time (the pool inside runs the threads).
type Backend struct {
	pool    *kcpu.Pool
	err     error // the first error of the operations, until Err takes it
	scratch kcpu.Scratch
	// MatMulGrouped's argument lists, reused.
	gd, gx [][]float32
	gm     []*kcpu.Matrix
	gn     []int
	lt     []loraTask // AddLoRAEmbed's (delta, row) pairs, reused
	// AddLoRAMulti's memory, reused: each row's delta per product, the
	// units, each thread's working memory; AddLoRA's one-product lists.
	lsig   []int32
	lunits []loraUnit
	lsub   []*loraSub
	ld1    [1]backend.Tensor
	lds1   [1][]backend.LoRADelta
}

// New returns a CPU backend running on threads threads (<= 0: all CPUs).
func New(threads int) *Backend {
	return &Backend{pool: kcpu.NewPool(threads)}
}

// Close stops the worker threads.
func (b *Backend) Close() {
	b.pool.Close()
	for _, s := range b.lsub {
		s.pool.Close()
	}
}

// Threads is the number of threads used.
func (b *Backend) Threads() int { return b.pool.Threads() }

func (b *Backend) Name() string { return "cpu" }

// Err returns the first error recorded since the last Err and clears it
// (backend.Backend's contract). While one is pending, the operations do
// nothing.
func (b *Backend) Err() error {
	err := b.err
	b.err = nil
	return err
}

// fail records err unless an error is already pending.
func (b *Backend) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

type weight struct {
	name string
	m    *kcpu.Matrix

	vecOnce sync.Once
	vec     []float32 // a one-row weight dequantized once (norms, biases, sinks)
}

// vector returns a one-row weight as float32, dequantized on first use.
func (w *weight) vector() []float32 {
	w.vecOnce.Do(func() {
		w.vec = make([]float32, w.m.Cols)
		w.m.DequantizeRow(0, w.vec)
	})
	return w.vec
}

// vectorOf is w's vector, nil for a nil weight.
func vectorOf(w backend.Weight) []float32 {
	if w == nil {
		return nil
	}
	return w.(*weight).vector()
}

func (w *weight) Name() string            { return w.name }
func (w *weight) Type() quant.Type        { return w.m.Type }
func (w *weight) Shape() (rows, cols int) { return w.m.Rows, w.m.Cols }

// tensor is a row-major float32 matrix.
type tensor struct {
	rows, cols int
	d          []float32
}

func (t *tensor) Shape() (rows, cols int) { return t.rows, t.cols }
func (t *tensor) row(i int) []float32     { return t.d[i*t.cols : (i+1)*t.cols] }

// Data exposes a tensor's values (tests and the CPU-side sampler use it).
func Data(t backend.Tensor) []float32 { return t.(*tensor).d }

func (b *Backend) Weight(name string, t quant.Type, rows, cols int, data []byte) (backend.Weight, error) {
	m, err := kcpu.NewMatrix(t, rows, cols, data)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	return &weight{name: name, m: m}, nil
}

func (b *Backend) NewTensor(rows, cols int) backend.Tensor {
	return &tensor{rows, cols, make([]float32, rows*cols)}
}

// Free drops what the backend holds of x (backend.Backend's contract):
// host memory goes back through the Go collector once the caller lets go
// of x too. A freed tensor's values are gone, so a use after Free fails
// loudly.
func (b *Backend) Free(x any) {
	switch v := x.(type) {
	case *tensor:
		v.d = nil
	case *kvPool:
		v.k, v.v = nil, nil
	case *statePool:
		v.data = nil
	case *backend.PagedKV:
		if v.Own {
			b.Free(v.Pool)
			b.Free(v.States)
		}
	}
}

func (b *Backend) Slice(x backend.Tensor, start, n int) backend.Tensor {
	t := x.(*tensor)
	return &tensor{n, t.cols, t.d[start*t.cols : (start+n)*t.cols]}
}

func (b *Backend) Embed(dst backend.Tensor, table backend.Weight, ids []int32) {
	if b.err != nil {
		return
	}
	d, w := dst.(*tensor), table.(*weight).m
	for _, id := range ids {
		if id < 0 || int(id) >= w.Rows {
			b.fail(fmt.Errorf("token id %d out of range [0, %d)", id, w.Rows))
			return
		}
	}
	for t, id := range ids {
		w.DequantizeRow(int(id), d.row(t))
	}
}

func (b *Backend) RMSNorm(dst, x backend.Tensor, w backend.Weight, eps float32) {
	if b.err != nil {
		return
	}
	d, s := dst.(*tensor), x.(*tensor)
	ws := vectorOf(w)
	seg := len(ws)
	if seg == 0 || s.cols%seg != 0 {
		panic(fmt.Sprintf("cpu: RMSNorm of width %d by a weight of %d", s.cols, seg))
	}
	// Rows of seg values each: whole rows, or the heads of per-head norms.
	b.pool.Run(s.rows*s.cols/seg, max(1, 4*s.cols/seg), func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			kcpu.RMSNorm(d.d[r*seg:(r+1)*seg], s.d[r*seg:(r+1)*seg], ws, eps)
		}
	})
}

func (b *Backend) LayerNorm(dst, x backend.Tensor, w, bias backend.Weight, eps float32) {
	if b.err != nil {
		return
	}
	d, s := dst.(*tensor), x.(*tensor)
	ws, bs := vectorOf(w), vectorOf(bias)
	b.pool.Run(s.rows, 4, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			kcpu.LayerNorm(d.row(r), s.row(r), ws, bs, eps)
		}
	})
}

func (b *Backend) GLU(dst, gate, up backend.Tensor, a backend.Act) {
	if b.err != nil {
		return
	}
	d, g, u := dst.(*tensor), gate.(*tensor), up.(*tensor)
	if a.Kind == backend.ActSiLU {
		b.SwiGLU(dst, gate, up)
		return
	}
	b.pool.Run(d.rows, 1, func(r0, r1 int) {
		dd, gg, uu := d.d[r0*d.cols:r1*d.cols], g.d[r0*d.cols:r1*d.cols], u.d[r0*d.cols:r1*d.cols]
		switch a.Kind {
		case backend.ActGELU:
			kcpu.GeGLU(dd, gg, uu)
		case backend.ActSwiGLUOAI:
			kcpu.SwiGLUOAI(dd, gg, uu, a.Alpha, a.Limit)
		case backend.ActSigmoid:
			for i, g := range gg {
				dd[i] = kcpu.Sigmoid(g) * uu[i]
			}
		default:
			panic(fmt.Sprintf("cpu: GLU with activation %d", a.Kind))
		}
	})
}

func (b *Backend) Activate(dst, x backend.Tensor, a backend.Act) {
	if b.err != nil {
		return
	}
	d, s := dst.(*tensor), x.(*tensor)
	b.pool.Run(d.rows, 1, func(r0, r1 int) {
		dd, ss := d.d[r0*d.cols:r1*d.cols], s.d[r0*d.cols:r1*d.cols]
		if a.Kind == backend.ActSiLU {
			kcpu.SiLUs(dd, ss)
			return
		}
		for i, v := range ss {
			switch a.Kind {
			case backend.ActSiLU:
				dd[i] = kcpu.SiLU(v)
			case backend.ActGELU:
				dd[i] = kcpu.GELU(v)
			default:
				panic(fmt.Sprintf("cpu: activation %d on its own", a.Kind))
			}
		}
	})
}

func (b *Backend) AddBias(x backend.Tensor, bias backend.Weight) {
	if b.err != nil {
		return
	}
	s, v := x.(*tensor), vectorOf(bias)
	if len(v) != s.cols {
		panic(fmt.Sprintf("cpu: bias of %d on rows of %d", len(v), s.cols))
	}
	for r := range s.rows {
		kcpu.Add(s.row(r), v)
	}
}

func (b *Backend) Scale(x backend.Tensor, sc ...float32) {
	if b.err != nil {
		return
	}
	s := x.(*tensor)
	if len(sc) != 1 && len(sc) != s.rows {
		panic(fmt.Sprintf("cpu: %d scales for %d rows", len(sc), s.rows))
	}
	for r := range s.rows {
		f := sc[min(r, len(sc)-1)]
		for i := range s.row(r) {
			s.d[r*s.cols+i] *= f
		}
	}
}

// ScaleSigmoid implements backend.SigmoidScaler: σ in float64, rounded
// to float32, then Scale's product.
func (b *Backend) ScaleSigmoid(x, g backend.Tensor) {
	if b.err != nil {
		return
	}
	s, gt := x.(*tensor), g.(*tensor)
	if gt.cols != 1 || gt.rows < s.rows {
		panic(fmt.Sprintf("cpu: sigmoid scale of %dx%d by %dx%d", s.rows, s.cols, gt.rows, gt.cols))
	}
	for r := range s.rows {
		f := float32(1 / (1 + math.Exp(-float64(gt.d[r]))))
		row := s.row(r)
		for i := range row {
			row[i] *= f
		}
	}
}

var _ backend.SigmoidScaler = (*Backend)(nil)

func (b *Backend) AddScaledRows(dst, x backend.Tensor, idx []int, w []float32) {
	if b.err != nil {
		return
	}
	d, s := dst.(*tensor), x.(*tensor)
	for i, r := range idx {
		dr, sr := d.row(r), s.row(i)
		for j, v := range sr {
			dr[j] += w[i] * v
		}
	}
}

func (b *Backend) MatMul(dst, x backend.Tensor, w backend.Weight) {
	if b.err != nil {
		return
	}
	d, s := dst.(*tensor), x.(*tensor)
	kcpu.MatMul(b.pool, &b.scratch, d.d, w.(*weight).m, s.d, s.rows)
}

// MatMulMulti is MatMul for several weights applied to the same x, as one
// loop of the pool where the kernels allow (kcpu.MatMulMulti); the results
// are MatMul's.
func (b *Backend) MatMulMulti(dsts []backend.Tensor, x backend.Tensor, ws []backend.Weight) {
	if b.err != nil {
		return
	}
	s := x.(*tensor)
	var d [4][]float32
	var m [4]*kcpu.Matrix
	ds, ms := d[:0], m[:0]
	for i, w := range ws {
		ds, ms = append(ds, dsts[i].(*tensor).d), append(ms, w.(*weight).m)
	}
	kcpu.MatMulMulti(b.pool, &b.scratch, ds, ms, s.d, s.rows)
}

func (b *Backend) RoPE(x backend.Tensor, heads, headDim int, pos []int32, r *backend.RoPE) {
	if b.err != nil {
		return
	}
	s := x.(*tensor)
	b.pool.Run(s.rows, 1, func(t0, t1 int) {
		cos := make([]float32, r.Dims/2)
		sin := make([]float32, r.Dims/2)
		for t := t0; t < t1; t++ {
			r.Tables(pos[t], cos, sin)
			kcpu.ApplyRoPE(r, s.row(t), heads, headDim, cos, sin)
		}
	})
}

func (b *Backend) SwiGLU(dst, gate, up backend.Tensor) {
	if b.err != nil {
		return
	}
	d, g, u := dst.(*tensor), gate.(*tensor), up.(*tensor)
	b.pool.Run(d.rows, 1, func(r0, r1 int) {
		kcpu.SwiGLU(d.d[r0*d.cols:r1*d.cols], g.d[r0*d.cols:r1*d.cols], u.d[r0*d.cols:r1*d.cols])
	})
}

func (b *Backend) Add(dst, x backend.Tensor) {
	if b.err != nil {
		return
	}
	kcpu.Add(dst.(*tensor).d, x.(*tensor).d)
}

func (b *Backend) Read(x backend.Tensor, row int, dst []float32) {
	if b.err != nil {
		return
	}
	t := x.(*tensor)
	copy(dst, t.d[row*t.cols:])
}

func (b *Backend) Write(x backend.Tensor, row int, src []float32) {
	if b.err != nil {
		return
	}
	t := x.(*tensor)
	if len(src)%max(t.cols, 1) != 0 || row < 0 || row*t.cols+len(src) > len(t.d) {
		panic(fmt.Sprintf("cpu: write of %d values at row %d of %dx%d", len(src), row, t.rows, t.cols))
	}
	copy(t.d[row*t.cols:], src)
}

// kvPool is paged storage of type typ (F16 or Q8_0): for each layer,
// blocks × blockSize positions of one row (kvDim values, rowBytes bytes)
// each, k[layer][(block*blockSize + slot)*rowBytes : …].
type kvPool struct {
	typ                         quant.Type
	blocks, blockSize, rowBytes int
	k, v                        [][]byte
}

func (c *kvPool) Blocks() int      { return c.blocks }
func (c *kvPool) BlockSize() int   { return c.blockSize }
func (c *kvPool) Type() quant.Type { return c.typ }

func (b *Backend) NewKVPool(layers, blocks, blockSize, kvDim int) (backend.KVPool, error) {
	return b.NewTypedKVPool(layers, blocks, blockSize, kvDim, 0, quant.F16)
}

// NewTypedKVPool implements backend.TypedKVPools: F16, or Q8_0 when every
// head is a whole number of 32-value blocks.
func (b *Backend) NewTypedKVPool(layers, blocks, blockSize, kvDim, headDim int, t quant.Type) (backend.KVPool, error) {
	if layers <= 0 || blocks <= 0 || blockSize <= 0 || kvDim <= 0 {
		return nil, fmt.Errorf("cpu: KV pool of %d layers, %d blocks of %d, width %d", layers, blocks, blockSize, kvDim)
	}
	if !slices.Contains(kcpu.KVTypes, t) {
		return nil, fmt.Errorf("%w: KV cache type %v (want one of %v)", quant.ErrUnsupported, t, kcpu.KVTypes)
	}
	if t != quant.F16 && (headDim <= 0 || headDim%t.BlockSize() != 0) {
		return nil, fmt.Errorf("%w: a %v KV cache needs a head size that is a multiple of %d, not %d", quant.ErrUnsupported, t, t.BlockSize(), headDim)
	}
	rb, err := t.RowBytes(kvDim)
	if err != nil {
		return nil, err
	}
	n := blocks * blockSize * rb
	c := &kvPool{typ: t, blocks: blocks, blockSize: blockSize, rowBytes: rb, k: make([][]byte, layers), v: make([][]byte, layers)}
	for l := range layers {
		c.k[l] = make([]byte, n)
		c.v[l] = make([]byte, n)
	}
	return c, nil
}

// NewKV is a pool of one block of ctx positions, seen through a one-entry
// block table: the single-sequence cache is the paged cache's simplest case.
func (b *Backend) NewKV(layers, ctx, kvDim int) (backend.KV, error) {
	return backend.NewContiguousKV(b.NewKVPool, layers, ctx, kvDim)
}

// pagedView adapts one layer of a paged cache, seen through a block table,
// to kernels/cpu's KVView.
type pagedView struct {
	k, v                []byte
	table               []int32
	blockSize, rowBytes int
}

func (l *pagedView) offset(p int) int {
	return (int(l.table[p/l.blockSize])*l.blockSize + p%l.blockSize) * l.rowBytes
}
func (l *pagedView) K(p int) []byte { o := l.offset(p); return l.k[o : o+l.rowBytes] }
func (l *pagedView) V(p int) []byte { o := l.offset(p); return l.v[o : o+l.rowBytes] }

// Run implements kernels/cpu.KVRuns: positions run to the end of p's block.
func (l *pagedView) Run(p int) (stride, count int) {
	return l.rowBytes, l.blockSize - p%l.blockSize
}

func (b *Backend) Attention(dst, q, k, v backend.Tensor, kvs []backend.KV, seq []int32, layer int, pos []int32, p backend.AttentionParams) {
	if b.err != nil {
		return
	}
	perSeq := make([]*pagedView, len(kvs))
	var typ quant.Type
	for s, c := range kvs {
		pk, ok := c.(*backend.PagedKV)
		if !ok {
			b.fail(fmt.Errorf("cpu: KV cache of type %T", c))
			return
		}
		pool, ok := pk.Pool.(*kvPool)
		if !ok {
			b.fail(fmt.Errorf("cpu: KV pool of type %T", pk.Pool))
			return
		}
		if s > 0 && pool.typ != typ {
			b.fail(fmt.Errorf("cpu: one batch over KV caches of types %v and %v", typ, pool.typ))
			return
		}
		typ = pool.typ
		for _, blk := range pk.Table {
			if blk < 0 || int(blk) >= pool.blocks {
				b.fail(fmt.Errorf("cpu: block %d outside the pool of %d", blk, pool.blocks))
				return
			}
		}
		perSeq[s] = &pagedView{pool.k[layer], pool.v[layer], pk.Table, pool.blockSize, pool.rowBytes}
	}
	for t, ps := range pos { // all checked before anything is stored
		if seq[t] < 0 || int(seq[t]) >= len(kvs) {
			b.fail(fmt.Errorf("token %d: sequence %d out of range", t, seq[t]))
			return
		}
		if ps < 0 || int(ps) >= kvs[seq[t]].Len() {
			b.fail(fmt.Errorf("position %d: %w (%d positions)", ps, backend.ErrContextFull, kvs[seq[t]].Len()))
			return
		}
	}
	// A layer narrower than the pool's rows (Gemma 4's sliding layers)
	// fills the front of each row; its heads are read from there.
	var store int
	if !p.SharedKV && len(perSeq) > 0 {
		kw := k.(*tensor).cols
		rb, err := typ.RowBytes(kw)
		if err != nil || rb > perSeq[0].rowBytes || v.(*tensor).cols != kw {
			b.fail(fmt.Errorf("cpu: K/V rows of %d and %d values for a cache of %d-byte %v rows", kw, v.(*tensor).cols, perSeq[0].rowBytes, typ))
			return
		}
		store = rb
	}
	views := make([]kcpu.KVView, len(pos))
	for t, ps := range pos {
		view := perSeq[seq[t]]
		if !p.SharedKV {
			kcpu.StoreKV(typ, view.K(int(ps))[:store], k.(*tensor).row(t))
			kcpu.StoreKV(typ, view.V(int(ps))[:store], v.(*tensor).row(t))
		}
		views[t] = view
	}
	qt := q.(*tensor)
	kcpu.Attention(b.pool, dst.(*tensor).d, qt.d, qt.rows, pos, views, typ, p.Heads, p.KVHeads, p.HeadDim, p.Scale, attnOpts(p, seq, pos))
}

func (b *Backend) Gather(dst, x backend.Tensor, idx []int) {
	if b.err != nil {
		return
	}
	d, s := dst.(*tensor), x.(*tensor)
	for i, r := range idx {
		copy(d.row(i), s.row(r))
	}
}

// attnOpts turns a layer's attention parameters into the kernel's options
// (nil for plain causal attention).
func attnOpts(p backend.AttentionParams, seq, pos []int32) *kcpu.AttnOpts {
	if p.Window <= 0 && p.SoftCap <= 0 && p.Sinks == nil && !p.NonCausal {
		return nil
	}
	o := &kcpu.AttnOpts{Window: p.Window, SoftCap: p.SoftCap, Sinks: vectorOf(p.Sinks)}
	if p.NonCausal {
		// Every token sees its sequence up to the last position in the batch.
		last := map[int32]int32{}
		for t, s := range seq {
			last[s] = max(last[s], pos[t])
		}
		o.Last = make([]int32, len(pos))
		for t, s := range seq {
			o.Last[t] = last[s]
		}
	}
	return o
}

// MatMulGrouped is MatMul for several weights, each with its own
// activations (a mixture's experts over their tokens), as one loop of the
// pool where the kernels allow (kcpu.MatMulGrouped); the results are
// MatMul's.
func (b *Backend) MatMulGrouped(dsts, xs []backend.Tensor, ws []backend.Weight) {
	if b.err != nil {
		return
	}
	b.gd, b.gx, b.gm, b.gn = b.gd[:0], b.gx[:0], b.gm[:0], b.gn[:0]
	for i, w := range ws {
		x := xs[i].(*tensor)
		b.gd = append(b.gd, dsts[i].(*tensor).d)
		b.gx, b.gn = append(b.gx, x.d), append(b.gn, x.rows)
		b.gm = append(b.gm, w.(*weight).m)
	}
	kcpu.MatMulGrouped(b.pool, &b.scratch, b.gd, b.gm, b.gx, b.gn)
}
