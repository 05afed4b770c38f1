package blocks

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// Binder binds a decoder's weights by llama.cpp's tensor names, with the
// checks every family needs: shapes from the metadata, fused tensors
// split into their parts, expert stacks into one weight per expert. The
// first error sticks (Err).
type Binder struct {
	arch.Weights
	c *Common
}

// NewBinder checks the token embedding against c (and sets c.Vocab from
// it) before anything is sized by the metadata: a hostile file must not
// make us allocate what it claims. perLayer is the fewest tensors a
// layer has, to bound block_count by the file's tensor count.
func NewBinder(f *gguf.File, be backend.Backend, c *Common, perLayer int) (*Binder, error) {
	if err := c.check(f, perLayer); err != nil {
		return nil, err
	}
	return &Binder{Weights: arch.Weights{F: f, B: be}, c: c}, nil
}

// check sets c.Vocab from the token embedding after checking its width
// against c, and bounds block_count by the file's tensors (perLayer per
// layer) and the experts, before anything is sized by the metadata.
func (c *Common) check(f *gguf.File, perLayer int) error {
	te, ok := f.Tensor("token_embd.weight")
	if !ok {
		return fmt.Errorf("missing tensor %q", "token_embd.weight")
	}
	if len(te.Dims) != 2 || te.Dims[1] == 0 || te.Dims[1] > math.MaxInt32 {
		return fmt.Errorf("tensor %q has shape %v, want [%d, n_vocab]", "token_embd.weight", te.Dims, c.Embd)
	}
	if te.Dims[0] != uint64(c.Embd) {
		return fmt.Errorf("%s.embedding_length %d disagrees with tensor %q of shape %v", c.Arch, c.Embd, "token_embd.weight", te.Dims)
	}
	c.Vocab = int(te.Dims[1])
	if err := c.BoundLayers(f, perLayer); err != nil {
		return err
	}
	if c.Experts > 4096 || c.ExpertFF > 1<<20 {
		return fmt.Errorf("%s: %d experts of width %d", c.Arch, c.Experts, c.ExpertFF)
	}
	return nil
}

// BoundLayers checks block_count against the file's tensors, perLayer
// (the fewest a layer has) per layer: call it before sizing anything by
// the layer count.
func (c *Common) BoundLayers(f *gguf.File, perLayer int) error {
	if c.Layers <= 0 || c.Layers > len(f.Tensors)/perLayer {
		return fmt.Errorf("%s.block_count %d: the file holds %d tensors, not %d per block", c.Arch, c.Layers, len(f.Tensors), perLayer)
	}
	return nil
}

// Needs is what a model of configuration c in f needs (arch.Needs), after
// the checks NewBinder makes (perLayer as there): one cache per layer of
// c.KVDim() values per position, each with its window from windows (nil:
// no layer slides). It sets c.Vocab.
func Needs(f *gguf.File, c *Common, perLayer int, windows []int) (arch.Needs, error) {
	if err := c.check(f, perLayer); err != nil {
		return arch.Needs{}, err
	}
	kv := make([]arch.LayerKV, c.Layers)
	for il := range kv {
		kv[il].Dim = c.KVDim()
		if windows != nil {
			kv[il].Window = windows[il]
		}
	}
	return arch.NewNeeds(f, c.Info(0), kv), nil
}

// TensorName is the tensor name of layer il's part ("blk.3.attn_q.weight").
func TensorName(il int, part string) string { return fmt.Sprintf("blk.%d.%s", il, part) }

// Vector binds an optional 1-D tensor of n values (nil when absent).
func (b *Binder) Vector(name string, n int) backend.Weight { return b.Optional(name, arch.Vec(n)) }

// Rows binds rows [r0, r0+n) of the tensor name, whose shape must be
// dims, as a weight of its own (named name[r0:r0+n]): the parts of a
// fused tensor, or one expert of a stack (its rows are the stack's
// rows of that expert, ggml's ne[1]·e … ne[1]·(e+1)).
func (b *Binder) Rows(name string, dims []uint64, r0, n int) backend.Weight {
	if b.Err() != nil {
		return nil
	}
	t, ok := b.F.Tensor(name)
	if !ok {
		b.Fail(fmt.Errorf("missing tensor %q", name))
		return nil
	}
	if fmt.Sprint(t.Dims) != fmt.Sprint(dims) {
		b.Fail(fmt.Errorf("tensor %q has shape %v, want %v from the metadata", name, t.Dims, dims))
		return nil
	}
	if t.Type != quant.F32 && !t.Type.Supported() {
		b.Fail(fmt.Errorf("unsupported tensor type %v in tensor %q", t.Type, name))
		return nil
	}
	cols := int(dims[0])
	rb, err := t.Type.RowBytes(cols)
	if err != nil {
		b.Fail(fmt.Errorf("tensor %q: %w", name, err))
		return nil
	}
	data := b.F.Data(t)
	if (r0+n)*rb > len(data) {
		b.Fail(fmt.Errorf("tensor %q: rows [%d, %d) past its data", name, r0, r0+n))
		return nil
	}
	w, err := b.B.Weight(fmt.Sprintf("%s[%d:%d]", name, r0, r0+n), t.Type, n, cols, data[r0*rb:(r0+n)*rb])
	if err != nil {
		b.Fail(err)
		return nil
	}
	b.Params += uint64(n) * uint64(cols)
	return w
}

