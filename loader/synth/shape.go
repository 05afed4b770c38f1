package synth

import (
	"fmt"
	"sort"
	"strings"
)

// Shape is the geometry of a model: its architecture and the
// hyperparameters a file of that architecture states.
type Shape struct {
	Name string
	// Arch is the architecture, as general.architecture names it: "llama"
	// (also when empty), "qwen3", "qwen3moe", "gemma3" or "gpt-oss" (see
	// Archs). It decides the tensors a layer has beyond Llama's (q/k
	// norms, post-norms, biases, sinks) and what the shape may set.
	Arch    string
	Embd    int // n_embd
	Layers  int // n_layer
	Heads   int // n_head
	KVHeads int // n_head_kv
	// HeadSize is the size of one attention head (attention.key_length);
	// 0: Embd/Heads. Qwen 3, Gemma 3 and gpt-oss set it apart from the width.
	HeadSize int
	// FF is n_ff, the width of a dense feed-forward. A mixture states it
	// as its config gives it (feed_forward_length), unused by its layers;
	// it may be 0 there.
	FF int
	// Experts > 0 makes every layer's feed-forward a mixture of Experts
	// experts of width ExpertFF, ExpertsUsed of them per token.
	Experts, ExpertsUsed, ExpertFF int
	Vocab                          int // n_vocab, at least 259 (3 specials and 256 byte tokens)
	// Tied: the output matrix is token_embd (no output.weight).
	Tied     bool
	Context  int     // context_length
	RopeBase float32 // rope.freq_base
	// RopeBaseSWA is the RoPE base of the sliding-window layers
	// (rope.freq_base_swa); 0 writes no key (the family's default).
	RopeBaseSWA float32
	// RopeScaling is "" (none), "linear" or "yarn", by RopeFactor;
	// RopeOrigCtx is YaRN's original context.
	RopeScaling string
	RopeFactor  float32
	RopeOrigCtx int
	// Window > 0 is the sliding window of the layers that slide: with
	// WindowPattern n, layer il slides when il % n < n-1 (llama.cpp's
	// set_swa_pattern: 2 is the even layers, 6 five layers of every six).
	Window, WindowPattern int
	// RopeDims > 0 rotates only the first RopeDims dims of a head
	// (rope.dimension_count; Qwen 3.5's partial rotary); 0: all.
	RopeDims int
	// Hybrid (Arch "qwen35"): every FullAttnInterval-th layer is gated
	// full attention, the others Gated DeltaNet with SSMKHeads key heads
	// and SSMVHeads value heads of SSMHeadDim, and a causal conv of
	// SSMConv taps.
	FullAttnInterval                          int
	SSMKHeads, SSMVHeads, SSMHeadDim, SSMConv int
	// Gemma 4 (Arch "gemma4"): HeadSize is the global layers' head and
	// HeadSizeSWA the sliding layers'; the last SharedKVLayers layers own
	// no KV and read an earlier layer's; PerLayerEmbd > 0 is the width of
	// the per-layer token embeddings; LogitCap soft-caps the logits.
	HeadSizeSWA, SharedKVLayers, PerLayerEmbd int
	LogitCap                                  float32
	NormEps                                   float32 // attention.layer_norm_rms_epsilon
	About                                     string  // one line for `hearth gen --list`
}

// Architecture returns the architecture's name: Arch, or "llama".
func (s Shape) Architecture() string {
	if s.Arch == "" {
		return "llama"
	}
	return s.Arch
}

// HeadDim is the size of one attention head.
func (s Shape) HeadDim() int {
	if s.HeadSize > 0 {
		return s.HeadSize
	}
	return s.Embd / s.Heads
}

// Params is the number of weights (every element of every tensor).
func (s Shape) Params() uint64 {
	var n uint64
	for _, t := range s.tensors() {
		n += t.elements()
	}
	return n
}

// ActiveParams is the number of weights one token is computed with: the
// experts it is not routed to left out (Params for a dense model). The
// token embedding counts whole, as model cards count "active" parameters
// (Qwen3-30B-A3B's 3.3 B).
func (s Shape) ActiveParams() uint64 {
	var n uint64
	for _, t := range s.tensors() {
		if t.expert {
			n += t.elements() / uint64(s.Experts) * uint64(s.ExpertsUsed)
		} else {
			n += t.elements()
		}
	}
	return n
}

