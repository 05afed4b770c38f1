// Package gemma4 is the Gemma 4 architecture (text; llama.cpp's
// src/models/gemma4.cpp), dense (E2B, E4B, 31B) and with a mixture of
// experts beside its dense FFN (26B-A4B), as configuration and weight
// binding over runtime/arch/blocks.
//
// What sets it apart from Gemma 3: a per-layer sliding/global pattern
// (attention.sliding_window_pattern, an array), with heads of
// key_length_swa values on sliding layers and key_length on global ones,
// KV heads per layer, global layers without attn_v (the values are the
// keys' projection: K = V), and proportional RoPE there (rope_freqs: 1e30
// leaves a pair unrotated); q and k RMSNorm, an unweighted RMSNorm of v,
// attention scale 1; the last shared_kv_layers layers own no KV cache and
// read the last earlier layer's of their kind; the FFN width per layer
// (double on the shared layers of E2B); per-layer token embeddings;
// layer_output_scale; the final soft-cap. The layers that own a cache
// may differ in KV width (every released Gemma 4: E4B's sliding layers
// store 2 heads of 256, its global ones 2 of 512): the paged pool's rows
// are the widest layer's, and a narrower layer fills the front of each
// row (memory the narrower layers leave unused; per-layer row widths in
// the pool would save it).
package gemma4

import (
	"fmt"
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/arch/blocks"
	"github.com/hearth-llm/hearth/runtime/backend"
)

func init() {
	arch.Register("gemma4", arch.Family{Describe: describe, Load: Load})
}

// perLayer is the fewest tensors a layer has (a shared-KV layer: norms,
// q, q norm, output, FFN).
const perLayer = 10

// config is a Gemma 4 model's hyperparameters.
type config struct {
	c                 blocks.Common
	slides            []bool
	window            int
	kvHeads, ff       []int // per layer
	headFull, headSWA int
	full, swa         backend.RoPE
	src               []int // per layer, the cache layer it reads (its own, or an earlier one's)
	finalCap          float32
	plWidth           int // per-layer embedding width (0: none)
}

func (g *config) head(il int) int {
	if g.slides[il] {
		return g.headSWA
	}
	return g.headFull
}

// uintOr reads an optional non-negative integer (0 allowed, unlike
// arch.Meta's).
func uintOr(f *gguf.File, key string, def, limit int) (int, error) {
	if _, ok := f.Get(key); !ok {
		return def, nil
	}
	v, ok := f.Uint(key)
	if !ok || v > uint64(limit) {
		return 0, fmt.Errorf("metadata %s is not an integer in [0, %d]", key, limit)
	}
	return int(v), nil
}

