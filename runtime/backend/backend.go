// Package backend declares the narrow set of operations a model
// architecture is written against. Backends (the CPU here, CUDA later)
// implement it; they know nothing of architectures, and architectures know
// nothing of devices.
//
// Shapes: an activation Tensor is rows × cols float32, one row per token. A
// Weight is rows × cols in a quant block format, each row contiguous (cols is
// ggml's ne[0]); MatMul computes dst[t][r] = dot(weight row r, x row t).
// 1-D weights (norm vectors) have one row.
//
// # Errors
//
// Operations return no errors. A backend records the first error of its
// operations (a sticky error) and does nothing harmful after it (it may
// skip every operation) until Err takes it: a token id outside the
// embedding table, a position past the KV cache (ErrContextFull), a KV
// cache or block table that is not the backend's, memory that cannot be
// allocated, a device that failed. A model checks Err once per forward
// pass, after reading its results (and wherever it must act on values it
// read, such as a router's logits), and returns what it finds. Err
// returns the error and clears it, except that a device fault stays: the
// backend reports it at every Err from then on. Values read while an
// error is pending are meaningless.
//
// Misuse that only a programming error can cause (tensors of shapes that
// do not fit, an unknown activation, a write past a tensor's end) panics,
// as does a fault of the memory map under a weight (SIGBUS on a truncated
// file, which the engine turns into engine.ErrFault).
package backend

import (
	"errors"

	"github.com/hearth-llm/hearth/kernels/rope"
	"github.com/hearth-llm/hearth/quant"
)

// ErrContextFull is recorded (see Err) when a position falls outside a KV
// cache.
var ErrContextFull = errors.New("context window is full")

// Weight is a model parameter tensor bound to a backend.
type Weight interface {
	Name() string
	Type() quant.Type
	Shape() (rows, cols int)
}

// Tensor is an activation matrix owned by a backend.
type Tensor interface {
	Shape() (rows, cols int)
}

// KV is the key/value storage of one sequence: for each layer and position,
// a key row and a value row of kvDim values.
type KV interface {
	// Len is the number of positions the cache holds.
	Len() int
}

// KVPool is paged key/value storage owned by a backend: Blocks() blocks of
// BlockSize() positions, for every layer. Which sequence owns which block
// is the scheduler's business (pure metadata); the pool is only storage
// indexed by block id.
type KVPool interface {
	Blocks() int
	BlockSize() int
}

// TypedKVPools is implemented by backends that can store the KV cache in a
// type other than F16 (Q8_0 halves its memory). headDim lets the backend
// check that each head is a whole number of blocks.
type TypedKVPools interface {
	NewTypedKVPool(layers, blocks, blockSize, kvDim, headDim int, t quant.Type) (KVPool, error)
}

// NewContiguousKV is a single sequence's cache of ctx positions as the
// paged cache's simplest case: a pool (from newPool, a backend's
// NewKVPool) of one block of ctx positions, seen through a one-entry block
// table.
func NewContiguousKV(newPool func(layers, blocks, blockSize, kvDim int) (KVPool, error), layers, ctx, kvDim int) (KV, error) {
	pool, err := newPool(layers, 1, ctx, kvDim)
	if err != nil {
		return nil, err
	}
	return &PagedKV{Pool: pool, Table: []int32{0}, Own: true}, nil
}

// PagedKV is one sequence's view of a pool: position p lives in block
// Table[p/BlockSize] at slot p%BlockSize. Blocks shared with other
// sequences (a common prefix) must only be read: the scheduler hands a
// sequence its own blocks for every position it writes.
type PagedKV struct {
	Pool  KVPool
	Table []int32
	// Own says the view owns its pool (NewContiguousKV): freeing the KV
	// (Backend.Free) frees the pool. A scheduler's views borrow theirs.
	Own bool
	// States, for a model with recurrent layers (Recurrent), is the pool
	// holding the sequence's fixed-size state, in slot Slot: the
	// sequence's own while it runs (never shared, unlike prefix blocks).
	States StatePool
	Slot   int
}

// Len is the number of positions the table covers.
func (p *PagedKV) Len() int { return len(p.Table) * p.Pool.BlockSize() }

// RoPE holds the rotary embedding parameters (ggml's), defined in
// kernels/rope so that no backend implementation is imported here.
type RoPE = rope.Params

// AttentionParams describes the attention heads of a layer.
type AttentionParams struct {
	Heads, KVHeads, HeadDim int
	Scale                   float32
	// Window > 0 makes the layer slide: a query at position p sees only
	// positions p-Window+1 … p (llama.cpp's standard SWA mask).
	Window int
	// SoftCap > 0 caps the scaled scores: s becomes SoftCap·tanh(s/SoftCap)
	// before the softmax (Gemma 2).
	SoftCap float32
	// Sinks, when set, is a 1 × Heads weight: per head a logit that joins
	// the softmax with no value behind it (gpt-oss).
	Sinks Weight
	// NonCausal lets every token see all positions of its sequence up to
	// the last one in the batch (encoders).
	NonCausal bool
	// SharedKV says the layer owns no cache: it reads the keys and values
	// an earlier layer stored at the given cache layer (Gemma 4's last
	// layers), and Attention stores nothing; its k and v are unused (nil).
	SharedKV bool
}

// ActKind names an activation function.
type ActKind uint8

