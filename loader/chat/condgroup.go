package chat

import "strings"

// gonja parses a conditional expression (`a if c else b`) only as a whole
// {{ }} or {% set %} expression. Inside brackets it fails ('x' + (a if c
// else b), [a if c else b]) or, as a call argument, silently reads the
// parts as separate arguments — and real templates use both (gpt-oss's,
// Cohere's, LFM2's, Kimi's). New therefore rewrites every conditional
// inside brackets, before gonja parses the source, into the equivalent
// ((c) and [a] or [b])[0]: `and` and `or` return an operand and
// short-circuit (in gonja as in Python), so only the chosen branch is
// evaluated, and the list keeps a falsy a from falling through to b.

// wrapConditionals returns src with the conditionals inside brackets of
// its {{ }} and {% %} tags rewritten; text outside tags, comments and
// {% raw %} blocks are left alone.
func wrapConditionals(src string) string {
	if !strings.Contains(src, "if") {
		return src
	}
	var b strings.Builder
	b.Grow(len(src) + 64)
	for i := 0; i < len(src); {
		open := strings.IndexByte(src[i:], '{')
		if open < 0 || i+open+1 >= len(src) {
			b.WriteString(src[i:])
			break
		}
		open += i
		b.WriteString(src[i:open])
		var end string
		switch src[open+1] {
		case '{':
			end = "}}"
		case '%':
			end = "%}"
		case '#':
			close := strings.Index(src[open+2:], "#}")
			if close < 0 {
				b.WriteString(src[open:])
				return b.String()
			}
			b.WriteString(src[open : open+2+close+2])
			i = open + 2 + close + 2
			continue
		default:
			b.WriteByte('{')
			i = open + 1
			continue
		}
		n := tagEnd(src[open+2:], end)
		if n < 0 {
			b.WriteString(src[open:])
			break
		}
		body := src[open+2 : open+2+n]
		b.WriteString(src[open : open+2])
		b.WriteString(rewriteTag(body))
		b.WriteString(end)
		i = open + 2 + n + len(end)
		if end == "%}" && isRawTag(body) {
			// Copy a raw block through to its end tag untouched.
			k := rawEnd(src[i:])
			b.WriteString(src[i : i+k])
			i += k
		}
	}
	return b.String()
}

// tagEnd is the index of the tag's closing delimiter in s, outside
// string literals, or -1.
func tagEnd(s, end string) int {
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '\'' || c == '"':
			i = skipString(s, i) - 1
		case strings.HasPrefix(s[i:], end):
			return i
		}
	}
	return -1
}

// skipString returns the index just past the string literal that starts
// at s[i] (quote included), or len(s) when it does not end.
func skipString(s string, i int) int {
	q := s[i]
	for j := i + 1; j < len(s); j++ {
		switch s[j] {
		case '\\':
			j++
		case q:
			return j + 1
		}
	}
	return len(s)
}

func isRawTag(body string) bool {
	return strings.TrimSpace(strings.Trim(body, "-+")) == "raw"
}

// rawEnd is the length of s up to and including its {% endraw %} tag.
func rawEnd(s string) int {
	for i := 0; i < len(s); {
		k := strings.Index(s[i:], "{%")
		if k < 0 {
			return len(s)
		}
		i += k
		n := strings.Index(s[i+2:], "%}")
		if n < 0 {
			return len(s)
		}
		if strings.TrimSpace(strings.Trim(s[i+2:i+2+n], "-+")) == "endraw" {
			return i + 2 + n + 2
		}
		i += 2
	}
	return len(s)
}

// rewriteTag rewrites the bracket groups of one tag's text; its top level
// (a whole {{ }} expression, an if, a for's filter) stays as it is.
func rewriteTag(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		switch c := s[i]; {
		case c == '\'' || c == '"':
			j := skipString(s, i)
			b.WriteString(s[i:j])
			i = j
		case c == '(' || c == '[' || c == '{':
			j := matchBracket(s, i)
			if j < 0 {
				b.WriteString(s[i:])
				return b.String()
			}
			b.WriteByte(c)
			b.WriteString(rewriteGroup(s[i+1:j], c))
			b.WriteByte(s[j])
			i = j + 1
		default:
			b.WriteByte(c)
			i++
		}
	}
	return b.String()
}

