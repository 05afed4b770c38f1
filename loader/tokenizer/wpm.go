package tokenizer

import (
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// encodeWPM tokenizes one fragment with WordPiece as llama.cpp's
// llm_tokenizer_wpm_session does: normalize and split into words, then
// greedily take the longest vocabulary entry at each position of
// "▁"+word; a word with no full spelling becomes UNK.
func (t *Tokenizer) encodeWPM(text string, out []int32) []int32 {
	for _, word := range t.wpmWords(text) {
		w := "\u2581" + word
		start := len(out)
		for i := 0; i < len(w); i++ {
			matched := false
			for j := min(len(w), i+t.maxTokenLen+1); j > i; j-- {
				if id, ok := t.ids[w[i:j]]; ok {
					out = append(out, id)
					matched = true
					i = j - 1
					break
				}
			}
			if !matched {
				out = out[:start]
				break
			}
		}
		if len(out) == start {
			out = append(out, t.unk)
		}
	}
	return out
}

// wpmWords is llama.cpp's WPM preprocess: optional accent stripping (each
// code point replaced by the first code point of its NFD form, marks
// dropped), lowercasing, splitting at whitespace, and punctuation, ASCII
// symbols and CJK ideographs as words of their own. NUL, U+FFFD and control
// characters are dropped.
func (t *Tokenizer) wpmWords(text string) []string {
	var words []string
	var cur []byte
	flush := func() {
		if len(cur) > 0 {
			words = append(words, string(cur))
			cur = cur[:0]
		}
	}
	for i := 0; i < len(text); {
		c, n := decodeCpt(text, i)
		i += n
		if t.stripAccents {
			c = nfdFirst(c)
		}
		f := flagsOf(c)
		if f.isWhitespace() {
			flush()
			continue
		}
		if c == 0 || c == replacementChar || f&fControl != 0 {
			continue
		}
		if t.stripAccents && f&fAccentMark != 0 {
			continue
		}
		lc := c
		if t.lowercase {
			lc = simpleLower(c)
		}
		if f&fPunctuation != 0 || (c < 0x7F && f&fSymbol != 0) || isCJKIdeograph(c) {
			flush()
			cur = appendCpt(cur, lc)
			flush()
			continue
		}
		cur = appendCpt(cur, lc)
	}
	flush()
	return words
}

// nfdFirst returns the first code point of the NFD decomposition of c.
func nfdFirst(c rune) rune {
	if c < 0xC0 || c > utf8.MaxRune || (c >= 0xD800 && c <= 0xDFFF) {
		return c
	}
	var buf [4]byte
	n := utf8.EncodeRune(buf[:], c)
	if norm.NFD.IsNormal(buf[:n]) {
		return c
	}
	r, _ := utf8.DecodeRune(norm.NFD.Bytes(buf[:n]))
	return r
}

// isCJKIdeograph is the CJK test of BERT's tokenizer (llama.cpp's
// is_chinese_char, with HF's 0x2B920 lower bound).
func isCJKIdeograph(c rune) bool {
	return (c >= 0x4E00 && c <= 0x9FFF) ||
		(c >= 0x3400 && c <= 0x4DBF) ||
		(c >= 0x20000 && c <= 0x2A6DF) ||
		(c >= 0x2A700 && c <= 0x2B73F) ||
		(c >= 0x2B740 && c <= 0x2B81F) ||
		(c >= 0x2B920 && c <= 0x2CEAF) ||
		(c >= 0xF900 && c <= 0xFAFF) ||
		(c >= 0x2F800 && c <= 0x2FA1F)
}