// Validate reports a shape its architecture or the vocabulary cannot
// have.
func (s Shape) Validate() error {
	fam, ok := families[s.Architecture()]
	if !ok {
		return fmt.Errorf("synth: shape %q: unknown architecture %q (known: %s)", s.Name, s.Arch, strings.Join(Archs(), ", "))
	}
	bad := func(format string, args ...any) error {
		return fmt.Errorf("synth: shape %q: "+format, append([]any{s.Name}, args...)...)
	}
	switch {
	case s.Embd <= 0 || s.Layers <= 0 || s.Heads <= 0 || s.KVHeads <= 0 || s.FF < 0 || s.HeadSize < 0:
		return bad("sizes must be positive")
	case s.HeadSize == 0 && s.Embd%s.Heads != 0:
		return bad("n_embd %d is not a multiple of %d heads", s.Embd, s.Heads)
	case s.HeadDim()%2 != 0:
		return bad("head size %d is odd", s.HeadDim())
	case s.Heads%s.KVHeads != 0:
		return bad("%d heads are not a multiple of %d KV heads", s.Heads, s.KVHeads)
	case s.Embd%32 != 0 || s.FF%32 != 0 || s.Heads*s.HeadDim()%32 != 0:
		return bad("n_embd, n_ff and heads × head size must be multiples of 32 (the block size)")
	case s.Vocab < firstPiece:
		return bad("vocab %d is below the %d special and byte tokens", s.Vocab, firstPiece)
	case s.Context <= 0 || s.RopeBase <= 0 || s.NormEps <= 0 || s.RopeBaseSWA < 0:
		return bad("context, rope base and norm epsilon must be positive")
	case s.RopeDims < 0 || s.RopeDims > s.HeadDim() || s.RopeDims%2 != 0:
		return bad("rope dims %d: want an even number up to the head size %d", s.RopeDims, s.HeadDim())
	}
	if fam.hybrid {
		k, v, hd := s.SSMKHeads, s.SSMVHeads, s.SSMHeadDim
		switch {
		case s.FullAttnInterval < 2 || k <= 0 || v <= 0 || hd <= 0 || v%k != 0 || s.SSMConv < 2 || s.SSMConv > 64:
			return bad("hybrid: attention every %d layers (want ≥ 2), ssm %d key heads, %d value heads (a multiple) of %d, conv %d", s.FullAttnInterval, k, v, hd, s.SSMConv)
		case (2*k+v)*hd%32 != 0 || v*hd%32 != 0:
			return bad("hybrid: ssm widths must be multiples of 32")
		}
	} else if s.FullAttnInterval != 0 || s.SSMKHeads != 0 || s.SSMVHeads != 0 || s.SSMHeadDim != 0 || s.SSMConv != 0 {
		return bad("%s has no recurrent layers", s.Architecture())
	}
	if err := s.validateGemma4(fam); err != nil {
		return bad("%v", err)
	}
	if s.Experts == 0 {
		if s.FF == 0 || s.ExpertsUsed != 0 || s.ExpertFF != 0 {
			return bad("a dense model needs n_ff and no expert sizes")
		}
	} else if s.Experts < 0 || s.ExpertsUsed <= 0 || s.ExpertsUsed > s.Experts || s.ExpertFF <= 0 || s.ExpertFF%32 != 0 {
		return bad("%d experts, %d used, of width %d: want 1 ≤ used ≤ experts and a width that is a multiple of 32", s.Experts, s.ExpertsUsed, s.ExpertFF)
	}
	switch {
	case fam.moe == never && s.Experts > 0:
		return bad("%s has no mixture of experts", s.Architecture())
	case fam.moe == always && s.Experts == 0:
		return bad("%s needs experts", s.Architecture())
	case fam.window == never && s.Window != 0:
		return bad("%s has no sliding window", s.Architecture())
	case fam.window == always && s.Window <= 0:
		return bad("%s needs a sliding window", s.Architecture())
	case s.Window < 0 || s.WindowPattern < 0 || s.Window == 0 && s.WindowPattern != 0:
		return bad("sliding window %d, pattern %d", s.Window, s.WindowPattern)
	case fam.untied && s.Tied:
		return bad("%s has a separate output matrix", s.Architecture())
	}
	switch s.RopeScaling {
	case "":
		if s.RopeFactor != 0 || s.RopeOrigCtx != 0 {
			return bad("a RoPE factor without a scaling type")
		}
	case "linear", "yarn":
		if s.RopeFactor <= 0 || s.RopeOrigCtx < 0 {
			return bad("RoPE %s scaling needs a factor", s.RopeScaling)
		}
	default:
		return bad("RoPE scaling %q (want linear or yarn)", s.RopeScaling)
	}
	return nil
}

