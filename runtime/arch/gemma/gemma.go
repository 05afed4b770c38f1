// Package gemma is the Gemma 2 and Gemma 3 architectures (text): token
// embeddings scaled by √n_embd, a GeGLU feed-forward, RMSNorm after the
// attention and the feed-forward as well as before, queries scaled before
// attention, sliding-window attention on most layers with its own RoPE
// base, and (Gemma 2) soft-capped attention scores and logits, (Gemma 3)
// per-head q/k norms. The output matrix is the token embedding.
package gemma

import (
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/arch/blocks"
	"github.com/hearth-llm/hearth/runtime/backend"
)

func init() {
	fam := arch.Family{Describe: describe, Load: Load}
	arch.Register("gemma2", fam)
	arch.Register("gemma3", fam)
}

// perLayer is the fewest tensors a layer has.
const perLayer = 11

// config is a Gemma model's hyperparameters.
type config struct {
	c                 blocks.Common
	v2                bool
	window            int
	slides            []bool // which layers slide (none without a window)
	attnCap, finalCap float32
	swaBase, swaScale float32
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
	v2 := c.Arch == "gemma2"
	// Sliding windows: Gemma 2 always (default 4096 every other layer),
	// Gemma 3 when the file gives a window (5 of every 6 layers).
	window, pattern := m.IntOr("attention.sliding_window", 0), 6
	attnCap, finalCap := float32(0), m.FloatOr("final_logit_softcapping", 0)
	swaBase, swaScale := float32(10000), float32(1)
	if v2 {
		pattern = 2
		if window == 0 {
			window = 4096
		}
		attnCap = m.FloatOr("attn_logit_softcapping", 50)
		finalCap = m.FloatOr("final_logit_softcapping", 30)
		swaBase, swaScale = c.RoPE.Base, c.RoPE.Scale
	}
	pattern = scalarOr(f, c.Arch+".attention.sliding_window_pattern", pattern)
	swaBase = m.FloatOr("rope.freq_base_swa", swaBase)
	if err := m.Err(); err != nil {
		return config{}, err
	}
	if err := c.BoundLayers(f, perLayer); err != nil {
		return config{}, err
	}
	slides := blocks.SWAPattern(c.Layers, pattern)
	if window == 0 {
		slides = make([]bool, c.Layers)
	}
	return config{c: c, v2: v2, window: window, slides: slides, attnCap: attnCap, finalCap: finalCap,
		swaBase: swaBase, swaScale: swaScale}, nil
}

// Load binds a Gemma 2 or 3 model from f (llama.cpp's gemma2.cpp and
// gemma3.cpp).
func Load(f *gguf.File, be backend.Backend) (arch.Model, error) {
	g, err := decode(f)
	if err != nil {
		return nil, err
	}
	c, v2, window, slides := g.c, g.v2, g.window, g.slides
	attnCap, finalCap, swaBase, swaScale := g.attnCap, g.finalCap, g.swaBase, g.swaScale
	// The query scale is 1/√head_dim, but 1/√(n_embd/n_head) for the 27B
	// models (llama.cpp knows them by their layer count).
	big := v2 && c.Layers == 46 || !v2 && c.Layers == 62
	qScale := float32(1 / math.Sqrt(float64(c.HeadDim)))
	if big {
		qScale = float32(1 / math.Sqrt(float64(c.Embd/c.Heads)))
	}
	b, err := blocks.NewBinder(f, be, &c, perLayer)
	if err != nil {
		return nil, err
	}
	d := &blocks.Decoder{C: c, Be: be, EmbScale: float32(math.Sqrt(float64(c.Embd))), FinalCap: finalCap}
	b.Output(d, v2)
	global, local := c.RoPE, c.RoPE
	local.Base, local.Scale = swaBase, swaScale
	d.Layers = make([]blocks.Layer, c.Layers)
	for il := range d.Layers {
		l := &d.Layers[il]
		a := &l.Attn
		a.Norm = b.Get(blocks.TensorName(il, "attn_norm.weight"), arch.Vec(c.Embd))
		b.Attention(il, a)
		a.QNorm = b.Vector(blocks.TensorName(il, "attn_q_norm.weight"), c.HeadDim)
		a.KNorm = b.Vector(blocks.TensorName(il, "attn_k_norm.weight"), c.HeadDim)
		a.PostNorm = b.Get(blocks.TensorName(il, "post_attention_norm.weight"), arch.Vec(c.Embd))
		a.RoPE, a.QScale = &global, qScale
		a.P = backend.AttentionParams{Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Scale: 1, SoftCap: attnCap}
		if slides[il] {
			a.RoPE, a.P.Window = &local, window
		}
		l.FFNNorm = b.Get(blocks.TensorName(il, "ffn_norm.weight"), arch.Vec(c.Embd))
		l.FFNPost = b.Get(blocks.TensorName(il, "post_ffw_norm.weight"), arch.Vec(c.Embd))
		l.Dense = &blocks.Dense{Act: backend.Act{Kind: backend.ActGELU}}
		b.Dense(il, l.Dense)
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	d.Params = b.Params
	return d, d.Validate()
}

// scalarOr reads an optional integer key, ignoring an array in its place
// as llama.cpp does for the SWA pattern.
func scalarOr(f *gguf.File, key string, def int) int {
	if v, ok := f.Uint(key); ok && v < 1<<16 {
		return int(v)
	}
	return def
}
