package lora

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"strings"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// ErrNotAdapter is wrapped when a file is not a LoRA adapter (its
// general.type or adapter.type says otherwise).
var ErrNotAdapter = errors.New("not a LoRA adapter")

// ErrMismatch is wrapped when an adapter does not fit the base model: its
// architecture, a tensor the base lacks, or a shape.
var ErrMismatch = errors.New("adapter does not fit the base model")

// ErrUnsupported is wrapped when an adapter adapts a weight Hearth
// applies no adapter to (arch.Adaptable.LoRATargets), or the model or
// backend runs none.
var ErrUnsupported = errors.New("unsupported adapter")

// Pair is one adapted tensor of a file, checked against the base.
type Pair struct {
	Name     string // the base tensor ("blk.0.attn_q.weight")
	A, B     *gguf.TensorInfo
	Rank     int
	In, Out  int  // the base weight's ne[0] and ne[1]
	Embedded bool // the token embedding (flipped shapes)
	// Experts is the stack's ne[2] for a mixture's expert weights
	// (ffn_*_exps: W {in, out, experts}, A {in, rank, experts}, B {rank,
	// out, experts}, one pair per expert, as llama.cpp's
	// build_lora_mm_id reads them); 0 for a 2-D weight.
	Experts int
}

// File is an adapter file's contents, checked against a base model.
type File struct {
	Arch  string
	Alpha float32
	Pairs []Pair // sorted by name
	f     *gguf.File
}

// Check reads f as a LoRA adapter for the model in base: its type, its
// architecture, and every pair's names and shapes (errors name the
// tensor).
func Check(f, base *gguf.File) (*File, error) {
	if t, _ := f.String("general.type"); t != "adapter" {
		return nil, fmt.Errorf("%w: general.type is %q, want \"adapter\"", ErrNotAdapter, t)
	}
	if t, _ := f.String("adapter.type"); t != "lora" {
		return nil, fmt.Errorf("%w: adapter.type is %q, want \"lora\"", ErrNotAdapter, t)
	}
	a, _ := f.String("general.architecture")
	if b, _ := base.String("general.architecture"); a != b {
		return nil, fmt.Errorf("%w: adapter for architecture %q, base model is %q", ErrMismatch, a, b)
	}
	out := &File{Arch: a, f: f}
	if v, ok := f.Get("adapter.lora.alpha"); ok {
		x, ok := v.Float()
		if !ok || math.IsNaN(x) || math.IsInf(x, 0) {
			return nil, fmt.Errorf("adapter.lora.alpha is %v, want a finite number", v)
		}
		out.Alpha = float32(x)
	}
	pairs := map[string]*Pair{}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		var name string
		switch {
		case strings.HasSuffix(t.Name, ".lora_a"):
			name = strings.TrimSuffix(t.Name, ".lora_a")
		case strings.HasSuffix(t.Name, ".lora_b"):
			name = strings.TrimSuffix(t.Name, ".lora_b")
		case strings.HasSuffix(t.Name, "_norm.weight"):
			continue // llama.cpp skips norm vectors too
		default:
			return nil, fmt.Errorf("adapter tensor %q: unexpected name (want <base tensor>.lora_a or .lora_b)", t.Name)
		}
		p := pairs[name]
		if p == nil {
			p = &Pair{Name: name}
			pairs[name] = p
		}
		if strings.HasSuffix(t.Name, "_a") {
			p.A = t
		} else {
			p.B = t
		}
	}
	names := make([]string, 0, len(pairs))
	for name := range pairs {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		p := pairs[name]
		if err := p.check(base); err != nil {
			return nil, fmt.Errorf("adapter tensor %q: %w", name, err)
		}
		out.Pairs = append(out.Pairs, *p)
	}
	return out, nil
}

