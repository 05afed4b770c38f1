package cuda

import (
	"fmt"
	"math"
	"slices"

	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

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
		b.free(c.k)
		return nil, fmt.Errorf("KV cache: %w", err)
	}
	return c, nil
}

// NewKV is a pool of one block of ctx positions seen through a one-entry
// block table, as on the CPU.
func (b *Backend) NewKV(layers, ctx, kvDim int) (backend.KV, error) {
	return backend.NewContiguousKV(b.NewKVPool, layers, ctx, kvDim)
}

func (b *Backend) Attention(dst, q, k, v backend.Tensor, kvs []backend.KV, seq []int32, layer int, pos []int32, p backend.AttentionParams) {
	qt, ot := q.(*tensor), dst.(*tensor)
	n := qt.rows
	kvDim := p.KVHeads * p.HeadDim
	// A layer that shares an earlier layer's cache stores nothing: its k
	// and v stand in as q's shape for the checks below.
	kt, vt := &tensor{rows: n, cols: kvDim, buf: qt.buf}, &tensor{rows: n, cols: kvDim, buf: qt.buf}
	if !p.SharedKV {
		kt, vt = k.(*tensor), v.(*tensor)
	}
	if !b.ready(qt, kt, vt, ot) {
		return
	}
	switch {
	case p.HeadDim <= 0 || p.HeadDim > 512 || p.KVHeads <= 0 || p.Heads%p.KVHeads != 0:
		b.fail(fmt.Errorf("cuda: attention of %d heads, %d KV heads of %d: unsupported (head size <= 512)", p.Heads, p.KVHeads, p.HeadDim))
		return
	case len(pos) < n || len(seq) < n || kt.cols != kvDim || vt.cols != kvDim || qt.cols != p.Heads*p.HeadDim || ot.cols != qt.cols:
		b.fail(fmt.Errorf("cuda: attention shapes q %dx%d k %dx%d v %dx%d out %dx%d for %d heads, %d KV heads of %d",
			qt.rows, qt.cols, kt.rows, kt.cols, vt.rows, vt.cols, ot.rows, ot.cols, p.Heads, p.KVHeads, p.HeadDim))
		return
	}
	var sinks DevicePtr
	if p.Sinks != nil {
		sw, ok := p.Sinks.(*weight)
		if !ok || sw.dev != quant.F32 || sw.rows != 1 || sw.cols != p.Heads {
			r, c := p.Sinks.Shape()
			b.fail(fmt.Errorf("cuda: attention sinks %s of %dx%d for %d heads", p.Sinks.Name(), r, c, p.Heads))
			return
		}
		sinks = sw.buf.ptr
	}
	if n == 0 {
		return
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
			b.fail(fmt.Errorf("cuda: KV cache of type %T", c))
			return
		}
		pool, ok := pk.Pool.(*kvPool)
		if !ok {
			b.fail(fmt.Errorf("cuda: KV pool of type %T", pk.Pool))
			return
		}
		// A layer narrower than the pool's rows (Gemma 4's sliding
		// layers) fills the front of each row.
		if pool.kvDim < kvDim || (s > 0 && pool.kvDim != pools[0].kvDim) || layer < 0 || layer >= pool.layers {
			b.fail(fmt.Errorf("cuda: layer %d of a KV pool of %d layers of width %d, want width %d", layer, pool.layers, pool.kvDim, kvDim))
			return
		}
		for _, blk := range pk.Table {
			if blk < 0 || int(blk) >= pool.blocks {
				b.fail(fmt.Errorf("cuda: block %d outside the pool of %d", blk, pool.blocks))
				return
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
			b.fail(fmt.Errorf("token %d: sequence %d out of range", t, s))
			return
		}
		ps := pos[t]
		if ps < 0 || int(ps) >= kvs[s].Len() {
			b.fail(fmt.Errorf("position %d: %w (%d positions)", ps, backend.ErrContextFull, kvs[s].Len()))
			return
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
	if meta == 0 { // out of memory, recorded
		return
	}
	at := func(i int) DevicePtr { return meta + DevicePtr(4*b.attN[i]) }
	stride := pools[0].kvDim
	if !p.SharedKV {
		b.launch("kv_store", grid1(n), block(128),
			argPtr(at(4)), argPtr(kt.ptr()), argPtr(vt.ptr()), argPtr(at(3)), argInt(layer), argInt(kvDim), argInt(stride), argInt(n))
	}
	kernel := "attention_f16"
	if p.HeadDim > 256 {
		kernel = "attention_f16_h512"
	}
	b.launch(kernel, grid2(n, p.Heads), block(128),
		argPtr(ot.ptr()), argPtr(qt.ptr()), argPtr(at(4)), argPtr(at(0)), argPtr(at(1)), argPtr(at(2)), argPtr(at(5)),
		argInt(layer), argInt(p.Heads), argInt(p.KVHeads), argInt(p.HeadDim), argInt(stride), argF32(p.Scale),
		argInt(min(max(p.Window, 0), math.MaxInt32)), argF32(max(p.SoftCap, 0)), argPtr(sinks))
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
	// the work queued before (scratch frees it after that work).
	b.attDev = b.stepInput(&b.meta, int32Bytes(host))
	b.attEpoch = b.dev.inputEpoch()
	b.attKey = key
	return b.attDev
}
