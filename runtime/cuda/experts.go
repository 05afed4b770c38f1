package cuda

import (
	"errors"
	"fmt"
	"unsafe"

	kcuda "github.com/hearth-llm/hearth/kernels/cuda"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// A mixture's decode step on the device (backend.Experts): the router's
// choices stay in device tensors, and the experts' products read their
// weights through a table of addresses (kernels/cuda moe.cu and matvec.cu
// matvec_id_<type>), so the step needs no copy to the host and no wait
// before its logits, and records whole into a CUDA graph.

// expertSet is one kind of a mixture's weights on the device: the
// experts' weights as uploaded (one format and shape) and a device table
// of their addresses, indexed by expert id.
type expertSet struct {
	ws                   []*weight
	dev                  quant.Type
	rows, cols, rowBytes int
	tab                  *buffer // len(ws) uint64 addresses
}

func (s *expertSet) Len() int                { return len(s.ws) }
func (s *expertSet) Shape() (rows, cols int) { return s.rows, s.cols }

// errMixedExperts is ExpertSet's refusal of weights the kernels cannot
// index together.
var errMixedExperts = errors.New("cuda: experts stored in different formats or shapes")

// ExpertSet implements backend.Experts: the weights stay where Weight put
// them; a table of their addresses is uploaded once and lives as long as
// the backend. Weights stored in different formats (an MXFP4 expert whose
// scales did not fit Q8_0 went to F16) are refused: that mixture routes
// on the host.
func (b *Backend) ExpertSet(ws []backend.Weight) (backend.ExpertSet, error) {
	if len(ws) == 0 {
		return nil, errors.New("cuda: an expert set of no weights")
	}
	w0 := ws[0].(*weight)
	s := &expertSet{dev: w0.dev, rows: w0.rows, cols: w0.cols, rowBytes: w0.rowBytes}
	if _, ok := kcuda.Suffix(s.dev); !ok || (s.rows == 1 && s.dev != quant.F32) {
		return nil, fmt.Errorf("%w: %s is %v", errMixedExperts, w0.name, s.dev)
	}
	addrs := make([]uint64, len(ws))
	for i, x := range ws {
		w := x.(*weight)
		if w.dev != s.dev || w.rows != s.rows || w.cols != s.cols || w.rowBytes != s.rowBytes {
			return nil, fmt.Errorf("%w: %s is %v of %dx%d, %s %v of %dx%d", errMixedExperts, w.name, w.dev, w.rows, w.cols,
				w0.name, s.dev, s.rows, s.cols)
		}
		s.ws = append(s.ws, w)
		addrs[i] = uint64(w.buf.ptr)
	}
	tab, err := b.alloc(uint64(8 * len(addrs)))
	if err != nil {
		return nil, err
	}
	s.tab = tab
	b.upload(tab.ptr, unsafe.Slice((*byte)(unsafe.Pointer(&addrs[0])), 8*len(addrs)))
	return s, nil
}

// Route implements backend.Experts with moe_route_f32: a warp per token.
func (b *Backend) Route(ids, weights, logits backend.Tensor, r backend.Routing) {
	it, wt, lt := ids.(*tensor), weights.(*tensor), logits.(*tensor)
	if !b.ready(it, wt, lt) {
		return
	}
	k := r.K
	if it.cols != k || wt.cols != k || it.rows < lt.rows || wt.rows < lt.rows || k < 1 || k > lt.cols || k > backend.MaxRouteK {
		panic(fmt.Sprintf("cuda: route of %dx%d logits, k %d, into %dx%d ids and %dx%d weights", lt.rows, lt.cols, k, it.rows, it.cols, wt.rows, wt.cols))
	}
	scale := vector("route scale", r.Scale, lt.cols)
	if lt.rows == 0 {
		return
	}
	gating, renorm := 0, 0
	if r.Gating == backend.TopKSoftmax {
		gating = 1
	}
	if r.Renorm {
		renorm = 1
	}
	b.launch("moe_route_f32", grid1(lt.rows), block(32), argPtr(it.ptr()), argPtr(wt.ptr()), argPtr(lt.ptr()), argPtr(scale),
		argInt(lt.cols), argInt(k), argInt(gating), argInt(renorm))
}

// MatMulByID implements backend.Experts with matvec_id_<type>: a block
// per four weight rows and (token, choice) pair, over matvec's inner loop.
func (b *Backend) MatMulByID(dst, x backend.Tensor, ws, bias backend.ExpertSet, ids backend.Tensor) {
	d, s, it := dst.(*tensor), x.(*tensor), ids.(*tensor)
	if !b.ready(d, s, it) {
		return
	}
	set := ws.(*expertSet)
	n, k := it.rows, it.cols
	slot := s.rows == n*k
	if d.rows < n*k || d.cols != set.rows || s.cols != set.cols || (!slot && s.rows != n) || n*k > 65535 {
		panic(fmt.Sprintf("cuda: matmul by id of %dx%d by %dx%d experts into %dx%d for %dx%d ids", s.rows, s.cols, set.rows, set.cols, d.rows, d.cols, n, k))
	}
	var bt DevicePtr
	if bias != nil {
		bs := bias.(*expertSet)
		if bs.rows != 1 || bs.cols != set.rows || len(bs.ws) != len(set.ws) {
			panic(fmt.Sprintf("cuda: %d expert biases of %dx%d for rows of %d", len(bs.ws), bs.rows, bs.cols, set.rows))
		}
		bt = bs.tab.ptr
	}
	if n == 0 {
		return
	}
	suf, _ := kcuda.Suffix(set.dev)
	var aq, ad DevicePtr
	if set.dev != quant.F32 && set.dev != quant.F16 && set.dev != quant.BF16 {
		total := s.n()
		aq = b.scratch(&b.aq, uint64(total))
		ad = b.scratch(&b.ad, uint64(4*(total/32)))
		b.launch("quantize_q8", grid1(int((total+255)/256)), block(256),
			argPtr(aq), argPtr(ad), argPtr(s.ptr()), argU64(uint64(total)))
	}
	xslot := 0
	if slot {
		xslot = 1
	}
	b.launch("matvec_id_"+suf, grid2(ceilDiv(set.rows, 4), n*k), block(128),
		argPtr(d.ptr()), argPtr(set.tab.ptr), argU64(uint64(set.rowBytes)), argInt(set.rows), argInt(set.cols),
		argPtr(aq), argPtr(ad), argPtr(s.ptr()), argPtr(it.ptr()), argInt(k), argInt(xslot), argPtr(bt), argInt(len(set.ws)))
}

// AddWeightedByID implements backend.Experts with moe_sum_f32.
func (b *Backend) AddWeightedByID(dst, y, weights backend.Tensor) {
	d, s, wt := dst.(*tensor), y.(*tensor), weights.(*tensor)
	if !b.ready(d, s, wt) {
		return
	}
	n, k := wt.rows, wt.cols
	if d.rows < n || s.rows < n*k || s.cols != d.cols {
		panic(fmt.Sprintf("cuda: weighted sum of %dx%d rows by %dx%d weights into %dx%d", s.rows, s.cols, n, k, d.rows, d.cols))
	}
	if n == 0 || d.cols == 0 {
		return
	}
	b.launch("moe_sum_f32", grid2(n, ceilDiv(d.cols, 256)), block(256),
		argPtr(d.ptr()), argPtr(s.ptr()), argPtr(wt.ptr()), argInt(k), argInt(d.cols))
}

var _ backend.Experts = (*Backend)(nil)
