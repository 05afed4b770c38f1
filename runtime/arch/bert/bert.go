// Package bert is the BERT family of text encoders, which make embeddings
// rather than text: "bert" (BGE, MiniLM, …: learned absolute positions, a
// GELU feed-forward with biases) and "nomic-bert" (nomic-embed-text: NeoX
// RoPE, a fused QKV projection, a SwiGLU feed-forward without biases).
//
// Both are post-norm encoders (llama.cpp's src/models/bert.cpp):
//
//	x = LN(tok_embd[id] + token_types[0] + position_embd[pos])
//	for each layer:
//	    h = LN(x + attn(x))     non-causal: every token sees its whole sequence
//	    x = LN(h + ffn(h))
//
// with LayerNorms that have biases. The model has no output layer: Forward
// returns hidden states (arch.Batch.Hidden) and the runtime pools them as
// the file's pooling_type says (arch.Info.Pooling). Token types are always
// 0 ("sentence A"), as in llama.cpp.
package bert

import (
	"fmt"
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/arch/blocks"
	"github.com/hearth-llm/hearth/runtime/backend"
)

func init() {
	arch.Register("bert", arch.Family{Describe: describe, Load: func(f *gguf.File, be backend.Backend) (arch.Model, error) {
		return load(f, be, variant{positions: true, act: backend.ActGELU})
	}})
	arch.Register("nomic-bert", arch.Family{Describe: describe, Load: func(f *gguf.File, be backend.Backend) (arch.Model, error) {
		return load(f, be, variant{rope: true, gate: true, act: backend.ActSiLU})
	}})
}

// decode reads an encoder's hyperparameters: the common ones, a required
// feed-forward width, and whether attention is causal.
func decode(f *gguf.File) (c blocks.Common, causal bool, err error) {
	c, m, err := blocks.Decode(f, "attention.layer_norm_epsilon", true)
	if err != nil {
		return c, false, err
	}
	c.FF = m.Int("feed_forward_length")
	causal = m.BoolOr("attention.causal", false)
	moeEvery := m.IntOr("moe_every_n_layers", 0)
	if err := m.Err(); err != nil {
		return c, false, err
	}
	switch {
	case c.Experts > 0 || moeEvery > 0:
		return c, false, fmt.Errorf("%s: mixture-of-experts layers are not supported", c.Arch)
	case c.Pooling == arch.PoolingRank:
		return c, false, fmt.Errorf("%s: pooling type rank (a reranker's classification head) is not supported", c.Arch)
	case c.HeadDim <= 0 || c.Heads*c.HeadDim > 1<<20:
		return c, false, fmt.Errorf("%s: %d attention heads of %d values", c.Arch, c.Heads, c.HeadDim)
	}
	return c, causal, nil
}

// describe reports an encoder's needs: its keys and values go through a
// cache of every layer as a decoder's do (NewKV).
func describe(f *gguf.File) (arch.Needs, error) {
	c, causal, err := decode(f)
	if err != nil {
		return arch.Needs{}, err
	}
	n, err := blocks.Needs(f, &c, minTensorsPerLayer, nil)
	n.Info.EmbeddingOnly, n.Info.NonCausal = true, !causal
	return n, err
}

// variant is what tells the family's members apart.
type variant struct {
	positions bool // learned absolute position embeddings (position_embd)
	rope      bool // NeoX RoPE on the queries and keys
	gate      bool // a gated feed-forward (ffn_gate), else a plain one
	act       backend.ActKind
}

// Layer is one encoder layer.
type Layer struct {
	Attn                blocks.Attention // projections and biases (Attn.Norm unused: post-norm)
	AttnNorm, AttnNormB backend.Weight   // attn_output_norm: LN after the attention's residual
	FFN                 blocks.Dense
	OutNorm, OutNormB   backend.Weight // layer_output_norm: LN after the FFN's residual
}

// Model is a BERT-family encoder bound to a backend. It implements
// arch.Model; Forward only returns hidden states.
type Model struct {
	C                 blocks.Common
	Be                backend.Backend
	TokEmbd           backend.Weight // (vocab, embd)
	TypeRow0          backend.Weight // (1, embd): row 0 of token_types, nil when absent
	PosEmbd           backend.Weight // (ctx_train, embd), bert only
	EmbNorm, EmbNormB backend.Weight // token_embd_norm
	Layers            []Layer
	Params            uint64
	Causal            bool // <arch>.attention.causal (converters write false)

	bufs *buffers
	out  []float32
}

// minTensorsPerLayer is the fewest tensors a layer can have (fused QKV, no
// biases, no gate): the bound block_count is checked against.
const minTensorsPerLayer = 8

