// Package qwen35 is the Qwen 3.5 hybrid architecture (qwen35, and
// qwen35moe with a mixture of experts and a gated shared expert; llama.cpp's
// src/models/qwen35.cpp, qwen35moe.cpp), as configuration and weight
// binding over runtime/arch/blocks.
//
// Most layers are Gated DeltaNet (blocks.DeltaNet: attn_qkv through a
// causal conv and SiLU, the gated delta rule over a head_dim² state per
// value head, output RMSNorm ⊙ SiLU(attn_gate·x)); every
// full_attention_interval-th layer (or those attention.recurrent_layers
// leaves out) is gated full attention: attn_q emits per head the query
// and a gate, q/k RMSNorm, GQA, M-RoPE, the output times σ(gate).
// post_attention_norm is the FFN's pre-norm. For text every M-RoPE
// section sees the same position, so the rotation is NeoX RoPE over
// rope.dimension_count dims.
//
// Only the attention layers own a KV cache (cache layer = their index
// among the attention layers); each sequence also carries a fixed state
// (arch.Stateful): per recurrent layer its conv inputs and delta state.
// Needs a backend with backend.Recurrent (the CPU's and CUDA's).
package qwen35

import (
	"fmt"
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/arch/blocks"
	"github.com/hearth-llm/hearth/runtime/backend"
)

func init() {
	fam := arch.Family{Describe: describe, Load: Load}
	arch.Register("qwen35", fam)
	arch.Register("qwen35moe", fam)
}

// perLayer is the fewest tensors a layer has (an attention layer with a
// mixture: norms, q, k, v, o, q/k norms, router, three expert stacks).
const perLayer = 10

type config struct {
	c         blocks.Common
	recurrent []bool
	delta     backend.DeltaNetParams
	convK     int
	sharedFF  int
}

func decode(f *gguf.File) (*config, error) {
	c, m, err := blocks.Decode(f, "attention.layer_norm_rms_epsilon", true)
	if err != nil {
		return nil, err
	}
	g := &config{c: c}
	if err := g.c.BoundLayers(f, perLayer); err != nil {
		return nil, err
	}
	g.convK = m.Int("ssm.conv_kernel")
	g.delta = backend.DeltaNetParams{HeadDim: m.Int("ssm.state_size"), KHeads: m.Int("ssm.group_count"),
		VHeads: m.Int("ssm.time_step_rank"), Eps: c.NormEps}
	inner := m.Int("ssm.inner_size")
	if c.Experts > 0 {
		g.sharedFF = m.IntOr("expert_shared_feed_forward_length", 0)
	}
	if err := m.Err(); err != nil {
		return nil, err
	}
	p := g.delta
	if p.KHeads <= 0 || p.VHeads%p.KHeads != 0 || inner != p.VHeads*p.HeadDim || g.convK < 2 || g.convK > 64 {
		return nil, fmt.Errorf("%s: ssm of %d key heads, %d value heads of %d (inner size %d), conv kernel %d: not supported",
			c.Arch, p.KHeads, p.VHeads, p.HeadDim, inner, g.convK)
	}
	L := c.Layers
	g.recurrent = make([]bool, L)
	if _, ok := f.Get(c.Arch + ".attention.recurrent_layers"); ok {
		g.recurrent = m.Bools("attention.recurrent_layers", L)
	} else {
		interval := m.IntOr("full_attention_interval", 4)
		for il := range L {
			g.recurrent[il] = (il+1)%interval != 0
		}
	}
	if err := m.Err(); err != nil {
		return nil, err
	}
	g.c.KVLayers = 0
	for _, r := range g.recurrent {
		if !r {
			g.c.KVLayers++
		}
	}
	if g.c.KVLayers == 0 {
		return nil, fmt.Errorf("%s: no attention layer", c.Arch)
	}
	return g, nil
}

// stateBytes is one sequence's recurrent state.
func (g *config) stateBytes() uint64 {
	p := g.delta
	conv := (g.convK - 1) * (2*p.KHeads + p.VHeads) * p.HeadDim
	var n uint64
	for _, r := range g.recurrent {
		if r {
			n += 4 * uint64(conv+p.VHeads*p.HeadDim*p.HeadDim)
		}
	}
	return n
}

func describe(f *gguf.File) (arch.Needs, error) {
	g, err := decode(f)
	if err != nil {
		return arch.Needs{}, err
	}
	n, err := blocks.Needs(f, &g.c, perLayer, nil)
	if err != nil {
		return n, err
	}
	for il, r := range g.recurrent {
		n.KV[il].Recurrent = r
	}
	n.StateBytes = g.stateBytes()
	return n, nil
}

