package cuda

import (
	"fmt"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/split"
)

// Reserves of the automatic split besides the weights and the KV cache.
const (
	// OffloadMargin is kept free for what the estimate leaves out:
	// the scratch buffers grown by doubling, the
	// attention and RoPE tables, allocation rounding.
	OffloadMargin = 256 << 20
	// offloadBatch is the batch the activations are sized for (the
	// engine's largest forward pass).
	offloadBatch = 512
)

// Offload is a placement decision for one model on one GPU.
type Offload struct {
	Plan split.Plan
	// Need is what the plan's weights, KV cache and activations take on
	// the GPU by the estimate; Free and Total are cuMemGetInfo's.
	Need, Free, Total uint64
	Auto              bool // chosen by free memory, not asked for
}

// gib formats bytes in GiB, or MiB below one GiB.
func gib(b uint64) string {
	if b < 1<<30 {
		return fmt.Sprintf("%d MiB", b>>20)
	}
	return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30))
}

// String is the line logged for the decision: "offloading 20/32 layers to
// the GPU (9.1 GiB of 10.0 GiB free)".
func (o Offload) String() string {
	what := fmt.Sprintf("%d/%d layers", o.Plan.Offloaded, o.Plan.Layers)
	if o.Plan.Output {
		what += " and the output layer"
	}
	how := ""
	if !o.Auto {
		how = ", as asked"
	}
	return fmt.Sprintf("offloading %s to the GPU (%s of %s free%s)", what, gib(o.Need), gib(o.Free), how)
}

// Offload decides how much of the model in f runs on this GPU. n > 0 is
// llama.cpp's -ngl count (the last n layers; the output layer too when n
// exceeds them); n == 0 offloads as many layers, from the last, as fit in
// the device's free memory, and the output layer when all of them do.
// kvBytes is the KV cache the caller will allocate for all layers (each
// offloaded layer's share is reserved on the GPU); the activations of a
// 512-token batch and OffloadMargin are reserved too.
func (b *Backend) Offload(f *gguf.File, n int, kvBytes int64) (Offload, error) {
	free, total, err := b.MemInfo()
	if err != nil {
		return Offload{}, fmt.Errorf("cuda: free memory: %w", err)
	}
	fp := split.Measure(f, WeightBytes)
	r := offloadReserve(f, len(fp.Layer), kvBytes)
	o := Offload{Free: free, Total: total, Auto: n <= 0}
	if o.Auto {
		n, _ = split.Fit(fp, r, free)
	}
	o.Plan = split.ForFile(f, n)
	o.Need = need(fp, r, o.Plan)
	return o, nil
}

// need is what plan p takes on the device by the estimate.
func need(fp split.Footprint, r split.Reserve, p split.Plan) uint64 {
	if p.None() {
		return 0
	}
	s := r.Scratch
	for l := p.Layers - p.Offloaded; l < p.Layers; l++ {
		s += fp.Layer[l] + r.KVPerLayer
	}
	if p.Output {
		s += fp.Output + r.Output
	}
	return s
}

// offloadReserve sizes the KV share per layer and the activations from
// the tensor shapes: the widest layer matrix (the feed-forward) and the
// embedding table's width and rows (the vocabulary).
func offloadReserve(f *gguf.File, layers int, kvBytes int64) split.Reserve {
	var embd, vocab, wide uint64
	if te, ok := f.Tensor("token_embd.weight"); ok && len(te.Dims) == 2 {
		embd, vocab = te.Dims[0], te.Dims[1]
	}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if split.LayerOf(t.Name) >= 0 {
			for _, d := range t.Dims {
				wide = max(wide, d)
			}
		}
	}
	r := split.Reserve{
		// Per token: x, h, o, q, att, k, v (at most the width each) and
		// gate, up, act, as float32; the matmul's int8 copy besides.
		Scratch: offloadBatch*(4*(7*embd+3*wide)+wide) + OffloadMargin,
		Output:  offloadBatch * 4 * vocab, // logits
	}
	if layers > 0 && kvBytes > 0 {
		r.KVPerLayer = uint64(kvBytes) / uint64(layers)
	}
	return r
}
