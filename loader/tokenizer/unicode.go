package tokenizer

import (
	"sync"
	"unicode"
)

// Code point classes, as llama.cpp's unicode_cpt_flags has them: exactly one
// category bit per code point (from the Unicode general category), plus the
// White_Space property as a separate bit. A zero value means "outside the
// text", which the hand-written splitters use as their end sentinel.
type cptFlags uint16

const (
	fUndefined   cptFlags = 1 << iota // Cn: unassigned
	fNumber                           // \p{N}
	fLetter                           // \p{L}
	fSeparator                        // \p{Z}
	fAccentMark                       // \p{M}
	fPunctuation                      // \p{P}
	fSymbol                           // \p{S}
	fControl                          // \p{C} other than Cn
	fWhitespace                       // White_Space property (\s)

	fCategories = fUndefined | fNumber | fLetter | fSeparator | fAccentMark | fPunctuation | fSymbol | fControl
)

func (f cptFlags) isNumber() bool     { return f&fNumber != 0 }
func (f cptFlags) isLetter() bool     { return f&fLetter != 0 }
func (f cptFlags) isWhitespace() bool { return f&fWhitespace != 0 }

// maxCodepoint is one past the largest code point llama.cpp classifies; larger
// values (which its lenient UTF-8 decoder can produce) are fUndefined.
const maxCodepoint = 0x110000

var (
	bmpFlagsOnce sync.Once
	bmpFlags     []cptFlags // flags of U+0000..U+FFFF
)

// flagsOf returns the flags of code point c.
func flagsOf(c rune) cptFlags {
	if c >= 0 && c < 0x10000 {
		bmpFlagsOnce.Do(initBMPFlags)
		return bmpFlags[c]
	}
	return computeFlags(c)
}

func initBMPFlags() {
	t := make([]cptFlags, 0x10000)
	for c := range t {
		t[c] = computeFlags(rune(c))
	}
	bmpFlags = t
}

func computeFlags(c rune) cptFlags {
	if c < 0 || c >= maxCodepoint {
		return fUndefined
	}
	var f cptFlags
	switch {
	case unicode.IsLetter(c):
		f = fLetter
	case unicode.IsNumber(c):
		f = fNumber
	case unicode.IsMark(c):
		f = fAccentMark
	case unicode.IsPunct(c):
		f = fPunctuation
	case unicode.IsSymbol(c):
		f = fSymbol
	case unicode.In(c, unicode.Zs, unicode.Zl, unicode.Zp):
		f = fSeparator
	case unicode.In(c, unicode.Cc, unicode.Cf, unicode.Co, unicode.Cs):
		f = fControl
	case c >= 0xD800 && c <= 0xDFFF: // surrogates (Go's tables may leave them out)
		f = fControl
	default:
		f = fUndefined
	}
	if unicode.Is(unicode.White_Space, c) {
		f |= fWhitespace
	}
	return f
}

// utf8Len is llama.cpp's unicode_len_utf8: the sequence length announced by a
// lead byte, judged by its high four bits only (continuation bytes count 1).
func utf8Len(b byte) int {
	switch b >> 4 {
	case 0xC, 0xD:
		return 2
	case 0xE:
		return 3
	case 0xF:
		return 4
	}
	return 1
}

const replacementChar = 0xFFFD

// decodeCpts decodes s the way llama.cpp's unicode_cpts_from_utf8 does: it is
// lenient (overlong forms and surrogates decode to their value) and an invalid
// byte becomes U+FFFD and is skipped on its own.
func decodeCpts(s string, dst []rune) []rune {
	for i := 0; i < len(s); {
		c, n := decodeCpt(s, i)
		dst = append(dst, c)
		i += n
	}
	return dst
}

func decodeCpt(s string, i int) (rune, int) {
	b0 := s[i]
	switch {
	case b0&0x80 == 0:
		return rune(b0), 1
	case b0&0x40 == 0:
		return replacementChar, 1
	case b0&0x20 == 0:
		if i+1 >= len(s) || s[i+1]&0xC0 != 0x80 {
			return replacementChar, 1
		}
		return rune(b0&0x1F)<<6 | rune(s[i+1]&0x3F), 2
	case b0&0x10 == 0:
		if i+2 >= len(s) || s[i+1]&0xC0 != 0x80 || s[i+2]&0xC0 != 0x80 {
			return replacementChar, 1
		}
		return rune(b0&0x0F)<<12 | rune(s[i+1]&0x3F)<<6 | rune(s[i+2]&0x3F), 3
	case b0&0x08 == 0:
		if i+3 >= len(s) || s[i+1]&0xC0 != 0x80 || s[i+2]&0xC0 != 0x80 || s[i+3]&0xC0 != 0x80 {
			return replacementChar, 1
		}
		return rune(b0&0x07)<<18 | rune(s[i+1]&0x3F)<<12 | rune(s[i+2]&0x3F)<<6 | rune(s[i+3]&0x3F), 4
	}
	return replacementChar, 1
}

// appendCpt appends the UTF-8 form of c as llama.cpp's unicode_cpt_to_utf8
// writes it (surrogates included). llama.cpp throws for c > U+10FFFF, which
// only its lenient decoder can produce from bytes F4 90.. to F7; we write
// U+FFFD instead.
func appendCpt(dst []byte, c rune) []byte {
	switch {
	case c < 0:
		c = replacementChar
	case c <= 0x7F:
		return append(dst, byte(c))
	case c <= 0x7FF:
		return append(dst, 0xC0|byte(c>>6), 0x80|byte(c&0x3F))
	case c <= 0xFFFF:
		return append(dst, 0xE0|byte(c>>12), 0x80|byte(c>>6&0x3F), 0x80|byte(c&0x3F))
	case c <= 0x10FFFF:
		return append(dst, 0xF0|byte(c>>18), 0x80|byte(c>>12&0x3F), 0x80|byte(c>>6&0x3F), 0x80|byte(c&0x3F))
	default:
		c = replacementChar
	}
	return append(dst, 0xE0|byte(c>>12), 0x80|byte(c>>6&0x3F), 0x80|byte(c&0x3F))
}

// GPT-2's reversible byte-to-unicode map: printable bytes stand for
// themselves, the other 68 are shifted to U+0100 and up.
var (
	byteToRune [256]rune
	runeToByte = map[rune]byte{}
)

func init() {
	n := rune(0)
	for b := 0; b < 256; b++ {
		if (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE && b <= 0xFF) {
			byteToRune[b] = rune(b)
		} else {
			byteToRune[b] = 256 + n
			n++
		}
		runeToByte[byteToRune[b]] = byte(b)
	}
}

// appendByteEncoded appends the byte-encoded (GPT-2) form of b.
func appendByteEncoded(dst []byte, b byte) []byte {
	r := byteToRune[b]
	if r < 0x80 {
		return append(dst, byte(r))
	}
	return append(dst, 0xC0|byte(r>>6), 0x80|byte(r&0x3F))
}