// validateGemma4 checks the Gemma 4 fields: set only on gemma4, with a
// sliding head, and shared layers that find a cache of their kind (llama.cpp
// reads the last sliding and the last global layer that owns one).
func (s Shape) validateGemma4(fam family) error {
	if !fam.gemma4 {
		if s.HeadSizeSWA != 0 || s.SharedKVLayers != 0 || s.PerLayerEmbd != 0 || s.LogitCap != 0 {
			return fmt.Errorf("%s has no sliding head size, shared KV layers, per-layer embeddings or logit cap", s.Architecture())
		}
		return nil
	}
	switch {
	case s.HeadSizeSWA <= 0 || s.HeadSizeSWA%32 != 0 || s.HeadDim()%32 != 0:
		return fmt.Errorf("head sizes %d (global) and %d (sliding): want multiples of 32", s.HeadDim(), s.HeadSizeSWA)
	case s.WindowPattern < 2:
		return fmt.Errorf("window pattern %d: want global layers between sliding ones", s.WindowPattern)
	case s.SharedKVLayers < 0 || s.SharedKVLayers >= s.Layers || s.PerLayerEmbd < 0 || s.PerLayerEmbd%32 != 0 || s.LogitCap < 0:
		return fmt.Errorf("%d shared KV layers, per-layer embeddings %d, logit cap %v", s.SharedKVLayers, s.PerLayerEmbd, s.LogitCap)
	}
	if s.SharedKVLayers > 0 {
		own := s.Layers - s.SharedKVLayers
		seen := map[bool]bool{}
		for il := range own {
			seen[s.Slides(il)] = true
		}
		for il := own; il < s.Layers; il++ {
			if !seen[s.Slides(il)] {
				return fmt.Errorf("shared layer %d finds no earlier layer of its kind that owns a cache", il)
			}
		}
	}
	return nil
}

// Slides reports whether layer il has a sliding window.
func (s Shape) Slides(il int) bool {
	return s.Window > 0 && (s.WindowPattern == 0 || il%s.WindowPattern < s.WindowPattern-1)
}

