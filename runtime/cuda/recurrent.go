package cuda

import (
	"fmt"
	"math"
	"slices"

	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// Recurrent layers on the device (backend.Recurrent; kernels/cuda
// recurrent.cu). The states live in device memory; the positions each
// part of each slot has absorbed stay on the host, where the position
// rule is checked (as runtime/cpu does, before anything changes) without
// a wait on the device. Per forward pass one small table goes to the
// device (each sequence's slot address and its tokens; stateMeta), the
// same for every recurrent layer of the pass, so a decode step with
// recurrent layers still reads nothing back and records whole into a
// CUDA graph.

// statePool is backend.StatePool on the device: one buffer, slot after
// slot, each slot every part back to back (part p at off[p] floats), so
// that a slot is one address for the kernels and one copy for CopyState.
type statePool struct {
	slots  int
	sizes  []int
	off    []int64 // per part, in floats from the slot's start
	stride int64   // floats per slot
	buf    *buffer
	held   [][]int32 // per part, per slot: positions absorbed
}

func (p *statePool) Slots() int { return p.slots }
func (p *statePool) Parts() int { return len(p.sizes) }

func (p *statePool) slotPtr(s int) DevicePtr {
	return p.buf.ptr + DevicePtr(4*int64(s)*p.stride)
}

// NewStatePool implements backend.Recurrent: one zeroed allocation.
func (b *Backend) NewStatePool(slots int, sizes []int) (backend.StatePool, error) {
	if slots <= 0 || len(sizes) == 0 {
		return nil, fmt.Errorf("cuda: state pool of %d slots, %d parts", slots, len(sizes))
	}
	p := &statePool{slots: slots, sizes: slices.Clone(sizes), off: make([]int64, len(sizes)), held: make([][]int32, len(sizes))}
	for i, n := range sizes {
		if n <= 0 || n > math.MaxInt32/slots {
			return nil, fmt.Errorf("cuda: state part of %d values × %d slots", n, slots)
		}
		p.off[i] = p.stride
		p.stride += int64(n)
		p.held[i] = make([]int32, slots)
	}
	bytes := 4 * uint64(p.stride) * uint64(slots)
	buf, err := b.alloc(bytes)
	if err != nil {
		return nil, fmt.Errorf("cuda: recurrent state: %w", err)
	}
	p.buf = buf
	b.dev.Go(func(drv Driver, s Stream) error { return drv.MemsetD8Async(buf.ptr, 0, bytes, s) })
	return p, nil
}

// CopyState implements backend.Recurrent: one device copy of the slot.
func (b *Backend) CopyState(to backend.StatePool, dst int, from backend.StatePool, src int) {
	if b.err != nil || b.dev.Err() != nil {
		return
	}
	t, f := to.(*statePool), from.(*statePool)
	if !slices.Equal(t.sizes, f.sizes) || dst < 0 || dst >= t.slots || src < 0 || src >= f.slots {
		panic(fmt.Sprintf("cuda: state copy from slot %d of %d to slot %d of %d", src, f.slots, dst, t.slots))
	}
	if t.buf.ptr == 0 || f.buf.ptr == 0 {
		b.fail(errNoMemory)
		return
	}
	for part := range t.sizes {
		t.held[part][dst] = f.held[part][src]
	}
	if t == f && dst == src {
		return
	}
	d, s, n := t.slotPtr(dst), f.slotPtr(src), 4*uint64(t.stride)
	b.dev.Go(func(drv Driver, st Stream) error { return drv.MemcpyDtoDAsync(d, s, n, st) })
}

// ResetState implements backend.Recurrent: the slot zeroed on the device.
func (b *Backend) ResetState(pool backend.StatePool, slot int) {
	p := pool.(*statePool)
	if slot < 0 || slot >= p.slots {
		panic(fmt.Sprintf("cuda: reset of state slot %d of %d", slot, p.slots))
	}
	for part := range p.sizes {
		p.held[part][slot] = 0
	}
	if p.buf.ptr == 0 || b.dev.Err() != nil {
		return
	}
	d, n := p.slotPtr(slot), 4*uint64(p.stride)
	b.dev.Go(func(drv Driver, s Stream) error { return drv.MemsetD8Async(d, 0, n, s) })
}

// seqStates resolves every token's state (part part of its sequence's
// slot) and checks the positions as runtime/cpu does, before anything
// changes: a token at 0 restarts its sequence, any other must continue it
// (else ErrStateLost is recorded). It then records the positions the
// operation leaves each part at and returns the device's sequence table
// (stateMeta), the number of sequences with tokens and the part's pool
// (the first one's: a part's offset is the same in every pool of the
// model's sizes), or ok false after recording an error.
func (b *Backend) seqStates(kvs []backend.KV, seq, pos []int32, part, size int) (meta DevicePtr, ns int, off int64, ok bool) {
	toks := make([][]int32, len(kvs))
	for t, s := range seq {
		if s < 0 || int(s) >= len(kvs) {
			b.fail(fmt.Errorf("token %d: sequence %d out of range", t, s))
			return 0, 0, 0, false
		}
		toks[s] = append(toks[s], int32(t))
	}
	pools := make([]*statePool, len(kvs))
	slots := make([]int, len(kvs))
	off = -1
	for s, kv := range kvs {
		if len(toks[s]) == 0 {
			continue
		}
		sv, isView := kv.(backend.StateView)
		var sp backend.StatePool
		var slot int
		if isView {
			sp, slot = sv.State()
		}
		p, isDev := sp.(*statePool)
		if !isDev || slot < 0 || slot >= p.slots || part < 0 || part >= len(p.sizes) || p.sizes[part] != size {
			b.fail(fmt.Errorf("cuda: sequence %d has no recurrent state part %d of %d values (%T, slot %d)", s, part, size, sp, slot))
			return 0, 0, 0, false
		}
		if p.buf.ptr == 0 {
			b.fail(errNoMemory)
			return 0, 0, 0, false
		}
		if off >= 0 && p.off[part] != off {
			b.fail(fmt.Errorf("cuda: sequences of one step in state pools of different layouts"))
			return 0, 0, 0, false
		}
		off = p.off[part]
		held := p.held[part][slot]
		for _, t := range toks[s] {
			switch {
			case pos[t] == 0:
				held = 1
			case pos[t] == held:
				held++
			default:
				b.fail(fmt.Errorf("sequence %d at position %d, its state at %d: %w", s, pos[t], held, backend.ErrStateLost))
				return 0, 0, 0, false
			}
		}
		pools[s], slots[s] = p, slot
	}
	for s, p := range pools { // checked: the positions the operation leaves
		if p != nil {
			tt := toks[s]
			p.held[part][slots[s]] = pos[tt[len(tt)-1]] + 1
		}
	}
	// The table: slot addresses, starts, then the tokens (2t, +1 at a
	// restart).
	var addrs []uint64
	start := []int32{0}
	var list []int32
	for s, p := range pools {
		if p == nil {
			continue
		}
		addrs = append(addrs, uint64(p.slotPtr(slots[s])))
		for _, t := range toks[s] {
			v := 2 * t
			if pos[t] == 0 {
				v++
			}
			list = append(list, v)
		}
		start = append(start, int32(len(list)))
	}
	if off < 0 { // no tokens
		return 0, 0, 0, true
	}
	return b.stateMeta(addrs, start, list), len(addrs), off, true
}

// stateMeta puts a pass's sequence table on the device, unless the same
// table is already there (every recurrent layer of a forward pass asks
// with the same one), and returns its address.
func (b *Backend) stateMeta(addrs []uint64, start, toks []int32) DevicePtr {
	host := make([]int32, 0, 2*len(addrs)+len(start)+len(toks))
	for _, a := range addrs {
		host = append(host, int32(uint32(a)), int32(uint32(a>>32)))
	}
	host = append(host, start...)
	host = append(host, toks...)
	if ep := b.dev.inputEpoch(); b.recDev != 0 && ep == b.recEpoch && slices.Equal(host, b.recKey) {
		return b.recDev
	}
	b.recDev = b.stepInput(&b.recMeta, int32Bytes(host))
	b.recEpoch = b.dev.inputEpoch()
	b.recKey = host
	return b.recDev
}

// convTaps is the conv weight's taps as float32 on the device (c rows of
// k; Weight stores a narrow F16/BF16 matrix as F32).
func convTaps(w *weight) DevicePtr {
	if w.dev != quant.F32 {
		panic(fmt.Sprintf("cuda: conv weight %s stored as %v", w.name, w.dev))
	}
	return w.buf.ptr
}

// maxConvK and maxDeltaHead are recurrent.cu's MAX_CONV_K and MAX_DN_HEAD.
const (
	maxConvK     = 64
	maxDeltaHead = 128
	deltaThreads = 512 // DN_WARPS warps
)

// CausalConv implements backend.Recurrent with causal_conv_f32: a block
// per sequence and 128 channels, the sequence's tokens in order.
func (b *Backend) CausalConv(dst, x backend.Tensor, w backend.Weight, kvs []backend.KV, seq, pos []int32, part int) {
	d, s, cw := dst.(*tensor), x.(*tensor), w.(*weight)
	if !b.ready(d, s) {
		return
	}
	c, k := cw.rows, cw.cols
	if s.cols != c || d.cols != c || d.rows != s.rows || len(seq) != s.rows || len(pos) != s.rows || k < 2 {
		panic(fmt.Sprintf("cuda: conv of %d×%d into %d×%d with %d×%d taps", s.rows, s.cols, d.rows, d.cols, c, k))
	}
	if k > maxConvK {
		b.fail(fmt.Errorf("cuda: causal conv of %d taps: unsupported (at most %d)", k, maxConvK))
		return
	}
	taps := convTaps(cw)
	meta, ns, off, ok := b.seqStates(kvs, seq, pos, part, (k-1)*c)
	if !ok || ns == 0 {
		return
	}
	b.launch("causal_conv_f32", grid2(ns, ceilDiv(c, 128)), block(128),
		argPtr(d.ptr()), argPtr(s.ptr()), argPtr(taps), argPtr(meta), argInt(ns), argU64(uint64(off)), argInt(c), argInt(k))
}

// GatedDeltaNet implements backend.Recurrent with gated_delta_net_f32: a
// block per (sequence, value head), its state in registers.
func (b *Backend) GatedDeltaNet(dst, qkv, alpha, beta backend.Tensor, a, dtBias backend.Weight, kvs []backend.KV, seq, pos []int32, part int, p backend.DeltaNetParams) {
	d, x, al, be := dst.(*tensor), qkv.(*tensor), alpha.(*tensor), beta.(*tensor)
	if !b.ready(d, x, al, be) {
		return
	}
	kh, vh, hd := p.KHeads, p.VHeads, p.HeadDim
	n := x.rows
	if kh <= 0 || vh%kh != 0 || x.cols != (2*kh+vh)*hd || d.cols != vh*hd || al.cols != vh || be.cols != vh ||
		d.rows != n || al.rows != n || be.rows != n || len(seq) != n || len(pos) != n {
		panic(fmt.Sprintf("cuda: gated delta net %+v over %d×%d", p, n, x.cols))
	}
	av, dt := vector("delta net decay", a, vh), vector("delta net dt bias", dtBias, vh)
	if hd <= 0 || hd > maxDeltaHead {
		b.fail(fmt.Errorf("cuda: gated delta net of head size %d: unsupported (at most %d)", hd, maxDeltaHead))
		return
	}
	meta, ns, off, ok := b.seqStates(kvs, seq, pos, part, vh*hd*hd)
	if !ok || ns == 0 {
		return
	}
	scale := float32(1 / math.Sqrt(float64(hd)))
	b.launch("gated_delta_net_f32", grid2(ns, vh), block(deltaThreads),
		argPtr(d.ptr()), argPtr(x.ptr()), argPtr(al.ptr()), argPtr(be.ptr()), argPtr(av), argPtr(dt), argPtr(meta), argInt(ns),
		argU64(uint64(off)), argInt(kh), argInt(vh), argInt(hd), argF32(p.Eps), argF32(scale))
}

// ScaleSigmoid implements backend.SigmoidScaler with scale_sigmoid_f32.
func (b *Backend) ScaleSigmoid(x, g backend.Tensor) {
	s, gt := x.(*tensor), g.(*tensor)
	if !b.ready(s, gt) {
		return
	}
	if gt.cols != 1 || gt.rows < s.rows {
		panic(fmt.Sprintf("cuda: sigmoid scale of %dx%d by %dx%d", s.rows, s.cols, gt.rows, gt.cols))
	}
	if s.n() == 0 {
		return
	}
	b.launch("scale_sigmoid_f32", grid2(s.rows, ceilDiv(s.cols, 256)), block(256),
		argPtr(s.ptr()), argPtr(gt.ptr()), argInt(s.rows), argInt(s.cols))
}

var (
	_ backend.Recurrent     = (*Backend)(nil)
	_ backend.SigmoidScaler = (*Backend)(nil)
)
