package blocks

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/hearth-llm/hearth/kernels/libmf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// Attention is one layer's attention block: x += O·attn(q, k, v) with
// q, k, v projected from norm(x).
type Attention struct {
	Norm           backend.Weight // pre-norm (RMSNorm)
	Q, K, V, O     backend.Weight
	QB, KB, VB, OB backend.Weight // optional biases
	QNorm, KNorm   backend.Weight // optional per-head RMSNorm of q and k, before RoPE
	// VNorm is an optional per-head RMSNorm of v (Gemma 4: a weight of
	// ones, the unweighted norm). Without V the values are the keys'
	// projection (Gemma 4's global layers: K = V), normed by VNorm.
	VNorm    backend.Weight
	PostNorm backend.Weight // optional RMSNorm of the block's output (Gemma)
	RoPE     *backend.RoPE  // nil: no rotary embedding
	// QScale ≠ 0 multiplies the queries after RoPE, where llama.cpp does
	// (Gemma, Phi-3; their P.Scale is then 1).
	QScale float32
	// P's heads and head size may differ from layer to layer (Gemma 4);
	// P.SharedKV says the layer owns no cache and reads KVLayer's, an
	// earlier layer's, and has no K, V or KNorm of its own. The layers
	// that own a cache come first (Common.KVLayers of them) and store in
	// their own layer of it.
	P       backend.AttentionParams
	KVLayer int
	// Gate, when set, gates the attention's output before O: each value
	// times σ(Gate·norm(x)) (Qwen 3.5's gated attention; q width rows).
	Gate backend.Weight
}

// DeltaNet is a Gated DeltaNet block (Qwen 3.5's linear attention), in
// place of a layer's attention: from h = Norm(x), qkv = QKV·h through a
// causal conv (Conv: channels × taps) and SiLU, the gated delta rule
// (backend.Recurrent's GatedDeltaNet with Alpha·h, Beta·h, A, DtBias),
// then per head OutNorm ⊙ SiLU(Z·h), and x += Out·that. Its conv state is
// part Part of the sequence's recurrent state, its delta state part
// Part+1.
type DeltaNet struct {
	Norm                     backend.Weight
	QKV, Z, Alpha, Beta, Out backend.Weight
	Conv, A, DtBias, OutNorm backend.Weight
	P                        backend.DeltaNetParams
	Part                     int
}

// ConvWidth is the conv's channels (q, k and v).
func (m *DeltaNet) ConvWidth() int { return (2*m.P.KHeads + m.P.VHeads) * m.P.HeadDim }

// StateSizes is the float32 values of the block's two state parts: the
// conv's taps-1 inputs and the delta rule's head_dim² per value head.
func (m *DeltaNet) StateSizes() [2]int {
	_, taps := m.Conv.Shape()
	return [2]int{(taps - 1) * m.ConvWidth(), m.P.VHeads * m.P.HeadDim * m.P.HeadDim}
}

// Dense is a feed-forward block: down(act(gate·h)·(up·h)), or
// down(act(up·h)) without a gate, each product with its optional bias.
type Dense struct {
	Gate, Up, Down    backend.Weight
	GateB, UpB, DownB backend.Weight
	Act               backend.Act
}

// Expert is one expert of a mixture: a Dense block without its activation.
type Expert struct {
	Gate, Up, Down    backend.Weight
	GateB, UpB, DownB backend.Weight
}

// Gating is how a mixture turns router logits into expert weights
// (backend.Gating).
type Gating = backend.Gating

const (
	// SoftmaxTopK: softmax over all experts, the k largest probabilities,
	// renormalised to sum 1 when MoE.Renorm (Mixtral, Qwen3-MoE).
	SoftmaxTopK = backend.SoftmaxTopK
	// TopKSoftmax: the k largest raw logits, softmax over those k (gpt-oss).
	TopKSoftmax = backend.TopKSoftmax
)

// MoE is a mixture-of-experts feed-forward block: each token goes through
// K of the experts, weighted by its router.
type MoE struct {
	Router, RouterB backend.Weight
	// RouterNorm, when set, makes the router's input its own: RMSNorm of
	// the block's input (the residual stream) times RouterNorm, times
	// RouterScale (Gemma 4: ffn_gate_inp.scale and 1/√n_embd), instead
	// of the FFN's normed input.
	RouterNorm  backend.Weight
	RouterScale float32
	Experts     []Expert
	// DownScale, when set, multiplies each expert's output (its weight
	// in the sum): Gemma 4's ffn_down_exps.scale.
	DownScale []float32
	K         int
	Gating    Gating
	Renorm    bool
	Act       backend.Act
	// Shared, when set, is a shared expert every token goes through (a
	// SwiGLU Dense on the FFN's input), its output scaled per token by
	// σ(SharedGate·h) when SharedGate (a 1 × n_embd row) is set (Qwen 3.5
	// MoE), and added to the experts' sum.
	Shared     *Dense
	SharedGate backend.Weight

	// sets are the experts bound for the backend's by-id operations
	// (moeByID), on first use.
	sets *expertSets
}

// Layer is one decoder layer: attention, then a dense or mixture FFN
// behind its norm, with an optional post-norm (Gemma). With both Dense
// and MoE (Gemma 4's 26B-A4B) the two run side by side: the dense block
// on FFNNorm(x) then FFNPost1, the experts on FFNNorm2(x) then FFNPost2,
// their sum through FFNPost into the residual.
type Layer struct {
	Attn Attention
	// Delta, when set, replaces the attention: a recurrent layer (Attn
	// unused; it owns no KV cache).
	Delta   *DeltaNet
	FFNNorm backend.Weight
	FFNPost backend.Weight
	Dense   *Dense
	MoE     *MoE
	// The parallel dense and mixture FFN's extra norms.
	FFNNorm2, FFNPost1, FFNPost2 backend.Weight
	// PerLayer is the layer's part of the per-layer token embeddings
	// (Decoder.PerLayer), added after the FFN.
	PerLayer *PerLayerIn
	// OutScale ≠ 0 multiplies the layer's output (Gemma 4's
	// layer_output_scale).
	OutScale float32
}

// PerLayerEmbd is Gemma 4's per-layer token embeddings: for every token,
// a Width-wide input per layer, (Table[id]·√Width + RMSNorm(Proj·x/√n_embd
// over each Width) · Norm)/√2, x the scaled token embedding.
type PerLayerEmbd struct {
	// Table is per_layer_token_embd seen as vocab·layers rows of Width
	// values: row id·layers + il is token id's input to layer il.
	Table backend.Weight
	// Proj holds each layer's rows of per_layer_model_proj (Width × n_embd).
	Proj  []backend.Weight
	Norm  backend.Weight
	Width int
}

// PerLayerIn is one layer's use of its per-layer input p: x +=
// PostNorm(Proj·(GELU(Gate·x) ⊙ p)).
type PerLayerIn struct {
	Gate, Proj, PostNorm backend.Weight
}

