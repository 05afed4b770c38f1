package grammar

import (
	"bytes"
	"slices"
	"sync"
)

// Vocab is a model's token texts arranged for masking: a byte trie of the
// pieces, flattened in preorder so a walk can skip a whole subtree (every
// token sharing a rejected prefix) with one index jump. Build one per model
// and share it: it is immutable and safe for concurrent use.
type Vocab struct {
	size   int
	pieces [][]byte // token id → bytes (copies, in one buffer)
	eog    []int32
	isEOG  []bool

	// Trie nodes in preorder. Node i has byte tb[i] at depth depth[i]
	// (1-based: a root child has depth 1); its subtree ends before index
	// skip[i]; the tokens whose piece ends there are toks[tokOff[i]:tokOff[i+1]].
	tb       []byte
	depth    []uint16
	skip     []int32
	tokOff   []int32
	toks     []int32
	maxDepth int

	long []int32 // tokens too long for the trie (never allowed)

	cache   lexCache
	trigMu  sync.Mutex
	trig    map[string][]int32 // lazy triggers → tokens containing them
	noCache bool               // tests and benchmarks: always walk the trie
}

// maxPiece bounds the bytes of a token the trie holds; longer tokens are
// never allowed.
const maxPiece = 1 << 12

// NewVocab indexes a vocabulary. pieces[i] is the exact byte string token i
// appends to the output (tokenizer.Piece: byte-level BPE decoded, SPM's "▁"
// as a space, byte tokens as their byte); eog lists the end-of-generation
// ids. Tokens with an empty piece (pass control tokens as empty) are never
// allowed; eog tokens are allowed exactly when the document is complete,
// whatever their piece. NewVocab copies what it keeps.
func NewVocab(pieces [][]byte, eog []int32) *Vocab {
	v := &Vocab{size: len(pieces), isEOG: make([]bool, len(pieces))}
	for _, id := range eog {
		if id >= 0 && int(id) < len(pieces) && !v.isEOG[id] {
			v.isEOG[id] = true
			v.eog = append(v.eog, id)
		}
	}
	slices.Sort(v.eog)
	total := 0
	for _, p := range pieces {
		total += len(p)
	}
	buf := make([]byte, 0, total)
	v.pieces = make([][]byte, len(pieces))
	var ids []int32
	for i, p := range pieces {
		buf = append(buf, p...)
		v.pieces[i] = buf[len(buf)-len(p) : len(buf) : len(buf)]
		if len(p) > 0 && len(p) <= maxPiece && !v.isEOG[i] {
			ids = append(ids, int32(i))
		}
		if len(p) > maxPiece && !v.isEOG[i] {
			v.long = append(v.long, int32(i))
		}
	}
	slices.SortStableFunc(ids, func(a, b int32) int { return bytes.Compare(v.pieces[a], v.pieces[b]) })

	var path []int32 // trie nodes along the previous piece
	var prev []byte
	var tokCnt []int32
	for _, id := range ids {
		p := v.pieces[id]
		l := 0
		for l < len(prev) && l < len(p) && prev[l] == p[l] {
			l++
		}
		for len(path) > l {
			v.skip[path[len(path)-1]] = int32(len(v.tb))
			path = path[:len(path)-1]
		}
		for k := l; k < len(p); k++ {
			path = append(path, int32(len(v.tb)))
			v.tb = append(v.tb, p[k])
			v.depth = append(v.depth, uint16(k+1))
			v.skip = append(v.skip, 0)
			tokCnt = append(tokCnt, 0)
		}
		tokCnt[path[len(path)-1]]++
		v.toks = append(v.toks, id)
		v.maxDepth = max(v.maxDepth, len(p))
		prev = p
	}
	for _, n := range path {
		v.skip[n] = int32(len(v.tb))
	}
	v.tokOff = make([]int32, len(v.tb)+1)
	for i, c := range tokCnt {
		v.tokOff[i+1] = v.tokOff[i] + c
	}
	return v
}

// Size returns the number of tokens.
func (v *Vocab) Size() int { return v.size }

// Piece returns the bytes of token id (shared; do not modify), nil when out
// of range.
func (v *Vocab) Piece(id int32) []byte {
	if id < 0 || int(id) >= v.size {
		return nil
	}
	return v.pieces[id]
}

// IsEOG reports whether id is an end-of-generation token.
func (v *Vocab) IsEOG(id int32) bool { return id >= 0 && int(id) < v.size && v.isEOG[id] }
