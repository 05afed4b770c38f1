package synth

import (
	"fmt"
	"sort"
	"strings"
)

// Shape is the geometry of a llama-architecture model.
type Shape struct {
	Name    string
	Embd    int // n_embd
	Layers  int // n_layer
	Heads   int // n_head
	KVHeads int // n_head_kv
	FF      int // n_ff
	Vocab   int // n_vocab, at least 259 (3 specials and 256 byte tokens)
	// Tied: the output matrix is token_embd (no output.weight).
	Tied     bool
	Context  int     // llama.context_length
	RopeBase float32 // llama.rope.freq_base
	NormEps  float32 // llama.attention.layer_norm_rms_epsilon
	About    string  // one line for `hearth gen --list`
}

// HeadDim is the size of one attention head.
func (s Shape) HeadDim() int { return s.Embd / s.Heads }

// Params is the number of weights.
func (s Shape) Params() uint64 {
	d, kv, ff := uint64(s.Embd), uint64(s.KVHeads*s.HeadDim()), uint64(s.FF)
	layer := 2*d + d*d*2 + 2*d*kv + 3*d*ff // norms, q, o, k, v, gate, up, down
	n := uint64(s.Layers)*layer + d + uint64(s.Vocab)*d
	if !s.Tied {
		n += uint64(s.Vocab) * d
	}
	return n
}

// Validate reports a shape the llama architecture or the vocabulary cannot
// have.
func (s Shape) Validate() error {
	switch {
	case s.Embd <= 0 || s.Layers <= 0 || s.Heads <= 0 || s.KVHeads <= 0 || s.FF <= 0:
		return fmt.Errorf("synth: shape %q: sizes must be positive", s.Name)
	case s.Embd%s.Heads != 0 || s.HeadDim()%2 != 0:
		return fmt.Errorf("synth: shape %q: n_embd %d is not a multiple of %d heads of even size", s.Name, s.Embd, s.Heads)
	case s.Heads%s.KVHeads != 0:
		return fmt.Errorf("synth: shape %q: %d heads are not a multiple of %d KV heads", s.Name, s.Heads, s.KVHeads)
	case s.Embd%32 != 0 || s.FF%32 != 0:
		return fmt.Errorf("synth: shape %q: n_embd and n_ff must be multiples of 32 (the block size)", s.Name)
	case s.Vocab < firstPiece:
		return fmt.Errorf("synth: shape %q: vocab %d is below the %d special and byte tokens", s.Name, s.Vocab, firstPiece)
	case s.Context <= 0 || s.RopeBase <= 0 || s.NormEps <= 0:
		return fmt.Errorf("synth: shape %q: context, rope base and norm epsilon must be positive", s.Name)
	}
	return nil
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