// Decoder is a decoder-only transformer bound to a backend: token
// embedding, layers, final norm and output projection. It implements
// arch.Model.
type Decoder struct {
	C                              Common
	Be                             backend.Backend
	Embd, OutNorm, Output, OutBias backend.Weight
	// EmbScale ≠ 0 multiplies the token embeddings (Gemma: √n_embd).
	EmbScale float32
	// FinalCap > 0 soft-caps the logits: c·tanh(logits/c) (Gemma 2).
	FinalCap float32
	// QTemp, when set, is a per-position factor on the queries after
	// RoPE (Mistral 3's attention temperature).
	QTemp func(pos int32) float32
	// PerLayer, when set, is the per-layer token embeddings (Gemma 4)
	// that the layers' PerLayerIn use.
	PerLayer *PerLayerEmbd
	Layers   []Layer
	Params   uint64
	// Trace, when set, sees intermediate tensors by name and layer, as
	// llama.cpp's eval callback does (debugging parity).
	Trace func(name string, il int, t backend.Tensor)

	bufs   *buffers
	shapes *shapes
	out    backend.Tensor // logits, grown to the most rows asked for
	logits []float32
	route  router
	lora   loraStep // the pass's adapters (Batch.Adapters)
}

// Validate checks what the families' bindings cannot: a mixture whose
// FFN has a post-norm is not supported (no family has one).
func (d *Decoder) Validate() error {
	for i := range d.Layers {
		l := &d.Layers[i]
		if l.MoE == nil && l.Dense == nil {
			return fmt.Errorf("%s: layer %d needs a feed-forward block", d.C.Arch, i)
		}
		if l.MoE != nil && l.FFNPost != nil && l.Dense == nil {
			return fmt.Errorf("%s: layer %d: a post-norm after a mixture of experts is not supported", d.C.Arch, i)
		}
		if l.MoE != nil && l.Dense != nil && (l.FFNNorm2 == nil || l.FFNPost1 == nil || l.FFNPost2 == nil || l.FFNPost == nil) {
			return fmt.Errorf("%s: layer %d: a dense block beside the experts needs its four norms", d.C.Arch, i)
		}
		if m := l.MoE; m != nil && m.DownScale != nil && len(m.DownScale) != len(m.Experts) {
			return fmt.Errorf("%s: layer %d: %d expert scales for %d experts", d.C.Arch, i, len(m.DownScale), len(m.Experts))
		}
		if l.PerLayer != nil && (d.PerLayer == nil || len(d.PerLayer.Proj) != len(d.Layers)) {
			return fmt.Errorf("%s: layer %d has a per-layer input and the model no per-layer embeddings", d.C.Arch, i)
		}
		if err := d.validateMixer(i, l); err != nil {
			return err
		}
		if l.MoE != nil && (l.MoE.K <= 0 || l.MoE.K > len(l.MoE.Experts)) {
			return fmt.Errorf("%s: layer %d uses %d of %d experts", d.C.Arch, i, l.MoE.K, len(l.MoE.Experts))
		}
	}
	return nil
}

// validateMixer checks layer i's attention (or recurrent block).
func (d *Decoder) validateMixer(i int, l *Layer) error {
	if m := l.Delta; m != nil {
		if m.P.KHeads <= 0 || m.P.VHeads%m.P.KHeads != 0 || m.Part < 0 {
			return fmt.Errorf("%s: layer %d: recurrent block of %d key and %d value heads, state part %d", d.C.Arch, i, m.P.KHeads, m.P.VHeads, m.Part)
		}
		return nil
	}
	if a := &l.Attn; d.Hybrid() {
		if a.P.SharedKV || a.KVLayer < 0 || a.KVLayer >= d.CacheLayers() {
			return fmt.Errorf("%s: layer %d reads cache layer %d of %d", d.C.Arch, i, a.KVLayer, d.CacheLayers())
		}
	} else if a.P.SharedKV != (i >= d.CacheLayers()) || a.P.SharedKV && (a.KVLayer < 0 || a.KVLayer >= d.CacheLayers()) {
		return fmt.Errorf("%s: layer %d (shared cache %v, reads layer %d) in a cache of %d layers", d.C.Arch, i, a.P.SharedKV, a.KVLayer, d.CacheLayers())
	}
	if a := &l.Attn; !a.P.SharedKV && (a.K == nil || (a.V == nil && a.VNorm == nil)) {
		return fmt.Errorf("%s: layer %d stores keys and values it does not project", d.C.Arch, i)
	}
	return nil
}

func (d *Decoder) Info() arch.Info {
	return d.C.Info(d.Params)
}

// NewKV allocates a cache of ctx positions; a hybrid model's also holds
// one slot of recurrent state (its own pool, freed with it).
func (d *Decoder) NewKV(ctx int) (backend.KV, error) {
	kv, err := d.Be.NewKV(d.CacheLayers(), ctx, d.C.KVDim())
	if err != nil || !d.Hybrid() {
		return kv, err
	}
	pk, ok := kv.(*backend.PagedKV)
	if !ok {
		d.Be.Free(kv)
		return nil, fmt.Errorf("%s: the %s backend's KV cache (%T) carries no recurrent state", d.C.Arch, d.Be.Name(), kv)
	}
	if pk.States, err = d.NewStatePool(1); err != nil {
		d.Be.Free(kv)
		return nil, err
	}
	return pk, nil
}

// Hybrid says the model has recurrent layers (DeltaNet): its sequences
// carry a fixed-size state beside their KV cache, and its attention
// layers store in cache layer Attention.KVLayer.
func (d *Decoder) Hybrid() bool { return d.layerShapes().delta != nil }

// StateSizes is the float32 values of each part of a sequence's
// recurrent state (nil for a model without recurrent layers).
func (d *Decoder) StateSizes() []int {
	var sizes []int
	for i := range d.Layers {
		if m := d.Layers[i].Delta; m != nil {
			for len(sizes) < m.Part+2 {
				sizes = append(sizes, 0)
			}
			sz := m.StateSizes()
			sizes[m.Part], sizes[m.Part+1] = sz[0], sz[1]
		}
	}
	return sizes
}

// NewStatePool allocates recurrent state for slots sequences on the
// model's backend (backend.Recurrent).
func (d *Decoder) NewStatePool(slots int) (backend.StatePool, error) {
	rec, ok := d.Be.(backend.Recurrent)
	if !ok {
		return nil, fmt.Errorf("%s: %w: the %s backend has no recurrent layers", d.C.Arch, ErrNoRecurrent, d.Be.Name())
	}
	return rec.NewStatePool(slots, d.StateSizes())
}

// CacheLayers is the layers of the KV cache: C.Layers, less the layers
// that read an earlier layer's cache (C.KVLayers when set).
func (d *Decoder) CacheLayers() int { return d.C.CacheLayers() }