// Has says whether the file holds the tensor.
func (b *Binder) Has(name string) bool {
	_, ok := b.F.Tensor(name)
	return ok
}

// Attention binds layer il's attention projections: q, k, v separately or
// from a fused attn_qkv (rows q, then k, then v), each with its optional
// bias, and the output projection with its optional bias.
func (b *Binder) Attention(il int, a *Attention) {
	c := b.c
	d, qd, kvd := c.Embd, c.QDim(), c.KVDim()
	if qkv := TensorName(il, "attn_qkv.weight"); b.Has(qkv) {
		dims := []uint64{uint64(d), uint64(qd + 2*kvd)}
		a.Q = b.Rows(qkv, dims, 0, qd)
		a.K = b.Rows(qkv, dims, qd, kvd)
		a.V = b.Rows(qkv, dims, qd+kvd, kvd)
		if bias := TensorName(il, "attn_qkv.bias"); b.Has(bias) {
			a.QB, a.KB, a.VB = b.vectorParts(bias, qd+2*kvd, qd, kvd, kvd)
		}
	} else {
		a.Q = b.Get(TensorName(il, "attn_q.weight"), arch.Dims{Rows: qd, Cols: d})
		a.K = b.Get(TensorName(il, "attn_k.weight"), arch.Dims{Rows: kvd, Cols: d})
		a.V = b.Get(TensorName(il, "attn_v.weight"), arch.Dims{Rows: kvd, Cols: d})
		a.QB = b.Vector(TensorName(il, "attn_q.bias"), qd)
		a.KB = b.Vector(TensorName(il, "attn_k.bias"), kvd)
		a.VB = b.Vector(TensorName(il, "attn_v.bias"), kvd)
	}
	a.O = b.Get(TensorName(il, "attn_output.weight"), arch.Dims{Rows: d, Cols: qd})
	a.OB = b.Vector(TensorName(il, "attn_output.bias"), d)
}

// vectorParts splits a fused 1-D F32 tensor of n values into parts of the
// given lengths, each bound as a vector of its own.
func (b *Binder) vectorParts(name string, n int, lens ...int) (backend.Weight, backend.Weight, backend.Weight) {
	t, _ := b.F.Tensor(name)
	if len(t.Dims) != 1 || t.Dims[0] != uint64(n) || t.Type != quant.F32 {
		b.Fail(fmt.Errorf("tensor %q has shape %v and type %v, want [%d] F32", name, t.Dims, t.Type, n))
		return nil, nil, nil
	}
	data := b.F.Data(t)
	var out [3]backend.Weight
	off := 0
	for i, l := range lens {
		w, err := b.B.Weight(fmt.Sprintf("%s[%d:%d]", name, off, off+l), quant.F32, 1, l, data[4*off:4*(off+l)])
		if err != nil {
			b.Fail(err)
			return nil, nil, nil
		}
		out[i] = w
		off += l
	}
	b.Params += uint64(n)
	return out[0], out[1], out[2]
}

