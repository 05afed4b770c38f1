package backend

import "github.com/hearth-llm/hearth/quant"

// LoRAWeight is a low-rank adapter pair bound for one weight W (out × in,
// as MatMul reads it): A (rank × in) and B (out × rank), so that W + B·A
// is the adapted weight. Backends keep it in their own layout; it is
// their memory until Close.
type LoRAWeight interface {
	// Shape is the adapted weight's rows (out) and cols (in), and the rank.
	Shape() (out, in, rank int)
}

// LoRADelta is one adapter's part in a product: its pair for the
// product's weight, its scale (alpha/rank × the user's), and the rows of
// the step that run with it.
type LoRADelta struct {
	W     LoRAWeight
	Scale float32
	Rows  []int32
}

// LoRA is an optional backend operation: the low-rank deltas of fine-tune
// adapters (S-LoRA/Punica style). A step runs each base product once for
// every row, then, for each adapter present in the step, adds its delta
// to the rows of that adapter's sequences only (the base's rows get
// nothing).
type LoRA interface {
	// BindLoRA binds the pair a (rank × in values, row-major) and b (out ×
	// rank values, row-major): ggml's lora_a and lora_b of a weight of
	// out rows × in cols, to be kept as t (quant.F32, or quant.F16 for
	// half the memory and bandwidth; the products then round their
	// activations to f16, as ggml's F16 products do). The backend copies
	// what it keeps.
	BindLoRA(name string, a, b []float32, out, in, rank int, t quant.Type) (LoRAWeight, error)
	// AddLoRA adds, for each delta d and each row r of d.Rows,
	// d.Scale·B·(A·x_r) into row r of dst (x's row r): the deltas of
	// dst = x·Wᵀ. The rows of one call are distinct (a sequence runs with
	// one adapter); rows outside dst or x, or a pair of another shape,
	// are a programming error.
	AddLoRA(dst, x Tensor, ds []LoRADelta)
	// AddLoRAEmbed adds d.Scale·B·A[:, ids[r]] into row r of dst for each
	// delta and each of its rows: the delta of a token embedding (a
	// gathered row of W, so A·onehot(id) is column id of A; in is the
	// vocabulary). An id outside [0, in) is an error (recorded; see Err).
	AddLoRAEmbed(dst Tensor, ids []int32, ds []LoRADelta)
}

// LoRAMulti is an optional part of LoRA: the deltas of several products
// of the same activations (a layer's q, k and v; gate and up) in one
// call, as AddLoRA on each: ds[i] are the deltas of dsts[i] = x·W_iᵀ.
// runtime/cpu reads each row of x once for all of them and starts its
// threads once.
type LoRAMulti interface {
	AddLoRAMulti(dsts []Tensor, x Tensor, ds [][]LoRADelta)
}