// buffers are the activations of one forward pass, grown to the largest
// batch seen and sliced to the current one. Buffers a model does not use
// (the experts' in a dense model) stay nil. The experts' buffers hold a
// row per token and chosen expert (n·k rows), grouped by expert; the
// per-layer inputs a row per layer and token (layers·n rows), layer by
// layer. Attention and feed-forward buffers come in one set per distinct
// width among the layers (shapes).
type buffers struct {
	n                int
	x, h, o, y       backend.Tensor // (n, embd)
	attn             []attnBufs
	ffn              []ffnBufs
	router           backend.Tensor // (n, experts)
	eids, ew         backend.Tensor // (n, k): the experts chosen on the device, their weights
	xe, ye           backend.Tensor // (n·k, embd)
	egate, eup, eact backend.Tensor // (n·k, expert ff)
	plSel, plProj    backend.Tensor // (layers·n, per-layer width)
	plIn             backend.Tensor // (layers·n, per-layer width)
	plGate, plAct    backend.Tensor // (n, per-layer width)
	delta            deltaBufs
	shared           sharedBufs
}

type attnBufs struct{ q, att, k, k2, v, v2, gate backend.Tensor } // (n, q width), (n, kv width)

// deltaBufs are a recurrent block's activations.
type deltaBufs struct {
	qkv, conv    backend.Tensor // (n, conv width)
	z, out, norm backend.Tensor // (n, value heads · head size)
	alpha, beta  backend.Tensor // (n, value heads)
}

// sharedBufs are a shared expert's activations.
type sharedBufs struct {
	gate, up, act backend.Tensor // (n, shared ff)
	logit         backend.Tensor // (n, 1)
}
type ffnBufs struct{ gate, up, act backend.Tensor } // (n, ff)

// Row counts of a buffer, per token of the batch.
const (
	perToken = iota
	perChoice
	perLayer
)

// fields lists the buffers, in a fixed order, and how many rows each has
// per token (perToken, perChoice: k, perLayer: layers).
func (b *buffers) fields() ([]*backend.Tensor, []int) {
	fs := []*backend.Tensor{&b.x, &b.h, &b.o, &b.y, &b.router, &b.xe, &b.ye, &b.egate, &b.eup, &b.eact,
		&b.plSel, &b.plProj, &b.plIn, &b.plGate, &b.plAct,
		&b.delta.qkv, &b.delta.conv, &b.delta.z, &b.delta.out, &b.delta.norm, &b.delta.alpha, &b.delta.beta,
		&b.shared.gate, &b.shared.up, &b.shared.act, &b.shared.logit, &b.eids, &b.ew}
	rows := []int{4: perToken, 5: perChoice, 6: perChoice, 7: perChoice, 8: perChoice, 9: perChoice,
		10: perLayer, 11: perLayer, 12: perLayer, 13: perToken, 14: perToken, 25: perToken, 26: perToken, 27: perToken}
	for i := range b.attn {
		a := &b.attn[i]
		fs = append(fs, &a.q, &a.att, &a.k, &a.k2, &a.v, &a.v2, &a.gate)
		rows = append(rows, perToken, perToken, perToken, perToken, perToken, perToken, perToken)
	}
	for i := range b.ffn {
		f := &b.ffn[i]
		fs = append(fs, &f.gate, &f.up, &f.act)
		rows = append(rows, perToken, perToken, perToken)
	}
	return fs, rows
}

// shapes are the distinct widths of the layers' attention and
// feed-forward buffers, and which set each layer uses.
type shapes struct {
	attn   [][2]int // q width, kv width
	ffn    []int
	attnOf []int // per layer, its set in attn
	ffnOf  []int // per layer, its set in ffn (-1: no dense block)
	// delta is the recurrent blocks' shape (every one the same), nil
	// without any; sharedFF the widest shared expert (0: none).
	delta    *backend.DeltaNetParams
	convW    int
	sharedFF int
	gated    bool // some attention has an output gate
}

// heads returns attention a's heads, KV heads and head size: its P's,
// or the model's where P leaves them unset.
func (d *Decoder) heads(a *Attention) (int, int, int) {
	if a.P.HeadDim > 0 {
		return a.P.Heads, a.P.KVHeads, a.P.HeadDim
	}
	return d.C.Heads, d.C.KVHeads, d.C.HeadDim
}

func (d *Decoder) layerShapes() *shapes {
	if d.shapes != nil {
		return d.shapes
	}
	sh := &shapes{attnOf: make([]int, len(d.Layers)), ffnOf: make([]int, len(d.Layers))}
	for i := range d.Layers {
		l := &d.Layers[i]
		h, kvh, hd := d.heads(&l.Attn)
		a := [2]int{h * hd, kvh * hd}
		j := slices.Index(sh.attn, a)
		if j < 0 {
			j, sh.attn = len(sh.attn), append(sh.attn, a)
		}
		sh.attnOf[i], sh.ffnOf[i] = j, -1
		if m := l.Delta; m != nil && sh.delta == nil {
			p := m.P
			sh.delta, sh.convW = &p, m.ConvWidth()
		}
		if l.MoE != nil && l.MoE.Shared != nil {
			_, ff := l.MoE.Shared.Down.Shape()
			sh.sharedFF = max(sh.sharedFF, ff)
		}
		sh.gated = sh.gated || l.Attn.Gate != nil
		if l.Dense != nil {
			_, ff := l.Dense.Down.Shape()
			j := slices.Index(sh.ffn, ff)
			if j < 0 {
				j, sh.ffn = len(sh.ffn), append(sh.ffn, ff)
			}
			sh.ffnOf[i] = j
		}
	}
	d.shapes = sh
	return sh
}

// experts is the most experts a token goes through in any layer.
func (d *Decoder) experts() int {
	k := 0
	for i := range d.Layers {
		if m := d.Layers[i].MoE; m != nil {
			k = max(k, m.K)
		}
	}
	return k
}

