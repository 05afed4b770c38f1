// Package arch is the registry of model architectures. Each architecture
// lives in its own package (runtime/arch/llama, …), decodes its typed
// configuration from GGUF metadata, binds its weights by name and writes its
// forward pass against backend operations only; it registers itself with
// one Register call from its init function. Nothing else switches on the
// architecture name.
package arch

import (
	"errors"
	"fmt"
	"math"
	"sort"
	"sync"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// ErrUnsupported is wrapped when a file's architecture is not registered.
var ErrUnsupported = errors.New("unsupported architecture")

// Info is what every architecture reports about a loaded model.
type Info struct {
	Arch          string
	VocabSize     int
	ContextLength int // trained context (n_ctx_train)
	Layers        int
	Embedding     int
	KVDim         int // key (and value) values per token per layer
	// KVLayers, when set, is the layers that own a KV cache, fewer than
	// Layers (Gemma 4's last layers read an earlier layer's cache); 0:
	// every layer. A KV pool has CacheLayers layers.
	KVLayers int
	HeadDim  int    // values per attention head
	Params   uint64 // parameter count
	// Pooling is how an embedding is made from a sequence's hidden
	// states: the file's <arch>.pooling_type, PoolingMean when it has none.
	Pooling Pooling
	// EmbeddingOnly says the model has no output layer: Forward needs
	// Batch.Hidden (else it fails with ErrEmbeddingOnly), and the model
	// cannot generate text.
	EmbeddingOnly bool
	// NonCausal says every token attends to its whole sequence (an
	// encoder): a sequence must be evaluated in one forward pass.
	NonCausal bool
}

// CacheLayers is the layers a KV cache of the model holds: KVLayers, or
// Layers when every layer owns one.
func (i Info) CacheLayers() int {
	if i.KVLayers > 0 {
		return i.KVLayers
	}
	return i.Layers
}

// ErrEmbeddingOnly is returned when logits are asked of a model that only
// makes embeddings (an encoder such as BERT).
var ErrEmbeddingOnly = errors.New("embedding model: it has no output layer and does not generate text")

// Model is a loaded model bound to a backend.
type Model interface {
	Info() Info
	// NewKV allocates a KV cache of ctx positions.
	NewKV(ctx int) (backend.KV, error)
	// Forward evaluates a batch and returns the logits of its Outputs rows
	// (len(Outputs) × VocabSize), or their hidden states when b.Hidden is
	// set. The returned slice is reused by the next call.
	Forward(b *Batch) ([]float32, error)
}

// Traffic is what a forward pass reads of a model's weights, for the
// memory-bandwidth roofline of decode: in a mixture of experts only the
// experts its tokens are routed to are read.
type Traffic struct {
	// Dense is the bytes read once per pass whatever its tokens: the
	// attention, norms, routers and the output matrix (and the tied token
	// embedding, which is the output matrix).
	Dense uint64
	// EmbedRow is the bytes of one row of an untied token embedding,
	// gathered per token (0 when tied: the output reads all of it).
	EmbedRow uint64
	// Experts is the bytes of every expert of every layer; a token reads
	// ExpertsUsed of each layer's NumExperts.
	Experts                 uint64
	NumExperts, ExpertsUsed int
	// ActiveParams is the parameters one token is computed with: Params
	// less the experts it is not routed to (the token embedding counts
	// whole, as model cards count active parameters).
	ActiveParams uint64
	// Windows holds, per layer, the most cached positions its attention
	// reads (a sliding window), 0 for all of them.
	Windows []int
}

// StepBytes is the expected weight bytes of a forward pass of n ≥ 1
// tokens: the dense part, n embedding rows, and the experts that n tokens
// routed independently and uniformly touch, 1 - (1 - used/experts)^n of
// them (used/experts for one token).
func (t Traffic) StepBytes(n int) float64 {
	b := float64(t.Dense) + float64(n)*float64(t.EmbedRow)
	if t.NumExperts > 0 {
		miss := 1 - float64(t.ExpertsUsed)/float64(t.NumExperts)
		b += float64(t.Experts) * (1 - math.Pow(miss, float64(n)))
	}
	return b
}

// TrafficReporter is implemented by models that know what a forward pass
// reads of their weights (every model built on runtime/arch/blocks).
type TrafficReporter interface {
	Traffic() Traffic
}

// Stateful is implemented by models with recurrent layers (hybrid
// models): each sequence carries, beside its KV cache, a fixed-size state
// in a slot of a state pool (backend.PagedKV's States and Slot). A runtime
// allocates the pool with NewStatePool and gives every running sequence a
// slot of its own; a sequence restarts its state at position 0.
type Stateful interface {
	NewStatePool(slots int) (backend.StatePool, error)
	// StateSizes is the float32 values of each part of a slot.
	StateSizes() []int
}

// ContextSizer is implemented by models whose arithmetic depends on the
// context a runtime gives each sequence (Phi-3's LongRoPE factors, chosen
// as llama.cpp chooses them by n_ctx_seq). Runtimes call SetContext with
// that context before running the model.
type ContextSizer interface {
	SetContext(n int)
}

// Batch is one forward pass over tokens of one or more sequences. Token t
// is IDs[t] at position Pos[t] of sequence Seq[t], whose cache is
// KVs[Seq[t]]; it attends to positions 0..Pos[t] of that cache. Tokens of
// one sequence appear in increasing position order.
type Batch struct {
	IDs     []int32
	Pos     []int32
	Seq     []int32
	KVs     []backend.KV
	Outputs []int // token rows whose logits are wanted
	// Hidden asks for the final normalised hidden states of the Outputs
	// rows (len(Outputs) × Embedding) instead of logits, for embeddings.
	Hidden bool
	// Adapters, when set, holds per sequence (indexed as KVs) the
	// fine-tune adapter its tokens run with, nil for the bare base. Only
	// models that are Adaptable take them; a sequence's KV must have
	// been computed with the same adapter.
	Adapters []Adapter
}

// Adapter is a fine-tune's low-rank deltas bound to one loaded model's
// weights (runtime/lora makes them): Delta returns w's pair and scale,
// ok false where the adapter leaves w alone. It is read-only once made,
// so any number of steps may use it.
type Adapter interface {
	Delta(w backend.Weight) (l backend.LoRAWeight, scale float32, ok bool)
}

// Adaptable is implemented by models that run adapters
// (runtime/arch/blocks' Decoder on a backend with backend.LoRA).
type Adaptable interface {
	// LoRATargets lists the bound weights a LoRA may adapt, as llama.cpp
	// applies them (attention and feed-forward projections, the output
	// and the token embedding); their names are the tensor names, or
	// name[r0:r1] for rows of a fused tensor (Binder.Rows).
	LoRATargets() []backend.Weight
	// Embedding is the token embedding among the targets: its adapter
	// pair has llama.cpp's flipped shapes.
	Embedding() backend.Weight
}

// Single returns a batch of one sequence's tokens at positions start,
// start+1, …, with the logits of every token (all) or of the last one.
func Single(ids []int32, start int, kv backend.KV, all bool) *Batch {
	b := &Batch{IDs: ids, Pos: make([]int32, len(ids)), Seq: make([]int32, len(ids)), KVs: []backend.KV{kv}}
	for i := range ids {
		b.Pos[i] = int32(start + i)
	}
	if all {
		b.Outputs = make([]int, len(ids))
		for i := range b.Outputs {
			b.Outputs[i] = i
		}
	} else if len(ids) > 0 {
		b.Outputs = []int{len(ids) - 1}
	}
	return b
}

// Needs is what a model is and what it asks of memory, known from its GGUF
// header and tensor directory before any weight is bound: the device
// placement (runtime/device), serve's fit checks and hearth bench decide
// from it, and nothing outside runtime/arch reads an architecture's
// metadata keys for it.
type Needs struct {
	// Info is what Model.Info will report, but for Params, which counts
	// the elements of every tensor in the file.
	Info Info
	// WeightBytes is the bytes of every tensor in the file (what binding
	// the weights copies or maps).
	WeightBytes uint64
	// KV holds each layer's cache: its width and its sliding window.
	// Layers may differ (sliding windows; families with per-layer KV
	// widths or layers with no cache of their own are coming).
	KV []LayerKV
	// StateBytes is the recurrent state one sequence holds whatever its
	// length (float32 conv and delta-rule states of the recurrent layers;
	// 0 for a transformer).
	StateBytes uint64
}

// LayerKV is one layer's KV cache.
type LayerKV struct {
	Dim    int // key (and value) values per position
	Window int // the most recent positions its attention reads; 0: all
	// Shared says the layer owns no cache: it reads layer From's
	// (Gemma 4), and takes no memory of its own.
	Shared bool
	From   int
	// Recurrent says the layer keeps no KV cache but a fixed-size state
	// per sequence (Needs.StateBytes; Qwen 3.5's Gated DeltaNet).
	Recurrent bool
}

// KVBytesPerPosition is the bytes one position of one sequence takes in
// the KV cache, keys and values of every layer, stored as t (F16 by
// default). Every layer holds every position in the caches today (the
// paged pool is one table for all layers), windows or not.
func (n *Needs) KVBytesPerPosition(t quant.Type) (uint64, error) {
	var b uint64
	for _, l := range n.KV {
		if l.Shared || l.Recurrent {
			continue
		}
		rb, err := t.RowBytes(l.Dim)
		if err != nil {
			return 0, err
		}
		b += 2 * uint64(rb) // K and V
	}
	return b, nil
}

// KVBytes is the bytes of a cache of the given positions stored as t.
func (n *Needs) KVBytes(positions int, t quant.Type) (uint64, error) {
	p, err := n.KVBytesPerPosition(t)
	return uint64(max(positions, 0)) * p, err
}

// NewNeeds returns the needs of a model of f with info and per-layer
// caches kv, counting the file's tensors (Info.Params, WeightBytes).
func NewNeeds(f *gguf.File, info Info, kv []LayerKV) Needs {
	n := Needs{Info: info, KV: kv}
	n.Info.Params = 0
	for i := range f.Tensors {
		t := &f.Tensors[i]
		n.Info.Params += t.Elements()
		n.WeightBytes += t.Size
	}
	return n
}

// Loader binds an architecture's weights from f on be.
type Loader func(f *gguf.File, be backend.Backend) (Model, error)

// Describer reads an architecture's Needs from f's metadata and tensor
// directory, binding nothing and allocating nothing sized by what the
// file claims before checking it against the file.
type Describer func(f *gguf.File) (Needs, error)

// Family is what an architecture registers: how to describe a file of it
// before loading, and how to load it.
type Family struct {
	Describe Describer
	Load     Loader
}

var (
	mu       sync.RWMutex
	families = map[string]Family{}
)

// Register makes an architecture available under the GGUF
// general.architecture name. It panics on a duplicate name or a missing
// function (programmer errors at init).
func Register(name string, fam Family) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := families[name]; dup {
		panic("arch: duplicate registration of " + name)
	}
	if fam.Describe == nil || fam.Load == nil {
		panic("arch: " + name + " registered without Describe or Load")
	}
	families[name] = fam
}

// Names lists the registered architectures.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	var names []string
	for n := range families {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

func family(f *gguf.File) (Family, error) {
	name, ok := f.String("general.architecture")
	if !ok {
		return Family{}, errors.New("missing metadata general.architecture")
	}
	mu.RLock()
	fam, ok := families[name]
	mu.RUnlock()
	if !ok {
		return Family{}, fmt.Errorf("%w %q (supported: %v)", ErrUnsupported, name, Names())
	}
	return fam, nil
}

// Describe reads what the model in f is and needs, without binding it.
func Describe(f *gguf.File) (Needs, error) {
	fam, err := family(f)
	if err != nil {
		return Needs{}, err
	}
	return fam.Describe(f)
}

// Load binds the model in f on be.
func Load(f *gguf.File, be backend.Backend) (Model, error) {
	fam, err := family(f)
	if err != nil {
		return nil, err
	}
	return fam.Load(f, be)
}
