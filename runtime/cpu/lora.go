package cpu

import (
	"fmt"
	"slices"

	kcpu "github.com/hearth-llm/hearth/kernels/cpu"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// loraWeight is an adapter pair kept as F32 or F16: A (rank × in) as the
// file has it, a row per rank, as a kcpu.Matrix (its rows are run with
// the type's tile kernels against a run of activation rows, quantized
// once: kcpu.MatMulGrouped); and B transposed (rank × out), so that the
// second product is rank scaled row additions into the output row (axpy:
// AVX2 for F16), with no temporary and the scale folded into each
// coefficient.
type loraWeight struct {
	name          string
	out, in, rank int
	t             quant.Type
	a             []byte // rank rows of in values of type t
	am            *kcpu.Matrix
	arb           int       // bytes of a row of a
	bt            []float32 // F32: rank rows of out
	bt16          []uint16  // F16: rank rows of out
}

func (l *loraWeight) Shape() (out, in, rank int) { return l.out, l.in, l.rank }

// BindLoRA implements backend.LoRA.
func (b *Backend) BindLoRA(name string, a, bm []float32, out, in, rank int, t quant.Type) (backend.LoRAWeight, error) {
	if out <= 0 || in <= 0 || rank <= 0 || len(a) != rank*in || len(bm) != out*rank {
		return nil, fmt.Errorf("lora %q: %d and %d values for a pair of rank %d on %d × %d", name, len(a), len(bm), rank, out, in)
	}
	if t != quant.F32 && t != quant.F16 {
		return nil, fmt.Errorf("lora %q: %w: pairs kept as %v", name, quant.ErrUnsupported, t)
	}
	l := &loraWeight{name: name, out: out, in: in, rank: rank, t: t}
	var err error
	if l.arb, err = t.RowBytes(in); err != nil {
		return nil, err
	}
	l.a = make([]byte, rank*l.arb)
	for j := range rank {
		if err := quant.QuantizeRow(t, a[j*in:(j+1)*in], l.a[j*l.arb:(j+1)*l.arb]); err != nil {
			return nil, fmt.Errorf("lora %q: %w", name, err)
		}
	}
	if l.am, err = kcpu.NewMatrix(t, rank, in, l.a); err != nil {
		return nil, fmt.Errorf("lora %q: %w", name, err)
	}
	if t == quant.F16 {
		l.bt16 = make([]uint16, rank*out)
	} else {
		l.bt = make([]float32, rank*out)
	}
	for o := range out {
		for j := range rank {
			if v := bm[o*rank+j]; t == quant.F16 {
				l.bt16[j*out+o] = quant.F32ToF16(v)
			} else {
				l.bt[j*out+o] = v
			}
		}
	}
	return l, nil
}

// loraUnit is a run of consecutive rows of x that have the same deltas in
// every product of a call (a sequence's tokens, or one decode row): its
// rows go through each pair's A together (kcpu.MatMulGrouped: the
// activations quantized once for all the products, each A row read once
// for the run), then each row gets its axpys.
type loraUnit struct{ r0, n int }

// loraMaxRun is the most rows of a unit: the widest tile kernel.
const loraMaxRun = 16

// loraSub is one thread's working memory for AddLoRAMulti: a pool of one
// (the products run inline), MatMulGrouped's scratch and arguments, and
// the shrink's results.
type loraSub struct {
	pool  *kcpu.Pool
	s     kcpu.Scratch
	t     []float32
	ms    []*kcpu.Matrix
	ts    [][]float32
	xs    [][]float32
	ns    []int
	which []int32 // the products of the unit, in order
}

// AddLoRA implements backend.LoRA: AddLoRAMulti of one product.
func (b *Backend) AddLoRA(dst, x backend.Tensor, ds []backend.LoRADelta) {
	b.ld1[0], b.lds1[0] = dst, ds
	b.AddLoRAMulti(b.ld1[:], x, b.lds1[:])
	b.ld1[0], b.lds1[0] = nil, nil
}

// AddLoRAMulti implements backend.LoRAMulti: one loop of the pool over
// the units of the call (runs of rows with the same deltas), each run
// through every product's A at once, then each row's axpys into every
// product's output (rows are distinct within a product, and a unit owns
// its rows: no two threads write one row).
func (b *Backend) AddLoRAMulti(dsts []backend.Tensor, x backend.Tensor, dss [][]backend.LoRADelta) {
	if b.err != nil {
		return
	}
	s := x.(*tensor)
	np := len(dsts)
	if len(dss) != np {
		panic(fmt.Sprintf("cpu: lora of %d products with %d delta lists", np, len(dss)))
	}
	// sig[r*np+p]: the delta of row r in product p (-1: none).
	n := s.rows
	b.lsig = slices.Grow(b.lsig[:0], n*np)[:n*np]
	for i := range b.lsig {
		b.lsig[i] = -1
	}
	some := false
	for p, ds := range dss {
		d := dsts[p].(*tensor)
		for k, dl := range ds {
			l := dl.W.(*loraWeight)
			for _, r := range dl.Rows {
				if l.in != s.cols || l.out != d.cols || int(r) >= min(s.rows, d.rows) || r < 0 || b.lsig[int(r)*np+p] >= 0 {
					panic(fmt.Sprintf("cpu: lora %q (%d × %d) on row %d of %d × %d into %d × %d", l.name, l.out, l.in, r, s.rows, s.cols, d.rows, d.cols))
				}
				b.lsig[int(r)*np+p] = int32(k)
				some = true
			}
		}
	}
	if !some {
		return
	}
	units := b.lunits[:0]
	sig := b.lsig
	for r := 0; r < n; {
		row := sig[r*np : (r+1)*np]
		if !slices.ContainsFunc(row, func(k int32) bool { return k >= 0 }) {
			r++
			continue
		}
		u := loraUnit{r0: r, n: 1}
		for r+u.n < n && u.n < loraMaxRun && slices.Equal(sig[(r+u.n)*np:(r+u.n+1)*np], row) {
			u.n++
		}
		units = append(units, u)
		r += u.n
	}
	b.lunits = units
	// One chunk per thread (at most one per unit), each with its own
	// working memory: no allocation per step once grown.
	chunks := min(len(units), b.pool.Threads())
	for len(b.lsub) < chunks {
		b.lsub = append(b.lsub, &loraSub{pool: kcpu.NewPool(1)})
	}
	b.pool.Run(chunks, 1, func(c0, c1 int) {
		var cs [64]float32
		for ch := c0; ch < c1; ch++ {
			sub := b.lsub[ch]
			for _, u := range units[ch*len(units)/chunks : (ch+1)*len(units)/chunks] {
				b.loraUnit(sub, u, dsts, s, dss, &cs)
			}
		}
	})
}

// loraUnit runs one unit on the calling thread.
func (b *Backend) loraUnit(sub *loraSub, u loraUnit, dsts []backend.Tensor, x *tensor, dss [][]backend.LoRADelta, cs *[64]float32) {
	np := len(dsts)
	row := b.lsig[u.r0*np : (u.r0+1)*np]
	sub.ms, sub.ts, sub.xs, sub.ns, sub.which = sub.ms[:0], sub.ts[:0], sub.xs[:0], sub.ns[:0], sub.which[:0]
	need := 0
	for p, k := range row {
		if k >= 0 {
			need += u.n * dss[p][k].W.(*loraWeight).rank
		}
	}
	if cap(sub.t) < need {
		sub.t = make([]float32, need)
	}
	t := sub.t[:need]
	xs := x.d[u.r0*x.cols : (u.r0+u.n)*x.cols]
	off := 0
	for p, k := range row {
		if k < 0 {
			continue
		}
		l := dss[p][k].W.(*loraWeight)
		sub.ms = append(sub.ms, l.am)
		sub.ts = append(sub.ts, t[off:off+u.n*l.rank])
		sub.xs = append(sub.xs, xs)
		sub.ns = append(sub.ns, u.n)
		sub.which = append(sub.which, int32(p))
		off += u.n * l.rank
	}
	kcpu.MatMulGrouped(sub.pool, &sub.s, sub.ts, sub.ms, sub.xs, sub.ns)
	for i, p := range sub.which {
		dl := dss[p][row[p]]
		l, tp := dl.W.(*loraWeight), sub.ts[i]
		d := dsts[p].(*tensor)
		c := cs[:0]
		if l.rank > len(cs) {
			c = make([]float32, 0, l.rank)
		}
		for r := range u.n {
			c = c[:0]
			for _, v := range tp[r*l.rank : (r+1)*l.rank] {
				c = append(c, dl.Scale*v)
			}
			l.axpys(d.row(u.r0+r), c)
		}
	}
}

// loraTasks flattens ds into (delta, row) pairs, reusing b.lt.
func (b *Backend) loraTasks(ds []backend.LoRADelta) []loraTask {
	b.lt = b.lt[:0]
	for _, d := range ds {
		l := d.W.(*loraWeight)
		for _, r := range d.Rows {
			b.lt = append(b.lt, loraTask{l, d.Scale, r})
		}
	}
	return b.lt
}

// loraTask is one (delta, row) pair of AddLoRAEmbed's deltas.
type loraTask struct {
	l     *loraWeight
	scale float32
	row   int32
}

// AddLoRAEmbed implements backend.LoRA.
func (b *Backend) AddLoRAEmbed(dst backend.Tensor, ids []int32, ds []backend.LoRADelta) {
	if b.err != nil || len(ds) == 0 {
		return
	}
	d := dst.(*tensor)
	tasks := b.loraTasks(ds)
	for _, t := range tasks {
		if t.l.out != d.cols || int(t.row) >= min(d.rows, len(ids)) || t.row < 0 {
			panic(fmt.Sprintf("cpu: lora %q (%d × %d) on embedding row %d of %d × %d", t.l.name, t.l.out, t.l.in, t.row, d.rows, d.cols))
		}
		if id := ids[t.row]; id < 0 || int(id) >= t.l.in {
			b.fail(fmt.Errorf("lora %q: token id %d out of range [0, %d)", t.l.name, id, t.l.in))
			return
		}
	}
	b.pool.Run(len(tasks), 1, func(i0, i1 int) {
		var cs [64]float32
		for _, t := range tasks[i0:i1] {
			l := t.l
			c := cs[:0]
			if l.rank > len(cs) {
				c = make([]float32, 0, l.rank)
			}
			id := int(ids[t.row])
			for j := range l.rank {
				c = append(c, t.scale*l.aAt(j, id))
			}
			l.axpys(d.row(int(t.row)), c)
		}
	})
}

// aAt is A[j][i] as float32.
func (l *loraWeight) aAt(j, i int) float32 {
	row := l.a[j*l.arb:]
	if l.t == quant.F16 {
		return quant.F16ToF32(uint16(row[2*i]) | uint16(row[2*i+1])<<8)
	}
	var v [1]float32
	if err := quant.DequantizeRow(quant.F32, row[4*i:4*i+4], v[:]); err != nil {
		panic(err)
	}
	return v[0]
}

// axpys adds Σ_j c[j]·Bᵀ[j] into dst.
func (l *loraWeight) axpys(dst []float32, c []float32) {
	if l.t == quant.F16 {
		n := len(dst)
		j := 0
		for ; j+4 <= len(c); j += 4 {
			kcpu.AxpyF16x4(dst, (*[4]float32)(c[j:j+4]), l.bt16[j*n:(j+4)*n], n)
		}
		for ; j < len(c); j++ {
			kcpu.AxpyF16(dst, c[j], l.bt16[j*n:(j+1)*n])
		}
		return
	}
	loraAxpys(dst, l.bt, c)
}

// loraAxpys adds Σ_j c[j]·bt[j] into dst (len(dst) values per row of
// bt): four rows of bt per pass over dst, so dst is loaded and stored a
// quarter as often.
func loraAxpys(dst, bt []float32, c []float32) {
	n := len(dst)
	j := 0
	for ; j+4 <= len(c); j += 4 {
		c0, c1, c2, c3 := c[j], c[j+1], c[j+2], c[j+3]
		r0, r1, r2, r3 := bt[j*n:(j+1)*n], bt[(j+1)*n:(j+2)*n], bt[(j+2)*n:(j+3)*n], bt[(j+3)*n:(j+4)*n]
		for i := range dst {
			dst[i] += c0*r0[i] + c1*r1[i] + c2*r2[i] + c3*r3[i]
		}
	}
	for ; j < len(c); j++ {
		cj, r := c[j], bt[j*n:(j+1)*n]
		for i := range dst {
			dst[i] += cj * r[i]
		}
	}
}

var (
	_ backend.LoRA      = (*Backend)(nil)
	_ backend.LoRAMulti = (*Backend)(nil)
)