// buffersFor returns the activations for an n-token batch. Allocating a
// larger set is where memory can run out: the backend's error is checked
// then, and a set that failed is not kept.
func (d *Decoder) buffersFor(n int) (*buffers, error) {
	be, c := d.Be, &d.C
	k, L := d.experts(), len(d.Layers)
	sh := d.layerShapes()
	if d.bufs == nil || d.bufs.n < n {
		var kNorm, vNorm, parallel bool
		for i := range d.Layers {
			l := &d.Layers[i]
			kNorm, vNorm = kNorm || l.Attn.KNorm != nil, vNorm || l.Attn.VNorm != nil
			parallel = parallel || l.MoE != nil && l.Dense != nil
		}
		moe := k > 0
		if d.bufs != nil { // outgrown: the larger set replaces it
			fs, _ := d.bufs.fields()
			for _, f := range fs {
				be.Free(*f)
			}
		}
		b := &buffers{n: n}
		mk := func(rows, cols int, use bool) backend.Tensor {
			if !use {
				return nil
			}
			return be.NewTensor(rows, cols)
		}
		b.x, b.h, b.o, b.y = mk(n, c.Embd, true), mk(n, c.Embd, true), mk(n, c.Embd, true), mk(n, c.Embd, parallel || sh.sharedFF > 0)
		b.attn = make([]attnBufs, len(sh.attn))
		for i, w := range sh.attn {
			b.attn[i] = attnBufs{q: mk(n, w[0], true), att: mk(n, w[0], true), k: mk(n, w[1], true), v: mk(n, w[1], true),
				k2: mk(n, w[1], kNorm), v2: mk(n, w[1], vNorm), gate: mk(n, w[0], sh.gated)}
		}
		if p := sh.delta; p != nil {
			vw := p.VHeads * p.HeadDim
			b.delta = deltaBufs{qkv: mk(n, sh.convW, true), conv: mk(n, sh.convW, true),
				z: mk(n, vw, true), out: mk(n, vw, true), norm: mk(n, vw, true),
				alpha: mk(n, p.VHeads, true), beta: mk(n, p.VHeads, true)}
		}
		if ff := sh.sharedFF; ff > 0 {
			b.shared = sharedBufs{gate: mk(n, ff, true), up: mk(n, ff, true), act: mk(n, ff, true), logit: mk(n, 1, true)}
		}
		b.ffn = make([]ffnBufs, len(sh.ffn))
		for i, ff := range sh.ffn {
			b.ffn[i] = ffnBufs{gate: mk(n, ff, true), up: mk(n, ff, true), act: mk(n, ff, true)}
		}
		b.router = mk(n, c.Experts, moe)
		_, byID := be.(backend.Experts)
		b.eids, b.ew = mk(n, k, moe && byID), mk(n, k, moe && byID)
		b.xe, b.ye = mk(n*k, c.Embd, moe), mk(n*k, c.Embd, moe)
		b.egate, b.eup, b.eact = mk(n*k, c.ExpertFF, moe), mk(n*k, c.ExpertFF, moe), mk(n*k, c.ExpertFF, moe)
		if pl := d.PerLayer; pl != nil {
			b.plSel, b.plProj, b.plIn = mk(L*n, pl.Width, true), mk(L*n, pl.Width, true), mk(L*n, pl.Width, true)
			b.plGate, b.plAct = mk(n, pl.Width, true), mk(n, pl.Width, true)
		}
		d.bufs = nil
		if err := be.Err(); err != nil {
			fs, _ := b.fields()
			for _, f := range fs {
				be.Free(*f)
			}
			return nil, err
		}
		d.bufs = b
	}
	if d.bufs.n == n {
		return d.bufs, nil
	}
	v := &buffers{n: n, attn: make([]attnBufs, len(d.bufs.attn)), ffn: make([]ffnBufs, len(d.bufs.ffn))}
	src, per := d.bufs.fields()
	dst, _ := v.fields()
	for i, f := range src {
		if *f != nil {
			rows := n
			switch per[i] {
			case perChoice:
				rows = n * k
			case perLayer:
				rows = n * L
			}
			*dst[i] = be.Slice(*f, 0, rows)
		}
	}
	return v, nil
}

// multiMatMul is an optional backend op: several products of the same
// activations (dsts[i] = x · ws[i]ᵀ) in one call, with MatMul's results
// (runtime/cpu runs them as one loop of its threads).
type multiMatMul interface {
	MatMulMulti(dsts []backend.Tensor, x backend.Tensor, ws []backend.Weight)
}

// matMuls computes dsts[i] = x · ws[i]ᵀ (MatMuls).
func (d *Decoder) matMuls(x backend.Tensor, dsts []backend.Tensor, ws []backend.Weight) {
	MatMuls(d.Be, x, dsts, ws)
}

// MatMuls computes dsts[i] = x · ws[i]ᵀ: one MatMulMulti where the
// backend has it, else one MatMul each.
func MatMuls(be backend.Backend, x backend.Tensor, dsts []backend.Tensor, ws []backend.Weight) {
	if mm, ok := be.(multiMatMul); ok {
		mm.MatMulMulti(dsts, x, ws)
		return
	}
	for i, w := range ws {
		be.MatMul(dsts[i], x, w)
	}
}

// groupedMatMul is an optional backend op: products of several weights,
// each with its own activations (dsts[i] = xs[i] · ws[i]ᵀ), in one call
// with MatMul's results (runtime/cpu runs them as one loop of its threads:
// a mixture's experts, each over its tokens).
type groupedMatMul interface {
	MatMulGrouped(dsts, xs []backend.Tensor, ws []backend.Weight)
}

// matMulGrouped computes dsts[i] = xs[i] · ws[i]ᵀ: one MatMulGrouped where
// the backend has it, else one MatMul each.
func (d *Decoder) matMulGrouped(dsts, xs []backend.Tensor, ws []backend.Weight) {
	if g, ok := d.Be.(groupedMatMul); ok {
		g.MatMulGrouped(dsts, xs, ws)
		return
	}
	for i, w := range ws {
		d.Be.MatMul(dsts[i], xs[i], w)
	}
}

// addBias adds b to x when the weight exists.
func (d *Decoder) addBias(x backend.Tensor, b backend.Weight) { AddBias(d.Be, x, b) }

// AddBias adds the bias b to every row of x when b exists (not nil).
func AddBias(be backend.Backend, x backend.Tensor, b backend.Weight) {
	if b != nil {
		be.AddBias(x, b)
	}
}

