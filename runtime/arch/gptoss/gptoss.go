// Package gptoss is OpenAI's gpt-oss architecture (llama.cpp's
// openai-moe.cpp): attention with biases and learned sinks, sliding
// windows on every other layer, NeoX RoPE with YaRN, and a mixture of
// experts whose router has a bias, picks the top-k raw logits and
// soft-maxes over those k, with per-expert biases and a clamped SwiGLU.
package gptoss

import (
	"errors"
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/arch/blocks"
	"github.com/hearth-llm/hearth/runtime/backend"
)

func init() { arch.Register("gpt-oss", arch.Family{Describe: describe, Load: Load}) }

// perLayer is the fewest tensors a layer has.
const perLayer = 12

// config is a gpt-oss model's hyperparameters.
type config struct {
	c       blocks.Common
	window  int
	slides  []bool
	swaBase float32
}

func describe(f *gguf.File) (arch.Needs, error) {
	g, err := decode(f)
	if err != nil {
		return arch.Needs{}, err
	}
	return blocks.Needs(f, &g.c, perLayer, blocks.Windows(g.slides, g.window))
}

func decode(f *gguf.File) (config, error) {
	c, m, err := blocks.Decode(f, "attention.layer_norm_rms_epsilon", true)
	if err != nil {
		return config{}, err
	}
	c.ExpertFF = m.Int("expert_feed_forward_length")
	window := m.Int("attention.sliding_window")
	swaBase := m.FloatOr("rope.freq_base_swa", c.RoPE.Base)
	pattern := 2
	if v, ok := f.Uint(c.Arch + ".attention.sliding_window_pattern"); ok && v < 1<<16 {
		pattern = int(v)
	}
	if err := m.Err(); err != nil {
		return config{}, err
	}
	if c.Experts == 0 {
		return config{}, errNoExperts
	}
	if err := c.BoundLayers(f, perLayer); err != nil {
		return config{}, err
	}
	return config{c: c, window: window, slides: blocks.SWAPattern(c.Layers, pattern), swaBase: swaBase}, nil
}

// Load binds a gpt-oss model from f.
func Load(f *gguf.File, be backend.Backend) (arch.Model, error) {
	g, err := decode(f)
	if err != nil {
		return nil, err
	}
	c, window, slides, swaBase := g.c, g.window, g.slides, g.swaBase
	b, err := blocks.NewBinder(f, be, &c, perLayer)
	if err != nil {
		return nil, err
	}
	d := &blocks.Decoder{C: c, Be: be}
	b.Output(d, false)
	global, local := c.RoPE, c.RoPE
	local.Base = swaBase
	scale := float32(1 / math.Sqrt(float64(c.RoPE.Dims)))
	d.Layers = make([]blocks.Layer, c.Layers)
	for il := range d.Layers {
		l := &d.Layers[il]
		a := &l.Attn
		a.Norm = b.Get(blocks.TensorName(il, "attn_norm.weight"), arch.Vec(c.Embd))
		b.Attention(il, a)
		a.RoPE = &global
		a.P = backend.AttentionParams{Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Scale: scale,
			Sinks: b.Get(blocks.TensorName(il, "attn_sinks.weight"), arch.Vec(c.Heads))}
		if slides[il] {
			a.RoPE, a.P.Window = &local, window
		}
		// The norm before the experts is stored as post_attention_norm.
		l.FFNNorm = b.Get(blocks.TensorName(il, "post_attention_norm.weight"), arch.Vec(c.Embd))
		l.MoE = &blocks.MoE{K: c.ExpertsUsed, Gating: blocks.TopKSoftmax,
			Act: backend.Act{Kind: backend.ActSwiGLUOAI, Alpha: 1.702, Limit: 7}}
		b.Experts(il, l.MoE)
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	d.Params = b.Params
	return d, d.Validate()
}

var errNoExperts = errors.New("gpt-oss: expert_count is missing or 0")
