// Package blocks holds the pieces decoder-only architectures are made of —
// an attention block, a dense feed-forward block, a mixture-of-experts
// block, the norms around them — and the forward pass that runs a stack
// of them, written once against backend operations. A family
// (runtime/arch/llama, qwen, gemma, …) is its configuration, its weight
// binding and the choice of pieces; nothing here knows a family's name.
package blocks

import (
	"fmt"
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// Common is the hyperparameters every decoder family reads the same way
// (llama.cpp's llama_model_base::load_hparams), from keys under the
// architecture's prefix.
type Common struct {
	Arch                    string
	Vocab, Embd, Layers, FF int
	Heads, KVHeads, HeadDim int
	CtxTrain                int
	NormEps                 float32
	// Experts and ExpertsUsed are the mixture of experts (0: dense);
	// ExpertFF is an expert's width.
	Experts, ExpertsUsed, ExpertFF int
	RoPE                           backend.RoPE
	// Pooling is how embeddings pool the hidden states (pooling_type;
	// mean when the file does not say).
	Pooling arch.Pooling
	// KVLayers, when set, is the layers that own a KV cache (Gemma 4's
	// last layers read an earlier one's); 0: every layer.
	KVLayers int
	// KVWidth, when set, is a cache row's width where the layers' heads
	// differ (Gemma 4: the same for every layer that owns a cache); 0:
	// KVHeads·HeadDim.
	KVWidth int
}

// CacheLayers is the layers of the KV cache (KVLayers, or Layers).
func (c *Common) CacheLayers() int {
	if c.KVLayers > 0 {
		return c.KVLayers
	}
	return c.Layers
}

// QDim is the width of the queries (heads × head size).
func (c *Common) QDim() int { return c.Heads * c.HeadDim }

// KVDim is the width of the keys and of the values.
func (c *Common) KVDim() int {
	if c.KVWidth > 0 {
		return c.KVWidth
	}
	return c.KVHeads * c.HeadDim
}

// Info is what a model of configuration c reports (arch.Info), with
// params parameters.
func (c *Common) Info(params uint64) arch.Info {
	return arch.Info{Arch: c.Arch, VocabSize: c.Vocab, ContextLength: c.CtxTrain, Layers: c.Layers,
		Embedding: c.Embd, KVDim: c.KVDim(), HeadDim: c.HeadDim, Params: params, Pooling: c.Pooling, KVLayers: c.KVLayers}
}

// Decode reads the common hyperparameters of f's architecture and
// returns them with the Meta reader, for the family's own keys. normKey is
// the epsilon's key ("attention.layer_norm_rms_epsilon"); neox picks the
// RoPE flavour (pairs (i, i+d/2) rather than (2i, 2i+1)).
func Decode(f *gguf.File, normKey string, neox bool) (Common, *arch.Meta, error) {
	name, _ := f.String("general.architecture")
	m := &arch.Meta{F: f, Prefix: name}
	c := Common{Arch: name}
	c.Embd = m.Int("embedding_length")
	c.Layers = m.Int("block_count")
	c.FF = m.IntOr("feed_forward_length", 0)
	c.Heads = m.Int("attention.head_count")
	c.KVHeads = m.IntOr("attention.head_count_kv", c.Heads)
	c.CtxTrain = m.Int("context_length")
	c.NormEps = m.Float(normKey)
	c.Pooling = m.PoolingOr(arch.PoolingMean)
	c.Experts = m.IntOr("expert_count", 0)
	if c.Experts > 0 {
		c.ExpertsUsed = m.Int("expert_used_count")
	}
	if err := m.Err(); err != nil {
		return c, m, err
	}
	if c.Experts > 0 {
		c.ExpertFF = m.IntOr("expert_feed_forward_length", c.FF)
		if c.ExpertsUsed > c.Experts {
			return c, m, fmt.Errorf("%s: %d experts used of %d", name, c.ExpertsUsed, c.Experts)
		}
	}
	c.HeadDim = m.IntOr("attention.key_length", c.Embd/c.Heads)
	if v := m.IntOr("attention.value_length", c.HeadDim); v != c.HeadDim {
		return c, m, fmt.Errorf("%s.attention.value_length %d differs from key_length %d: not supported", name, v, c.HeadDim)
	}
	if c.Heads%c.KVHeads != 0 {
		return c, m, fmt.Errorf("%s: %d attention heads are not a multiple of %d KV heads", name, c.Heads, c.KVHeads)
	}
	if err := decodeRoPE(m, &c, neox); err != nil {
		return c, m, err
	}
	return c, m, m.Err()
}

// decodeRoPE reads the rotary embedding: dimensions, base, and linear or
// YaRN scaling with llama.cpp's attention factor (llama-context.cpp: the
// YaRN magnitude get_mscale(f)/(1 + 0.1·ln f), which the RoPE kernel's own
// 1 + 0.1·ln f restores, times rope.scaling.attn_factor).
func decodeRoPE(m *arch.Meta, c *Common, neox bool) error {
	r := &c.RoPE
	r.NeoX = neox
	r.Dims = m.IntOr("rope.dimension_count", c.HeadDim)
	r.Base = m.FloatOr("rope.freq_base", 10000)
	r.Scale = 1
	r.AttnFactor = m.FloatOr("rope.scaling.attn_factor", 1)
	r.BetaFast = m.FloatOr("rope.scaling.yarn_beta_fast", 32)
	r.BetaSlow = m.FloatOr("rope.scaling.yarn_beta_slow", 1)
	r.CtxOrig = m.IntOr("rope.scaling.original_context_length", c.CtxTrain)
	factor := m.FloatOr("rope.scaling.factor", m.FloatOr("rope.scale_linear", 0))
	switch typ := m.StringOr("rope.scaling.type", "linear"); typ {
	case "none":
	case "linear":
		if factor > 0 {
			r.Scale = 1 / factor
		}
	case "yarn":
		if factor > 0 {
			r.Scale = 1 / factor
		}
		r.ExtFactor = 1
		f := 1 / r.Scale
		mscale := func(s, ms float32) float32 {
			if s <= 1 {
				return 1
			}
			return 0.1*ms*float32(math.Log(float64(s))) + 1
		}
		yarn := mscale(f, 1)
		if lm := m.FloatOr("rope.scaling.yarn_log_multiplier", 0); lm != 0 {
			yarn = mscale(f, 1) / mscale(f, lm)
		}
		yarn *= 1 / (1 + 0.1*float32(math.Log(float64(f))))
		r.AttnFactor *= yarn
	default:
		return fmt.Errorf("%s.rope.scaling.type %q is not supported", c.Arch, typ)
	}
	if err := m.Err(); err != nil {
		return err
	}
	if r.Dims%2 != 0 || r.Dims > c.HeadDim || r.Base <= 0 {
		return fmt.Errorf("%s: rope dimension %d / base %v do not fit head size %d", c.Arch, r.Dims, r.Base, c.HeadDim)
	}
	return nil
}

// Windows is each layer's attention window: window where slides says
// the layer slides, 0 (every position) elsewhere.
func Windows(slides []bool, window int) []int {
	w := make([]int, len(slides))
	for il, s := range slides {
		if s {
			w[il] = window
		}
	}
	return w
}

// SWAPattern says which layers slide: llama.cpp's set_swa_pattern(n),
// layer il slides when il % n < n-1 (n = 2: the even layers; 1: none; 0:
// all).
func SWAPattern(layers, n int) []bool {
	s := make([]bool, layers)
	for il := range s {
		s[il] = n == 0 || il%n < n-1
	}
	return s
}
