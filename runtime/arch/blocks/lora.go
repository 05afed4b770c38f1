package blocks

import (
	"errors"
	"fmt"

	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// ErrNoLoRA is wrapped when a batch asks for adapters on a backend
// without backend.LoRA.
var ErrNoLoRA = errors.New("LoRA adapters are not supported")

// loraStep is a forward pass's adapters: the adapters present in the
// batch, each with the rows of its sequences' tokens (groups) and of its
// sequences' output rows (outs). Empty: every row runs on the bare base,
// and the hooks cost a length check.
type loraStep struct {
	ops    backend.LoRA
	multi  backend.LoRAMulti // ops', when it has the multi-product form
	groups []loraGroup
	outs   []loraGroup
	ds     []backend.LoRADelta
	tokAd  []arch.Adapter // per token of the pass, its adapter (nil: none)
	exps   []loraGroup    // applyExperts' (expert, adapter) groups
	expOf  []int          // and the expert of each
	// applyMulti's per-product deltas and arguments, reused.
	dsm  [3][]backend.LoRADelta
	mdst []backend.Tensor
	mds  [][]backend.LoRADelta
}

type loraGroup struct {
	ad   arch.Adapter
	rows []int32
}

// active says some row of the pass runs with an adapter.
func (s *loraStep) active() bool { return s != nil && len(s.groups) > 0 }

// group files row under ad in gs (reusing the groups' memory) and returns
// the grown list; n is the groups in use.
func group(gs []loraGroup, n *int, ad arch.Adapter, row int32) []loraGroup {
	for i := range *n {
		if gs[i].ad == ad {
			gs[i].rows = append(gs[i].rows, row)
			return gs
		}
	}
	if *n == len(gs) {
		gs = append(gs, loraGroup{})
	}
	gs[*n].ad, gs[*n].rows = ad, append(gs[*n].rows[:0], row)
	*n++
	return gs
}

// prepare groups bt's rows by adapter; without adapters it leaves the
// step empty.
func (s *loraStep) prepare(d *Decoder, bt *arch.Batch) error {
	s.reset()
	if bt.Adapters == nil {
		return nil
	}
	if len(bt.Adapters) != len(bt.KVs) {
		return fmt.Errorf("%s: %d adapters for %d sequences", d.C.Arch, len(bt.Adapters), len(bt.KVs))
	}
	n := 0
	s.tokAd = s.tokAd[:0]
	for t, q := range bt.Seq {
		if q < 0 || int(q) >= len(bt.Adapters) {
			return fmt.Errorf("%s: token %d of sequence %d of %d", d.C.Arch, t, q, len(bt.Adapters))
		}
		ad := bt.Adapters[q]
		if ad != nil {
			s.groups = group(s.groups, &n, ad, int32(t))
		}
		s.tokAd = append(s.tokAd, ad)
	}
	s.groups = s.groups[:n]
	if n == 0 {
		return nil
	}
	ops, ok := d.Be.(backend.LoRA)
	if !ok {
		s.reset()
		return fmt.Errorf("%s: %w on the %s backend", d.C.Arch, ErrNoLoRA, d.Be.Name())
	}
	s.ops = ops
	s.multi, _ = ops.(backend.LoRAMulti)
	n = 0
	for j, t := range bt.Outputs {
		if ad := bt.Adapters[bt.Seq[t]]; ad != nil {
			s.outs = group(s.outs, &n, ad, int32(j))
		}
	}
	s.outs = s.outs[:n]
	return nil
}

// reset empties the step, keeping its memory.
func (s *loraStep) reset() {
	s.groups, s.outs = s.groups[:0], s.outs[:0]
	clear(s.ds[:cap(s.ds)])
	s.ds = s.ds[:0]
	for i := range s.dsm {
		clear(s.dsm[i][:cap(s.dsm[i])])
	}
	clear(s.mds[:cap(s.mds)])
	clear(s.tokAd[:cap(s.tokAd)])
	s.tokAd = s.tokAd[:0]
	all := s.exps[:cap(s.exps)]
	for i := range all {
		all[i].ad = nil
	}
	s.exps = s.exps[:0]
}

// deltas collects the deltas of w among gs into s.ds.
func (s *loraStep) deltas(gs []loraGroup, w backend.Weight) []backend.LoRADelta {
	s.ds = s.ds[:0]
	for _, g := range gs {
		if l, sc, ok := g.ad.Delta(w); ok {
			s.ds = append(s.ds, backend.LoRADelta{W: l, Scale: sc, Rows: g.rows})
		}
	}
	return s.ds
}

// apply adds the adapters' deltas of the product dst = x·wᵀ to their
// rows (llama.cpp's build_lora_mm); a nil step or weight: nothing.
func (s *loraStep) apply(dst, x backend.Tensor, w backend.Weight) {
	if !s.active() || w == nil {
		return
	}
	if ds := s.deltas(s.groups, w); len(ds) > 0 {
		s.ops.AddLoRA(dst, x, ds)
	}
}

// applyMulti is apply for products of the same activations (dsts[i] =
// x·ws[i]ᵀ; nil weights skipped): one call where the backend has
// backend.LoRAMulti.
func (s *loraStep) applyMulti(dsts []backend.Tensor, x backend.Tensor, ws []backend.Weight) {
	if !s.active() {
		return
	}
	if s.multi == nil || len(ws) > len(s.dsm) {
		for i, w := range ws {
			s.apply(dsts[i], x, w)
		}
		return
	}
	s.mdst, s.mds = s.mdst[:0], s.mds[:0]
	for i, w := range ws {
		if w == nil {
			continue
		}
		ds := s.dsm[i][:0]
		for _, g := range s.groups {
			if l, sc, ok := g.ad.Delta(w); ok {
				ds = append(ds, backend.LoRADelta{W: l, Scale: sc, Rows: g.rows})
			}
		}
		s.dsm[i] = ds
		if len(ds) > 0 {
			s.mdst, s.mds = append(s.mdst, dsts[i]), append(s.mds, ds)
		}
	}
	if len(s.mds) > 0 {
		s.multi.AddLoRAMulti(s.mdst, x, s.mds)
	}
	clear(s.mdst)
}

// applyOut is apply for the output rows (the batch's Outputs).
func (s *loraStep) applyOut(dst, x backend.Tensor, w backend.Weight) {
	if !s.active() {
		return
	}
	if ds := s.deltas(s.outs, w); len(ds) > 0 {
		s.ops.AddLoRA(dst, x, ds)
	}
}

// applyEmbed adds the token embedding's deltas (llama.cpp's
// build_inp_embd) to the rows of x gathered from w by ids.
func (s *loraStep) applyEmbed(x backend.Tensor, w backend.Weight, ids []int32) {
	if !s.active() {
		return
	}
	if ds := s.deltas(s.groups, w); len(ds) > 0 {
		s.ops.AddLoRAEmbed(x, ids, ds)
	}
}

// experts says whether an adapter of the pass adapts m's experts (their
// stacks are adapted whole: expert 0's weights tell).
func (s *loraStep) experts(m *MoE) bool {
	if !s.active() || len(m.Experts) == 0 {
		return false
	}
	x := &m.Experts[0]
	for _, g := range s.groups {
		for _, w := range []backend.Weight{x.Gate, x.Up, x.Down} {
			if w == nil {
				continue
			}
			if _, _, ok := g.ad.Delta(w); ok {
				return true
			}
		}
	}
	return false
}

// applyExperts adds the adapters' deltas of a mixture's grouped expert
// products (moe): dst = x·W_eᵀ over the rows r.start[e] … +r.count[e] of
// each expert e (W_e = part(expert e)), row i coming from token r.tok[i].
// Each (expert, adapter) present is one delta of the call (llama.cpp's
// build_lora_mm_id: the adapter's pair of the expert chosen).
func (s *loraStep) applyExperts(dst, x backend.Tensor, m *MoE, r *router, part func(*Expert) backend.Weight) {
	if !s.active() {
		return
	}
	s.exps, s.expOf = s.exps[:0], s.expOf[:0]
	for e := range m.Experts {
		first := len(s.exps)
		for i := r.start[e]; i < r.start[e]+r.count[e]; i++ {
			ad := s.tokAd[r.tok[i]]
			if ad == nil {
				continue
			}
			k := first
			for k < len(s.exps) && s.exps[k].ad != ad {
				k++
			}
			if k == len(s.exps) { // a new (expert, adapter) group, reusing memory
				if k < cap(s.exps) {
					s.exps = s.exps[:k+1]
				} else {
					s.exps = append(s.exps, loraGroup{})
				}
				s.exps[k].ad, s.exps[k].rows = ad, s.exps[k].rows[:0]
				s.expOf = append(s.expOf, e)
			}
			s.exps[k].rows = append(s.exps[k].rows, int32(i))
		}
	}
	s.ds = s.ds[:0]
	for k, g := range s.exps {
		if l, sc, ok := g.ad.Delta(part(&m.Experts[s.expOf[k]])); ok {
			s.ds = append(s.ds, backend.LoRADelta{W: l, Scale: sc, Rows: g.rows})
		}
	}
	if len(s.ds) > 0 {
		s.ops.AddLoRA(dst, x, s.ds)
	}
}

// LoRATargets implements arch.Adaptable: the weights llama.cpp applies
// adapters to that Hearth runs through a hook, namely the token
// embedding, every attention's q, k, v and output projections, every
// dense feed-forward's (and shared expert's) gate, up and down, every
// routed expert's gate, up and down (bound per expert, named as rows of
// their stack), and an untied output. Not (yet) the routers, recurrent
// blocks, attention output gates or per-layer embeddings: an adapter for
// those fails to load.
func (d *Decoder) LoRATargets() []backend.Weight {
	var ws []backend.Weight
	add := func(w ...backend.Weight) {
		for _, x := range w {
			if x != nil {
				ws = append(ws, x)
			}
		}
	}
	add(d.Embd)
	if d.Output != d.Embd {
		add(d.Output)
	}
	for i := range d.Layers {
		l := &d.Layers[i]
		if l.Delta == nil {
			add(l.Attn.Q, l.Attn.K, l.Attn.V, l.Attn.O)
		}
		if f := l.Dense; f != nil {
			add(f.Gate, f.Up, f.Down)
		}
		if l.MoE != nil {
			for e := range l.MoE.Experts {
				x := &l.MoE.Experts[e]
				add(x.Gate, x.Up, x.Down)
			}
			if f := l.MoE.Shared; f != nil {
				add(f.Gate, f.Up, f.Down)
			}
		}
	}
	return ws
}

// Embedding implements arch.Adaptable.
func (d *Decoder) Embedding() backend.Weight { return d.Embd }

var _ arch.Adaptable = (*Decoder)(nil)