func load(f *gguf.File, be backend.Backend, v variant) (arch.Model, error) {
	c, causal, err := decode(f)
	if err != nil {
		return nil, err
	}
	b, err := blocks.NewBinder(f, be, &c, minTensorsPerLayer)
	if err != nil {
		return nil, err
	}
	mod := &Model{C: c, Be: be, Causal: causal}
	mod.TokEmbd = b.Get("token_embd.weight", arch.Dims{Rows: c.Vocab, Cols: c.Embd})
	if t, ok := f.Tensor("token_types.weight"); ok {
		if len(t.Dims) != 2 || t.Dims[0] != uint64(c.Embd) || t.Dims[1] == 0 || t.Dims[1] > math.MaxInt32 {
			return nil, fmt.Errorf("tensor %q has shape %v, want [%d, n_token_types]", "token_types.weight", t.Dims, c.Embd)
		}
		mod.TypeRow0 = b.Rows("token_types.weight", t.Dims, 0, 1)
	}
	if v.positions {
		mod.PosEmbd = b.Get("position_embd.weight", arch.Dims{Rows: c.CtxTrain, Cols: c.Embd})
	}
	mod.EmbNorm = b.Get("token_embd_norm.weight", arch.Vec(c.Embd))
	mod.EmbNormB = b.Get("token_embd_norm.bias", arch.Vec(c.Embd))
	var rope *backend.RoPE
	if v.rope {
		r := c.RoPE
		rope = &r
	}
	scale := float32(1 / math.Sqrt(float64(c.HeadDim)))
	mod.Layers = make([]Layer, c.Layers)
	for il := range mod.Layers {
		l := &mod.Layers[il]
		name := func(part string) string { return blocks.TensorName(il, part) }
		b.Attention(il, &l.Attn)
		l.Attn.RoPE = rope
		l.Attn.P = backend.AttentionParams{Heads: c.Heads, KVHeads: c.KVHeads, HeadDim: c.HeadDim, Scale: scale, NonCausal: !causal}
		l.AttnNorm = b.Get(name("attn_output_norm.weight"), arch.Vec(c.Embd))
		l.AttnNormB = b.Get(name("attn_output_norm.bias"), arch.Vec(c.Embd))
		l.FFN.Act = backend.Act{Kind: v.act}
		b.Dense(il, &l.FFN)
		l.OutNorm = b.Get(name("layer_output_norm.weight"), arch.Vec(c.Embd))
		l.OutNormB = b.Get(name("layer_output_norm.bias"), arch.Vec(c.Embd))
		if err := b.Err(); err != nil {
			return nil, err
		}
		switch {
		case v.gate && l.FFN.Gate == nil:
			return nil, fmt.Errorf("%s: missing tensor %q", c.Arch, name("ffn_gate.weight"))
		case !v.gate && l.FFN.Gate != nil:
			return nil, fmt.Errorf("%s: layer %d has a gated feed-forward, which %s does not", c.Arch, il, c.Arch)
		}
	}
	if err := b.Err(); err != nil {
		return nil, err
	}
	mod.Params = b.Params
	return mod, nil
}

// Info implements arch.Model.
func (m *Model) Info() arch.Info {
	info := m.C.Info(m.Params)
	info.EmbeddingOnly, info.NonCausal = true, !m.Causal
	return info
}

// NewKV implements arch.Model. An encoder keeps nothing between passes,
// but its keys and values go through a cache view as a decoder's do.
func (m *Model) NewKV(ctx int) (backend.KV, error) {
	return m.Be.NewKV(m.C.Layers, ctx, m.C.KVDim())
}

// buffers are the activations of one forward pass, grown to the largest
// batch seen and sliced to the current one.
type buffers struct {
	n             int
	x, h          backend.Tensor // (n, embd)
	q, att        backend.Tensor // (n, heads·head_dim)
	k, v          backend.Tensor // (n, kv width)
	gate, up, act backend.Tensor // (n, ff); gate nil without gated layers
}

// buffersFor returns the activations for an n-token batch. Allocating a
// larger set is where memory can run out: the backend's error is checked
// then, and a set that failed is not kept.
func (m *Model) buffersFor(n int) (*buffers, error) {
	be, c := m.Be, &m.C
	if m.bufs == nil || m.bufs.n < n {
		gated := false
		for i := range m.Layers {
			gated = gated || m.Layers[i].FFN.Gate != nil
		}
		if o := m.bufs; o != nil { // outgrown: the larger set replaces it
			for _, t := range []backend.Tensor{o.x, o.h, o.q, o.att, o.k, o.v, o.gate, o.up, o.act} {
				be.Free(t)
			}
		}
		b := &buffers{n: n}
		b.x, b.h = be.NewTensor(n, c.Embd), be.NewTensor(n, c.Embd)
		b.q, b.att = be.NewTensor(n, c.QDim()), be.NewTensor(n, c.QDim())
		b.k, b.v = be.NewTensor(n, c.KVDim()), be.NewTensor(n, c.KVDim())
		b.up, b.act = be.NewTensor(n, c.FF), be.NewTensor(n, c.FF)
		if gated {
			b.gate = be.NewTensor(n, c.FF)
		}
		m.bufs = nil
		if err := be.Err(); err != nil {
			for _, t := range []backend.Tensor{b.x, b.h, b.q, b.att, b.k, b.v, b.gate, b.up, b.act} {
				be.Free(t)
			}
			return nil, err
		}
		m.bufs = b
	}
	full := m.bufs
	if full.n == n {
		return full, nil
	}
	s := func(t backend.Tensor) backend.Tensor {
		if t == nil {
			return nil
		}
		return be.Slice(t, 0, n)
	}
	return &buffers{n: n, x: s(full.x), h: s(full.h), q: s(full.q), att: s(full.att), k: s(full.k), v: s(full.v),
		gate: s(full.gate), up: s(full.up), act: s(full.act)}, nil
}

