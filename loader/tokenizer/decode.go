package tokenizer

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// buildPieces renders every token as llama_token_to_piece(special=true) does
// (llama.cpp's cache_token_to_piece), into one shared arena.
func (t *Tokenizer) buildPieces() {
	t.pieces = make([][]byte, len(t.tokens))
	arena := make([]byte, 0, len(t.tokens)*6)
	offs := make([]int, len(t.tokens)+1)
	for id := range t.tokens {
		offs[id] = len(arena)
		arena = t.appendRawPiece(arena, int32(id))
	}
	offs[len(t.tokens)] = len(arena)
	for id := range t.tokens {
		a, b := offs[id], offs[id+1]
		t.pieces[id] = arena[a:b:b]
	}
}

func (t *Tokenizer) appendRawPiece(dst []byte, id int32) []byte {
	text := t.tokens[id]
	a := t.attrs[id]
	switch {
	case a&(attrUnknown|attrControl|attrUserDefined) != 0:
		return append(dst, text...)
	case a&attrNormal != 0:
		if t.kind == kindBPE && !t.spmStyle {
			return appendByteDecoded(dst, text)
		}
		return append(dst, strings.ReplaceAll(text, "\u2581", " ")...)
	case a&attrByte != 0:
		return append(dst, tokenByte(text))
	}
	return dst // unused and undefined tokens render as nothing
}

// tokenByte parses the byte of a "<0xXX>" token as llama.cpp does
// (strtol on the two characters after "<0x", stopping at a non-hex digit).
func tokenByte(text string) byte {
	if len(text) < 3 {
		return 0
	}
	hex := text[3:min(5, len(text))]
	var v byte
	for i := 0; i < len(hex); i++ {
		c := hex[i]
		switch {
		case c >= '0' && c <= '9':
			v = v<<4 | (c - '0')
		case c >= 'a' && c <= 'f':
			v = v<<4 | (c - 'a' + 10)
		case c >= 'A' && c <= 'F':
			v = v<<4 | (c - 'A' + 10)
		default:
			return v
		}
	}
	return v
}

// appendByteDecoded undoes GPT-2's byte-to-unicode map (llama_decode_text).
// A code point outside the map is written as llama.cpp writes it:
// "[UNK_BYTE_0x<hex of its UTF-8>" + text + "]".
func appendByteDecoded(dst []byte, text string) []byte {
	var tmp [4]byte
	for i := 0; i < len(text); {
		c, n := decodeCpt(text, i)
		i += n
		if b, ok := runeToByte[c]; ok {
			dst = append(dst, b)
			continue
		}
		dst = append(dst, "[UNK_BYTE_0x"...)
		for _, b := range appendCpt(tmp[:0], c) {
			dst = fmt.Appendf(dst, "%02x", b)
		}
		dst = append(dst, text...)
		dst = append(dst, ']')
	}
	return dst
}

// Piece returns the bytes of token id as llama_token_to_piece(special=true)
// gives them: control and user-defined tokens as their text, byte tokens as
// their byte, SPM's and gemma4's "▁" as a space, byte-level BPE tokens
// byte-decoded. Out-of-range ids
// give nil. The slice is shared: callers must not modify it.
func (t *Tokenizer) Piece(id int32) []byte {
	if !t.valid(id) {
		return nil
	}
	return t.pieces[id]
}

// Decode returns the text of ids as llama_detokenize(ids, remove_special=false,
// unparse_special=false) does: control tokens render as nothing; for SPM the
// first token loses one leading space (the one add_space_prefix put there),
// but a leading BOS uses up that removal, so [BOS, "▁Hello"] gives " Hello",
// as in llama.cpp; BPE models that clean up tokenization spaces (most of
// them) turn " ." into "." and the like. The result may hold invalid UTF-8 (a
// byte-token sequence cut short). To print generated tokens as they come, use
// a StreamDecoder.
func (t *Tokenizer) Decode(ids []int32) string {
	return t.Detokenize(ids, false, false)
}

// Detokenize is llama_detokenize: removeSpecial drops a leading BOS and a
// trailing EOS when the model adds them; unparseSpecial renders control
// tokens as their text.
func (t *Tokenizer) Detokenize(ids []int32, removeSpecial, unparseSpecial bool) string {
	removeSpace := t.addSpacePrefix
	if removeSpecial && t.addBOS && len(ids) > 0 && ids[0] == t.bos {
		removeSpace = false
		ids = ids[1:]
	}
	if removeSpecial && t.addEOS && len(ids) > 0 && ids[len(ids)-1] == t.eos {
		ids = ids[:len(ids)-1]
	}
	var out []byte
	for _, id := range ids {
		p := t.piece(id, unparseSpecial)
		if removeSpace && len(p) > 0 && p[0] == ' ' {
			p = p[1:]
		}
		removeSpace = false
		out = append(out, p...)
	}
	if t.cleanSpaces {
		out = cleanSpaces(out)
	}
	return string(out)
}

// piece is llama_token_to_piece without lstrip: with special false, control
// and unknown tokens render as nothing.
func (t *Tokenizer) piece(id int32, special bool) []byte {
	if !t.valid(id) {
		return nil
	}
	if !special && t.attrs[id]&(attrUnknown|attrControl) != 0 {
		return nil
	}
	return t.pieces[id]
}