// shapes are the known shapes. To add one, add a line.
var shapes = []Shape{
	{Name: "tiny", Embd: 256, Layers: 4, Heads: 8, KVHeads: 4, FF: 512, Vocab: 1024, Tied: true,
		Context: 2048, RopeBase: 10000, NormEps: 1e-5, About: "a few million weights, for tests and smoke runs"},
	{Name: "llama-1b", Embd: 2048, Layers: 16, Heads: 32, KVHeads: 8, FF: 8192, Vocab: 32000, Tied: true,
		Context: 4096, RopeBase: 10000, NormEps: 1e-5, About: "Llama 3.2 1B's body with a 32000 vocabulary (the CPU baseline)"},
	{Name: "llama-3b", Embd: 3072, Layers: 28, Heads: 24, KVHeads: 8, FF: 8192, Vocab: 32000, Tied: true,
		Context: 4096, RopeBase: 10000, NormEps: 1e-5, About: "Llama 3.2 3B's body with a 32000 vocabulary"},
	{Name: "llama-8b", Embd: 4096, Layers: 32, Heads: 32, KVHeads: 8, FF: 14336, Vocab: 32000, Tied: true,
		Context: 4096, RopeBase: 10000, NormEps: 1e-5, About: "Llama 3 8B's body with a 32000 vocabulary, tied (the GPU anchor)"},
	{Name: "llama3-8b", Embd: 4096, Layers: 32, Heads: 32, KVHeads: 8, FF: 14336, Vocab: 128256, Tied: false,
		Context: 8192, RopeBase: 500000, NormEps: 1e-5, About: "Llama 3 8B: 128256 vocabulary, separate output matrix"},

	// The families beyond Llama, at the tiny scale for tests and smoke
	// runs: every tensor kind and key of the family, head sizes apart from
	// n_embd/n_head, windows short enough for a test's prompt to pass.
	{Name: "tiny-qwen3", Arch: "qwen3", Embd: 256, Layers: 4, Heads: 8, KVHeads: 2, HeadSize: 64, FF: 512, Vocab: 1024,
		Context: 2048, RopeBase: 1e6, NormEps: 1e-6, About: "qwen3 at the tiny scale: q/k norms, q width 512 ≠ n_embd, untied"},
	{Name: "tiny-qwen3moe", Arch: "qwen3moe", Embd: 256, Layers: 4, Heads: 8, KVHeads: 2, HeadSize: 64, FF: 512,
		Experts: 8, ExpertsUsed: 2, ExpertFF: 256, Vocab: 1024,
		Context: 2048, RopeBase: 1e6, NormEps: 1e-6, About: "qwen3moe at the tiny scale: 8 experts, top 2"},
	{Name: "tiny-gemma3", Arch: "gemma3", Embd: 256, Layers: 6, Heads: 4, KVHeads: 2, HeadSize: 128, FF: 512, Vocab: 1024, Tied: true,
		Context: 2048, RopeBase: 1e6, RopeBaseSWA: 10000, RopeScaling: "linear", RopeFactor: 8, Window: 4, WindowPattern: 3,
		NormEps: 1e-6, About: "gemma3 at the tiny scale: window 4 on 2 layers of 3, linear RoPE ×8 on the global ones"},
	{Name: "tiny-qwen35", Arch: "qwen35", Embd: 256, Layers: 4, Heads: 4, KVHeads: 2, HeadSize: 64, FF: 512, Vocab: 1024,
		Context: 2048, RopeBase: 1e7, RopeDims: 16, FullAttnInterval: 2, SSMKHeads: 2, SSMVHeads: 4, SSMHeadDim: 32, SSMConv: 4,
		NormEps: 1e-6, About: "qwen35 at the tiny scale: Gated DeltaNet on layers 0, 2, gated attention on 1, 3, partial RoPE"},
	{Name: "tiny-gemma4", Arch: "gemma4", Embd: 256, Layers: 6, Heads: 4, KVHeads: 2, HeadSize: 128, HeadSizeSWA: 64, FF: 512, Vocab: 1024, Tied: true,
		Context: 2048, RopeBase: 1e6, RopeBaseSWA: 10000, Window: 8, WindowPattern: 3, SharedKVLayers: 3, PerLayerEmbd: 64, LogitCap: 30,
		NormEps: 1e-6, About: "gemma4 at the tiny scale: window 8 on 2 layers of 3, heads 64/128 (KV widths 128/256), 3 shared-KV layers, per-layer embeddings"},
	{Name: "tiny-gpt-oss", Arch: "gpt-oss", Embd: 256, Layers: 4, Heads: 8, KVHeads: 2, HeadSize: 64, FF: 256,
		Experts: 8, ExpertsUsed: 2, ExpertFF: 256, Vocab: 1024,
		Context: 2048, RopeBase: 150000, RopeScaling: "yarn", RopeFactor: 32, RopeOrigCtx: 64, Window: 4, WindowPattern: 2,
		NormEps: 1e-5, About: "gpt-oss at the tiny scale: sinks, biases, 8 experts top 2, window 4 on even layers, YaRN"},

	// Real models of those families, with their own vocabulary sizes (the
	// pieces are generated: a SentencePiece vocabulary, not their BPE).
	{Name: "qwen3-1.7b", Arch: "qwen3", Embd: 2048, Layers: 28, Heads: 16, KVHeads: 8, HeadSize: 128, FF: 6144, Vocab: 151936, Tied: true,
		Context: 40960, RopeBase: 1e6, NormEps: 1e-6, About: "Qwen3-1.7B: q/k norms, 151936 vocabulary, tied (the dense CPU benchmark beyond Llama)"},
	{Name: "qwen3-8b", Arch: "qwen3", Embd: 4096, Layers: 36, Heads: 32, KVHeads: 8, HeadSize: 128, FF: 12288, Vocab: 151936,
		Context: 40960, RopeBase: 1e6, NormEps: 1e-6, About: "Qwen3-8B: q/k norms, 151936 vocabulary, separate output"},
	{Name: "gemma3-4b", Arch: "gemma3", Embd: 2560, Layers: 34, Heads: 8, KVHeads: 4, HeadSize: 256, FF: 10240, Vocab: 262144, Tied: true,
		Context: 131072, RopeBase: 1e6, RopeBaseSWA: 10000, RopeScaling: "linear", RopeFactor: 8, Window: 1024, WindowPattern: 6,
		NormEps: 1e-6, About: "Gemma 3 4B (text): window 1024 on 5 layers of 6, 262144 vocabulary, tied"},
	{Name: "qwen3-30b-a3b", Arch: "qwen3moe", Embd: 2048, Layers: 48, Heads: 32, KVHeads: 4, HeadSize: 128, FF: 6144,
		Experts: 128, ExpertsUsed: 8, ExpertFF: 768, Vocab: 151936,
		Context: 40960, RopeBase: 1e6, NormEps: 1e-6, About: "Qwen3-30B-A3B: 128 experts of 768, top 8, separate output"},
	{Name: "gpt-oss-20b", Arch: "gpt-oss", Embd: 2880, Layers: 24, Heads: 64, KVHeads: 8, HeadSize: 64, FF: 2880,
		Experts: 32, ExpertsUsed: 4, ExpertFF: 2880, Vocab: 201088,
		Context: 131072, RopeBase: 150000, RopeScaling: "yarn", RopeFactor: 32, RopeOrigCtx: 4096, Window: 128, WindowPattern: 2,
		NormEps: 1e-5, About: "gpt-oss-20b: 32 experts top 4, sinks, window 128 on even layers, YaRN ×32 (quantize with mxfp4_moe)"},
	{Name: "qwen3.5-0.8b", Arch: "qwen35", Embd: 1024, Layers: 24, Heads: 8, KVHeads: 2, HeadSize: 256, FF: 3584, Vocab: 248320, Tied: true,
		Context: 262144, RopeBase: 1e7, RopeDims: 64, FullAttnInterval: 4, SSMKHeads: 16, SSMVHeads: 16, SSMHeadDim: 128, SSMConv: 4,
		NormEps: 1e-6, About: "Qwen3.5-0.8B-like (text): Gated DeltaNet on 3 layers of 4 (16 heads of 128), gated attention (head 256, 64 dims rotated), tied"},
	{Name: "qwen3.5-9b", Arch: "qwen35", Embd: 4096, Layers: 32, Heads: 16, KVHeads: 4, HeadSize: 256, FF: 12288, Vocab: 248320,
		Context: 262144, RopeBase: 1e7, RopeDims: 64, FullAttnInterval: 4, SSMKHeads: 16, SSMVHeads: 32, SSMHeadDim: 128, SSMConv: 4,
		NormEps: 1e-6, About: "Qwen3.5-9B (text): Gated DeltaNet on 3 layers of 4 (16 key, 32 value heads of 128), gated attention (head 256, 64 dims rotated), separate output"},
	{Name: "gemma4-e4b", Arch: "gemma4", Embd: 2560, Layers: 42, Heads: 8, KVHeads: 2, HeadSize: 512, HeadSizeSWA: 256, FF: 10240, Vocab: 262144, Tied: true,
		Context: 131072, RopeBase: 1e6, RopeBaseSWA: 10000, Window: 512, WindowPattern: 6, SharedKVLayers: 18, PerLayerEmbd: 256, LogitCap: 30,
		NormEps: 1e-6, About: "Gemma 4 E4B-like (text): window 512 on 5 layers of 6 (head 256), global heads of 512, the last 18 layers share KV, per-layer embeddings of 256, tied"},
	{Name: "moe-3b-a0.6b", Arch: "qwen3moe", Embd: 1024, Layers: 18, Heads: 16, KVHeads: 4, HeadSize: 128,
		Experts: 32, ExpertsUsed: 4, ExpertFF: 1536, Vocab: 151936, Tied: true,
		Context: 40960, RopeBase: 1e6, NormEps: 1e-6, About: "a small qwen3moe (not a released model) for CPU benchmarks: 32 experts top 4, tied"},
}

// Shapes returns the known shapes, smallest first.
func Shapes() []Shape {
	out := append([]Shape(nil), shapes...)
	sort.SliceStable(out, func(i, j int) bool { return out[i].Params() < out[j].Params() })
	return out
}

// LookupShape returns the shape with the given name.
func LookupShape(name string) (Shape, error) {
	for _, s := range shapes {
		if s.Name == name {
			return s, nil
		}
	}
	var names []string
	for _, s := range Shapes() {
		names = append(names, s.Name)
	}
	return Shape{}, fmt.Errorf("synth: unknown shape %q (known: %s)", name, strings.Join(names, ", "))
}
