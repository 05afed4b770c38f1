package cpu

import (
	"fmt"

	kcpu "github.com/hearth-llm/hearth/kernels/cpu"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// loraWeight is an adapter pair kept as float32: a (rank × in) as the
// file has it, and b transposed (rank × out), so that the second product
// is rank row additions into the output row (axpy), with no temporary
// and the scale folded into each coefficient.
type loraWeight struct {
	name          string
	out, in, rank int
	a, bt         []float32
}

func (l *loraWeight) Shape() (out, in, rank int) { return l.out, l.in, l.rank }

// BindLoRA implements backend.LoRA.
func (b *Backend) BindLoRA(name string, a, bm []float32, out, in, rank int) (backend.LoRAWeight, error) {
	if out <= 0 || in <= 0 || rank <= 0 || len(a) != rank*in || len(bm) != out*rank {
		return nil, fmt.Errorf("lora %q: %d and %d values for a pair of rank %d on %d × %d", name, len(a), len(bm), rank, out, in)
	}
	l := &loraWeight{name: name, out: out, in: in, rank: rank, a: append([]float32(nil), a...), bt: make([]float32, rank*out)}
	for o := range out {
		for j := range rank {
			l.bt[j*out+o] = bm[o*rank+j]
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

// tasks flattens ds into (delta, row) pairs, reusing b.lt.
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

// AddLoRA implements backend.LoRA: one loop of the pool over every
// (delta, row) pair of the step, each row's rank dot products then rank
// scaled row additions (rows are distinct, so no two threads write one).
func (b *Backend) AddLoRA(dst, x backend.Tensor, ds []backend.LoRADelta) {
	if b.err != nil || len(ds) == 0 {
		return
	}
	d, s := dst.(*tensor), x.(*tensor)
	tasks := b.loraTasks(ds)
	for _, t := range tasks {
		if t.l.in != s.cols || t.l.out != d.cols || int(t.row) >= min(s.rows, d.rows) || t.row < 0 {
			panic(fmt.Sprintf("cpu: lora %q (%d × %d) on row %d of %d × %d into %d × %d", t.l.name, t.l.out, t.l.in, t.row, s.rows, s.cols, d.rows, d.cols))
		}
	}
	b.pool.Run(len(tasks), 1, func(i0, i1 int) {
		var buf [64]float32
		for _, t := range tasks[i0:i1] {
			l := t.l
			c := buf[:0]
			if l.rank > len(buf) {
				c = make([]float32, 0, l.rank)
			}
			xr := s.row(int(t.row))
			for j := range l.rank {
				c = append(c, t.scale*kcpu.DotF32(l.a[j*l.in:(j+1)*l.in], xr))
			}
			loraAxpys(d.row(int(t.row)), l.bt, c)
		}
	})
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
		var buf [64]float32
		for _, t := range tasks[i0:i1] {
			l := t.l
			c := buf[:0]
			if l.rank > len(buf) {
				c = make([]float32, 0, l.rank)
			}
			id := int(ids[t.row])
			for j := range l.rank {
				c = append(c, t.scale*l.a[j*l.in+id])
			}
			loraAxpys(d.row(int(t.row)), l.bt, c)
		}
	})
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