// check fills p's shape from the base and checks it (llama.cpp's rules).
func (p *Pair) check(base *gguf.File) error {
	if p.A == nil || p.B == nil {
		return fmt.Errorf("%w: lora_a or lora_b is missing", ErrMismatch)
	}
	w, ok := base.Tensor(p.Name)
	if !ok {
		return fmt.Errorf("%w: the base model has no tensor %q", ErrMismatch, p.Name)
	}
	if len(w.Dims) != 2 && len(w.Dims) != 3 {
		return fmt.Errorf("%w: base tensor has shape %v, want 2-D (or a 3-D stack of experts)", ErrMismatch, w.Dims)
	}
	for _, t := range []*gguf.TensorInfo{p.A, p.B} {
		if len(t.Dims) != len(w.Dims) {
			return fmt.Errorf("%w: %s has shape %v for a base tensor of shape %v", ErrMismatch, t.Name, t.Dims, w.Dims)
		}
		switch t.Type {
		case quant.F32, quant.F16, quant.BF16:
		default:
			return fmt.Errorf("%w: %s is %v, want F32, F16 or BF16", ErrUnsupported, t.Name, t.Type)
		}
	}
	if len(w.Dims) == 3 {
		// A stack of experts: a pair per expert along ne[2].
		if p.A.Dims[2] != w.Dims[2] || p.B.Dims[2] != w.Dims[2] || w.Dims[2] == 0 || w.Dims[2] > 1<<16 {
			return fmt.Errorf("%w: lora_a %v and lora_b %v do not fit the %d experts of %v", ErrMismatch, p.A.Dims, p.B.Dims, w.Dims[2], w.Dims)
		}
		if p.Name == "token_embd.weight" {
			return fmt.Errorf("%w: a 3-D token embedding", ErrMismatch)
		}
		p.Experts = int(w.Dims[2])
	}
	a, b := p.A.Dims, p.B.Dims
	p.In, p.Out = int(w.Dims[0]), int(w.Dims[1])
	if p.Name == "token_embd.weight" {
		// Flipped: A {rank, n_vocab}, B {rank, n_embd}.
		if w.Dims[0] != b[1] || w.Dims[1] != a[1] || a[0] != b[0] {
			return fmt.Errorf("%w: lora_a %v and lora_b %v do not fit the token embedding %v (want {rank, %d} and {rank, %d})", ErrMismatch, a, b, w.Dims, w.Dims[1], w.Dims[0])
		}
		p.Embedded = true
	} else {
		if w.Dims[0] != a[0] || w.Dims[1] != b[1] {
			return fmt.Errorf("%w: lora_a %v and lora_b %v do not fit the base weight %v (want {%d, rank} and {rank, %d}; maybe the wrong base model?)", ErrMismatch, a, b, w.Dims, w.Dims[0], w.Dims[1])
		}
		if a[1] != b[0] {
			return fmt.Errorf("%w: lora_a %v and lora_b %v disagree on the rank (lora_a not transposed?)", ErrMismatch, a, b)
		}
	}
	p.Rank = int(b[0])
	if p.Rank <= 0 || p.Rank > 4096 {
		return fmt.Errorf("%w: rank %d", ErrUnsupported, p.Rank)
	}
	return nil
}

// Scale is the factor of the pair's delta at user scale user:
// alpha/rank × user, or user when alpha is 0 (llama.cpp's get_scale).
func (f *File) Scale(p *Pair, user float32) float32 {
	if f.Alpha == 0 {
		return user
	}
	return user * f.Alpha / float32(p.Rank)
}

// values reads a tensor of the adapter file as float32.
func (f *File) values(t *gguf.TensorInfo) ([]float32, error) {
	n := int(t.Elements())
	out := make([]float32, n)
	cols := int(t.Dims[0])
	rb, err := t.Type.RowBytes(cols)
	if err != nil {
		return nil, err
	}
	data := f.f.Data(t)
	if len(data) != rb*(n/cols) {
		return nil, fmt.Errorf("tensor %q: %d bytes, want %d", t.Name, len(data), rb*(n/cols))
	}
	for r := 0; r < n/cols; r++ {
		if err := quant.DequantizeRow(t.Type, data[r*rb:(r+1)*rb], out[r*cols:(r+1)*cols]); err != nil {
			return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
		}
	}
	for _, v := range out {
		if v-v != 0 {
			return nil, fmt.Errorf("tensor %q holds a non-finite value", t.Name)
		}
	}
	return out, nil
}

// Adapter is an adapter bound to one loaded model (arch.Adapter): each
// adapted weight's pair on the model's backend, with its scale. It is
// read-only: any number of steps may use it at once.
type Adapter struct {
	Name  string
	Alpha float32
	// UserScale is the scale asked for at Bind (WithScale changes it).
	UserScale float32
	// Tensors is the base tensors adapted; Bytes the float32 bytes held.
	Tensors int
	Bytes   int64
	deltas  map[backend.Weight]delta
	unit    map[backend.Weight]float32 // per weight, its scale at user scale 1
}

type delta struct {
	l     backend.LoRAWeight
	scale float32
}

// Delta implements arch.Adapter.
func (a *Adapter) Delta(w backend.Weight) (backend.LoRAWeight, float32, bool) {
	d, ok := a.deltas[w]
	return d.l, d.scale, ok
}

// WithScale returns the adapter at another user scale, sharing the
// bound pairs (no copy).
func (a *Adapter) WithScale(user float32) *Adapter {
	b := *a
	b.UserScale = user
	b.deltas = make(map[backend.Weight]delta, len(a.deltas))
	for w, d := range a.deltas {
		b.deltas[w] = delta{d.l, a.unit[w] * user}
	}
	return &b
}

// target is a bound weight of the model: rows [r0, r0+n) of a base
// tensor (all of it when whole).
type target struct {
	w     backend.Weight
	r0, n int
	whole bool
}

