package split

import (
	"errors"
	"fmt"
	"slices"

	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// side is where data lives: the host backend or the device backend.
type side int

const (
	host side = iota
	dev
)

func (s side) bit() uint8 { return 1 << s }

// Stats count the copies between the two sides (Read of results not
// included): one per contiguous run of rows.
type Stats struct {
	ToDevice, ToHost           int
	BytesToDevice, BytesToHost int64
}

// Backend runs a model across two backends by Plan: each weight is bound
// where the plan puts it, each operation runs where its weight or its KV
// layer lives, and element-wise operations run where their inputs are.
// Activations cross sides only when an operation needs them on the other
// one. Not safe for concurrent use, like every backend.
type Backend struct {
	be    [2]backend.Backend // host, dev
	err   error              // the split's own first error (Err joins the sides')
	plan  Plan
	stats Stats
	stage []float32

	// Reused per Attention call: the caller's caches seen on one side.
	pk  []backend.PagedKV
	kvs []backend.KV
}

// New returns a backend that runs plan's share of a model on device and
// the rest on host. It owns both: Close closes them.
func New(device, host backend.Backend, plan Plan) *Backend {
	return &Backend{be: [2]backend.Backend{host, device}, plan: plan}
}

// Name joins the device's and the host's names ("cuda+cpu").
func (b *Backend) Name() string { return b.be[dev].Name() + "+" + b.be[host].Name() }

// Plan returns the placement.
func (b *Backend) Plan() Plan { return b.plan }

// Device returns the backend the offloaded layers run on.
func (b *Backend) Device() backend.Backend { return b.be[dev] }

// Host returns the backend the other layers run on.
func (b *Backend) Host() backend.Backend { return b.be[host] }

// Err returns the first error of the split's own (a KV cache of another
// placement, a side that could not allocate a tensor) and the sides'
// pending errors, joined, and clears them (a device fault stays the
// device backend's). While the split's own error is pending its
// operations do nothing; each side skips its own operations while its
// error is.
func (b *Backend) Err() error {
	var errs []error
	for _, err := range []error{b.err, b.be[dev].Err(), b.be[host].Err()} {
		// A device fault taken before (on) is still the device's: once.
		if err != nil && !slices.ContainsFunc(errs, func(e error) bool { return errors.Is(e, err) }) {
			errs = append(errs, err)
		}
	}
	b.err = nil
	if len(errs) == 1 {
		return errs[0]
	}
	return errors.Join(errs...)
}

// fail records err unless the split has an error pending.
func (b *Backend) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// Stats returns the copies made so far.
func (b *Backend) Stats() Stats { return b.stats }

// Close closes both backends (those with a Close method).
func (b *Backend) Close() error {
	var errs []error
	for _, x := range []backend.Backend{b.be[dev], b.be[host]} {
		switch c := x.(type) {
		case interface{ Close() error }:
			errs = append(errs, c.Close())
		case interface{ Close() }:
			c.Close()
		}
	}
	return errors.Join(errs...)
}

// weight is bound on one side, or on both (a tied output matrix).
type weight struct {
	name       string
	typ        quant.Type
	rows, cols int
	w          [2]backend.Weight
}

func (w *weight) Name() string            { return w.name }
func (w *weight) Type() quant.Type        { return w.typ }
func (w *weight) Shape() (rows, cols int) { return w.rows, w.cols }

// compute is where products and norms with w run: the device when it has w.
func (w *weight) compute() side {
	if w.w[dev] != nil {
		return dev
	}
	return host
}

// lookup is where an embedding lookup in w runs: the host when it has w.
func (w *weight) lookup() side {
	if w.w[host] != nil {
		return host
	}
	return dev
}

// OnDevice says whether the weight (one of this backend's) is bound on
// the device.
func OnDevice(w backend.Weight) bool {
	sw, ok := w.(*weight)
	return ok && sw.w[dev] != nil
}

func (b *Backend) Weight(name string, t quant.Type, rows, cols int, data []byte) (backend.Weight, error) {
	onHost, onDev := b.plan.Place(name)
	w := &weight{name: name, typ: t, rows: rows, cols: cols}
	var err error
	if onDev {
		if w.w[dev], err = b.be[dev].Weight(name, t, rows, cols, data); err != nil {
			return nil, fmt.Errorf("offloading %s to %s: %w", b.plan, b.be[dev].Name(), err)
		}
	}
	if onHost {
		if w.w[host], err = b.be[host].Weight(name, t, rows, cols, data); err != nil {
			return nil, err
		}
	}
	return w, nil
}

// store is the memory behind a tensor and its views: a tensor on each side
// (made when first needed) and, per row, the sides holding its current
// values.
type store struct {
	rows, cols int
	t          [2]backend.Tensor
	valid      []uint8 // per row, side bits
}

// tensor is a view of rows [off, off+rows) of a store.
type tensor struct {
	s         *store
	off, rows int
	v         [2]backend.Tensor // the view on each side, once made
	view      bool              // made by Slice: owns nothing
}

func (t *tensor) Shape() (rows, cols int) { return t.rows, t.s.cols }

func (b *Backend) NewTensor(rows, cols int) backend.Tensor {
	s := &store{rows: rows, cols: cols, valid: make([]uint8, rows)}
	for i := range s.valid {
		s.valid[i] = host.bit() | dev.bit() // nothing to keep yet
	}
	return &tensor{s: s, rows: rows}
}

func (b *Backend) Slice(x backend.Tensor, start, n int) backend.Tensor {
	t := x.(*tensor)
	if start < 0 || n < 0 || start+n > t.rows {
		panic(fmt.Sprintf("split: slice [%d, %d) of %d rows", start, start+n, t.rows))
	}
	return &tensor{s: t.s, off: t.off + start, rows: n, view: true}
}

// Free frees a tensor's store on both sides, or a pool's parts, through
// the side backends (backend.Backend's contract).
func (b *Backend) Free(x any) {
	switch v := x.(type) {
	case nil:
	case *tensor:
		if !v.view {
			for sd, t := range v.s.t {
				b.be[sd].Free(t)
				v.s.t[sd] = nil
			}
		}
	case *kvPool:
		for sd, p := range v.p {
			b.be[sd].Free(p)
			v.p[sd] = nil
		}
	case *backend.PagedKV:
		if v.Own {
			b.Free(v.Pool)
		}
	default:
		panic(fmt.Sprintf("split: Free of a %T", x))
	}
}

// on returns the side's tensor of the store, made on first use. A side
// that cannot make it (out of memory) has its error taken as the split's
// (so that the operations stop) and nothing is kept: on returns nil.
func (b *Backend) on(s *store, sd side) backend.Tensor {
	if s.t[sd] == nil {
		t := b.be[sd].NewTensor(s.rows, s.cols)
		if err := b.be[sd].Err(); err != nil {
			b.be[sd].Free(t)
			b.fail(err)
			return nil
		}
		s.t[sd] = t
	}
	return s.t[sd]
}

// view returns x on side sd. It does not move data: see need.
func (b *Backend) view(x *tensor, sd side) backend.Tensor {
	if x.v[sd] == nil {
		t := b.on(x.s, sd)
		if t == nil {
			return nil
		}
		if x.off != 0 || x.rows != x.s.rows {
			t = b.be[sd].Slice(t, x.off, x.rows)
		}
		x.v[sd] = t
	}
	return x.v[sd]
}

// need makes rows [r0, r1) of x current on side sd, copying the rows
// that are current only on the other side, a contiguous run at a time.
func (b *Backend) need(x *tensor, sd side, r0, r1 int) {
	if b.err != nil {
		return
	}
	s := x.s
	a, e := x.off+r0, x.off+min(r1, x.rows)
	for i := a; i < e; {
		if s.valid[i]&sd.bit() != 0 {
			i++
			continue
		}
		j := i + 1
		for j < e && s.valid[j]&sd.bit() == 0 {
			j++
		}
		b.copyRows(s, 1-sd, i, j)
		i = j
	}
}

// copyRows copies rows [a, e) of s from side from to the other side.
func (b *Backend) copyRows(s *store, from side, a, e int) {
	to := 1 - from
	n := (e - a) * s.cols
	if n > 0 {
		src, dst := b.on(s, from), b.on(s, to)
		if b.err != nil {
			return
		}
		if cap(b.stage) < n {
			b.stage = make([]float32, n)
		}
		buf := b.stage[:n]
		b.be[from].Read(src, a, buf)
		b.be[to].Write(dst, a, buf)
		if to == dev {
			b.stats.ToDevice++
			b.stats.BytesToDevice += 4 * int64(n)
		} else {
			b.stats.ToHost++
			b.stats.BytesToHost += 4 * int64(n)
		}
	}
	for i := a; i < e; i++ {
		s.valid[i] |= to.bit()
	}
}

// wrote records that rows [r0, r1) of x now hold new values on side sd.
func (x *tensor) wrote(sd side, r0, r1 int) {
	for i := x.off + r0; i < x.off+min(r1, x.rows); i++ {
		x.s.valid[i] = sd.bit()
	}
}

// missing counts the values of rows [r0, r1) of x not current on sd.
func (x *tensor) missing(sd side, r0, r1 int) int {
	n := 0
	for i := x.off + r0; i < x.off+min(r1, x.rows); i++ {
		if x.s.valid[i]&sd.bit() == 0 {
			n++
		}
	}
	return n * x.s.cols
}

// span is rows [r0, r1) of a tensor an operation reads.
type span struct {
	t      *tensor
	r0, r1 int
}

// pick chooses the side for an element-wise operation: the one where
// fewer of its inputs' values would have to be copied; on a tie, the
// device when the plan uses it.
func (b *Backend) pick(in ...span) side {
	var cost [2]int
	for _, s := range in {
		cost[host] += s.t.missing(host, s.r0, s.r1)
		cost[dev] += s.t.missing(dev, s.r0, s.r1)
	}
	if cost[host] < cost[dev] || cost[host] == cost[dev] && b.plan.None() {
		return host
	}
	return dev
}

func (b *Backend) needAll(sd side, in ...span) {
	for _, s := range in {
		b.need(s.t, sd, s.r0, s.r1)
	}
}

func (b *Backend) Embed(dst backend.Tensor, table backend.Weight, ids []int32) {
	d, w := dst.(*tensor), table.(*weight)
	sd := w.lookup()
	dv := b.view(d, sd)
	if b.err != nil {
		return
	}
	b.be[sd].Embed(dv, w.w[sd], ids)
	d.wrote(sd, 0, len(ids))
}

func (b *Backend) RMSNorm(dst, x backend.Tensor, w backend.Weight, eps float32) {
	d, s, nw := dst.(*tensor), x.(*tensor), w.(*weight)
	sd := nw.compute()
	b.need(s, sd, 0, s.rows)
	dv, sv := b.view(d, sd), b.view(s, sd)
	if b.err != nil {
		return
	}
	b.be[sd].RMSNorm(dv, sv, nw.w[sd], eps)
	d.wrote(sd, 0, s.rows)
}

func (b *Backend) LayerNorm(dst, x backend.Tensor, w, bias backend.Weight, eps float32) {
	d, s, nw := dst.(*tensor), x.(*tensor), w.(*weight)
	sd := nw.compute()
	b.need(s, sd, 0, s.rows)
	dv, sv := b.view(d, sd), b.view(s, sd)
	if b.err != nil {
		return
	}
	b.be[sd].LayerNorm(dv, sv, nw.w[sd], sideWeight(bias, sd), eps)
	d.wrote(sd, 0, s.rows)
}

// sideWeight is w's binding on side sd (nil for a nil weight).
func sideWeight(w backend.Weight, sd side) backend.Weight {
	if w == nil {
		return nil
	}
	sw := w.(*weight)
	if sw.w[sd] == nil {
		panic(fmt.Sprintf("split: weight %s is not bound on the %s side", sw.name, [2]string{"host", "device"}[sd]))
	}
	return sw.w[sd]
}

func (b *Backend) AddBias(x backend.Tensor, bias backend.Weight) {
	s, bw := x.(*tensor), bias.(*weight)
	sd := bw.compute()
	b.need(s, sd, 0, s.rows)
	sv := b.view(s, sd)
	if b.err != nil {
		return
	}
	b.be[sd].AddBias(sv, bw.w[sd])
	s.wrote(sd, 0, s.rows)
}

func (b *Backend) Scale(x backend.Tensor, sc ...float32) {
	s := x.(*tensor)
	sd := b.pick(span{s, 0, s.rows})
	b.need(s, sd, 0, s.rows)
	sv := b.view(s, sd)
	if b.err != nil {
		return
	}
	b.be[sd].Scale(sv, sc...)
	s.wrote(sd, 0, s.rows)
}

func (b *Backend) GLU(dst, gate, up backend.Tensor, a backend.Act) {
	d, g, u := dst.(*tensor), gate.(*tensor), up.(*tensor)
	in := []span{{g, 0, d.rows}, {u, 0, d.rows}}
	sd := b.pick(in...)
	b.needAll(sd, in...)
	dv, gv, uv := b.view(d, sd), b.view(g, sd), b.view(u, sd)
	if b.err != nil {
		return
	}
	b.be[sd].GLU(dv, gv, uv, a)
	d.wrote(sd, 0, d.rows)
}

func (b *Backend) Activate(dst, x backend.Tensor, a backend.Act) {
	d, s := dst.(*tensor), x.(*tensor)
	sd := b.pick(span{s, 0, d.rows})
	b.need(s, sd, 0, d.rows)
	dv, sv := b.view(d, sd), b.view(s, sd)
	if b.err != nil {
		return
	}
	b.be[sd].Activate(dv, sv, a)
	d.wrote(sd, 0, d.rows)
}

func (b *Backend) AddScaledRows(dst, x backend.Tensor, idx []int, w []float32) {
	d, s := dst.(*tensor), x.(*tensor)
	in := []span{{d, 0, d.rows}, {s, 0, len(idx)}}
	sd := b.pick(in...)
	b.needAll(sd, in...)
	dv, sv := b.view(d, sd), b.view(s, sd)
	if b.err != nil {
		return
	}
	b.be[sd].AddScaledRows(dv, sv, idx, w)
	d.wrote(sd, 0, d.rows)
}

func (b *Backend) MatMul(dst, x backend.Tensor, w backend.Weight) {
	d, s, mw := dst.(*tensor), x.(*tensor), w.(*weight)
	sd := mw.compute()
	b.need(s, sd, 0, s.rows)
	dv, sv := b.view(d, sd), b.view(s, sd)
	if b.err != nil {
		return
	}
	b.be[sd].MatMul(dv, sv, mw.w[sd])
	d.wrote(sd, 0, s.rows)
}

func (b *Backend) RoPE(x backend.Tensor, heads, headDim int, pos []int32, r *backend.RoPE) {
	s := x.(*tensor)
	sd := b.pick(span{s, 0, s.rows})
	b.need(s, sd, 0, s.rows)
	sv := b.view(s, sd)
	if b.err != nil {
		return
	}
	b.be[sd].RoPE(sv, heads, headDim, pos, r)
	s.wrote(sd, 0, s.rows)
}

func (b *Backend) SwiGLU(dst, gate, up backend.Tensor) {
	d, g, u := dst.(*tensor), gate.(*tensor), up.(*tensor)
	in := []span{{g, 0, d.rows}, {u, 0, d.rows}}
	sd := b.pick(in...)
	b.needAll(sd, in...)
	dv, gv, uv := b.view(d, sd), b.view(g, sd), b.view(u, sd)
	if b.err != nil {
		return
	}
	b.be[sd].SwiGLU(dv, gv, uv)
	d.wrote(sd, 0, d.rows)
}

func (b *Backend) Add(dst, x backend.Tensor) {
	d, s := dst.(*tensor), x.(*tensor)
	in := []span{{d, 0, d.rows}, {s, 0, d.rows}}
	sd := b.pick(in...)
	b.needAll(sd, in...)
	dv, sv := b.view(d, sd), b.view(s, sd)
	if b.err != nil {
		return
	}
	b.be[sd].Add(dv, sv)
	d.wrote(sd, 0, d.rows)
}

func (b *Backend) Gather(dst, x backend.Tensor, idx []int) {
	d, s := dst.(*tensor), x.(*tensor)
	in := make([]span, 0, len(idx))
	for _, r := range idx {
		if r < 0 || r >= s.rows {
			panic(fmt.Sprintf("split: gather of row %d of %d", r, s.rows))
		}
		in = append(in, span{s, r, r + 1})
	}
	sd := b.pick(in...)
	b.needAll(sd, in...)
	dv, sv := b.view(d, sd), b.view(s, sd)
	if b.err != nil {
		return
	}
	b.be[sd].Gather(dv, sv, idx)
	d.wrote(sd, 0, len(idx))
}

// Read reads from the host when it holds the rows, else from the device
// (whose Read is the copy anyway).
func (b *Backend) Read(x backend.Tensor, row int, dst []float32) {
	s := x.(*tensor)
	cols := max(s.s.cols, 1)
	end := min(s.rows, row+(len(dst)+cols-1)/cols)
	sd := host
	if s.missing(host, row, end) > 0 {
		sd = dev
		if s.missing(dev, row, end) > 0 { // split between the sides
			sd = host
			b.need(s, host, row, end)
		}
	}
	sv := b.view(s, sd)
	if b.err != nil {
		return
	}
	b.be[sd].Read(sv, row, dst)
}

// Write puts the rows on the host.
func (b *Backend) Write(x backend.Tensor, row int, src []float32) {
	s := x.(*tensor)
	sv := b.view(s, host)
	if b.err != nil {
		return
	}
	b.be[host].Write(sv, row, src)
	s.wrote(host, row, row+len(src)/max(s.s.cols, 1))
}

// kvPool is a KV pool per side, for that side's layers: the host's holds
// layers 0 … first-1, the device's first … Layers-1 (renumbered from 0).
type kvPool struct {
	blocks, blockSize int
	first             int
	p                 [2]backend.KVPool
}

func (c *kvPool) Blocks() int    { return c.blocks }
func (c *kvPool) BlockSize() int { return c.blockSize }

// Pools returns the pool's host and device parts (nil where that side has
// no layers), for tests and memory accounting.
func Pools(p backend.KVPool) (hostPool, devPool backend.KVPool) {
	c, ok := p.(*kvPool)
	if !ok {
		return nil, nil
	}
	return c.p[host], c.p[dev]
}

func (b *Backend) newPool(layers, blocks, blockSize int, mk func(be backend.Backend, layers int) (backend.KVPool, error)) (backend.KVPool, error) {
	if layers != b.plan.Layers {
		return nil, fmt.Errorf("split: KV cache of %d layers for a plan of %d", layers, b.plan.Layers)
	}
	c := &kvPool{blocks: blocks, blockSize: blockSize, first: layers - b.plan.Offloaded}
	var err error
	if c.first > 0 {
		if c.p[host], err = mk(b.be[host], c.first); err != nil {
			return nil, err
		}
	}
	if b.plan.Offloaded > 0 {
		if c.p[dev], err = mk(b.be[dev], b.plan.Offloaded); err != nil {
			b.be[host].Free(c.p[host])
			return nil, fmt.Errorf("KV cache of %d layers on %s: %w", b.plan.Offloaded, b.be[dev].Name(), err)
		}
	}
	return c, nil
}

func (b *Backend) NewKVPool(layers, blocks, blockSize, kvDim int) (backend.KVPool, error) {
	return b.newPool(layers, blocks, blockSize, func(be backend.Backend, n int) (backend.KVPool, error) {
		return be.NewKVPool(n, blocks, blockSize, kvDim)
	})
}

// NewTypedKVPool implements backend.TypedKVPools: each side stores its
// layers in type t, which both must support (F16 always).
func (b *Backend) NewTypedKVPool(layers, blocks, blockSize, kvDim, headDim int, t quant.Type) (backend.KVPool, error) {
	return b.newPool(layers, blocks, blockSize, func(be backend.Backend, n int) (backend.KVPool, error) {
		if tp, ok := be.(backend.TypedKVPools); ok {
			return tp.NewTypedKVPool(n, blocks, blockSize, kvDim, headDim, t)
		}
		if t == quant.F16 {
			return be.NewKVPool(n, blocks, blockSize, kvDim)
		}
		return nil, fmt.Errorf("%w: the %s backend stores the KV cache only as F16", quant.ErrUnsupported, be.Name())
	})
}

// NewKV is a pool of one block of ctx positions seen through a one-entry
// block table, as on the CPU.
func (b *Backend) NewKV(layers, ctx, kvDim int) (backend.KV, error) {
	return backend.NewContiguousKV(b.NewKVPool, layers, ctx, kvDim)
}

// Attention runs on the side holding the layer's KV cache.
func (b *Backend) Attention(dst, q, k, v backend.Tensor, kvs []backend.KV, seq []int32, layer int, pos []int32, p backend.AttentionParams) {
	if b.err != nil {
		return
	}
	if layer < 0 || layer >= b.plan.Layers {
		b.fail(fmt.Errorf("split: attention at layer %d of %d", layer, b.plan.Layers))
		return
	}
	sd, local := host, layer
	if b.plan.OnDevice(layer) {
		sd, local = dev, layer-(b.plan.Layers-b.plan.Offloaded)
	}
	if cap(b.pk) < len(kvs) {
		b.pk = make([]backend.PagedKV, len(kvs))
	}
	b.pk = b.pk[:len(kvs)]
	b.kvs = b.kvs[:0]
	for i, c := range kvs {
		pk, ok := c.(*backend.PagedKV)
		if !ok {
			b.fail(fmt.Errorf("split: KV cache of type %T", c))
			return
		}
		pool, ok := pk.Pool.(*kvPool)
		if !ok {
			b.fail(fmt.Errorf("split: KV pool of type %T", pk.Pool))
			return
		}
		if pool.p[sd] == nil || pool.first != b.plan.Layers-b.plan.Offloaded {
			b.fail(fmt.Errorf("split: a KV pool of another placement"))
			return
		}
		b.pk[i] = backend.PagedKV{Pool: pool.p[sd], Table: pk.Table}
		b.kvs = append(b.kvs, &b.pk[i])
	}
	qt, kt, vt, d := q.(*tensor), k.(*tensor), v.(*tensor), dst.(*tensor)
	n := qt.rows
	b.needAll(sd, span{qt, 0, n}, span{kt, 0, n}, span{vt, 0, n})
	if p.Sinks != nil {
		p.Sinks = sideWeight(p.Sinks, sd)
	}
	dv, qv, kv, vv := b.view(d, sd), b.view(qt, sd), b.view(kt, sd), b.view(vt, sd)
	if b.err != nil {
		return
	}
	b.be[sd].Attention(dv, qv, kv, vv, b.kvs, seq, local, pos, p)
	d.wrote(sd, 0, n)
}

var (
	_ backend.Backend      = (*Backend)(nil)
	_ backend.TypedKVPools = (*Backend)(nil)
)
