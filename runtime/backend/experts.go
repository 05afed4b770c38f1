package backend

import (
	"math"
	"slices"

	"github.com/hearth-llm/hearth/kernels/libmf"
)

// Gating is how a mixture of experts turns router logits into expert
// weights.
type Gating uint8

const (
	// SoftmaxTopK: softmax over all experts, the k largest probabilities,
	// renormalised to sum 1 when Routing.Renorm (Mixtral, Qwen3-MoE).
	SoftmaxTopK Gating = iota
	// TopKSoftmax: the k largest raw logits, softmax over those k (gpt-oss).
	TopKSoftmax
)

// MaxRouteK is the most experts per token Experts.Route chooses.
const MaxRouteK = 32

// Routing configures Experts.Route.
type Routing struct {
	K      int // 1 … MaxRouteK, at most the experts
	Gating Gating
	Renorm bool // SoftmaxTopK only: the k weights divided by their sum
	// Scale, when set, is a 1 × experts weight: each chosen expert's
	// weight is multiplied by its entry (Gemma 4's ffn_down_exps.scale).
	Scale Weight
}

// ExpertSet is one kind of weight of a mixture's experts (every expert's
// up matrix, say, or every expert's down bias), bound together so that
// the by-id operations index it by expert id on the backend.
type ExpertSet interface {
	// Len is the number of experts.
	Len() int
	// Shape is each expert's weight's shape.
	Shape() (rows, cols int)
}

// Experts is implemented by backends that route a mixture of experts
// where its activations are (llama.cpp's decode path: argsort_top_k and
// mul_mat_vec_id on the device), so that a forward pass needs no copy of
// the router's logits to the host and no wait in the middle. Expert ids
// live in Tensors as int32 values (their bits: a Read of an ids tensor
// gives the ids through math.Float32bits).
//
// The operations give, bit for bit on the CPU backend, what a model
// routing on the host gets from Read, RouteRow, Gather, MatMul, AddBias
// and AddScaledRows with the pairs grouped by expert (ascending); a
// device backend holds them to its own MatMul and to the host's routing
// within float rounding (its softmax uses its own exp). Non-finite
// logits give meaningless weights, not an error (nothing is read back to
// check them), but always ids in range.
type Experts interface {
	// ExpertSet binds ws, one weight per expert (index = expert id), all
	// of one shape, for the by-id operations: matrices, or 1-row biases.
	// A backend that cannot index them together (weights stored in
	// different formats, say) returns an error, and the caller routes on
	// the host.
	ExpertSet(ws []Weight) (ExpertSet, error)
	// Route writes, for each row t of logits (n × experts), the K chosen
	// experts into row t of ids (n × K, int32) in increasing id order, and
	// their weights into row t of weights (n × K), as RouteRow: the
	// largest first on ties to the lower id, then softmax or
	// renormalisation, then Scale.
	Route(ids, weights, logits Tensor, r Routing)
	// MatMulByID writes into row t·K+j of dst (n·K × rows) the product of
	// expert ids[t][j]'s matrix of ws with row t of x (x n × cols) or,
	// when x has n·K rows, with row t·K+j of x; plus that expert's row of
	// bias when bias (a set of 1 × rows weights) is not nil. ids is n × K.
	MatMulByID(dst, x Tensor, ws, bias ExpertSet, ids Tensor)
	// AddWeightedByID adds into row t of dst (n × cols) Σ_j
	// weights[t][j]·(row t·K+j of y), j in order, each product rounded on
	// its own before its addition (AddScaledRows' arithmetic); weights is
	// n × K, y n·K × cols.
	AddWeightedByID(dst, y, weights Tensor)
}

// RouteScratch is RouteRow's working memory, reused from call to call.
type RouteScratch struct {
	probs []float32
	order []int
}

// RouteRow chooses the k experts of one token from its router logits
// (llama.cpp's build_moe_ffn): their ids into ids[:k] and weights into
// w[:k], the largest first, ties to the lower id. SoftmaxTopK takes the
// softmax of all logits (sums in float64, as ggml), the k largest
// probabilities, divided by their sum (at least 2^-14) when renorm;
// TopKSoftmax the k largest logits, then their softmax. The reference of
// Experts.Route (without Scale, which multiplies after).
func RouteRow(s *RouteScratch, ids []int32, w []float32, logits []float32, k int, g Gating, renorm bool) {
	ne := len(logits)
	probs := logits
	if g == SoftmaxTopK {
		s.probs = append(s.probs[:0], logits...)
		probs = Softmax(s.probs)
	}
	o := s.order[:0]
	for e := range ne {
		o = append(o, e)
	}
	// The k largest, ties to the lower expert.
	slices.SortStableFunc(o, func(a, b int) int {
		switch {
		case probs[a] > probs[b]:
			return -1
		case probs[a] < probs[b]:
			return 1
		}
		return 0
	})
	s.order = o
	w = w[:k]
	for i, e := range o[:k] {
		ids[i], w[i] = int32(e), probs[e]
	}
	switch {
	case g == TopKSoftmax:
		Softmax(w)
	case renorm:
		var sum64 float64 // ggml_sum_rows: float64, then float32
		for _, v := range w {
			sum64 += float64(v)
		}
		sum := max(float32(sum64), 6.103515625e-5)
		for i := range w {
			w[i] /= sum
		}
	}
}

// Softmax replaces x by its softmax as ggml_soft_max computes a row of n
// on an AVX-512 CPU and returns it: the first n/16·16 exponentials by
// ggml_v_expf (libmf.ExpGGML), summed sixteen at a time (halves first, as
// _mm512_reduce_add_ps) into a float64; the rest by glibc's expf, added
// one by one; then every one times float32(1/sum).
func Softmax(x []float32) []float32 {
	m := float32(math.Inf(-1))
	for _, v := range x {
		m = max(m, v)
	}
	var sum float64
	n16 := len(x) &^ 15
	for i := 0; i < n16; i += 16 {
		g := x[i : i+16]
		for j, v := range g {
			g[j] = libmf.ExpGGML(v - m)
		}
		var h [8]float32
		for j := range h {
			h[j] = g[j] + g[j+8]
		}
		sum += float64(((h[0] + h[4]) + (h[2] + h[6])) + ((h[1] + h[5]) + (h[3] + h[7])))
	}
	for i := n16; i < len(x); i++ {
		x[i] = libmf.Expf(x[i] - m)
		sum += float64(x[i])
	}
	inv := float32(1 / sum)
	for i := range x {
		x[i] *= inv
	}
	return x
}

// SigmoidScaler is implemented by backends that scale rows by a gate held
// in a tensor (a mixture's gated shared expert, Qwen 3.5 MoE), so that
// the gate's logits need no copy to the host.
type SigmoidScaler interface {
	// ScaleSigmoid multiplies row t of x by σ(g[t]) = 1/(1+e^-g[t]), g
	// a column (at least x's rows × 1). On the CPU backend σ is taken in
	// float64 and rounded to float32 before the product: what Scale gives
	// with the host's σ of the logits, bit for bit.
	ScaleSigmoid(x, g Tensor)
}