func decode(f *gguf.File) (*config, error) {
	const name = "gemma4"
	m := &arch.Meta{F: f, Prefix: name}
	g := &config{}
	c := &g.c
	c.Arch = name
	c.Embd = m.Int("embedding_length")
	c.Layers = m.Int("block_count")
	c.Heads = m.Int("attention.head_count")
	c.CtxTrain = m.Int("context_length")
	c.NormEps = m.Float("attention.layer_norm_rms_epsilon")
	c.Pooling = m.PoolingOr(arch.PoolingMean)
	c.Experts = m.IntOr("expert_count", 0)
	if c.Experts > 0 {
		c.ExpertsUsed = m.Int("expert_used_count")
		c.ExpertFF = m.Int("expert_feed_forward_length")
	}
	if err := m.Err(); err != nil {
		return nil, err
	}
	if c.ExpertsUsed > c.Experts {
		return nil, fmt.Errorf("%s: %d experts used of %d", name, c.ExpertsUsed, c.Experts)
	}
	if err := c.BoundLayers(f, perLayer); err != nil {
		return nil, err
	}
	L := c.Layers
	g.kvHeads = m.PerLayer("attention.head_count_kv", L, c.Heads)
	g.ff = m.PerLayer("feed_forward_length", L, 0)
	g.headFull = m.Int("attention.key_length")
	g.headSWA = m.Int("attention.key_length_swa")
	vFull, vSWA := m.IntOr("attention.value_length", g.headFull), m.IntOr("attention.value_length_swa", g.headSWA)
	g.slides = m.Bools("attention.sliding_window_pattern", L)
	g.window = m.Int("attention.sliding_window")
	g.finalCap = m.FloatOr("final_logit_softcapping", 0)
	g.full = backend.RoPE{NeoX: true, Dims: m.IntOr("rope.dimension_count", g.headFull), Base: m.FloatOr("rope.freq_base", 10000), Scale: 1, AttnFactor: 1}
	g.swa = backend.RoPE{NeoX: true, Dims: m.IntOr("rope.dimension_count_swa", g.headSWA), Base: m.FloatOr("rope.freq_base_swa", 10000), Scale: 1, AttnFactor: 1}
	if err := m.Err(); err != nil {
		return nil, err
	}
	if vFull != g.headFull || vSWA != g.headSWA {
		return nil, fmt.Errorf("%s: value lengths %d/%d differ from key lengths %d/%d: not supported", name, vFull, vSWA, g.headFull, g.headSWA)
	}
	if g.full.Dims%2 != 0 || g.full.Dims > g.headFull || g.swa.Dims%2 != 0 || g.swa.Dims > g.headSWA || g.full.Base <= 0 || g.swa.Base <= 0 {
		return nil, fmt.Errorf("%s: rope dimensions %d/%d, bases %v/%v for heads of %d/%d", name, g.full.Dims, g.swa.Dims, g.full.Base, g.swa.Base, g.headFull, g.headSWA)
	}
	var err error
	shared, err := uintOr(f, name+".attention.shared_kv_layers", 0, L-1)
	if err != nil {
		return nil, err
	}
	if g.plWidth, err = uintOr(f, name+".embedding_length_per_layer_input", 0, 1<<16); err != nil {
		return nil, err
	}
	kvFrom := L - shared
	c.KVLayers = kvFrom
	g.src = make([]int, L)
	for il := range L {
		kvd := g.kvHeads[il] * g.head(il)
		if c.Heads%g.kvHeads[il] != 0 {
			return nil, fmt.Errorf("%s: layer %d: %d attention heads are not a multiple of %d KV heads", name, il, c.Heads, g.kvHeads[il])
		}
		g.src[il] = il
		if il >= kvFrom {
			// llama.cpp reuses layer n_kv-2 (sliding) or n_kv-1 (global):
			// the last layer of the same kind that owns a cache.
			g.src[il] = -1
			for j := kvFrom - 1; j >= 0; j-- {
				if g.slides[j] == g.slides[il] {
					g.src[il] = j
					break
				}
			}
			if g.src[il] < 0 {
				return nil, fmt.Errorf("%s: layer %d shares the KV cache of no earlier layer of its kind", name, il)
			}
			if kvd != g.kvHeads[g.src[il]]*g.head(g.src[il]) {
				return nil, fmt.Errorf("%s: layer %d reads layer %d's cache of another width", name, il, g.src[il])
			}
			continue
		}
		c.KVWidth = max(c.KVWidth, kvd)
	}
	// Info reports one head size: the largest that divides both (what a
	// quantized cache's blocks must fit).
	c.HeadDim = gcd(g.headFull, g.headSWA)
	c.KVHeads = c.KVWidth / c.HeadDim
	c.FF = 0
	for _, ff := range g.ff {
		c.FF = max(c.FF, ff)
	}
	c.RoPE = g.full
	return g, nil
}

func gcd(a, b int) int {
	for b != 0 {
		a, b = b, a%b
	}
	return a
}

func describe(f *gguf.File) (arch.Needs, error) {
	g, err := decode(f)
	if err != nil {
		return arch.Needs{}, err
	}
	n, err := blocks.Needs(f, &g.c, perLayer, blocks.Windows(g.slides, g.window))
	if err != nil {
		return n, err
	}
	for il := range n.KV {
		if g.src[il] != il {
			n.KV[il].Shared, n.KV[il].From = true, g.src[il]
		}
	}
	return n, nil
}

