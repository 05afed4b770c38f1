package cpu

import (
	"errors"
	"fmt"
	"math"
	"slices"

	kcpu "github.com/hearth-llm/hearth/kernels/cpu"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// expertSet is a mixture's weights of one kind, by expert id.
type expertSet struct {
	ws         []*weight
	rows, cols int
}

func (s *expertSet) Len() int                { return len(s.ws) }
func (s *expertSet) Shape() (rows, cols int) { return s.rows, s.cols }

// ExpertSet implements backend.Experts: the weights as they are.
func (b *Backend) ExpertSet(ws []backend.Weight) (backend.ExpertSet, error) {
	if len(ws) == 0 {
		return nil, errors.New("cpu: an expert set of no weights")
	}
	s := &expertSet{}
	s.rows, s.cols = ws[0].Shape()
	for _, w := range ws {
		if r, c := w.Shape(); r != s.rows || c != s.cols {
			return nil, fmt.Errorf("cpu: expert weight %s is %dx%d in a set of %dx%d", w.Name(), r, c, s.rows, s.cols)
		}
		s.ws = append(s.ws, w.(*weight))
	}
	return s, nil
}

// id reads the expert id stored (as int32 bits) at v.
func id(v float32) int { return int(int32(math.Float32bits(v))) }

// Route implements backend.Experts with backend.RouteRow, each row's
// choices then sorted by id.
func (b *Backend) Route(ids, weights, logits backend.Tensor, r backend.Routing) {
	if b.err != nil {
		return
	}
	it, wt, lt := ids.(*tensor), weights.(*tensor), logits.(*tensor)
	k := r.K
	if it.cols != k || wt.cols != k || it.rows < lt.rows || wt.rows < lt.rows || k < 1 || k > lt.cols {
		panic(fmt.Sprintf("cpu: route of %dx%d logits, k %d, into %dx%d ids and %dx%d weights", lt.rows, lt.cols, k, it.rows, it.cols, wt.rows, wt.cols))
	}
	scale := vectorOf(r.Scale)
	if scale != nil && len(scale) != lt.cols {
		panic(fmt.Sprintf("cpu: route scale of %d for %d experts", len(scale), lt.cols))
	}
	var s backend.RouteScratch
	sel := make([]int32, k)
	type pick struct {
		e int32
		w float32
	}
	ps := make([]pick, k)
	for t := range lt.rows {
		w := wt.row(t)
		backend.RouteRow(&s, sel, w, lt.row(t), k, r.Gating, r.Renorm)
		for j := range k {
			ps[j] = pick{sel[j], w[j]}
		}
		slices.SortFunc(ps, func(a, b pick) int { return int(a.e - b.e) })
		out := it.row(t)
		for j, p := range ps {
			if scale != nil {
				p.w *= scale[p.e]
			}
			out[j], w[j] = math.Float32frombits(uint32(p.e)), p.w
		}
	}
}

// MatMulByID implements backend.Experts: one kcpu.MatMulGrouped of a
// row per (token, choice), whose bits are MatMul's whatever the batch.
func (b *Backend) MatMulByID(dst, x backend.Tensor, ws, bias backend.ExpertSet, ids backend.Tensor) {
	if b.err != nil {
		return
	}
	d, s, it, set := dst.(*tensor), x.(*tensor), ids.(*tensor), ws.(*expertSet)
	n, k := it.rows, it.cols
	perSlot := s.rows == n*k
	if d.rows < n*k || d.cols != set.rows || s.cols != set.cols || (!perSlot && s.rows < n) {
		panic(fmt.Sprintf("cpu: matmul by id of %dx%d by %dx%d experts into %dx%d for %dx%d ids", s.rows, s.cols, set.rows, set.cols, d.rows, d.cols, n, k))
	}
	var bs *expertSet
	if bias != nil {
		bs = bias.(*expertSet)
		if bs.cols != set.rows || len(bs.ws) != len(set.ws) {
			panic(fmt.Sprintf("cpu: expert biases of %d for rows of %d", bs.cols, set.rows))
		}
	}
	b.gd, b.gx, b.gm, b.gn = b.gd[:0], b.gx[:0], b.gm[:0], b.gn[:0]
	for p := range n * k {
		e := id(it.d[p])
		if e < 0 || e >= len(set.ws) {
			panic(fmt.Sprintf("cpu: expert id %d of %d", e, len(set.ws)))
		}
		xr := p / k
		if perSlot {
			xr = p
		}
		b.gd, b.gx, b.gn = append(b.gd, d.row(p)), append(b.gx, s.row(xr)), append(b.gn, 1)
		b.gm = append(b.gm, set.ws[e].m)
	}
	kcpu.MatMulGrouped(b.pool, &b.scratch, b.gd, b.gm, b.gx, b.gn)
	if bs != nil {
		for p := range n * k {
			kcpu.Add(d.row(p), bs.ws[id(it.d[p])].vector())
		}
	}
}

// AddWeightedByID implements backend.Experts with AddScaledRows'
// arithmetic.
func (b *Backend) AddWeightedByID(dst, y, weights backend.Tensor) {
	if b.err != nil {
		return
	}
	d, s, wt := dst.(*tensor), y.(*tensor), weights.(*tensor)
	n, k := wt.rows, wt.cols
	if d.rows < n || s.rows < n*k || s.cols != d.cols {
		panic(fmt.Sprintf("cpu: weighted sum of %dx%d rows by %dx%d weights into %dx%d", s.rows, s.cols, n, k, d.rows, d.cols))
	}
	for t := range n {
		dr := d.row(t)
		for j := range k {
			w, sr := wt.d[t*k+j], s.row(t*k+j)
			for c, v := range sr {
				dr[c] += w * v
			}
		}
	}
}

var _ backend.Experts = (*Backend)(nil)
