package tokenizer

import (
	"strings"
	"unicode/utf8"
)

// encodeSPM tokenizes one fragment, already escaped (spaces as U+2581) and
// prefixed, with SentencePiece's BPE over token scores
// (llm_tokenizer_spm_session::tokenize): start from UTF-8 characters, keep
// merging the adjacent pair whose concatenation is the best-scoring token,
// and spell what never became a token as <0xXX> byte tokens.
func (t *Tokenizer) encodeSPM(text []byte, out []int32, s *scratch) []int32 {
	if !t.spmWordSafe || !utf8.Valid(text) {
		return t.encodeSPMRun(text, out, s)
	}
	// No token joins a character to a following "▁" (spmWordSafe), so no
	// merge crosses the start of a word: merging each word on its own gives
	// the same tokens, with small queues.
	start := 0
	for i := 1; i < len(text); i++ {
		if text[i] == 0xE2 && isSpaceMark(text[i:]) && !(i >= 3 && isSpaceMark(text[i-3:])) {
			out = t.encodeSPMRun(text[start:i], out, s)
			start = i
		}
	}
	return t.encodeSPMRun(text[start:], out, s)
}

// isSpaceMark reports whether b starts with U+2581.
func isSpaceMark(b []byte) bool {
	return len(b) >= 3 && b[0] == 0xE2 && b[1] == 0x96 && b[2] == 0x81
}

// spmWordSafe reports whether every token that holds U+2581 after its start
// is made only of U+2581 (true of Llama's and Phi-3's vocabularies).
func spmWordSafe(tokens []string) bool {
	const mark = "\u2581"
	for _, tok := range tokens {
		if !strings.Contains(tok[min(1, len(tok)):], mark) {
			continue
		}
		if strings.ReplaceAll(tok, mark, "") != "" {
			return false
		}
	}
	return true
}

// encodeSPMRun is the merge loop over one run of text.
func (t *Tokenizer) encodeSPMRun(text []byte, out []int32, s *scratch) []int32 {
	if len(text) == 0 {
		return out
	}
	syms := splitSymbols(text, s.syms)
	h := &s.heap
	*h = (*h)[:0]
	for i := 1; i < len(syms); i++ {
		t.addSPMBigram(text, syms, int32(i-1), int32(i), h)
	}
	for len(*h) > 0 {
		b := h.pop()
		left := b.left()
		l, r := &syms[left], &syms[b.right]
		if l.n == 0 || r.n == 0 || l.n+r.n != b.size {
			continue
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = left
		}
		t.addSPMBigram(text, syms, l.prev, left, h)
		t.addSPMBigram(text, syms, left, l.next, h)
	}
	s.syms = syms
	for i := int32(0); i != -1; i = syms[i].next {
		sy := syms[i]
		piece := text[sy.start : sy.start+sy.n]
		if id, ok := t.ids[string(piece)]; ok {
			out = append(out, id)
			continue
		}
		// llama.cpp also consults the pairs it once queued (rev_merge), but a
		// piece that is not a token never was one: straight to bytes.
		for j := 0; j < len(piece); j++ {
			if id := t.byteTokens[piece[j]]; id >= 0 {
				out = append(out, id)
			} else if t.unk >= 0 {
				out = append(out, t.unk) // llama.cpp throws here
			}
		}
	}
	return out
}

func (t *Tokenizer) addSPMBigram(text []byte, syms []symbol, left, right int32, h *bigramHeap) {
	if left < 0 || right < 0 {
		return
	}
	l, r := syms[left], syms[right]
	id, ok := t.ids[string(text[l.start:l.start+l.n+r.n])]
	if !ok {
		return
	}
	h.push(bigram{key: spmKey(t.scores[id], left), right: right, size: l.n + r.n})
}
