package synth

import (
	"math"
	"sort"
	"strconv"
	"strings"
)

// need says whether a family has a feature: never, optionally or always.
type need uint8

const (
	never need = iota
	optional
	always
)

// family is what an architecture's files hold beyond Llama's tensors and
// keys, as llama.cpp's loader for it (src/models/<arch>.cpp) creates them.
type family struct {
	qkNorm    bool   // attn_q_norm, attn_k_norm: per-head RMSNorm weights
	postNorms bool   // post_attention_norm and post_ffw_norm after the blocks (Gemma)
	ffnNorm   string // the norm before the feed-forward ("ffn_norm"; gpt-oss: "post_attention_norm")
	biases    bool   // attention q/k/v/output, router and per-expert biases (gpt-oss)
	sinks     bool   // attn_sinks, one logit per head (gpt-oss)
	moe       need   // stacked experts ffn_{gate,up,down}_exps and the router ffn_gate_inp
	window    need   // a sliding window
	untied    bool   // output.weight is required
	headKeys  bool   // states attention.key_length and value_length even when n_embd/n_head
	// hybrid: Qwen 3.5's Gated DeltaNet layers (attn_qkv, attn_gate,
	// ssm_*) between gated attention layers, whose attn_q emits a query
	// and a gate per head.
	hybrid bool
	// gemma4: sliding layers with heads of their own size, shared-KV
	// layers, per-layer embeddings, proportional RoPE (rope_freqs), the
	// sliding pattern as an array and per-layer KV head counts.
	gemma4 bool
}

// families are the architectures Write knows, by general.architecture.
var families = map[string]family{
	"llama":    {ffnNorm: "ffn_norm", moe: optional},
	"qwen3":    {ffnNorm: "ffn_norm", qkNorm: true, headKeys: true},
	"qwen3moe": {ffnNorm: "ffn_norm", qkNorm: true, moe: always, headKeys: true},
	"gemma3":   {ffnNorm: "ffn_norm", qkNorm: true, postNorms: true, window: optional, headKeys: true},
	"qwen35":   {ffnNorm: "post_attention_norm", qkNorm: true, headKeys: true, hybrid: true},
	"gemma4":   {ffnNorm: "ffn_norm", qkNorm: true, postNorms: true, window: always, headKeys: true, gemma4: true},
	"gpt-oss": {ffnNorm: "post_attention_norm", biases: true, sinks: true, moe: always, window: always,
		untied: true, headKeys: true},
}