// Load binds a Qwen 3.5 model from f.
func Load(f *gguf.File, be backend.Backend) (arch.Model, error) {
	g, err := decode(f)
	if err != nil {
		return nil, err
	}
	if _, ok := be.(backend.Recurrent); !ok {
		return nil, fmt.Errorf("%s: %w on the %s backend", g.c.Arch, blocks.ErrNoRecurrent, be.Name())
	}
	c := g.c
	b, err := blocks.NewBinder(f, be, &c, perLayer)
	if err != nil {
		return nil, err
	}
	tn := blocks.TensorName
	vec := func(il int, part string, n int) backend.Weight { return b.Get(tn(il, part), arch.Vec(n)) }
	mat := func(il int, part string, rows, cols int) backend.Weight {
		return b.Get(tn(il, part), arch.Dims{Rows: rows, Cols: cols})
	}
	d := &blocks.Decoder{C: c, Be: be}
	b.Output(d, false)
	rope := c.RoPE
	silu := backend.Act{Kind: backend.ActSiLU}
	p := g.delta
	vw := p.VHeads * p.HeadDim
	hd := c.HeadDim
	kvLayer, part := 0, 0
	d.Layers = make([]blocks.Layer, c.Layers)
	for il := range d.Layers {
		l := &d.Layers[il]
		norm := vec(il, "attn_norm.weight", c.Embd)
		if g.recurrent[il] {
			m := &blocks.DeltaNet{Norm: norm, P: p, Part: part}
			cw := m.ConvWidth()
			m.QKV = mat(il, "attn_qkv.weight", cw, c.Embd)
			m.Z = mat(il, "attn_gate.weight", vw, c.Embd)
			m.Alpha = mat(il, "ssm_alpha.weight", p.VHeads, c.Embd)
			m.Beta = mat(il, "ssm_beta.weight", p.VHeads, c.Embd)
			m.Conv = mat(il, "ssm_conv1d.weight", cw, g.convK)
			m.A = b.Get(tn(il, "ssm_a"), arch.Vec(p.VHeads))
			m.DtBias = vec(il, "ssm_dt.bias", p.VHeads)
			m.OutNorm = vec(il, "ssm_norm.weight", p.HeadDim)
			m.Out = mat(il, "ssm_out.weight", c.Embd, vw)
			l.Delta = m
			part += 2
		} else {
			a := &l.Attn
			a.Norm = norm
			qg := b.Deinterleaved(tn(il, "attn_q.weight"), []uint64{uint64(c.Embd), uint64(2 * c.QDim())}, hd, 2)
			if len(qg) == 2 {
				a.Q, a.Gate = qg[0], qg[1]
			}
			a.K = mat(il, "attn_k.weight", c.KVDim(), c.Embd)
			a.V = mat(il, "attn_v.weight", c.KVDim(), c.Embd)
			a.O = mat(il, "attn_output.weight", c.Embd, c.QDim())
			a.QNorm = vec(il, "attn_q_norm.weight", hd)
			a.KNorm = vec(il, "attn_k_norm.weight", hd)
			a.RoPE = &rope
			a.P = backend.AttentionParams{Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd)))}
			a.KVLayer = kvLayer
			kvLayer++
		}
		l.FFNNorm = vec(il, "post_attention_norm.weight", c.Embd)
		if c.Experts > 0 {
			moe := &blocks.MoE{K: c.ExpertsUsed, Gating: blocks.SoftmaxTopK, Renorm: true, Act: silu}
			b.Experts(il, moe)
			if g.sharedFF > 0 {
				moe.Shared = &blocks.Dense{Act: silu,
					Gate: mat(il, "ffn_gate_shexp.weight", g.sharedFF, c.Embd),
					Up:   mat(il, "ffn_up_shexp.weight", g.sharedFF, c.Embd),
					Down: mat(il, "ffn_down_shexp.weight", c.Embd, g.sharedFF)}
				moe.SharedGate = b.Vector(tn(il, "ffn_gate_inp_shexp.weight"), c.Embd)
			}
			l.MoE = moe
		} else {
			l.Dense = &blocks.Dense{Act: silu,
				Gate: mat(il, "ffn_gate.weight", c.FF, c.Embd),
				Up:   mat(il, "ffn_up.weight", c.FF, c.Embd),
				Down: mat(il, "ffn_down.weight", c.Embd, c.FF)}
		}
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	d.Params = b.Params
	return d, d.Validate()
}
