package blocks

import (
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// Traffic implements arch.TrafficReporter: the bytes of the weights a
// forward pass reads, counted from the bound weights (their types and
// shapes), with the experts apart. It walks every weight: call it once,
// not per step.
func (d *Decoder) Traffic() arch.Traffic {
	var t arch.Traffic
	var params, expertParams uint64
	add := func(to *uint64, ws ...backend.Weight) {
		for _, w := range ws {
			if w == nil {
				continue
			}
			rows, cols := w.Shape()
			rb, err := w.Type().RowBytes(cols)
			if err != nil {
				continue
			}
			*to += uint64(rows) * uint64(rb)
			params += uint64(rows) * uint64(cols)
		}
	}
	tied := d.Output == d.Embd
	if tied {
		add(&t.Dense, d.Embd)
	} else {
		add(&t.Dense, d.Output)
		if d.Embd != nil {
			_, cols := d.Embd.Shape()
			rb, _ := d.Embd.Type().RowBytes(cols)
			t.EmbedRow = uint64(rb)
			var whole uint64 // a token reads one row; the parameters count all
			add(&whole, d.Embd)
		}
	}
	add(&t.Dense, d.OutNorm, d.OutBias)
	if pl := d.PerLayer; pl != nil {
		// A token reads its row of each layer's per-layer embedding.
		_, cols := pl.Table.Shape()
		rb, _ := pl.Table.Type().RowBytes(cols)
		t.EmbedRow += uint64(rb) * uint64(len(d.Layers))
		var whole uint64
		add(&whole, pl.Table)
		add(&t.Dense, pl.Norm)
		add(&t.Dense, pl.Proj...)
	}
	t.Windows = make([]int, len(d.Layers))
	for i := range d.Layers {
		l := &d.Layers[i]
		a := &l.Attn
		add(&t.Dense, a.Norm, a.Q, a.Gate, a.K, a.V, a.O, a.QB, a.KB, a.VB, a.OB, a.QNorm, a.KNorm, a.VNorm, a.PostNorm, a.P.Sinks)
		add(&t.Dense, l.FFNNorm2, l.FFNPost1, l.FFNPost2)
		if r := l.Delta; r != nil {
			add(&t.Dense, r.Norm, r.QKV, r.Z, r.Alpha, r.Beta, r.Out, r.Conv, r.A, r.DtBias, r.OutNorm)
		}
		if p := l.PerLayer; p != nil {
			add(&t.Dense, p.Gate, p.Proj, p.PostNorm)
		}
		t.Windows[i] = a.P.Window
		add(&t.Dense, l.FFNNorm, l.FFNPost)
		if f := l.Dense; f != nil {
			add(&t.Dense, f.Gate, f.Up, f.Down, f.GateB, f.UpB, f.DownB)
		}
		if m := l.MoE; m != nil {
			add(&t.Dense, m.Router, m.RouterB, m.RouterNorm)
			if sh := m.Shared; sh != nil {
				add(&t.Dense, sh.Gate, sh.Up, sh.Down, sh.GateB, sh.UpB, sh.DownB, m.SharedGate)
			}
			before := params
			for e := range m.Experts {
				x := &m.Experts[e]
				add(&t.Experts, x.Gate, x.Up, x.Down, x.GateB, x.UpB, x.DownB)
			}
			expertParams += params - before
			t.NumExperts, t.ExpertsUsed = len(m.Experts), m.K
		}
	}
	t.ActiveParams = params
	if t.NumExperts > 0 {
		t.ActiveParams -= expertParams - expertParams/uint64(t.NumExperts)*uint64(t.ExpertsUsed)
	}
	return t
}
