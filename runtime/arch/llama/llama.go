// Package llama is the Llama architecture (Llama 1-3, Mistral, TinyLlama,
// and llama2.c checkpoints): pre-norm decoder blocks with RMSNorm, rotary
// embeddings, grouped-query attention and a SwiGLU feed-forward, with a
// separate or tied output matrix.
package llama

import (
	"fmt"
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

func init() { arch.Register("llama", Load) }

// Config is the hyperparameters, decoded from GGUF keys under "llama.".
type Config struct {
	Vocab, Embd, Layers, FF int
	Heads, KVHeads, HeadDim int
	CtxTrain                int
	NormEps                 float32
	RoPE                    backend.RoPE
}

func decodeConfig(f *gguf.File, name string) (Config, error) {
	m := &arch.Meta{F: f, Prefix: name}
	var c Config
	c.Embd = m.Int("embedding_length")
	c.Layers = m.Int("block_count")
	c.FF = m.Int("feed_forward_length")
	c.Heads = m.Int("attention.head_count")
	c.KVHeads = m.IntOr("attention.head_count_kv", c.Heads)
	c.CtxTrain = m.Int("context_length")
	c.NormEps = m.Float("attention.layer_norm_rms_epsilon")
	if err := m.Err(); err != nil {
		return c, err
	}
	c.HeadDim = m.IntOr("attention.key_length", c.Embd/c.Heads)
	if v := m.IntOr("attention.value_length", c.HeadDim); v != c.HeadDim {
		return c, fmt.Errorf("%s.attention.value_length %d differs from key_length %d: not supported", name, v, c.HeadDim)
	}
	if c.Heads%c.KVHeads != 0 {
		return c, fmt.Errorf("%s: %d attention heads are not a multiple of %d KV heads", name, c.Heads, c.KVHeads)
	}
	r := &c.RoPE
	r.Dims = m.IntOr("rope.dimension_count", c.HeadDim)
	r.Base = m.FloatOr("rope.freq_base", 10000)
	r.Scale = 1
	r.AttnFactor = 1
	r.BetaFast, r.BetaSlow = 32, 1
	r.CtxOrig = c.CtxTrain
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
		r.CtxOrig = m.IntOr("rope.scaling.original_context_length", c.CtxTrain)
		r.AttnFactor = m.FloatOr("rope.scaling.attn_factor", 1)
	default:
		return c, fmt.Errorf("%s.rope.scaling.type %q is not supported", name, typ)
	}
	if err := m.Err(); err != nil {
		return c, err
	}
	if r.Dims%2 != 0 || r.Dims > c.HeadDim || r.Base <= 0 {
		return c, fmt.Errorf("%s: rope dimension %d / base %v do not fit head size %d", name, r.Dims, r.Base, c.HeadDim)
	}
	return c, nil
}

type layer struct {
	attnNorm, wq, wk, wv, wo backend.Weight
	ffnNorm, gate, up, down  backend.Weight
}

// Model is a Llama model bound to a backend.
type Model struct {
	cfg    Config
	be     backend.Backend
	embd   backend.Weight
	norm   backend.Weight
	output backend.Weight
	layers []layer
	params uint64
	arch   string

	bufs   *buffers
	logits []float32
}