// Forward implements arch.Model. The backend's errors (see backend.Err)
// are checked once, after the results are read (and in a mixture, after
// the router's logits are read), and returned.
func (d *Decoder) Forward(bt *arch.Batch) ([]float32, error) {
	ids, pos := bt.IDs, bt.Pos
	n := len(ids)
	if n == 0 || len(pos) != n || len(bt.Seq) != n {
		return nil, fmt.Errorf("%s: forward of %d tokens with %d positions and %d sequence ids", d.C.Arch, n, len(pos), len(bt.Seq))
	}
	for _, r := range bt.Outputs {
		if r < 0 || r >= n {
			return nil, fmt.Errorf("%s: output row %d of a %d-token batch", d.C.Arch, r, n)
		}
	}
	be, eps := d.Be, d.C.NormEps
	defer d.lora.reset()
	if err := d.lora.prepare(d, bt); err != nil {
		return nil, err
	}
	b, err := d.buffersFor(n)
	if err != nil {
		return nil, err
	}
	be.Embed(b.x, d.Embd, ids)
	d.lora.applyEmbed(b.x, d.Embd, ids)
	if d.EmbScale != 0 {
		be.Scale(b.x, d.EmbScale)
	}
	d.trace("embd", -1, b.x)
	var temps []float32
	if d.QTemp != nil {
		temps = make([]float32, n)
		for t, p := range pos {
			temps[t] = d.QTemp(p)
		}
	}
	if d.PerLayer != nil {
		d.perLayerInputs(b, ids)
	}
	sh := d.layerShapes()
	for i := range d.Layers {
		l := &d.Layers[i]
		if l.Delta != nil {
			d.deltaNet(l.Delta, b, bt, i)
		} else {
			d.attention(&l.Attn, b, &b.attn[sh.attnOf[i]], bt, i, temps)
		}
		switch {
		case l.MoE != nil && l.Dense != nil:
			if err := d.parallelFFN(l, b, &b.ffn[sh.ffnOf[i]], i, n); err != nil {
				return nil, err
			}
		case l.MoE != nil:
			// The experts' weighted outputs go straight into the residual.
			be.RMSNorm(b.h, b.x, l.FFNNorm, eps)
			if err := d.moe(l.MoE, b, n, b.x, false); err != nil {
				return nil, err
			}
		default:
			d.trace("attn_res", i, b.x)
			be.RMSNorm(b.h, b.x, l.FFNNorm, eps)
			d.trace("ffn_norm", i, b.h)
			d.dense(l.Dense, b, &b.ffn[sh.ffnOf[i]])
			d.trace("ffn_out", i, b.o)
			if l.FFNPost != nil {
				be.RMSNorm(b.h, b.o, l.FFNPost, eps)
				d.trace("ffn_post_norm", i, b.h)
				be.Add(b.x, b.h)
			} else {
				be.Add(b.x, b.o)
			}
		}
		if l.PerLayer != nil {
			d.trace("pe_in", i, b.x)
			d.perLayer(l.PerLayer, b, i, n)
		}
		if l.OutScale != 0 {
			be.Scale(b.x, l.OutScale)
		}
		d.trace("l_out", i, b.x)
	}
	return d.output(b, bt)
}

// parallelFFN runs a dense block and a mixture side by side (Layer) and
// adds their normed sum into b.x.
func (d *Decoder) parallelFFN(l *Layer, b *buffers, f *ffnBufs, il, n int) error {
	be, eps := d.Be, d.C.NormEps
	d.trace("attn_res", il, b.x)
	be.RMSNorm(b.h, b.x, l.FFNNorm, eps)
	d.trace("ffn_norm_1", il, b.h)
	d.dense(l.Dense, b, f)
	d.trace("ffn_down", il, b.o)
	be.RMSNorm(b.y, b.o, l.FFNPost1, eps) // (n, embd): the dense branch
	d.trace("ffn_mlp", il, b.y)
	be.RMSNorm(b.h, b.x, l.FFNNorm2, eps) // the experts' input
	// The experts' sum goes into b.o, cleared after the router read it.
	if err := d.moe(l.MoE, b, n, b.o, true); err != nil {
		return err
	}
	d.trace("ffn_moe_out", il, b.o)
	be.RMSNorm(b.h, b.o, l.FFNPost2, eps)
	be.Add(b.y, b.h)
	d.trace("ffn_moe_combined", il, b.y)
	be.RMSNorm(b.h, b.y, l.FFNPost, eps)
	be.Add(b.x, b.h)
	return nil
}

// perLayerInputs computes every layer's per-layer input into b.plIn
// (layer il's at rows il·n … il·n+n-1) from the token ids and the scaled
// token embeddings in b.x (llama.cpp's gemma4 project_per_layer_inputs).
func (d *Decoder) perLayerInputs(b *buffers, ids []int32) {
	be, pl, L, n := d.Be, d.PerLayer, len(d.Layers), len(ids)
	rows := make([]int32, L*n)
	for il := range L {
		for t, id := range ids {
			// An id outside the vocabulary lands outside the table (or
			// fails the token embedding's own gather).
			rows[il*n+t] = id*int32(L) + int32(il)
		}
	}
	be.Embed(b.plSel, pl.Table, rows)
	be.Scale(b.plSel, float32(math.Sqrt(float64(pl.Width))))
	dsts := make([]backend.Tensor, L)
	for il := range L {
		dsts[il] = be.Slice(b.plProj, il*n, n)
	}
	MatMuls(be, b.x, dsts, pl.Proj)
	be.Scale(b.plProj, 1/float32(math.Sqrt(float64(d.C.Embd)))) // ggml: 1.0f/sqrtf(n_embd)
	be.RMSNorm(b.plIn, b.plProj, pl.Norm, d.C.NormEps)
	be.Add(b.plIn, b.plSel)
	be.Scale(b.plIn, 1/float32(math.Sqrt(2)))
	d.trace("inp_per_layer", -1, b.plIn)
}

// perLayer adds layer il's per-layer input block into b.x.
func (d *Decoder) perLayer(p *PerLayerIn, b *buffers, il, n int) {
	be := d.Be
	be.MatMul(b.plGate, b.x, p.Gate)
	be.GLU(b.plAct, b.plGate, be.Slice(b.plIn, il*n, n), backend.Act{Kind: backend.ActGELU})
	be.MatMul(b.o, b.plAct, p.Proj)
	be.RMSNorm(b.h, b.o, p.PostNorm, d.C.NormEps)
	d.trace("per_layer_embd_out", il, b.h)
	be.Add(b.x, b.h)
}

// attention runs layer il's attention block on b.x, with the buffers ab
// of its widths.
func (d *Decoder) attention(a *Attention, b *buffers, ab *attnBufs, bt *arch.Batch, il int, temps []float32) {
	be, eps := d.Be, d.C.NormEps
	heads, kvHeads, headDim := d.heads(a)
	be.RMSNorm(b.h, b.x, a.Norm, eps)
	d.trace("attn_norm", il, b.h)
	q, att, k, v := ab.q, ab.att, ab.k, ab.v
	switch {
	case a.Gate != nil:
		d.matMuls(b.h, []backend.Tensor{q, k, v, ab.gate}, []backend.Weight{a.Q, a.K, a.V, a.Gate})
	case a.P.SharedKV:
		be.MatMul(q, b.h, a.Q)
		k, v = nil, nil
	case a.V == nil: // K = V: the values are the keys' projection, normed
		be.MatMul(q, b.h, a.Q)
		be.MatMul(k, b.h, a.K)
	default:
		d.matMuls(b.h, []backend.Tensor{q, k, v}, []backend.Weight{a.Q, a.K, a.V})
	}
	if lo := &d.lora; lo.active() {
		switch {
		case k == nil:
			lo.apply(q, b.h, a.Q)
		case a.V == nil:
			lo.applyMulti([]backend.Tensor{q, k}, b.h, []backend.Weight{a.Q, a.K})
		default:
			lo.applyMulti([]backend.Tensor{q, k, v}, b.h, []backend.Weight{a.Q, a.K, a.V})
		}
	}
	d.trace("q", il, q)
	d.addBias(q, a.QB)
	if k != nil {
		d.trace("k", il, k)
		d.addBias(k, a.KB)
		if a.V == nil {
			be.RMSNorm(v, k, a.VNorm, eps)
		} else {
			d.trace("v", il, v)
			d.addBias(v, a.VB)
			if a.VNorm != nil {
				be.RMSNorm(ab.v2, v, a.VNorm, eps)
				v = ab.v2
			}
		}
	}
	if a.QNorm != nil {
		be.RMSNorm(att, q, a.QNorm, eps)
		q, att = att, q
	}
	if k != nil && a.KNorm != nil {
		be.RMSNorm(ab.k2, k, a.KNorm, eps)
		k = ab.k2
	}
	if a.RoPE != nil {
		be.RoPE(q, heads, headDim, bt.Pos, a.RoPE)
		if k != nil {
			be.RoPE(k, kvHeads, headDim, bt.Pos, a.RoPE)
		}
	}
	if a.QScale != 0 {
		be.Scale(q, a.QScale)
	}
	if temps != nil {
		be.Scale(q, temps...)
	}
	d.trace("Qcur", il, q)
	if k != nil {
		d.trace("Kcur", il, k)
	}
	cl := il
	if a.P.SharedKV || d.Hybrid() {
		cl = a.KVLayer
	}
	be.Attention(att, q, k, v, bt.KVs, bt.Seq, cl, bt.Pos, a.P)
	d.trace("kqv_out", il, att)
	if a.Gate != nil {
		be.GLU(att, ab.gate, att, backend.Act{Kind: backend.ActSigmoid})
		d.trace("attn_gated", il, att)
	}
	be.MatMul(b.o, att, a.O)
	d.lora.apply(b.o, att, a.O)
	d.addBias(b.o, a.OB)
	d.trace("attn_out", il, b.o)
	if a.PostNorm != nil {
		be.RMSNorm(b.h, b.o, a.PostNorm, eps)
		d.trace("attn_post_norm", il, b.h)
		be.Add(b.x, b.h)
	} else {
		be.Add(b.x, b.o)
	}
}

