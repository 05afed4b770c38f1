package arch

import (
	"fmt"
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// Meta reads an architecture's hyperparameters: keys are relative to the
// architecture prefix ("llama.embedding_length" is Meta.Int("embedding_length")).
// The first error sticks and is returned by Err, so a config can be decoded
// in straight-line code and checked once.
type Meta struct {
	F      *gguf.File
	Prefix string
	err    error
}

func (m *Meta) fail(format string, args ...any) {
	if m.err == nil {
		m.err = fmt.Errorf(format, args...)
	}
}

// Err returns the first error met.
func (m *Meta) Err() error { return m.err }

// Int returns a required positive integer that fits an int32.
func (m *Meta) Int(key string) int {
	k := m.Prefix + "." + key
	v, ok := m.F.Uint(k)
	if !ok {
		m.fail("missing or non-integer metadata %s", k)
		return 0
	}
	if v == 0 || v > math.MaxInt32 {
		m.fail("metadata %s = %d is out of range", k, v)
		return 0
	}
	return int(v)
}

// IntOr returns an optional positive integer, def when absent.
func (m *Meta) IntOr(key string, def int) int {
	if _, ok := m.F.Get(m.Prefix + "." + key); !ok {
		return def
	}
	return m.Int(key)
}

// Float returns a required finite float.
func (m *Meta) Float(key string) float32 {
	k := m.Prefix + "." + key
	v, ok := m.F.Float(k)
	if !ok {
		m.fail("missing or non-numeric metadata %s", k)
		return 0
	}
	if math.IsNaN(v) || math.IsInf(v, 0) {
		m.fail("metadata %s = %v is not finite", k, v)
	}
	return float32(v)
}

// FloatOr returns an optional finite float, def when absent.
func (m *Meta) FloatOr(key string, def float32) float32 {
	if _, ok := m.F.Get(m.Prefix + "." + key); !ok {
		return def
	}
	return m.Float(key)
}

// StringOr returns an optional string, def when absent.
func (m *Meta) StringOr(key, def string) string {
	if s, ok := m.F.String(m.Prefix + "." + key); ok {
		return s
	}
	return def
}

// Weights binds tensors from a file onto a backend, checking shapes and
// types and counting parameters.
type Weights struct {
	F      *gguf.File
	B      backend.Backend
	Params uint64
	err    error
}

// Err returns the first error met.
func (w *Weights) Err() error { return w.err }

// Fail records err unless an error was met before.
func (w *Weights) Fail(err error) {
	if w.err == nil {
		w.err = err
	}
}

// Dims is a weight's shape as Backend.Weight takes it: Rows rows of Cols
// values each (Cols is ggml's ne[0], the tensor's first dimension). Write
// it with field names (Dims{Rows: vocab, Cols: embd}) or Vec(n): the
// order of a pair of ints is easy to get wrong, a field name is not.
type Dims struct {
	Rows, Cols int // Rows 0: a 1-D tensor of Cols values (Vec)
}

// Vec is the shape of a 1-D tensor of n values (a norm vector, a bias).
func Vec(n int) Dims { return Dims{Cols: n} }

// Get binds the named tensor, which must have shape d (ne = [d.Cols,
// d.Rows], or [d.Cols] for a Vec).
func (w *Weights) Get(name string, d Dims) backend.Weight {
	b, ok := w.bind(name, d)
	if !ok && w.err == nil {
		w.err = fmt.Errorf("missing tensor %q", name)
	}
	return b
}

// Optional binds the named tensor if the file has it; nil otherwise.
func (w *Weights) Optional(name string, d Dims) backend.Weight {
	b, _ := w.bind(name, d)
	return b
}

func (w *Weights) bind(name string, d Dims) (backend.Weight, bool) {
	if w.err != nil {
		return nil, true
	}
	t, ok := w.F.Tensor(name)
	if !ok {
		return nil, false
	}
	want := []uint64{uint64(d.Cols)}
	if d.Rows > 0 {
		want = append(want, uint64(d.Rows))
	}
	if fmt.Sprint(t.Dims) != fmt.Sprint(want) {
		w.err = fmt.Errorf("tensor %q has shape %v, want %v from the metadata", name, t.Dims, want)
		return nil, true
	}
	if t.Type != quant.F32 && !t.Type.Supported() {
		w.err = fmt.Errorf("unsupported tensor type %v in tensor %q", t.Type, name)
		return nil, true
	}
	r := max(d.Rows, 1)
	b, err := w.B.Weight(name, t.Type, r, d.Cols, w.F.Data(t))
	if err != nil {
		w.err = err
		return nil, true
	}
	w.Params += uint64(r) * uint64(d.Cols)
	return b, true
}

// TrainedContext is the context length f's architecture was trained
// with (<arch>.context_length), 0 when absent or out of range: for
// listings that read headers only and must not fail on a file no family
// describes (hearth ls, /api/show). Loading and placement use Describe.
func TrainedContext(f *gguf.File) int {
	name, _ := f.String("general.architecture")
	if v, ok := f.Uint(name + ".context_length"); ok && v <= math.MaxInt32 {
		return int(v)
	}
	return 0
}

// Hyperparameter is one of an architecture's metadata values, by its key
// under the architecture's prefix ("context_length").
type Hyperparameter struct {
	Key   string
	Value gguf.Value
}

// Hyperparameters lists the common hyperparameters f's header holds
// (context, widths, layers, heads, RoPE base, norm epsilon), as hearth
// show prints them, whatever the architecture; absent keys are left out.
func Hyperparameters(f *gguf.File) []Hyperparameter {
	name, _ := f.String("general.architecture")
	var hs []Hyperparameter
	for _, k := range []string{"context_length", "embedding_length", "block_count", "feed_forward_length",
		"attention.head_count", "attention.head_count_kv", "rope.freq_base", "attention.layer_norm_rms_epsilon"} {
		if v, ok := f.Get(name + "." + k); ok {
			hs = append(hs, Hyperparameter{k, v})
		}
	}
	return hs
}

// PerLayer returns a per-layer integer of n layers: an array of n
// positive values, or one scalar for every layer (llama.cpp's
// get_key_or_arr); def for every layer when absent, unless def is 0,
// which makes the key required.
func (m *Meta) PerLayer(key string, n, def int) []int {
	k := m.Prefix + "." + key
	out := make([]int, n)
	if _, ok := m.F.Get(k); !ok && def > 0 {
		for i := range out {
			out[i] = def
		}
		return out
	}
	a, ok := m.F.Array(k)
	if !ok {
		v := m.Int(key)
		for i := range out {
			out[i] = v
		}
		return out
	}
	var vals []int64
	switch s := a.Values.(type) {
	case []int32:
		for _, v := range s {
			vals = append(vals, int64(v))
		}
	case []uint32:
		for _, v := range s {
			vals = append(vals, int64(v))
		}
	default:
		m.fail("metadata %s is an array of %v, want integers", k, a.Elem)
		return out
	}
	if len(vals) != n {
		m.fail("metadata %s has %d values for %d layers", k, len(vals), n)
		return out
	}
	for i, v := range vals {
		if v <= 0 || v > math.MaxInt32 {
			m.fail("metadata %s[%d] = %d is out of range", k, i, v)
			return out
		}
		out[i] = int(v)
	}
	return out
}

// Bools returns a required array of n booleans (a per-layer flag).
func (m *Meta) Bools(key string, n int) []bool {
	k := m.Prefix + "." + key
	a, ok := m.F.Array(k)
	s, isBool := a.Values.([]bool)
	switch {
	case !ok || !isBool:
		m.fail("missing metadata %s, or not an array of booleans", k)
		return make([]bool, n)
	case len(s) != n:
		m.fail("metadata %s has %d values for %d layers", k, len(s), n)
		return make([]bool, n)
	}
	return s
}