// Load binds a Gemma 4 model from f.
func Load(f *gguf.File, be backend.Backend) (arch.Model, error) {
	g, err := decode(f)
	if err != nil {
		return nil, err
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
	d := &blocks.Decoder{C: c, Be: be, EmbScale: float32(math.Sqrt(float64(c.Embd))), FinalCap: g.finalCap}
	b.Output(d, false)
	full, swa := g.full, g.swa
	// Proportional RoPE: per-pair divisors on the global layers.
	full.Factors = b.Vector32("rope_freqs.weight", g.headFull/2)
	ones := map[int]backend.Weight{}
	if g.plWidth > 0 {
		L, P := c.Layers, g.plWidth
		pl := &blocks.PerLayerEmbd{Width: P, Proj: make([]backend.Weight, L)}
		pl.Table = b.Reshaped("per_layer_token_embd.weight", []uint64{uint64(L * P), uint64(c.Vocab)}, c.Vocab*L, P)
		for il := range L {
			pl.Proj[il] = b.Rows("per_layer_model_proj.weight", []uint64{uint64(c.Embd), uint64(L * P)}, il*P, P)
		}
		pl.Norm = b.Get("per_layer_proj_norm.weight", arch.Vec(P))
		d.PerLayer = pl
	}
	gelu := backend.Act{Kind: backend.ActGELU}
	d.Layers = make([]blocks.Layer, c.Layers)
	for il := range d.Layers {
		l := &d.Layers[il]
		a := &l.Attn
		hd, kvh := g.head(il), g.kvHeads[il]
		qd, kvd := c.Heads*hd, kvh*hd
		a.Norm = vec(il, "attn_norm.weight", c.Embd)
		a.Q = mat(il, "attn_q.weight", qd, c.Embd)
		a.QNorm = vec(il, "attn_q_norm.weight", hd)
		a.O = mat(il, "attn_output.weight", c.Embd, qd)
		a.PostNorm = vec(il, "post_attention_norm.weight", c.Embd)
		a.P = backend.AttentionParams{Heads: c.Heads, KVHeads: kvh, HeadDim: hd, Scale: 1}
		a.RoPE = &full
		if g.slides[il] {
			a.RoPE, a.P.Window = &swa, g.window
		}
		if g.src[il] == il {
			a.K = mat(il, "attn_k.weight", kvd, c.Embd)
			a.V = b.Optional(tn(il, "attn_v.weight"), arch.Dims{Rows: kvd, Cols: c.Embd})
			a.KNorm = vec(il, "attn_k_norm.weight", hd)
			if ones[hd] == nil {
				ones[hd] = b.Ones(hd)
			}
			a.VNorm = ones[hd]
		} else {
			a.P.SharedKV, a.KVLayer = true, g.src[il]
		}
		ff := g.ff[il]
		l.FFNNorm = vec(il, "ffn_norm.weight", c.Embd)
		l.Dense = &blocks.Dense{Act: gelu,
			Gate: mat(il, "ffn_gate.weight", ff, c.Embd),
			Up:   mat(il, "ffn_up.weight", ff, c.Embd),
			Down: mat(il, "ffn_down.weight", c.Embd, ff)}
		l.FFNPost = vec(il, "post_ffw_norm.weight", c.Embd)
		if c.Experts > 0 && b.Has(tn(il, "ffn_gate_inp.weight")) {
			moe := &blocks.MoE{K: c.ExpertsUsed, Gating: blocks.SoftmaxTopK, Renorm: true, Act: gelu,
				RouterScale: 1 / float32(math.Sqrt(float64(c.Embd)))} // 1.0f/sqrtf(n_embd)
			b.Experts(il, moe)
			moe.RouterNorm = vec(il, "ffn_gate_inp.scale", c.Embd)
			moe.DownScale = b.Vector32(tn(il, "ffn_down_exps.scale"), c.Experts)
			l.MoE = moe
			l.FFNNorm2 = vec(il, "pre_ffw_norm_2.weight", c.Embd)
			l.FFNPost1 = vec(il, "post_ffw_norm_1.weight", c.Embd)
			l.FFNPost2 = vec(il, "post_ffw_norm_2.weight", c.Embd)
		}
		if d.PerLayer != nil {
			l.PerLayer = &blocks.PerLayerIn{
				Gate:     mat(il, "inp_gate.weight", g.plWidth, c.Embd),
				Proj:     mat(il, "proj.weight", c.Embd, g.plWidth),
				PostNorm: vec(il, "post_norm.weight", c.Embd)}
		}
		if s := b.Vector32(tn(il, "layer_output_scale.weight"), 1); s != nil {
			l.OutScale = s[0]
		}
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	d.Params = b.Params
	return d, d.Validate()
}
