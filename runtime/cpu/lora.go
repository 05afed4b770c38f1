package cpu

import (
	"fmt"

	kcpu "github.com/hearth-llm/hearth/kernels/cpu"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// loraWeight is an adapter pair kept as F32 or F16: A (rank × in) as the
// file has it, a row per rank, run with the type's dot kernel on the
// activation row converted once (kcpu.QuantizeAct); and B transposed
// (rank × out), so that the second product is rank scaled row additions
// into the output row (axpy: AVX2 for F16), with no temporary and the
// scale folded into each coefficient.
type loraWeight struct {
	name          string
	out, in, rank int
	t             quant.Type
	a             []byte    // rank rows of in values of type t
	arb           int       // bytes of a row of a
	bt            []float32 // F32: rank rows of out
	bt16          []uint16  // F16: rank rows of out
	dot           kcpu.DotFunc
	act           quant.Type // the dot kernel's activation type
	actBytes      int
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
	l := &loraWeight{name: name, out: out, in: in, rank: rank, t: t, dot: kcpu.Dot(t), act: t.VecDotType()}
	var err error
	if l.arb, err = t.RowBytes(in); err != nil {
		return nil, err
	}
	if l.actBytes, err = l.act.RowBytes(in); err != nil {
		return nil, err
	}
	l.a = make([]byte, rank*l.arb)
	for j := range rank {
		if err := quant.QuantizeRow(t, a[j*in:(j+1)*in], l.a[j*l.arb:(j+1)*l.arb]); err != nil {
			return nil, fmt.Errorf("lora %q: %w", name, err)
		}
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

// loraTask is one (delta, row) pair of a step's deltas.
type loraTask struct {
	l     *loraWeight
	scale float32
	row   int32
}

// loraTasks flattens ds into (delta, row) pairs, reusing b.lt, and
// returns the most activation bytes a row needs.
func (b *Backend) loraTasks(ds []backend.LoRADelta) ([]loraTask, int) {
	b.lt = b.lt[:0]
	most := 0
	for _, d := range ds {
		l := d.W.(*loraWeight)
		most = max(most, l.actBytes)
		for _, r := range d.Rows {
			b.lt = append(b.lt, loraTask{l, d.Scale, r})
		}
	}
	return b.lt, most
}

// AddLoRA implements backend.LoRA: one loop of the pool over every
// (delta, row) pair of the step, each row's rank dot products then rank
// scaled row additions (rows are distinct, so no two threads write one).
func (b *Backend) AddLoRA(dst, x backend.Tensor, ds []backend.LoRADelta) {
	if b.err != nil || len(ds) == 0 {
		return
	}
	d, s := dst.(*tensor), x.(*tensor)
	tasks, most := b.loraTasks(ds)
	for _, t := range tasks {
		if t.l.in != s.cols || t.l.out != d.cols || int(t.row) >= min(s.rows, d.rows) || t.row < 0 {
			panic(fmt.Sprintf("cpu: lora %q (%d × %d) on row %d of %d × %d into %d × %d", t.l.name, t.l.out, t.l.in, t.row, s.rows, s.cols, d.rows, d.cols))
		}
	}
	// One chunk per thread (at most one per task), each with its own
	// activation buffer from b.lxb: no allocation per step.
	chunks := min(len(tasks), b.pool.Threads())
	if len(b.lxb) < chunks*most {
		b.lxb = make([]byte, chunks*most)
	}
	b.pool.Run(chunks, 1, func(c0, c1 int) {
		var cs [64]float32
		for ch := c0; ch < c1; ch++ {
			xb := b.lxb[ch*most : (ch+1)*most]
			for _, t := range tasks[ch*len(tasks)/chunks : (ch+1)*len(tasks)/chunks] {
				l := t.l
				c := cs[:0]
				if l.rank > len(cs) {
					c = make([]float32, 0, l.rank)
				}
				xq := xb[:l.actBytes]
				kcpu.QuantizeAct(l.act, s.row(int(t.row)), xq)
				for j := range l.rank {
					c = append(c, t.scale*l.dot(l.in, l.a[j*l.arb:(j+1)*l.arb], xq))
				}
				l.axpys(d.row(int(t.row)), c)
			}
		}
	})
}

// AddLoRAEmbed implements backend.LoRA.
func (b *Backend) AddLoRAEmbed(dst backend.Tensor, ids []int32, ds []backend.LoRADelta) {
	if b.err != nil || len(ds) == 0 {
		return
	}
	d := dst.(*tensor)
	tasks, _ := b.loraTasks(ds)
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
		for j, cj := range c {
			kcpu.AxpyF16(dst, cj, l.bt16[j*n:(j+1)*n])
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

var _ backend.LoRA = (*Backend)(nil)