// ErrNoRecurrent is wrapped when a model with recurrent layers is bound
// on a backend without backend.Recurrent.
var ErrNoRecurrent = errors.New("recurrent layers are not supported")

// deltaNet runs layer il's recurrent block on b.x.
func (d *Decoder) deltaNet(m *DeltaNet, b *buffers, bt *arch.Batch, il int) {
	be, eps := d.Be, d.C.NormEps
	rec := be.(backend.Recurrent) // checked at bind time (NewStatePool)
	db := &b.delta
	be.RMSNorm(b.h, b.x, m.Norm, eps)
	d.trace("attn_norm", il, b.h)
	d.matMuls(b.h, []backend.Tensor{db.qkv, db.z, db.alpha, db.beta}, []backend.Weight{m.QKV, m.Z, m.Alpha, m.Beta})
	d.trace("linear_attn_qkv_mixed", il, db.qkv)
	rec.CausalConv(db.conv, db.qkv, m.Conv, bt.KVs, bt.Seq, bt.Pos, m.Part)
	d.trace("conv_output_raw", il, db.conv)
	be.Activate(db.qkv, db.conv, backend.Act{Kind: backend.ActSiLU})
	rec.GatedDeltaNet(db.out, db.qkv, db.alpha, db.beta, m.A, m.DtBias, bt.KVs, bt.Seq, bt.Pos, m.Part+1, m.P)
	d.trace("attn_output", il, db.out)
	be.RMSNorm(db.norm, db.out, m.OutNorm, eps) // per head
	be.SwiGLU(db.norm, db.z, db.norm)
	d.trace("final_output", il, db.norm)
	be.MatMul(b.o, db.norm, m.Out)
	d.trace("linear_attn_out", il, b.o)
	be.Add(b.x, b.o)
}

// shared adds a mixture's shared expert, run on b.h and scaled per token
// by σ(SharedGate·b.h), into out.
func (d *Decoder) shared(m *MoE, b *buffers, n int, out backend.Tensor) error {
	be, sb := d.Be, &b.shared
	s := func(t backend.Tensor) backend.Tensor {
		_, cols := m.Shared.Down.Shape()
		if _, w := t.Shape(); w == cols {
			return t
		}
		panic("blocks: shared experts of different widths")
	}
	y := b.y
	runFFN(be, &d.lora, m.Shared.Gate, m.Shared.Up, m.Shared.Down, nil, nil, nil, m.Shared.Act, b.h, s(sb.gate), s(sb.up), s(sb.act), y)
	if m.SharedGate != nil {
		be.MatMul(sb.logit, b.h, m.SharedGate)
		if sc, ok := be.(backend.SigmoidScaler); ok { // the gate stays where it is
			sc.ScaleSigmoid(y, sb.logit)
			be.Add(out, y)
			return nil
		}
		r := &d.route
		r.probs = zeroed(r.probs, n)
		be.Read(sb.logit, 0, r.probs)
		if err := be.Err(); err != nil {
			return err
		}
		for t, v := range r.probs {
			r.probs[t] = float32(1 / (1 + math.Exp(-float64(v))))
		}
		be.Scale(y, r.probs...)
	}
	be.Add(out, y)
	return nil
}

func (d *Decoder) trace(name string, il int, t backend.Tensor) {
	if d.Trace != nil {
		d.Trace(name, il, t)
	}
}

// dense runs a feed-forward block from b.h into b.o, with the buffers fb
// of its width.
func (d *Decoder) dense(f *Dense, b *buffers, fb *ffnBufs) {
	d.ffn(f.Gate, f.Up, f.Down, f.GateB, f.UpB, f.DownB, f.Act, b.h, fb.gate, fb.up, fb.act, b.o)
}

// Forward runs the block on x (n, embd) into out (n, embd); g, u and a
// are scratch (n, ff) tensors (g unused without a gate). Encoders, which
// place their norms differently from Decoder, call it directly.
func (f *Dense) Forward(be backend.Backend, x, g, u, a, out backend.Tensor) {
	runFFN(be, nil, f.Gate, f.Up, f.Down, f.GateB, f.UpB, f.DownB, f.Act, x, g, u, a, out)
}

// ffn computes out = down(act(gate·x)·(up·x)) (or down(act(up·x)) with no
// gate), with the optional biases.
func (d *Decoder) ffn(gate, up, down, gateB, upB, downB backend.Weight, act backend.Act, x, g, u, a, out backend.Tensor) {
	runFFN(d.Be, &d.lora, gate, up, down, gateB, upB, downB, act, x, g, u, a, out)
}

// runFFN is the feed-forward block, with the adapters' deltas of lo (nil:
// none) after each product.
func runFFN(be backend.Backend, lo *loraStep, gate, up, down, gateB, upB, downB backend.Weight, act backend.Act, x, g, u, a, out backend.Tensor) {
	if gate != nil {
		MatMuls(be, x, []backend.Tensor{g, u}, []backend.Weight{gate, up})
		if lo.active() {
			lo.applyMulti([]backend.Tensor{g, u}, x, []backend.Weight{gate, up})
		}
		AddBias(be, g, gateB)
		AddBias(be, u, upB)
		if act.Kind == backend.ActSiLU {
			be.SwiGLU(a, g, u)
		} else {
			be.GLU(a, g, u, act)
		}
	} else {
		be.MatMul(u, x, up)
		lo.apply(u, x, up)
		AddBias(be, u, upB)
		be.Activate(a, u, act)
	}
	be.MatMul(out, a, down)
	lo.apply(out, a, down)
	AddBias(be, out, downB)
}

