package arch

import "strconv"

// Pooling is how an embedding is made from a sequence's hidden states.
// Its values are llama.cpp's llama_pooling_type, as GGUF files store them
// in <arch>.pooling_type.
type Pooling int

const (
	// PoolingNone keeps one embedding per token (no sequence embedding).
	PoolingNone Pooling = 0
	// PoolingMean averages the hidden states of the sequence's tokens.
	PoolingMean Pooling = 1
	// PoolingCLS takes the hidden state of the sequence's first token.
	PoolingCLS Pooling = 2
	// PoolingLast takes the hidden state of the sequence's last token.
	PoolingLast Pooling = 3
	// PoolingRank is a reranker's classification head over the first
	// token.
	PoolingRank Pooling = 4
)

func (p Pooling) String() string {
	switch p {
	case PoolingNone:
		return "none"
	case PoolingMean:
		return "mean"
	case PoolingCLS:
		return "cls"
	case PoolingLast:
		return "last"
	case PoolingRank:
		return "rank"
	}
	return "pooling(" + strconv.Itoa(int(p)) + ")"
}

// PoolingOr reads the optional <arch>.pooling_type: def when absent, an
// error (Err) when it is not one of llama.cpp's types.
func (m *Meta) PoolingOr(def Pooling) Pooling {
	k := m.Prefix + ".pooling_type"
	if _, ok := m.F.Get(k); !ok {
		return def
	}
	v, ok := m.F.Uint(k)
	if !ok || v > uint64(PoolingRank) {
		m.fail("metadata %s is not a pooling type (an integer 0-%d)", k, PoolingRank)
		return def
	}
	return Pooling(v)
}

// BoolOr returns an optional boolean, def when absent.
func (m *Meta) BoolOr(key string, def bool) bool {
	k := m.Prefix + "." + key
	if _, ok := m.F.Get(k); !ok {
		return def
	}
	v, ok := m.F.Bool(k)
	if !ok {
		m.fail("metadata %s is not a boolean", k)
		return def
	}
	return v
}
