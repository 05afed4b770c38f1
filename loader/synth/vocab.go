package synth

import (
	"fmt"
	"strings"
)

// SentencePiece token types (llama_token_type).
const (
	tokNormal  = 1
	tokUnknown = 2
	tokControl = 3
	tokByte    = 6
)

// Special token ids of the generated vocabulary, as in Llama 1/2.
const (
	unkID      = 0
	bosID      = 1
	eosID      = 2
	firstPiece = 3 + 256 // after the specials and the byte tokens
)

// pieceAlphabet is what generated pieces are spelled with: common letters
// first, so the short pieces look like pieces of English.
const pieceAlphabet = "etaoinshrdlcumwfgypbvkjxqz"

// vocab returns a SentencePiece-style vocabulary of n tokens: <unk>, <s>,
// </s>, the byte tokens <0x00>..<0xFF>, then unique pieces — "▁", the
// letters, then every string of the alphabet by length, each with and
// without the word-start mark "▁" — with scores that fall with rank, as a
// trained model's log-probabilities do. n must be at least firstPiece.
func vocab(n int) (tokens []string, scores []float32, types []int32) {
	tokens = make([]string, 0, n)
	scores = make([]float32, 0, n)
	types = make([]int32, 0, n)
	add := func(s string, score float32, typ int32) {
		tokens = append(tokens, s)
		scores = append(scores, score)
		types = append(types, typ)
	}
	add("<unk>", 0, tokUnknown)
	add("<s>", 0, tokControl)
	add("</s>", 0, tokControl)
	for b := range 256 {
		add(fmt.Sprintf("<0x%02X>", b), 0, tokByte)
	}
	rank := 0
	piece := func(s string) {
		if len(tokens) < n {
			add(s, -float32(rank), tokNormal)
			rank++
		}
	}
	piece("▁")
	// Strings of length L in the order of a base-len(alphabet) counter.
	var b strings.Builder
	for L := 1; len(tokens) < n; L++ {
		idx := make([]int, L)
		for len(tokens) < n {
			b.Reset()
			for _, i := range idx {
				b.WriteByte(pieceAlphabet[i])
			}
			s := b.String()
			piece("▁" + s)
			piece(s)
			k := L - 1
			for k >= 0 {
				idx[k]++
				if idx[k] < len(pieceAlphabet) {
					break
				}
				idx[k] = 0
				k--
			}
			if k < 0 {
				break
			}
		}
	}
	return tokens, scores, types
}