// output runs the final norm and projection over the rows bt asks for
// and returns their logits (or hidden states).
func (d *Decoder) output(b *buffers, bt *arch.Batch) ([]float32, error) {
	be, c := d.Be, &d.C
	rows := len(bt.Outputs)
	if rows == 0 {
		return nil, be.Err()
	}
	x, h := be.Slice(b.h, 0, rows), be.Slice(b.o, 0, rows)
	be.Gather(x, b.x, bt.Outputs)
	be.RMSNorm(h, x, d.OutNorm, c.NormEps)
	out, width := h, c.Embd
	if !bt.Hidden {
		if d.out != nil {
			if r, _ := d.out.Shape(); r < rows {
				be.Free(d.out)
				d.out = nil
			}
		}
		if d.out == nil {
			d.out = be.NewTensor(rows, c.Vocab)
			if err := be.Err(); err != nil { // memory ran out: not kept
				be.Free(d.out)
				d.out = nil
				return nil, err
			}
		}
		out, width = be.Slice(d.out, 0, rows), c.Vocab
		be.MatMul(out, h, d.Output)
		if d.Output != d.Embd { // a tied output is its own tensor in llama.cpp, with no adapter
			d.lora.applyOut(out, h, d.Output)
		}
		d.addBias(out, d.OutBias)
	}
	if cap(d.logits) < rows*width {
		d.logits = make([]float32, rows*width)
	}
	res := d.logits[:rows*width]
	be.Read(out, 0, res)
	if err := be.Err(); err != nil {
		return nil, err
	}
	if d.FinalCap > 0 && !bt.Hidden {
		inv := 1 / d.FinalCap
		for i, v := range res {
			res[i] = libmf.Tanhf(v*inv) * d.FinalCap // ggml_tanh: glibc tanhf
		}
	}
	return res, nil
}

// router holds the host-side routing of one mixture step.
type router struct {
	logits  []float32
	scratch backend.RouteScratch
	ids     []int32   // one token's experts
	sel     []int     // per token, its k experts
	w       []float32 // and their weights
	count   []int     // per expert, the rows routed to it
	start   []int     // per expert, its first row in the grouped buffers
	next    []int     // per expert, its next row while grouping
	probs   []float32 // one token's router probabilities
	tok     []int     // per grouped row, its token
	ws      []float32 // and its weight
	// Per-step argument lists of the grouped products.
	dsts, xs []backend.Tensor
	mats     []backend.Weight
}

// moe runs a mixture-of-experts block from b.h and adds its output into
// out (b.x, or a buffer cleared first when clear; b.o must not be out
// when the router has its own input) (llama.cpp's build_moe_ffn with mul_mat_id): the rows of all tokens
// are gathered grouped by expert, each expert's products run over its
// group in one grouped product for all experts (each expert's weights read
// once per step, however many tokens chose it), the activation once over
// all rows, and the weighted outputs are added back to their tokens. The
// router's logits are read to the host for that (a wait on a device), so
// steps of at most byIDTokens tokens on a backend with backend.Experts
// route there instead (moeByID), with the same results.
func (d *Decoder) moe(m *MoE, b *buffers, n int, out backend.Tensor, clear bool) error {
	be, r := d.Be, &d.route
	ne, k := len(m.Experts), m.K
	in := b.h
	if m.RouterNorm != nil { // the router's own input, in b.o
		be.RMSNorm(b.o, b.x, m.RouterNorm, d.C.NormEps)
		if m.RouterScale != 0 {
			be.Scale(b.o, m.RouterScale)
		}
		in = b.o
	}
	be.MatMul(b.router, in, m.Router)
	d.addBias(b.router, m.RouterB)
	if clear {
		be.Scale(out, 0)
	}
	// Adapters on the experts need each row's expert on the host (their
	// deltas are grouped by expert and adapter): such steps route here.
	if n <= byIDTokens && !d.lora.experts(m) {
		if s := d.expertSets(m, b); s != nil {
			return d.moeByID(m, s, b, n, out)
		}
	}
	r.logits = zeroed(r.logits, n*ne)
	be.Read(b.router, 0, r.logits)
	if err := be.Err(); err != nil { // the routing below acts on the logits
		return err
	}
	r.sel, r.w = r.sel[:0], r.w[:0]
	r.count = zeroed(r.count, ne)
	for t := range n {
		r.route(m, r.logits[t*ne:(t+1)*ne])
	}
	for i, e := range r.sel {
		if r.w[i]-r.w[i] != 0 {
			return fmt.Errorf("%s: router produced a non-finite weight", d.C.Arch)
		}
		r.count[e]++
	}
	// Rows grouped by expert, tokens in order within a group: r.next is
	// each expert's next free row, starting at r.start.
	r.start, r.next = zeroed(r.start, ne), zeroed(r.next, ne)
	for e := 1; e < ne; e++ {
		r.start[e] = r.start[e-1] + r.count[e-1]
	}
	copy(r.next, r.start)
	rows := n * k
	r.tok, r.ws = zeroed(r.tok, rows), zeroed(r.ws, rows)
	for i, e := range r.sel {
		w := r.w[i]
		if m.DownScale != nil {
			w *= m.DownScale[e]
		}
		r.tok[r.next[e]], r.ws[r.next[e]] = i/k, w
		r.next[e]++
	}
	s := func(t backend.Tensor) backend.Tensor { return be.Slice(t, 0, rows) }
	xe, ye, g, u, a := s(b.xe), s(b.ye), s(b.egate), s(b.eup), s(b.eact)
	be.Gather(xe, b.h, r.tok)
	// group runs, for every expert and each part (dst, f) of parts, f's
	// weight over the expert's rows of x into its rows of dst, as one
	// grouped product, then the adapters' deltas, then f's bias.
	type part struct {
		dst backend.Tensor
		f   func(*Expert) (w, bias backend.Weight)
	}
	lo := &d.lora
	group := func(x backend.Tensor, parts ...part) {
		r.dsts, r.xs, r.mats = r.dsts[:0], r.xs[:0], r.mats[:0]
		for e := range m.Experts {
			c := r.count[e]
			if c == 0 {
				continue
			}
			for _, p := range parts {
				w, _ := p.f(&m.Experts[e])
				r.dsts = append(r.dsts, be.Slice(p.dst, r.start[e], c))
				r.xs = append(r.xs, be.Slice(x, r.start[e], c))
				r.mats = append(r.mats, w)
			}
		}
		d.matMulGrouped(r.dsts, r.xs, r.mats)
		for _, p := range parts {
			lo.applyExperts(p.dst, x, m, r, func(x *Expert) backend.Weight { w, _ := p.f(x); return w })
		}
		for e := range m.Experts {
			for _, p := range parts {
				if _, bias := p.f(&m.Experts[e]); bias != nil && r.count[e] > 0 {
					be.AddBias(be.Slice(p.dst, r.start[e], r.count[e]), bias)
				}
			}
		}
	}
	up := part{u, func(x *Expert) (backend.Weight, backend.Weight) { return x.Up, x.UpB }}
	if m.Experts[0].Gate != nil {
		group(xe, part{g, func(x *Expert) (backend.Weight, backend.Weight) { return x.Gate, x.GateB }}, up)
		if m.Act.Kind == backend.ActSiLU {
			be.SwiGLU(a, g, u)
		} else {
			be.GLU(a, g, u, m.Act)
		}
	} else {
		group(xe, up)
		be.Activate(a, u, m.Act)
	}
	group(a, part{ye, func(x *Expert) (backend.Weight, backend.Weight) { return x.Down, x.DownB }})
	be.AddScaledRows(out, ye, r.tok, r.ws)
	if m.Shared != nil {
		return d.shared(m, b, n, out)
	}
	return nil
}