// rewriteGroup rewrites the inside of a bracket group opened by open: each
// comma-separated element (after its `name=` or `key:` part in calls and
// dicts) that is a conditional becomes ((c) and [a] or [b])[0], and groups
// nested anywhere are rewritten the same way.
func rewriteGroup(s string, open byte) string {
	var b strings.Builder
	for k, elem := range splitTop(s, ',') {
		if k > 0 {
			b.WriteByte(',')
		}
		prefix, value := "", elem
		if at := keyEnd(elem, open); at > 0 {
			prefix, value = elem[:at], elem[at:]
		}
		b.WriteString(rewriteTag(prefix))
		b.WriteString(rewriteConditional(value))
	}
	return b.String()
}

// rewriteConditional rewrites one expression: a top-level `a if c else b`
// (b itself possibly conditional) into ((c) and [a] or [b])[0], with the
// groups inside each part rewritten; anything else only inside.
func rewriteConditional(e string) string {
	ifAt := topWord(e, "if", 0)
	if ifAt < 0 {
		return rewriteTag(e)
	}
	a, rest := e[:ifAt], e[ifAt+2:]
	c, other := rest, "none"
	if elseAt := topWord(rest, "else", 0); elseAt >= 0 {
		c, other = rest[:elseAt], rest[elseAt+4:]
	}
	// Keep the element's leading and trailing spaces where they were.
	lead := len(a) - len(strings.TrimLeft(a, " \t\r\n"))
	trail := len(other) - len(strings.TrimRight(other, " \t\r\n"))
	return a[:lead] + "((" + rewriteTag(strings.TrimSpace(c)) + ") and [" + rewriteTag(strings.TrimSpace(a)) +
		"] or [" + rewriteConditional(strings.TrimSpace(other)) + "])[0]" + other[len(other)-trail:]
}

// scanTop walks s from from on, skipping string literals, and calls visit
// with every other byte's index and bracket depth (a bracket counts at the
// depth outside it); visit returns the index to go on from, or -1 to stop.
func scanTop(s string, from int, visit func(i, depth int) int) {
	depth := 0
	for i := from; i < len(s); {
		c := s[i]
		if c == '\'' || c == '"' {
			i = skipString(s, i)
			continue
		}
		if c == ')' || c == ']' || c == '}' {
			depth--
		}
		next := visit(i, depth)
		if next < 0 {
			return
		}
		if c == '(' || c == '[' || c == '{' {
			depth++
		}
		i = next
	}
}

// splitTop splits s at sep outside strings and brackets.
func splitTop(s string, sep byte) []string {
	var parts []string
	start := 0
	scanTop(s, 0, func(i, depth int) int {
		if s[i] == sep && depth == 0 {
			parts = append(parts, s[start:i])
			start = i + 1
		}
		return i + 1
	})
	return append(parts, s[start:])
}

// keyEnd is the end of an element's `name=` (in a call's arguments) or
// `key:` (in a dict) prefix, or 0 when it has none.
func keyEnd(elem string, open byte) int {
	end := 0
	scanTop(elem, 0, func(i, depth int) int {
		c := elem[i]
		switch {
		case depth > 0:
		case open == '{' && c == ':',
			open == '(' && c == '=' && (i+1 >= len(elem) || elem[i+1] != '=') && (i == 0 || !strings.ContainsRune("=!<>", rune(elem[i-1]))):
			end = i + 1
			return -1
		}
		return i + 1
	})
	return end
}

// topWord is the index of the first whole word w at or after from in s,
// outside strings and brackets, or -1.
func topWord(s, w string, from int) int {
	at := -1
	scanTop(s, from, func(i, depth int) int {
		if !isIdentByte(s[i]) {
			return i + 1
		}
		j := i
		for j < len(s) && (isIdentByte(s[j]) || s[j] >= '0' && s[j] <= '9') {
			j++
		}
		if depth == 0 && s[i:j] == w {
			at = i
			return -1
		}
		return j
	})
	return at
}

func isIdentByte(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z'
}

// matchBracket returns the index of the bracket that closes the one at
// s[i], skipping strings and nested brackets, or -1.
func matchBracket(s string, i int) int {
	at := -1
	scanTop(s, i, func(j, depth int) int {
		if c := s[j]; depth == 0 && j > i && (c == ')' || c == ']' || c == '}') {
			at = j
			return -1
		}
		return j + 1
	})
	return at
}