// targets indexes m's adaptable weights by base tensor name, from their
// names: "name" or "name[r0:r1]" (blocks.Binder.Rows).
func targets(m arch.Adaptable) (map[string][]target, error) {
	ts := map[string][]target{}
	for _, w := range m.LoRATargets() {
		name := w.Name()
		t := target{w: w, whole: true}
		if base, rng, ok := strings.Cut(name, "["); ok {
			var r1 int
			if _, err := fmt.Sscanf(rng, "%d:%d]", &t.r0, &r1); err != nil || r1 <= t.r0 {
				return nil, fmt.Errorf("weight %q: cannot read its rows", name)
			}
			name, t.n, t.whole = base, r1-t.r0, false
		}
		ts[name] = append(ts[name], t)
	}
	return ts, nil
}

// Bind binds the checked adapter f on model m (loaded on be) at user
// scale user (1: as trained). Every pair must adapt a weight m applies
// adapters to (ErrUnsupported names the first that does not).
func Bind(name string, f *File, m arch.Model, be backend.Backend, user float32) (*Adapter, error) {
	am, ok := m.(arch.Adaptable)
	if !ok {
		return nil, fmt.Errorf("%w: the %s model takes no adapters", ErrUnsupported, m.Info().Arch)
	}
	ops, ok := be.(backend.LoRA)
	if !ok {
		return nil, fmt.Errorf("%w: the %s backend runs no adapters", ErrUnsupported, be.Name())
	}
	if math.IsNaN(float64(user)) || math.IsInf(float64(user), 0) {
		return nil, fmt.Errorf("adapter scale %v", user)
	}
	ts, err := targets(am)
	if err != nil {
		return nil, err
	}
	ad := &Adapter{Name: name, Alpha: f.Alpha, UserScale: user, deltas: map[backend.Weight]delta{}, unit: map[backend.Weight]float32{}}
	for i := range f.Pairs {
		p := &f.Pairs[i]
		tw := ts[p.Name]
		if len(tw) == 0 {
			return nil, fmt.Errorf("adapter tensor %q: %w: Hearth applies adapters to the attention projections, the feed-forward and expert weights, the output and the token embedding of this model, not to this tensor", p.Name, ErrUnsupported)
		}
		if p.Embedded && tw[0].w != am.Embedding() {
			return nil, fmt.Errorf("adapter tensor %q: %w: flipped shapes on a weight that is not the token embedding", p.Name, ErrUnsupported)
		}
		av, err := f.values(p.A)
		if err != nil {
			return nil, err
		}
		bv, err := f.values(p.B)
		if err != nil {
			return nil, err
		}
		r := p.Rank
		var a []float32 // rank × in, the product's layout
		in := p.In
		if p.Embedded {
			// File A is n_vocab rows of rank: transpose to rank × n_vocab.
			in = p.Out
			a = make([]float32, r*in)
			for v := range in {
				for j := range r {
					a[j*in+v] = av[v*r+j]
				}
			}
		} else {
			a = av
		}
		out := p.Out
		if p.Embedded {
			out = p.In
		}
		// A stack of experts is bound as its experts are (rows e·out …
		// (e+1)·out of the stack): expert e's pair is A's and B's e-th
		// slab.
		experts := max(p.Experts, 1)
		for _, t := range tw {
			r0, n := 0, out
			if !t.whole {
				r0, n = t.r0, t.n
			}
			e := r0 / out
			r0 -= e * out
			rows, cols := t.w.Shape()
			if p.Embedded { // the table is vocab rows of n_embd: the product's transpose
				rows, cols = cols, rows
			}
			if rows != n || cols != in || r0+n > out || e >= experts {
				return nil, fmt.Errorf("adapter tensor %q: %w: weight %q is %d × %d, the pair gives %d × %d", p.Name, ErrMismatch, t.w.Name(), rows, cols, n, in)
			}
			keep := quant.F32 // F16 files stay F16 (half the bandwidth); F32 and BF16 run in F32
			if p.A.Type == quant.F16 && p.B.Type == quant.F16 {
				keep = quant.F16
			}
			ae, be := a[e*r*in:(e+1)*r*in], bv[e*out*r:(e+1)*out*r]
			l, err := ops.BindLoRA(t.w.Name(), ae, be[r0*r:(r0+n)*r], n, in, r, keep)
			if err != nil {
				return nil, err
			}
			s := f.Scale(p, 1)
			ad.unit[t.w] = s
			ad.deltas[t.w] = delta{l, s * user}
			ad.Bytes += int64(keep.BlockBytes() * r * (in + n))
		}
		ad.Tensors++
	}
	return ad, nil
}

// Load opens the adapter file at path, checks it against base (the
// model's file) and binds it on m and be at user scale user. The file is
// closed before Load returns: what the backend needs is copied.
func Load(name, path string, base *gguf.File, m arch.Model, be backend.Backend, user float32) (*Adapter, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	c, err := Check(f, base)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	ad, err := Bind(name, c, m, be, user)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ad, nil
}

var _ arch.Adapter = (*Adapter)(nil)
