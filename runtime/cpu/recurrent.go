package cpu

import (
	"fmt"
	"math"

	kcpu "github.com/hearth-llm/hearth/kernels/cpu"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// statePool is backend.StatePool on the host: for each part, slots arrays
// of its size back to back, and for each slot and part the positions held.
type statePool struct {
	slots int
	sizes []int
	data  [][]float32 // per part, slots × size
	held  [][]int32   // per part, per slot: positions absorbed
}

func (p *statePool) Slots() int { return p.slots }
func (p *statePool) Parts() int { return len(p.sizes) }

func (p *statePool) slot(part, s int) []float32 {
	n := p.sizes[part]
	return p.data[part][s*n : (s+1)*n]
}

// NewStatePool implements backend.Recurrent.
func (b *Backend) NewStatePool(slots int, sizes []int) (backend.StatePool, error) {
	if slots <= 0 || len(sizes) == 0 {
		return nil, fmt.Errorf("cpu: state pool of %d slots, %d parts", slots, len(sizes))
	}
	p := &statePool{slots: slots, sizes: append([]int(nil), sizes...), data: make([][]float32, len(sizes)), held: make([][]int32, len(sizes))}
	for i, n := range sizes {
		if n <= 0 || n > math.MaxInt32/slots {
			return nil, fmt.Errorf("cpu: state part of %d values × %d slots", n, slots)
		}
		p.data[i] = make([]float32, slots*n)
		p.held[i] = make([]int32, slots)
	}
	return p, nil
}

// CopyState implements backend.Recurrent.
func (b *Backend) CopyState(to backend.StatePool, dst int, from backend.StatePool, src int) {
	if b.err != nil {
		return
	}
	t, f := to.(*statePool), from.(*statePool)
	if len(t.sizes) != len(f.sizes) || dst < 0 || dst >= t.slots || src < 0 || src >= f.slots {
		panic(fmt.Sprintf("cpu: state copy from slot %d of %d to slot %d of %d", src, f.slots, dst, t.slots))
	}
	for part := range t.sizes {
		copy(t.slot(part, dst), f.slot(part, src))
		t.held[part][dst] = f.held[part][src]
	}
}

// ResetState implements backend.Recurrent.
func (b *Backend) ResetState(pool backend.StatePool, slot int) {
	p := pool.(*statePool)
	for part := range p.sizes {
		clear(p.slot(part, slot))
		p.held[part][slot] = 0
	}
}

// seqStates resolves every token's state (part part of its sequence's
// slot) and checks the positions, before anything changes: a token at 0
// restarts its sequence, any other must continue it. It returns, per
// sequence, its tokens in order and its state, or false after recording
// an error.
func (b *Backend) seqStates(kvs []backend.KV, seq, pos []int32, part, size int) (toks [][]int, pools []*statePool, slots []int, ok bool) {
	toks = make([][]int, len(kvs))
	pools = make([]*statePool, len(kvs))
	slots = make([]int, len(kvs))
	for t, s := range seq {
		if s < 0 || int(s) >= len(kvs) {
			b.fail(fmt.Errorf("token %d: sequence %d out of range", t, s))
			return nil, nil, nil, false
		}
		toks[s] = append(toks[s], t)
	}
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
		p, isCPU := sp.(*statePool)
		if !isCPU || slot < 0 || slot >= p.slots || part < 0 || part >= len(p.sizes) || p.sizes[part] != size {
			b.fail(fmt.Errorf("cpu: sequence %d has no recurrent state part %d of %d values (%T, slot %d)", s, part, size, sp, slot))
			return nil, nil, nil, false
		}
		held := p.held[part][slot]
		for _, t := range toks[s] {
			switch {
			case pos[t] == 0:
				held = 1
			case pos[t] == held:
				held++
			default:
				b.fail(fmt.Errorf("sequence %d at position %d, its state at %d: %w", s, pos[t], held, backend.ErrStateLost))
				return nil, nil, nil, false
			}
		}
		pools[s], slots[s] = p, slot
	}
	return toks, pools, slots, true
}