// Experts binds layer il's stacked experts ffn_{gate,up,down}_exps (gate
// optional) and their optional biases (gpt-oss), and the router ffn_gate_inp
// with its optional bias.
func (b *Binder) Experts(il int, m *MoE) {
	c := b.c
	d, ff, ne := uint64(c.Embd), uint64(c.ExpertFF), uint64(c.Experts)
	m.Router = b.Get(TensorName(il, "ffn_gate_inp.weight"), arch.Dims{Rows: c.Experts, Cols: c.Embd})
	m.RouterB = b.Vector(TensorName(il, "ffn_gate_inp.bias"), c.Experts)
	m.Experts = make([]Expert, c.Experts)
	hasGate := b.Has(TensorName(il, "ffn_gate_exps.weight"))
	bias := func(part string, n uint64, e int) backend.Weight {
		name := TensorName(il, part)
		if !b.Has(name) {
			return nil
		}
		return b.Rows(name, []uint64{n, ne}, e, 1)
	}
	for e := range m.Experts {
		x := &m.Experts[e]
		if hasGate {
			x.Gate = b.Rows(TensorName(il, "ffn_gate_exps.weight"), []uint64{d, ff, ne}, e*int(ff), int(ff))
		}
		x.Up = b.Rows(TensorName(il, "ffn_up_exps.weight"), []uint64{d, ff, ne}, e*int(ff), int(ff))
		x.Down = b.Rows(TensorName(il, "ffn_down_exps.weight"), []uint64{ff, d, ne}, e*int(d), int(d))
		x.GateB = bias("ffn_gate_exps.bias", ff, e)
		x.UpB = bias("ffn_up_exps.bias", ff, e)
		x.DownB = bias("ffn_down_exps.bias", d, e)
	}
}

// Dense binds layer il's feed-forward: ffn_gate/ffn_up/ffn_down, or a
// fused gate+up in ffn_up (Phi-3: 2·ff rows, the gate first), with
// optional biases.
func (b *Binder) Dense(il int, f *Dense) {
	c := b.c
	d, ff := c.Embd, c.FF
	up := TensorName(il, "ffn_up.weight")
	if !b.Has(TensorName(il, "ffn_gate.weight")) && b.fused(up, d, 2*ff) {
		dims := []uint64{uint64(d), uint64(2 * ff)}
		f.Gate = b.Rows(up, dims, 0, ff)
		f.Up = b.Rows(up, dims, ff, ff)
	} else {
		f.Gate = b.Optional(TensorName(il, "ffn_gate.weight"), arch.Dims{Rows: ff, Cols: d})
		f.Up = b.Get(up, arch.Dims{Rows: ff, Cols: d})
	}
	f.Down = b.Get(TensorName(il, "ffn_down.weight"), arch.Dims{Rows: d, Cols: ff})
	f.GateB = b.Vector(TensorName(il, "ffn_gate.bias"), ff)
	f.UpB = b.Vector(TensorName(il, "ffn_up.bias"), ff)
	f.DownB = b.Vector(TensorName(il, "ffn_down.bias"), d)
}

// fused says whether the tensor name has shape [cols, rows].
func (b *Binder) fused(name string, cols, rows int) bool {
	t, ok := b.F.Tensor(name)
	return ok && len(t.Dims) == 2 && t.Dims[0] == uint64(cols) && t.Dims[1] == uint64(rows)
}

// Output binds the final norm and the output matrix, tied to the token
// embedding when the file has no output.weight (or always, with tied),
// and its optional bias.
func (b *Binder) Output(dec *Decoder, tied bool) {
	c := b.c
	dec.Embd = b.Get("token_embd.weight", arch.Dims{Rows: c.Vocab, Cols: c.Embd})
	dec.OutNorm = b.Get("output_norm.weight", arch.Vec(c.Embd))
	if !tied {
		dec.Output = b.Optional("output.weight", arch.Dims{Rows: c.Vocab, Cols: c.Embd})
	}
	if dec.Output == nil {
		dec.Output = dec.Embd
	}
	dec.OutBias = b.Vector("output.bias", c.Vocab)
}

// Vector32 reads a 1-D F32 tensor of n values into memory (RoPE frequency
// factors): nil when the file does not have it.
func (b *Binder) Vector32(name string, n int) []float32 {
	t, ok := b.F.Tensor(name)
	if !ok || b.Err() != nil {
		return nil
	}
	data := b.F.Data(t)
	if t.Type != quant.F32 || t.Elements() != uint64(n) || len(data) != 4*n {
		b.Fail(fmt.Errorf("tensor %q has shape %v and type %v, want %d F32 values", name, t.Dims, t.Type, n))
		return nil
	}
	v := make([]float32, n)
	for i := range v {
		v[i] = math.Float32frombits(uint32(data[4*i]) | uint32(data[4*i+1])<<8 | uint32(data[4*i+2])<<16 | uint32(data[4*i+3])<<24)
	}
	return v
}

// SwiGLUFFN binds layer il's ffn_norm and its SwiGLU feed-forward: a
// mixture of experts with a softmax router, top-k renormalised, when the
// model has experts (Mixtral, Qwen3-MoE), else a dense block.
func (b *Binder) SwiGLUFFN(il int, l *Layer) {
	silu := backend.Act{Kind: backend.ActSiLU}
	l.FFNNorm = b.Get(TensorName(il, "ffn_norm.weight"), arch.Vec(b.c.Embd))
	if b.c.Experts > 0 {
		l.MoE = &MoE{K: b.c.ExpertsUsed, Gating: SoftmaxTopK, Renorm: true, Act: silu}
		b.Experts(il, l.MoE)
		return
	}
	l.Dense = &Dense{Act: silu}
	b.Dense(il, l.Dense)
}