// cleanSpaces is llama.cpp's clean_up_tokenization_spaces, its three passes
// byte for byte: " ?" " !" " ." " ," lose the space, a lone "'" between
// spaces loses both, and " 's" " 'm" " 're" " 've" lose the space.
func cleanSpaces(text []byte) []byte {
	if len(text) == 0 {
		return text
	}
	// pass 1
	out := make([]byte, 0, len(text))
	for i := 0; i < len(text); i++ {
		if text[i] == ' ' && i+1 < len(text) {
			switch text[i+1] {
			case '?', '!', '.', ',':
				continue
			}
		}
		out = append(out, text[i])
	}
	// pass 2: text[i+1] is blanked when consumed, as llama.cpp's in-place
	// version does.
	in := out
	out = make([]byte, 0, len(in))
	out = append(out, in[0])
	for i := 1; i < len(in); i++ {
		x := in[i]
		if x == '\'' && i+1 < len(in) && in[i-1] == ' ' && in[i+1] == ' ' {
			out = out[:len(out)-1]
			in[i+1] = 0
			out = append(out, x)
			i++
			continue
		}
		out = append(out, x)
	}
	// pass 3
	in = out
	out = make([]byte, 0, len(in))
	out = append(out, in[0])
	for i := 1; i < len(in); i++ {
		x := in[i]
		if in[i-1] == ' ' && x == '\'' && i+1 < len(in) {
			x1 := in[i+1]
			switch {
			case x1 == 't' || x1 == 'd':
			case x1 == 's' || x1 == 'm':
				out = out[:len(out)-1]
			case i+2 < len(in):
				x2 := in[i+2]
				if (x1 == 'r' && x2 == 'e') || (x1 == 'v' && x2 == 'e') {
					out = out[:len(out)-1]
				}
			}
		}
		out = append(out, x)
	}
	return out
}

// StreamDecoder turns generated tokens into text one token at a time. It
// renders each token as Decode does for a single token (control tokens as
// nothing, no space removal, no clean-up of spaces) and returns only whole
// UTF-8 characters: the bytes of a character split across byte tokens are
// held until it is complete. Bytes that can never form a character become
// U+FFFD, one per maximal invalid subsequence, so the output is always valid
// UTF-8. A StreamDecoder is not safe for concurrent use.
type StreamDecoder struct {
	t       *Tokenizer
	pending []byte
	raw     bool
}

// NewStreamDecoder returns a decoder for a new sequence.
func (t *Tokenizer) NewStreamDecoder() *StreamDecoder { return &StreamDecoder{t: t} }

// NewRawStreamDecoder returns a decoder that passes each token's bytes
// through at once, whether or not they are valid UTF-8 on their own (what
// llama.cpp's CLI writes, so a terminal or file gets the model's exact
// bytes).
func (t *Tokenizer) NewRawStreamDecoder() *StreamDecoder { return &StreamDecoder{t: t, raw: true} }

// Add appends token id and returns the text that became complete.
func (d *StreamDecoder) Add(id int32) string {
	if d.raw {
		return string(d.t.piece(id, false))
	}
	d.pending = append(d.pending, d.t.piece(id, false)...)
	out, rest := validPrefix(d.pending, false)
	d.pending = append(d.pending[:0], rest...)
	return out
}

// Flush returns what is still held (as U+FFFD) and resets the decoder.
func (d *StreamDecoder) Flush() string {
	out, _ := validPrefix(d.pending, true)
	d.pending = d.pending[:0]
	return out
}

// validPrefix converts b to valid UTF-8, replacing each maximal invalid
// subsequence with U+FFFD (as Python's "replace" and WHATWG do). Unless final,
// an incomplete character at the end is returned in rest instead.
func validPrefix(b []byte, final bool) (string, []byte) {
	var sb strings.Builder
	for i := 0; i < len(b); {
		r, n := utf8.DecodeRune(b[i:])
		if r != utf8.RuneError || n > 1 {
			sb.Write(b[i : i+n])
			i += n
			continue
		}
		k := prefixLen(b[i:])
		if i+k == len(b) && k > 0 && !final {
			return sb.String(), b[i:]
		}
		sb.WriteRune(utf8.RuneError)
		i += max(k, 1)
	}
	return sb.String(), nil
}

// prefixLen returns how many bytes at the start of b form a proper prefix of
// some valid UTF-8 sequence (0 when b[0] cannot start one).
func prefixLen(b []byte) int {
	c := b[0]
	var need int
	lo, hi := byte(0x80), byte(0xBF)
	switch {
	case c >= 0xC2 && c <= 0xDF:
		need = 2
	case c == 0xE0:
		need, lo = 3, 0xA0
	case c >= 0xE1 && c <= 0xEC, c == 0xEE, c == 0xEF:
		need = 3
	case c == 0xED:
		need, hi = 3, 0x9F
	case c == 0xF0:
		need, lo = 4, 0x90
	case c >= 0xF1 && c <= 0xF3:
		need = 4
	case c == 0xF4:
		need, hi = 4, 0x8F
	default:
		return 0
	}
	k := 1
	for k < need && k < len(b) {
		x := b[k]
		if k == 1 {
			if x < lo || x > hi {
				break
			}
		} else if x < 0x80 || x > 0xBF {
			break
		}
		k++
	}
	if k == need {
		return 0 // complete (the caller only asks for invalid ones)
	}
	return k
}
