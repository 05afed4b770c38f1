package backend

import "errors"

// ErrStateLost is recorded (see Err) when a recurrent layer is asked to
// continue a sequence from a position its state has not reached (its
// state was freed, reset or belongs to another point of the sequence): a
// sequence restarts from position 0, or continues from exactly where its
// state stands. Recomputing the sequence from the start recovers.
var ErrStateLost = errors.New("recurrent state does not hold the sequence up to this position")

// StatePool is fixed-size per-sequence state owned by a backend, for the
// recurrent layers of hybrid models (Qwen 3.5's Gated DeltaNet): Slots()
// slots, each holding Parts() float32 arrays of fixed sizes (a conv state
// and a delta-rule state per recurrent layer). Like a KVPool it is storage
// only: which sequence owns which slot is the caller's business. Each part
// of each slot also records how many positions of its sequence it has
// absorbed (0 after allocation or Reset): the recurrent ops continue a
// sequence only from there, or restart it at position 0.
type StatePool interface {
	Slots() int
	Parts() int
}

// Recurrent is implemented by backends that run recurrent layers. The
// state of the sequence of token t is slot kvs[seq[t]].(*PagedKV).Slot of
// that view's States pool, part part. Tokens of one sequence appear in
// increasing, consecutive positions; a token at position 0 starts its
// sequence from a zero state, any other must follow the position its state
// holds (else ErrStateLost is recorded and nothing is changed). Results
// of one sequence do not depend on the others in the batch.
type Recurrent interface {
	// NewStatePool allocates slots slots of len(sizes) parts, part i of
	// sizes[i] float32 values, zeroed.
	NewStatePool(slots int, sizes []int) (StatePool, error)
	// CausalConv is a causal depthwise 1-D convolution over time (ggml's
	// ssm_conv): with w's C rows of K taps (x is n × C) and the state part
	// holding the K-1 previous inputs of the sequence (K-1 rows of C,
	// oldest first), dst row t, channel c is Σ_k w[c][k]·window[k][c] over
	// the window (the K-1 inputs before token t, then x row t). The state
	// then holds the last K-1 inputs.
	CausalConv(dst, x Tensor, w Weight, kvs []KV, seq, pos []int32, part int)
	// GatedDeltaNet is the gated delta rule (ggml's gated_delta_net with
	// Qwen 3.5's preprocessing fused in). Row t of qkv holds q (KHeads
	// heads of HeadDim), k (as q) and v (VHeads heads); alpha and beta
	// (n × VHeads) are raw projections. Per value head h (reading key head
	// h mod KHeads), with q̂, k̂ the L2-normalised q and k (eps p.Eps),
	// β = σ(beta), g = A[h]·softplus(alpha + DtBias[h]), and S the
	// HeadDim × HeadDim state (part part of the slot, stored transposed,
	// S[h][j][i] for value j and key i):
	//   S = e^g·S;  S += k̂ ⊗ β(v - Sᵀk̂);  out = Sᵀq̂ / √HeadDim
	// with dst (n × VHeads·HeadDim) row t the outputs of every head.
	GatedDeltaNet(dst, qkv, alpha, beta Tensor, a, dtBias Weight, kvs []KV, seq, pos []int32, part int, p DeltaNetParams)
	// CopyState copies every part of slot src of pool from to slot dst
	// of pool to (pools of the same parts), with the positions it holds:
	// a snapshot, or its restoring.
	CopyState(to StatePool, dst int, from StatePool, src int)
	// ResetState empties slot of pool (every part back to position 0).
	ResetState(pool StatePool, slot int)
}

// DeltaNetParams shapes a Gated DeltaNet layer.
type DeltaNetParams struct {
	KHeads, VHeads, HeadDim int
	Eps                     float32 // of the L2 norms of q and k
}

// StateView is implemented by the per-sequence views that carry
// recurrent state (PagedKV): the pool and the sequence's slot in it.
type StateView interface {
	State() (StatePool, int)
}

// State is the view's recurrent state: its States pool (nil when it has
// none) and its slot there.
func (p *PagedKV) State() (StatePool, int) { return p.States, p.Slot }