// Reshaped binds the tensor name, whose shape must be dims, as a weight
// of rows × cols over the same bytes (rows·cols values, cols a whole
// number of the type's blocks): Gemma 4's per-layer token embeddings,
// vocab rows of layers·width seen as vocab·layers rows of width.
func (b *Binder) Reshaped(name string, dims []uint64, rows, cols int) backend.Weight {
	if b.Err() != nil {
		return nil
	}
	t, ok := b.F.Tensor(name)
	if !ok {
		b.Fail(fmt.Errorf("missing tensor %q", name))
		return nil
	}
	if fmt.Sprint(t.Dims) != fmt.Sprint(dims) {
		b.Fail(fmt.Errorf("tensor %q has shape %v, want %v from the metadata", name, t.Dims, dims))
		return nil
	}
	if t.Type != quant.F32 && !t.Type.Supported() {
		b.Fail(fmt.Errorf("unsupported tensor type %v in tensor %q", t.Type, name))
		return nil
	}
	rb, err := t.Type.RowBytes(cols)
	data := b.F.Data(t)
	if err != nil || uint64(rows)*uint64(cols) != t.Elements() || rows*rb != len(data) {
		b.Fail(fmt.Errorf("tensor %q of shape %v cannot be seen as %d rows of %d (%v)", name, t.Dims, rows, cols, err))
		return nil
	}
	w, err := b.B.Weight(name, t.Type, rows, cols, data)
	if err != nil {
		b.Fail(err)
		return nil
	}
	b.Params += uint64(rows) * uint64(cols)
	return w
}

// Ones binds a 1-D F32 weight of n ones (an unweighted RMSNorm's).
func (b *Binder) Ones(n int) backend.Weight {
	if b.Err() != nil {
		return nil
	}
	data := make([]byte, 4*n)
	for i := range n {
		binary.LittleEndian.PutUint32(data[4*i:], math.Float32bits(1))
	}
	w, err := b.B.Weight(fmt.Sprintf("ones[%d]", n), quant.F32, 1, n, data)
	if err != nil {
		b.Fail(err)
		return nil
	}
	return w
}

// Deinterleaved binds the tensor name, whose shape must be dims, as parts
// weights: its rows run in groups of run rows that belong to part 0, 1,
// …, parts-1, then part 0 again (Qwen 3.5's attn_q: per head, the query's
// head_dim rows, then its gate's). The rows are copied, each part's
// contiguous, into memory the weights keep.
func (b *Binder) Deinterleaved(name string, dims []uint64, run, parts int) []backend.Weight {
	if b.Err() != nil {
		return nil
	}
	t, ok := b.F.Tensor(name)
	if !ok {
		b.Fail(fmt.Errorf("missing tensor %q", name))
		return nil
	}
	if fmt.Sprint(t.Dims) != fmt.Sprint(dims) || len(dims) != 2 {
		b.Fail(fmt.Errorf("tensor %q has shape %v, want %v from the metadata", name, t.Dims, dims))
		return nil
	}
	if t.Type != quant.F32 && !t.Type.Supported() {
		b.Fail(fmt.Errorf("unsupported tensor type %v in tensor %q", t.Type, name))
		return nil
	}
	cols, rows := int(dims[0]), int(dims[1])
	rb, err := t.Type.RowBytes(cols)
	data := b.F.Data(t)
	if err != nil || run <= 0 || parts <= 0 || rows%(run*parts) != 0 || rows*rb != len(data) {
		b.Fail(fmt.Errorf("tensor %q of shape %v cannot be split into %d parts of runs of %d rows (%v)", name, t.Dims, parts, run, err))
		return nil
	}
	per := rows / parts
	ws := make([]backend.Weight, parts)
	for p := range parts {
		buf := make([]byte, 0, per*rb)
		for r0 := p * run; r0 < rows; r0 += run * parts {
			buf = append(buf, data[r0*rb:(r0+run)*rb]...)
		}
		w, err := b.B.Weight(fmt.Sprintf("%s/%d", name, p), t.Type, per, cols, buf)
		if err != nil {
			b.Fail(err)
			return nil
		}
		ws[p] = w
	}
	b.Params += uint64(rows) * uint64(cols)
	return ws
}