// Load binds a Llama model from f.
func Load(f *gguf.File, be backend.Backend) (arch.Model, error) {
	name, _ := f.String("general.architecture")
	cfg, err := decodeConfig(f, name)
	if err != nil {
		return nil, err
	}
	te, ok := f.Tensor("token_embd.weight")
	if !ok {
		return nil, fmt.Errorf("missing tensor %q", "token_embd.weight")
	}
	if len(te.Dims) != 2 || te.Dims[1] == 0 || te.Dims[1] > math.MaxInt32 {
		return nil, fmt.Errorf("tensor %q has shape %v, want [%d, n_vocab]", "token_embd.weight", te.Dims, cfg.Embd)
	}
	cfg.Vocab = int(te.Dims[1])
	// Metadata is checked against the tensors before anything is sized by
	// it: a hostile file must not make us allocate what it claims.
	if te.Dims[0] != uint64(cfg.Embd) {
		return nil, fmt.Errorf("%s.embedding_length %d disagrees with tensor %q of shape %v", name, cfg.Embd, "token_embd.weight", te.Dims)
	}
	if cfg.Layers <= 0 || cfg.Layers > len(f.Tensors)/9 {
		return nil, fmt.Errorf("%s.block_count %d: the file holds %d tensors, not 9 per block", name, cfg.Layers, len(f.Tensors))
	}
	w := &arch.Weights{F: f, B: be}
	m := &Model{cfg: cfg, be: be, arch: name}
	d, kvDim, qDim := cfg.Embd, cfg.KVHeads*cfg.HeadDim, cfg.Heads*cfg.HeadDim
	m.embd = w.Get("token_embd.weight", d, cfg.Vocab)
	m.norm = w.Get("output_norm.weight", d, 0)
	m.output = w.Optional("output.weight", d, cfg.Vocab)
	if m.output == nil {
		m.output = m.embd // tied embeddings
	}
	// Llama 3.1+ stores per-frequency divisors for its long-context RoPE.
	if rf, ok := f.Tensor("rope_freqs.weight"); ok {
		if rf.Elements() != uint64(cfg.RoPE.Dims/2) {
			return nil, fmt.Errorf("tensor %q has shape %v, want [%d]", "rope_freqs.weight", rf.Dims, cfg.RoPE.Dims/2)
		}
		m.cfg.RoPE.Factors = make([]float32, cfg.RoPE.Dims/2)
		if err := readVector(f, "rope_freqs.weight", m.cfg.RoPE.Factors); err != nil {
			return nil, err
		}
	}
	m.layers = make([]layer, cfg.Layers)
	for i := range m.layers {
		l := &m.layers[i]
		p := fmt.Sprintf("blk.%d.", i)
		l.attnNorm = w.Get(p+"attn_norm.weight", d, 0)
		l.wq = w.Get(p+"attn_q.weight", d, qDim)
		l.wk = w.Get(p+"attn_k.weight", d, kvDim)
		l.wv = w.Get(p+"attn_v.weight", d, kvDim)
		l.wo = w.Get(p+"attn_output.weight", qDim, d)
		l.ffnNorm = w.Get(p+"ffn_norm.weight", d, 0)
		l.gate = w.Get(p+"ffn_gate.weight", d, cfg.FF)
		l.up = w.Get(p+"ffn_up.weight", d, cfg.FF)
		l.down = w.Get(p+"ffn_down.weight", cfg.FF, d)
	}
	if err := w.Err(); err != nil {
		return nil, err
	}
	m.params = w.Params
	return m, nil
}

// readVector reads a 1-D F32 tensor.
func readVector(f *gguf.File, name string, dst []float32) error {
	t, _ := f.Tensor(name)
	b := f.Data(t)
	if t.Type != quant.F32 || len(b) != 4*len(dst) {
		return fmt.Errorf("tensor %q: want %d F32 values", name, len(dst))
	}
	for i := range dst {
		dst[i] = math.Float32frombits(uint32(b[4*i]) | uint32(b[4*i+1])<<8 | uint32(b[4*i+2])<<16 | uint32(b[4*i+3])<<24)
	}
	return nil
}

// Config returns the hyperparameters.
func (m *Model) Config() Config { return m.cfg }

func (m *Model) Info() arch.Info {
	return arch.Info{Arch: m.arch, VocabSize: m.cfg.Vocab, ContextLength: m.cfg.CtxTrain,
		Layers: m.cfg.Layers, Embedding: m.cfg.Embd, KVDim: m.cfg.KVHeads * m.cfg.HeadDim, HeadDim: m.cfg.HeadDim, Params: m.params}
}

func (m *Model) NewKV(ctx int) (backend.KV, error) {
	return m.be.NewKV(m.cfg.Layers, ctx, m.cfg.KVHeads*m.cfg.HeadDim)
}

// multiMatMul is an optional backend op: several products of the same
// activations (dsts[i] = x · ws[i]ᵀ) in one call, with MatMul's results
// (runtime/cpu runs them as one loop of its threads).
type multiMatMul interface {
	MatMulMulti(dsts []backend.Tensor, x backend.Tensor, ws []backend.Weight)
}

// matMuls computes dsts[i] = x · ws[i]ᵀ: one MatMulMulti where the
// backend has it, else one MatMul each.
func (m *Model) matMuls(x backend.Tensor, dsts []backend.Tensor, ws []backend.Weight) {
	if mm, ok := m.be.(multiMatMul); ok {
		mm.MatMulMulti(dsts, x, ws)
		return
	}
	for i, w := range ws {
		m.be.MatMul(dsts[i], x, w)
	}
}

// buffers are the activations of one forward pass, grown to the largest
// batch seen and sliced to the current one.
type buffers struct {
	n                     int
	x, h, q, k, v, att, o backend.Tensor
	gate, up, act         backend.Tensor
}