// Archs lists the architectures a Shape may name.
func Archs() []string {
	var names []string
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// biasScale is the standard deviation of biases; sinks are N(0, 1).
const biasScale = 0.1

// tensors lists the tensors of a file of shape s, without their types, in
// llama-quantize's order (llama_model_loader's weight_name_comparer: the
// tensors outside the layers, then layer by layer, by name within each).
func (s Shape) tensors() []Tensor {
	fam := families[s.Architecture()]
	d, nv := uint64(s.Embd), uint64(s.Vocab)
	hd, qd, kv := uint64(s.HeadDim()), uint64(s.Heads*s.HeadDim()), uint64(s.KVHeads*s.HeadDim())
	var ts []Tensor
	add := func(name string, r role, layer int, scale float64, dims ...uint64) {
		ts = append(ts, Tensor{Name: name, Dims: dims, Scale: float32(scale), role: r, layer: layer})
	}
	// A matrix of rows×cols (ggml's ne = [cols, rows, experts…]) from
	// N(0, 1/cols).
	mat := func(name string, r role, layer int, dims ...uint64) {
		scale := 1 / math.Sqrt(float64(dims[0]))
		if r == roleOutput || (s.Tied && r == roleTokenEmbd) {
			scale *= outputGain
		}
		add(name, r, layer, scale, dims...)
	}
	norm := func(name string, layer int, n uint64) { add(name, roleNorm, layer, 0, n) }
	if !s.Tied {
		mat("output.weight", roleOutput, -1, d, nv)
	}
	norm("output_norm.weight", -1, d)
	mat("token_embd.weight", roleTokenEmbd, -1, d, nv)
	if fam.gemma4 {
		s.gemma4Head(add, norm)
	}
	for i := range s.Layers {
		p := "blk." + strconv.Itoa(i) + "."
		norm(p+"attn_norm.weight", i, d)
		if fam.hybrid && s.Recurrent(i) {
			conv := uint64((2*s.SSMKHeads + s.SSMVHeads) * s.SSMHeadDim)
			vh, vw := uint64(s.SSMVHeads), uint64(s.SSMVHeads*s.SSMHeadDim)
			mat(p+"attn_qkv.weight", roleAttnQKV, i, d, conv)
			mat(p+"attn_gate.weight", roleOther, i, d, vw)
			mat(p+"ssm_alpha.weight", roleOther, i, d, vh)
			mat(p+"ssm_beta.weight", roleOther, i, d, vh)
			add(p+"ssm_a", roleDecay, i, 1, vh)
			add(p+"ssm_dt.bias", roleVector, i, 1, vh)
			add(p+"ssm_conv1d.weight", roleVector, i, 1/math.Sqrt(float64(s.SSMConv)), uint64(s.SSMConv), conv)
			norm(p+"ssm_norm.weight", i, uint64(s.SSMHeadDim))
			mat(p+"ssm_out.weight", roleOther, i, vw, d)
		} else if fam.gemma4 {
			s.gemma4Attention(p, i, mat, add)
		} else {
			s.attention(p, i, qd, kv, hd, fam, mat, add, norm)
		}
		if fam.postNorms {
			norm(p+"post_attention_norm.weight", i, d)
			norm(p+"post_ffw_norm.weight", i, d)
		}
		norm(p+fam.ffnNorm+".weight", i, d)
		if fam.gemma4 && s.PerLayerEmbd > 0 {
			pw := uint64(s.PerLayerEmbd)
			mat(p+"inp_gate.weight", roleOther, i, d, pw)
			mat(p+"proj.weight", roleOther, i, pw, d)
			norm(p+"post_norm.weight", i, d)
		}
		if fam.gemma4 {
			norm(p+"layer_output_scale.weight", i, 1)
		}
		if s.Experts == 0 {
			ff := uint64(s.FF)
			mat(p+"ffn_gate.weight", roleFFNGate, i, d, ff)
			mat(p+"ffn_up.weight", roleFFNUp, i, d, ff)
			mat(p+"ffn_down.weight", roleFFNDown, i, ff, d)
			continue
		}
		ne, ff := uint64(s.Experts), uint64(s.ExpertFF)
		mat(p+"ffn_gate_inp.weight", roleRouter, i, d, ne)
		mat(p+"ffn_gate_exps.weight", roleFFNGate, i, d, ff, ne)
		mat(p+"ffn_up_exps.weight", roleFFNUp, i, d, ff, ne)
		mat(p+"ffn_down_exps.weight", roleFFNDown, i, ff, d, ne)
		if fam.biases {
			add(p+"ffn_gate_inp.bias", roleVector, i, biasScale, ne)
			add(p+"ffn_gate_exps.bias", roleVector, i, biasScale, ff, ne)
			add(p+"ffn_up_exps.bias", roleVector, i, biasScale, ff, ne)
			add(p+"ffn_down_exps.bias", roleVector, i, biasScale, d, ne)
		}
	}
	for i := range ts {
		t := &ts[i]
		t.expert = s.Experts > 0 && t.layer >= 0 && strings.Contains(t.Name, "_exps.")
	}
	sort.SliceStable(ts, func(i, j int) bool {
		if ts[i].layer != ts[j].layer {
			return ts[i].layer < ts[j].layer
		}
		return ts[i].Name < ts[j].Name
	})
	return ts
}

// Recurrent reports whether layer il of a hybrid shape is a Gated
// DeltaNet layer (llama.cpp: all but every full_attention_interval-th).
func (s Shape) Recurrent(il int) bool {
	return s.FullAttnInterval > 0 && (il+1)%s.FullAttnInterval != 0
}

// attention adds layer i's attention tensors: q (with a gate per head in
// a hybrid), k, v, output, and the family's norms, biases and sinks.
func (s Shape) attention(p string, i int, qd, kv, hd uint64, fam family,
	mat func(string, role, int, ...uint64), add func(string, role, int, float64, ...uint64), norm func(string, int, uint64)) {
	d := uint64(s.Embd)
	qrows := qd
	if fam.hybrid {
		qrows = 2 * qd // per head: the query, then its gate
	}
	mat(p+"attn_q.weight", roleAttnQ, i, d, qrows)
	mat(p+"attn_k.weight", roleAttnK, i, d, kv)
	mat(p+"attn_v.weight", roleAttnV, i, d, kv)
	mat(p+"attn_output.weight", roleAttnOut, i, qd, d)
	if fam.qkNorm {
		norm(p+"attn_q_norm.weight", i, hd)
		norm(p+"attn_k_norm.weight", i, hd)
	}
	if fam.biases {
		add(p+"attn_q.bias", roleVector, i, biasScale, qd)
		add(p+"attn_k.bias", roleVector, i, biasScale, kv)
		add(p+"attn_v.bias", roleVector, i, biasScale, kv)
		add(p+"attn_output.bias", roleVector, i, biasScale, d)
	}
	if fam.sinks {
		add(p+"attn_sinks.weight", roleVector, i, 1, uint64(s.Heads))
	}
}

// gemma4Head adds Gemma 4's tensors outside the layers: the global
// layers' proportional RoPE (rope_freqs: a quarter of the pairs rotated,
// as every released Gemma 4's partial_rotary_factor) and the per-layer
// embeddings (a token table of PerLayerEmbd per layer, the projection of
// the input embedding to them, its norm).
func (s Shape) gemma4Head(add func(string, role, int, float64, ...uint64), norm func(string, int, uint64)) {
	add("rope_freqs.weight", roleRopeFreqs, -1, 0, uint64(s.HeadDim()/2))
	if s.PerLayerEmbd == 0 {
		return
	}
	pw, all := uint64(s.PerLayerEmbd), uint64(s.PerLayerEmbd*s.Layers)
	// ×√PerLayerEmbd at run time: entries of about unit size.
	add("per_layer_token_embd.weight", roleTokenEmbd, -1, 1/math.Sqrt(float64(pw)), all, uint64(s.Vocab))
	add("per_layer_model_proj.weight", roleVector, -1, 1/math.Sqrt(float64(s.Embd)), uint64(s.Embd), all)
	norm("per_layer_proj_norm.weight", -1, pw)
}

// gemma4Attention adds layer i's Gemma 4 attention: heads of the layer's
// kind, q and k norms, and no k or v on a layer that reads an earlier
// layer's cache.
//
// Gemma 4 scales no scores by 1/√head: with q and k normed to unit size a
// random model's scores would have a standard deviation of √head (11 at
// 128), a softmax that picks one position, where float32 rounding decides
// which. Its q and k norm weights are 0.35 (scores of about 1.4√(head/16))
// as shared/tools/make_new_arch_models.py does.
func (s Shape) gemma4Attention(p string, i int, mat func(string, role, int, ...uint64), add func(string, role, int, float64, ...uint64)) {
	const qkNorm = 0.35
	d, hd := uint64(s.Embd), uint64(s.layerHead(i))
	qd, kv := uint64(s.Heads)*hd, uint64(s.KVHeads)*hd
	mat(p+"attn_q.weight", roleAttnQ, i, d, qd)
	mat(p+"attn_output.weight", roleAttnOut, i, qd, d)
	add(p+"attn_q_norm.weight", roleNorm, i, qkNorm, hd)
	if i >= s.Layers-s.SharedKVLayers {
		return
	}
	mat(p+"attn_k.weight", roleAttnK, i, d, kv)
	mat(p+"attn_v.weight", roleAttnV, i, d, kv)
	add(p+"attn_k_norm.weight", roleNorm, i, qkNorm, hd)
}

// layerHead is layer il's head size (Gemma 4's sliding layers have their
// own).
func (s Shape) layerHead(il int) int {
	if s.HeadSizeSWA > 0 && s.Slides(il) {
		return s.HeadSizeSWA
	}
	return s.HeadDim()
}

// metadata is the architecture's hyperparameter keys of shape s (without
// the "<arch>." prefix) and their values: uint32, float32 or string.
func (s Shape) metadata() []kv {
	fam := families[s.Architecture()]
	var m []kv
	u := func(k string, v int) { m = append(m, kv{k, uint32(v)}) }
	f := func(k string, v float32) { m = append(m, kv{k, v}) }
	u("block_count", s.Layers)
	u("context_length", s.Context)
	u("embedding_length", s.Embd)
	if s.FF > 0 {
		u("feed_forward_length", s.FF)
	}
	u("attention.head_count", s.Heads)
	u("attention.head_count_kv", s.KVHeads)
	f("rope.freq_base", s.RopeBase)
	f("attention.layer_norm_rms_epsilon", s.NormEps)
	if fam.hybrid {
		u("full_attention_interval", s.FullAttnInterval)
		u("ssm.conv_kernel", s.SSMConv)
		u("ssm.state_size", s.SSMHeadDim)
		u("ssm.group_count", s.SSMKHeads)
		u("ssm.time_step_rank", s.SSMVHeads)
		u("ssm.inner_size", s.SSMVHeads*s.SSMHeadDim)
		// M-RoPE sections over the rotated pairs (text gives them all the
		// same position; llama.cpp requires the key).
		half := int32(s.ropeDims() / 2)
		m = append(m, kv{"rope.dimension_sections", []int32{(half + 2) / 3, (half + 1) / 3, half / 3, 0}})
	}
	if fam.headKeys || s.HeadDim() != s.Embd/s.Heads {
		u("attention.key_length", s.HeadDim())
		u("attention.value_length", s.HeadDim())
	}
	if s.Experts > 0 {
		u("expert_count", s.Experts)
		u("expert_used_count", s.ExpertsUsed)
		u("expert_feed_forward_length", s.ExpertFF)
	}
	if fam.gemma4 {
		s.gemma4Metadata(u, f, func(k string, v any) { m = append(m, kv{k, v}) })
	} else if s.Window > 0 {
		u("attention.sliding_window", s.Window)
		if s.WindowPattern > 0 {
			u("attention.sliding_window_pattern", s.WindowPattern)
		}
	}
	if s.RopeBaseSWA > 0 {
		f("rope.freq_base_swa", s.RopeBaseSWA)
	}
	if s.RopeScaling != "" {
		m = append(m, kv{"rope.scaling.type", s.RopeScaling})
		f("rope.scaling.factor", s.RopeFactor)
		if s.RopeOrigCtx > 0 {
			u("rope.scaling.original_context_length", s.RopeOrigCtx)
		}
	}
	u("vocab_size", s.Vocab)
	u("rope.dimension_count", s.ropeDims())
	return m
}

// gemma4Metadata adds Gemma 4's keys: the sliding head sizes and rotary
// dims, the window and its per-layer pattern (an array of booleans), the
// shared KV layers, the per-layer embedding width, the logit soft-cap.
func (s Shape) gemma4Metadata(u func(string, int), f func(string, float32), set func(string, any)) {
	u("attention.key_length_swa", s.HeadSizeSWA)
	u("attention.value_length_swa", s.HeadSizeSWA)
	u("rope.dimension_count_swa", s.HeadSizeSWA)
	u("attention.sliding_window", s.Window)
	pattern := make([]bool, s.Layers)
	for il := range pattern {
		pattern[il] = s.Slides(il)
	}
	set("attention.sliding_window_pattern", pattern)
	u("attention.shared_kv_layers", s.SharedKVLayers)
	u("embedding_length_per_layer_input", s.PerLayerEmbd)
	if s.LogitCap > 0 {
		f("final_logit_softcapping", s.LogitCap)
	}
}

// ropeDims is the rotated dims of a head.
func (s Shape) ropeDims() int {
	if s.RopeDims > 0 {
		return s.RopeDims
	}
	return s.HeadDim()
}

// kv is one metadata key and its value.
type kv struct {
	key string
	val any
}

func (t Tensor) elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}
