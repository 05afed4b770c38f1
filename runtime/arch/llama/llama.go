// Package llama is the Llama architecture (Llama 1-3, Mistral, TinyLlama,
// llama2.c checkpoints, Mixtral-style experts) and Mistral 3: pre-norm
// decoder blocks with RMSNorm, rotary embeddings, grouped-query attention
// and a SwiGLU feed-forward (dense, or a mixture of experts), with a
// separate or tied output matrix.
package llama

import (
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/arch/blocks"
	"github.com/hearth-llm/hearth/runtime/backend"
)

func init() {
	fam := arch.Family{Describe: describe, Load: Load}
	arch.Register("llama", fam)
	arch.Register("mistral3", fam)
}

// perLayer is the fewest tensors a layer has.
const perLayer = 9

func describe(f *gguf.File) (arch.Needs, error) {
	c, _, err := blocks.Decode(f, "attention.layer_norm_rms_epsilon", false)
	if err != nil {
		return arch.Needs{}, err
	}
	return blocks.Needs(f, &c, perLayer, nil)
}

// Load binds a Llama (or Mistral 3) model from f.
func Load(f *gguf.File, be backend.Backend) (arch.Model, error) {
	c, m, err := blocks.Decode(f, "attention.layer_norm_rms_epsilon", false)
	if err != nil {
		return nil, err
	}
	kqScale := m.FloatOr("attention.scale", 0)
	tempScale := m.FloatOr("attention.temperature_scale", 0) // Mistral 3
	if err := m.Err(); err != nil {
		return nil, err
	}
	if kqScale == 0 {
		kqScale = float32(1 / math.Sqrt(float64(c.HeadDim)))
	}
	b, err := blocks.NewBinder(f, be, &c, perLayer)
	if err != nil {
		return nil, err
	}
	d := &blocks.Decoder{C: c, Be: be}
	b.Output(d, false)
	rope := c.RoPE
	// Llama 3.1+ stores per-frequency divisors for its long-context RoPE.
	rope.Factors = b.Vector32("rope_freqs.weight", c.RoPE.Dims/2)
	if tempScale != 0 {
		// Llama 4's attention temperature, as Mistral 3 uses it: queries at
		// position p grow by ln(⌊p/n_ctx_orig⌋+1)·scale + 1.
		floor := float64(c.RoPE.CtxOrig)
		d.QTemp = func(p int32) float32 {
			return float32(math.Log(math.Floor(float64(p)/floor)+1)*float64(tempScale) + 1)
		}
	}
	d.Layers = make([]blocks.Layer, c.Layers)
	for il := range d.Layers {
		l := &d.Layers[il]
		a := &l.Attn
		a.Norm = b.Get(blocks.TensorName(il, "attn_norm.weight"), arch.Vec(c.Embd))
		b.Attention(il, a)
		a.RoPE = &rope
		a.P = backend.AttentionParams{Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Scale: kqScale}
		b.SwiGLUFFN(il, l)
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	d.Params = b.Params
	return d, d.Validate()
}
