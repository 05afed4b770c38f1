// Package phi3 is the Phi-3 architecture: Llama's block with a fused QKV
// projection, a fused gate+up projection, NeoX RoPE over part of each head
// with LongRoPE frequency factors when the file has them, and queries
// scaled before attention. llama.cpp ignores Phi-3's sliding window, and
// so does Hearth.
package phi3

import (
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/arch/blocks"
	"github.com/hearth-llm/hearth/runtime/backend"
)

func init() { arch.Register("phi3", arch.Family{Describe: describe, Load: Load}) }

// perLayer is the fewest tensors a layer has.
const perLayer = 6

// describe reports no sliding window: none is applied (see the package
// comment).
func describe(f *gguf.File) (arch.Needs, error) {
	c, _, err := blocks.Decode(f, "attention.layer_norm_rms_epsilon", true)
	if err != nil {
		return arch.Needs{}, err
	}
	return blocks.Needs(f, &c, perLayer, nil)
}

// Model is a Phi-3 model: a decoder whose RoPE factors depend on the
// context the runtime gives a sequence.
type Model struct {
	*blocks.Decoder
	rope        *backend.RoPE
	long, short []float32
}

// SetContext implements arch.ContextSizer: the long LongRoPE factors
// when the context exceeds the original one, else the short ones (as
// llama.cpp chooses by n_ctx_seq).
func (m *Model) SetContext(n int) {
	if m.long == nil {
		return
	}
	m.rope.Factors = m.short
	if n > m.rope.CtxOrig {
		m.rope.Factors = m.long
	}
}

// Load binds a Phi-3 model from f.
func Load(f *gguf.File, be backend.Backend) (arch.Model, error) {
	c, _, err := blocks.Decode(f, "attention.layer_norm_rms_epsilon", true)
	if err != nil {
		return nil, err
	}
	b, err := blocks.NewBinder(f, be, &c, perLayer)
	if err != nil {
		return nil, err
	}
	d := &blocks.Decoder{C: c, Be: be}
	b.Output(d, false)
	rope := c.RoPE
	m := &Model{Decoder: d, rope: &rope}
	m.long = b.Vector32("rope_factors_long.weight", c.RoPE.Dims/2)
	m.short = b.Vector32("rope_factors_short.weight", c.RoPE.Dims/2)
	if (m.long == nil) != (m.short == nil) {
		m.long, m.short = nil, nil
	}
	m.SetContext(0)
	qScale := float32(1 / math.Sqrt(float64(c.HeadDim)))
	d.Layers = make([]blocks.Layer, c.Layers)
	for il := range d.Layers {
		l := &d.Layers[il]
		a := &l.Attn
		a.Norm = b.Get(blocks.TensorName(il, "attn_norm.weight"), arch.Vec(c.Embd))
		b.Attention(il, a)
		a.RoPE, a.QScale = &rope, qScale
		a.P = backend.AttentionParams{Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Scale: 1}
		l.FFNNorm = b.Get(blocks.TensorName(il, "ffn_norm.weight"), arch.Vec(c.Embd))
		l.Dense = &blocks.Dense{Act: backend.Act{Kind: backend.ActSiLU}}
		b.Dense(il, l.Dense)
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	d.Params = b.Params
	return m, d.Validate()
}