const (
	// ActSiLU is x·σ(x).
	ActSiLU ActKind = iota
	// ActGELU is GELU in its tanh approximation (ggml_gelu).
	ActGELU
	// ActSwiGLUOAI is gpt-oss's clamped gated unit: with x = min(gate,
	// Limit) and y = clamp(up, -Limit, Limit), x·σ(Alpha·x)·(y+1). Only
	// gated (GLU).
	ActSwiGLUOAI
	// ActSigmoid is σ(x) = 1/(1+e^-x): gated, σ(gate)·up (Qwen 3.5's
	// attention output gate).
	ActSigmoid
)

// Act is an activation function with its parameters.
type Act struct {
	Kind         ActKind
	Alpha, Limit float32 // ActSwiGLUOAI only
}

// Backend runs tensor operations. Operations on one Backend are called from
// one goroutine at a time; each may use many threads (or a device) inside.
//
// Optional operations are interfaces a model finds by type assertion, with
// a composed fallback: Recurrent (recurrent layers), TypedKVPools, and
// Experts (a mixture of experts routed where its activations are, with
// expert ids in device tensors: a decode step then never waits on a Read
// before its logits).
type Backend interface {
	Name() string

	// Weight binds a tensor's data (rows × cols of type t). data must stay
	// valid and unchanged while the backend uses the weight (it usually
	// points into the model file's memory map).
	Weight(name string, t quant.Type, rows, cols int, data []byte) (Weight, error)
	// NewTensor allocates a rows × cols activation tensor. It is the
	// backend's until Free or Close: a model allocates its activations
	// once per shape (its arena) and reuses them step after step.
	NewTensor(rows, cols int) Tensor
	// Slice returns a view of rows [start, start+n) of x.
	Slice(x Tensor, start, n int) Tensor
	// NewKV allocates a cache of ctx positions for layers layers.
	NewKV(layers, ctx, kvDim int) (KV, error)
	// NewKVPool allocates paged storage of blocks × blockSize positions.
	NewKVPool(layers, blocks, blockSize, kvDim int) (KVPool, error)
	// Free returns what x holds to the backend at once: a Tensor made by
	// NewTensor, a KVPool made by NewKVPool (or NewTypedKVPool), or a KV
	// made by NewKV. Work already queued that reads x completes first; x
	// must not be used after. A view (Slice), a PagedKV that borrows its
	// pool, nil or something already freed: nothing happens. What is
	// never freed stays the backend's until its Close, which returns
	// every byte (weights included): a backend's memory is its model's.
	Free(x any)

	// Err returns the first error recorded by the operations since the
	// last Err (nil if none) and clears it; a device fault is never
	// cleared (see the package documentation).
	Err() error

	// Embed writes row ids[t] of table into row t of dst. An id outside
	// the table is an error (recorded; see Err).
	Embed(dst Tensor, table Weight, ids []int32)
	// RMSNorm writes x normalised by its root mean square, times w, into
	// dst. When w is narrower than x (x's width a multiple of w's), each
	// run of w's width is normalised on its own (per-head Q/K norms).
	RMSNorm(dst, x Tensor, w Weight, eps float32)
	// LayerNorm writes (x - mean)/sqrt(var + eps)·w + b into dst, b
	// optional (nil).
	LayerNorm(dst, x Tensor, w, b Weight, eps float32)
	// MatMul writes x·wᵀ into dst.
	MatMul(dst, x Tensor, w Weight)
	// RoPE rotates the heads of each row of x in place, row t at pos[t].
	RoPE(x Tensor, heads, headDim int, pos []int32, r *RoPE)
	// Attention stores row t of k and v (KVHeads·HeadDim) into cache
	// kvs[seq[t]] at layer and position pos[t], then writes into row t of
	// dst the causal attention of q's row t over positions 0..pos[t] of
	// that cache (with p.SharedKV nothing is stored: k and v are unused
	// and the layer reads what an earlier one stored). A position outside
	// its cache (an error wrapping
	// ErrContextFull), a sequence index outside kvs or a cache that is
	// not the backend's is an error (recorded; see Err), and nothing is
	// stored.
	Attention(dst, q, k, v Tensor, kvs []KV, seq []int32, layer int, pos []int32, p AttentionParams)
	// Gather copies rows idx of x into dst's rows 0..len(idx)-1.
	Gather(dst, x Tensor, idx []int)
	// SwiGLU writes silu(gate)·up into dst.
	SwiGLU(dst, gate, up Tensor)
	// GLU writes a(gate)·up into dst (a(gate, up) for ActSwiGLUOAI).
	GLU(dst, gate, up Tensor, a Act)
	// Activate writes a(x) into dst (not ActSwiGLUOAI).
	Activate(dst, x Tensor, a Act)
	// Add adds x into dst.
	Add(dst, x Tensor)
	// AddBias adds the 1 × cols weight b to every row of x.
	AddBias(x Tensor, b Weight)
	// Scale multiplies x by s: every row by s[0] when len(s) is 1, else
	// row t by s[t].
	Scale(x Tensor, s ...float32)
	// AddScaledRows adds w[i]·(row i of x) into row idx[i] of dst (the
	// weighted sum of the experts' outputs; idx may repeat).
	AddScaledRows(dst, x Tensor, idx []int, w []float32)
	// Read copies values of x into dst, from the start of row on: one row
	// when len(dst) is cols, several consecutive rows when it is a multiple
	// (never past the end of x). It waits for the work queued before; with
	// an error pending dst's values are meaningless: check Err after.
	Read(x Tensor, row int, dst []float32)
	// Write copies src into x from the start of row on, whole rows
	// (len(src) a multiple of cols, not past the end of x): the way data
	// reaches a device from the host. src may be reused when it returns.
	Write(x Tensor, row int, src []float32)
}