// Forward implements arch.Model: it returns the final hidden states of
// bt.Outputs (len(Outputs) × Embedding), and fails with
// arch.ErrEmbeddingOnly when bt asks for logits.
func (m *Model) Forward(bt *arch.Batch) ([]float32, error) {
	c := &m.C
	ids, pos := bt.IDs, bt.Pos
	n := len(ids)
	if n == 0 || len(pos) != n || len(bt.Seq) != n {
		return nil, fmt.Errorf("%s: forward of %d tokens with %d positions and %d sequence ids", c.Arch, n, len(pos), len(bt.Seq))
	}
	if !bt.Hidden {
		return nil, fmt.Errorf("%s: %w", c.Arch, arch.ErrEmbeddingOnly)
	}
	for _, r := range bt.Outputs {
		if r < 0 || r >= n {
			return nil, fmt.Errorf("%s: output row %d of a %d-token batch", c.Arch, r, n)
		}
	}
	if m.PosEmbd != nil {
		for _, p := range pos {
			if p < 0 || int(p) >= c.CtxTrain {
				return nil, fmt.Errorf("%s: position %d outside the %d learned positions: %w", c.Arch, p, c.CtxTrain, backend.ErrContextFull)
			}
		}
	}
	be, eps := m.Be, c.NormEps
	b, err := m.buffersFor(n)
	if err != nil {
		return nil, err
	}
	// x = LN(tok_embd[ids] + token_types[0] + position_embd[pos])      (n, embd)
	be.Embed(b.x, m.TokEmbd, ids)
	blocks.AddBias(be, b.x, m.TypeRow0)
	if m.PosEmbd != nil {
		be.Embed(b.h, m.PosEmbd, pos)
		be.Add(b.x, b.h)
	}
	be.LayerNorm(b.x, b.x, m.EmbNorm, m.EmbNormB, eps)
	for il := range m.Layers {
		m.layer(&m.Layers[il], b, bt, il)
	}
	rows := len(bt.Outputs)
	if rows == 0 {
		return nil, be.Err()
	}
	h := be.Slice(b.h, 0, rows)
	be.Gather(h, b.x, bt.Outputs)
	if cap(m.out) < rows*c.Embd {
		m.out = make([]float32, rows*c.Embd)
	}
	out := m.out[:rows*c.Embd]
	be.Read(h, 0, out)
	// The backend's errors, once per pass (backend.Err).
	if err := be.Err(); err != nil {
		return nil, err
	}
	return out, nil
}

// layer runs encoder layer il on b.x, in place.
func (m *Model) layer(l *Layer, b *buffers, bt *arch.Batch, il int) {
	be, c, a, eps := m.Be, &m.C, &l.Attn, m.C.NormEps
	// q, k, v = x·Wᵀ + bias      (n, heads·head_dim), (n, kv width) ×2
	blocks.MatMuls(be, b.x, []backend.Tensor{b.q, b.k, b.v}, []backend.Weight{a.Q, a.K, a.V})
	blocks.AddBias(be, b.q, a.QB)
	blocks.AddBias(be, b.k, a.KB)
	blocks.AddBias(be, b.v, a.VB)
	if a.RoPE != nil {
		be.RoPE(b.q, c.Heads, c.HeadDim, bt.Pos, a.RoPE)
		be.RoPE(b.k, c.KVHeads, c.HeadDim, bt.Pos, a.RoPE)
	}
	be.Attention(b.att, b.q, b.k, b.v, bt.KVs, bt.Seq, il, bt.Pos, a.P)
	// h = LN(x + att·Woᵀ + bo)      (n, embd)
	be.MatMul(b.h, b.att, a.O)
	blocks.AddBias(be, b.h, a.OB)
	be.Add(b.h, b.x)
	be.LayerNorm(b.h, b.h, l.AttnNorm, l.AttnNormB, eps)
	// x = LN(h + ffn(h))      (n, embd)
	l.FFN.Forward(be, b.h, b.gate, b.up, b.act, b.x)
	be.Add(b.x, b.h)
	be.LayerNorm(b.x, b.x, l.OutNorm, l.OutNormB, eps)
}
