// Package qwen is the Qwen 2 and Qwen 3 architectures, dense and mixture
// of experts (qwen2, qwen3, qwen3moe): Llama's block with NeoX RoPE, q/k/v
// biases (Qwen 2) or per-head RMSNorm of q and k before RoPE (Qwen 3),
// an optional output bias, and Qwen3-MoE's softmax router over all
// experts, top-k renormalised.
package qwen

import (
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/arch/blocks"
	"github.com/hearth-llm/hearth/runtime/backend"
)

func init() {
	fam := arch.Family{Describe: describe, Load: Load}
	arch.Register("qwen2", fam)
	arch.Register("qwen3", fam)
	arch.Register("qwen3moe", fam)
}

// perLayer is the fewest tensors a layer has.
const perLayer = 9

func describe(f *gguf.File) (arch.Needs, error) {
	c, _, err := blocks.Decode(f, "attention.layer_norm_rms_epsilon", true)
	if err != nil {
		return arch.Needs{}, err
	}
	return blocks.Needs(f, &c, perLayer, nil)
}

// Load binds a Qwen model from f.
func Load(f *gguf.File, be backend.Backend) (arch.Model, error) {
	c, m, err := blocks.Decode(f, "attention.layer_norm_rms_epsilon", true)
	if err != nil {
		return nil, err
	}
	if c.Experts > 0 && m.IntOr("expert_feed_forward_length", 0) == 0 {
		c.ExpertFF = c.FF / c.ExpertsUsed // llama.cpp's fallback
	}
	b, err := blocks.NewBinder(f, be, &c, perLayer)
	if err != nil {
		return nil, err
	}
	d := &blocks.Decoder{C: c, Be: be}
	b.Output(d, false)
	rope := c.RoPE
	scale := float32(1 / math.Sqrt(float64(c.HeadDim)))
	d.Layers = make([]blocks.Layer, c.Layers)
	for il := range d.Layers {
		l := &d.Layers[il]
		a := &l.Attn
		a.Norm = b.Get(blocks.TensorName(il, "attn_norm.weight"), arch.Vec(c.Embd))
		b.Attention(il, a)
		a.QNorm = b.Vector(blocks.TensorName(il, "attn_q_norm.weight"), c.HeadDim)
		a.KNorm = b.Vector(blocks.TensorName(il, "attn_k_norm.weight"), c.HeadDim)
		a.RoPE = &rope
		a.P = backend.AttentionParams{Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Scale: scale}
		b.SwiGLUFFN(il, l)
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	d.Params = b.Params
	return d, d.Validate()
}