// CausalConv implements backend.Recurrent.
func (b *Backend) CausalConv(dst, x backend.Tensor, w backend.Weight, kvs []backend.KV, seq, pos []int32, part int) {
	if b.err != nil {
		return
	}
	d, s := dst.(*tensor), x.(*tensor)
	c, k := w.Shape()
	if s.cols != c || d.cols != c || d.rows != s.rows || len(seq) != s.rows || len(pos) != s.rows || k < 2 {
		panic(fmt.Sprintf("cpu: conv of %d×%d into %d×%d with %d×%d taps", s.rows, s.cols, d.rows, d.cols, c, k))
	}
	taps := vectorAll(w)
	toks, pools, slots, ok := b.seqStates(kvs, seq, pos, part, (k-1)*c)
	if !ok {
		return
	}
	b.pool.Run(len(kvs), 1, func(s0, s1 int) {
		for sq := s0; sq < s1; sq++ {
			if len(toks[sq]) == 0 {
				continue
			}
			p, slot := pools[sq], slots[sq]
			st := p.slot(part, slot)
			for _, t := range toks[sq] {
				if pos[t] == 0 {
					clear(st)
				}
				kcpu.ConvStep(d.row(t), s.row(t), taps, st, c, k)
				p.held[part][slot] = pos[t] + 1
			}
		}
	})
}

// vectorAll is a weight's values as float32, row after row (dequantized
// once, as vector does for one row).
func vectorAll(w backend.Weight) []float32 {
	cw := w.(*weight)
	cw.vecOnce.Do(func() {
		cw.vec = make([]float32, cw.m.Rows*cw.m.Cols)
		for r := range cw.m.Rows {
			cw.m.DequantizeRow(r, cw.vec[r*cw.m.Cols:(r+1)*cw.m.Cols])
		}
	})
	return cw.vec
}

// GatedDeltaNet implements backend.Recurrent: each (sequence, value head)
// is one task, its tokens in order.
func (b *Backend) GatedDeltaNet(dst, qkv, alpha, beta backend.Tensor, a, dtBias backend.Weight, kvs []backend.KV, seq, pos []int32, part int, p backend.DeltaNetParams) {
	if b.err != nil {
		return
	}
	d, x, al, be := dst.(*tensor), qkv.(*tensor), alpha.(*tensor), beta.(*tensor)
	kh, vh, hd := p.KHeads, p.VHeads, p.HeadDim
	n := x.rows
	if kh <= 0 || vh%kh != 0 || x.cols != (2*kh+vh)*hd || d.cols != vh*hd || al.cols != vh || be.cols != vh ||
		d.rows != n || al.rows != n || be.rows != n || len(seq) != n || len(pos) != n {
		panic(fmt.Sprintf("cpu: gated delta net %+v over %d×%d", p, n, x.cols))
	}
	av, dt := vectorOf(a), vectorOf(dtBias)
	if len(av) != vh || len(dt) != vh {
		panic(fmt.Sprintf("cpu: gated delta net with %d decay rates and %d biases for %d heads", len(av), len(dt), vh))
	}
	toks, pools, slots, ok := b.seqStates(kvs, seq, pos, part, vh*hd*hd)
	if !ok {
		return
	}
	scale := 1 / float32(math.Sqrt(float64(hd))) // ggml: 1.0f/sqrtf(S_v)
	b.pool.Run(len(kvs)*vh, 1, func(i0, i1 int) {
		scratch := make([]float32, 3*hd)
		qn, kn, delta := scratch[:hd], scratch[hd:2*hd], scratch[2*hd:]
		for i := i0; i < i1; i++ {
			sq, h := i/vh, i%vh
			if len(toks[sq]) == 0 {
				continue
			}
			st := pools[sq].slot(part, slots[sq])[h*hd*hd : (h+1)*hd*hd]
			kq := h % kh
			for _, t := range toks[sq] {
				if pos[t] == 0 {
					clear(st)
				}
				row := x.row(t)
				kcpu.L2Normalize(qn, row[kq*hd:(kq+1)*hd], p.Eps)
				kcpu.L2Normalize(kn, row[(kh+kq)*hd:(kh+kq+1)*hd], p.Eps)
				v := row[(2*kh+h)*hd : (2*kh+h+1)*hd]
				bt := kcpu.Sigmoid(be.row(t)[h])
				g := kcpu.Softplus(al.row(t)[h]+dt[h]) * av[h]
				kcpu.DeltaStep(d.row(t)[h*hd:(h+1)*hd], st, qn, kn, v, delta, g, bt, scale, hd)
			}
		}
	})
	for sq, tt := range toks { // positions held, after every head ran
		if len(tt) > 0 {
			pools[sq].held[part][slots[sq]] = pos[tt[len(tt)-1]] + 1
		}
	}
}

var _ backend.Recurrent = (*Backend)(nil)