// route appends a token's experts and their weights to r.sel and r.w,
// from its router logits (backend.RouteRow: llama.cpp's build_moe_ffn).
func (r *router) route(m *MoE, logits []float32) {
	r.ids = zeroed(r.ids, m.K)
	first := len(r.w)
	r.w = append(r.w, make([]float32, m.K)...)
	backend.RouteRow(&r.scratch, r.ids, r.w[first:], logits, m.K, m.Gating, m.Renorm)
	for _, e := range r.ids {
		r.sel = append(r.sel, int(e))
	}
}

// byIDTokens is the most tokens a mixture step routes on the backend
// (moeByID) when the backend has the by-id operations: decode steps, as
// ggml's mul_mat_vec_id. Larger batches (prefill) group their rows by
// expert (moe), where each expert's weights are read once for all of its
// tokens.
const byIDTokens = 8

// expertSets is a mixture's experts bound for backend.Experts: its
// matrices and biases by kind (nil: the experts have none), the down
// scales as a 1 × experts weight. ok is false when the backend could not
// bind them: the mixture then always routes on the host.
type expertSets struct {
	ex                                backend.Experts
	gate, up, down, gateB, upB, downB backend.ExpertSet
	scale                             backend.Weight
	scaleData                         []byte // the scale weight's data, kept alive
	ok                                bool
}

// expertSets returns m's experts bound for the backend's by-id
// operations, binding them on first use, or nil when the backend has no
// such operations or cannot bind them, or b has no buffers for m's K.
func (d *Decoder) expertSets(m *MoE, b *buffers) *expertSets {
	ex, ok := d.Be.(backend.Experts)
	if !ok || b.eids == nil || len(m.Experts) == 0 {
		return nil
	}
	if _, k := b.eids.Shape(); k != m.K || m.K < 1 || m.K > len(m.Experts) || m.K > backend.MaxRouteK {
		return nil
	}
	if m.sets == nil {
		s := &expertSets{ex: ex, ok: true}
		m.sets = s
		bind := func(dst *backend.ExpertSet, f func(*Expert) backend.Weight) {
			ws := make([]backend.Weight, len(m.Experts))
			nils := 0
			for e := range m.Experts {
				if ws[e] = f(&m.Experts[e]); ws[e] == nil {
					nils++
				}
			}
			switch {
			case nils == len(ws):
				return
			case nils > 0:
				s.ok = false
				return
			}
			set, err := ex.ExpertSet(ws)
			if err != nil {
				s.ok = false
				return
			}
			*dst = set
		}
		bind(&s.gate, func(x *Expert) backend.Weight { return x.Gate })
		bind(&s.up, func(x *Expert) backend.Weight { return x.Up })
		bind(&s.down, func(x *Expert) backend.Weight { return x.Down })
		bind(&s.gateB, func(x *Expert) backend.Weight { return x.GateB })
		bind(&s.upB, func(x *Expert) backend.Weight { return x.UpB })
		bind(&s.downB, func(x *Expert) backend.Weight { return x.DownB })
		s.ok = s.ok && s.up != nil && s.down != nil && (s.gate == nil) == (m.Experts[0].Gate == nil)
		if s.ok && m.DownScale != nil {
			s.scaleData = make([]byte, 4*len(m.DownScale))
			for i, v := range m.DownScale {
				binary.LittleEndian.PutUint32(s.scaleData[4*i:], math.Float32bits(v))
			}
			w, err := d.Be.Weight("ffn_down_exps.scale", quant.F32, 1, len(m.DownScale), s.scaleData)
			if err != nil {
				s.ok = false
			}
			s.scale = w
		}
	}
	if !m.sets.ok {
		return nil
	}
	return m.sets
}

// moeByID is moe for a small batch on a backend with the by-id
// operations: the router's choices stay on the backend (ids and weights
// in b.eids and b.ew), each (token, choice) row's products read its
// expert's weights by id, and nothing is read back, so a decode step
// waits for nothing before its logits (and can run as one CUDA graph).
// The results are those of the grouped path (bit for bit on the CPU):
// the choices of a token are summed in increasing expert id, as the
// grouped rows are.
func (d *Decoder) moeByID(m *MoE, s *expertSets, b *buffers, n int, out backend.Tensor) error {
	be, ex := d.Be, s.ex
	rows := n * m.K
	ex.Route(b.eids, b.ew, b.router, backend.Routing{K: m.K, Gating: m.Gating, Renorm: m.Renorm, Scale: s.scale})
	sl := func(t backend.Tensor) backend.Tensor { return be.Slice(t, 0, rows) }
	ye, g, u, a := sl(b.ye), sl(b.egate), sl(b.eup), sl(b.eact)
	if s.gate != nil {
		ex.MatMulByID(g, b.h, s.gate, s.gateB, b.eids)
		ex.MatMulByID(u, b.h, s.up, s.upB, b.eids)
		if m.Act.Kind == backend.ActSiLU {
			be.SwiGLU(a, g, u)
		} else {
			be.GLU(a, g, u, m.Act)
		}
	} else {
		ex.MatMulByID(u, b.h, s.up, s.upB, b.eids)
		be.Activate(a, u, m.Act)
	}
	ex.MatMulByID(ye, a, s.down, s.downB, b.eids)
	ex.AddWeightedByID(out, ye, b.ew)
	if m.Shared != nil {
		return d.shared(m, b, n, out)
	}
	return nil
}

// zeroed returns s resized to n zero values, reusing its memory.
func zeroed[T any](s []T, n int) []T {
	if cap(s) < n {
		return make([]T, n)
	}
	s = s[:n]
	clear(s)
	return s
}