func (m *Model) buffersFor(n int) *buffers {
	if m.bufs == nil || m.bufs.n < n {
		be, c := m.be, m.cfg
		qDim, kvDim := c.Heads*c.HeadDim, c.KVHeads*c.HeadDim
		m.bufs = &buffers{n: n,
			x: be.NewTensor(n, c.Embd), h: be.NewTensor(n, c.Embd), o: be.NewTensor(n, c.Embd),
			q: be.NewTensor(n, qDim), att: be.NewTensor(n, qDim),
			k: be.NewTensor(n, kvDim), v: be.NewTensor(n, kvDim),
			gate: be.NewTensor(n, c.FF), up: be.NewTensor(n, c.FF), act: be.NewTensor(n, c.FF),
		}
	}
	b, be := m.bufs, m.be
	if b.n == n {
		return b
	}
	s := func(t backend.Tensor) backend.Tensor { return be.Slice(t, 0, n) }
	return &buffers{n: n, x: s(b.x), h: s(b.h), q: s(b.q), k: s(b.k), v: s(b.v), att: s(b.att), o: s(b.o),
		gate: s(b.gate), up: s(b.up), act: s(b.act)}
}

func (m *Model) Forward(bt *arch.Batch) ([]float32, error) {
	ids, pos := bt.IDs, bt.Pos
	n := len(ids)
	if n == 0 || len(pos) != n || len(bt.Seq) != n {
		return nil, fmt.Errorf("llama: forward of %d tokens with %d positions and %d sequence ids", n, len(pos), len(bt.Seq))
	}
	for _, r := range bt.Outputs {
		if r < 0 || r >= n {
			return nil, fmt.Errorf("llama: output row %d of a %d-token batch", r, n)
		}
	}
	c, be := m.cfg, m.be
	b := m.buffersFor(n)
	if err := be.Embed(b.x, m.embd, ids); err != nil {
		return nil, err
	}
	ap := backend.AttentionParams{Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim,
		Scale: float32(1 / math.Sqrt(float64(c.HeadDim)))}
	for i := range m.layers {
		l := &m.layers[i]
		// Attention block: x += Wo · attn(rope(Wq·h), rope(Wk·h), Wv·h), h = norm(x).
		be.RMSNorm(b.h, b.x, l.attnNorm, c.NormEps) // (n, embd)
		// (n, heads*head_dim), (n, kv_heads*head_dim) twice
		m.matMuls(b.h, []backend.Tensor{b.q, b.k, b.v}, []backend.Weight{l.wq, l.wk, l.wv})
		be.RoPE(b.q, c.Heads, c.HeadDim, pos, &c.RoPE)
		be.RoPE(b.k, c.KVHeads, c.HeadDim, pos, &c.RoPE)
		if err := be.Attention(b.att, b.q, b.k, b.v, bt.KVs, bt.Seq, i, pos, ap); err != nil {
			return nil, err
		}
		be.MatMul(b.o, b.att, l.wo) // (n, embd)
		be.Add(b.x, b.o)
		// Feed-forward block: x += Wdown · (silu(Wgate·h) ⊙ Wup·h), h = norm(x).
		be.RMSNorm(b.h, b.x, l.ffnNorm, c.NormEps)
		m.matMuls(b.h, []backend.Tensor{b.gate, b.up}, []backend.Weight{l.gate, l.up}) // (n, ff) twice
		be.SwiGLU(b.act, b.gate, b.up)
		be.MatMul(b.o, b.act, l.down) // (n, embd)
		be.Add(b.x, b.o)
	}
	// Only the rows whose logits are wanted go through the output layers.
	rows := len(bt.Outputs)
	if rows == 0 {
		return nil, nil
	}
	x, h := be.Slice(b.h, 0, rows), be.Slice(b.o, 0, rows)
	be.Gather(x, b.x, bt.Outputs)
	be.RMSNorm(h, x, m.norm, c.NormEps)
	out, width := h, c.Embd
	if !bt.Hidden {
		out, width = be.NewTensor(rows, c.Vocab), c.Vocab
		be.MatMul(out, h, m.output) // (rows, vocab)
	}
	if cap(m.logits) < rows*width {
		m.logits = make([]float32, rows*width)
	}
	res := m.logits[:rows*width]
	for r := 0; r < rows; r++ {
		be.Read(out, r, res[r*width:(r+1)*width])
	}
	return res, nil
}
