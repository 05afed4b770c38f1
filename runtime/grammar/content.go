package grammar

import (
	"fmt"
	"regexp/syntax"
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"
)

// A cnfa is a regular automaton over the bytes of a JSON string's content
// (between the quotes, escapes as written): byte and epsilon edges only, from
// start to accept. Patterns, formats and length bounds each compile to one;
// several on the same string are intersected; the result is copied into the
// grammar with emit.
type cnfa struct {
	b             *builder
	start, accept int32
}

// emit copies a between nodes from and to of dst.
func (a *cnfa) emit(dst *builder, from, to int32) {
	if dst.err != nil {
		return
	}
	if len(dst.nodes)+len(a.b.nodes) > dst.limit {
		dst.fail(fmt.Errorf("%w: grammar needs more than %d states", ErrUnsupported, dst.limit))
		return
	}
	off := int32(len(dst.nodes))
	for _, nd := range a.b.nodes {
		n := bnode{edges: make([]bedge, len(nd.edges)), eps: make([]int32, len(nd.eps))}
		for i, e := range nd.edges {
			n.edges[i] = bedge{e.lo, e.hi, e.to + off}
		}
		for i, t := range nd.eps {
			n.eps[i] = t + off
		}
		dst.nodes = append(dst.nodes, n)
	}
	dst.eps(from, a.start+off)
	dst.eps(a.accept+off, to)
}

// lengthNFA accepts min to max string characters (max < 0: no bound); an
// escape sequence counts as one character.
func lengthNFA(minLen, maxLen int) (*cnfa, error) {
	b := newBuilder(maxContent)
	start := b.node()
	cur := start
	for i := 0; i < minLen && b.err == nil; i++ {
		nx := b.node()
		b.char(cur, nx)
		cur = nx
	}
	acc := b.node()
	b.eps(cur, acc)
	if maxLen < 0 {
		b.char(cur, cur)
	}
	for i := minLen; i < maxLen && b.err == nil; i++ {
		nx := b.node()
		b.char(cur, nx)
		b.eps(nx, acc)
		cur = nx
	}
	if b.err != nil {
		return nil, fmt.Errorf("minLength/maxLength %d/%d too large", minLen, maxLen)
	}
	return &cnfa{b, start, acc}, nil
}

// intersect returns an automaton for the strings both x and y accept (the
// product construction over epsilon closures).
func intersect(x, y *cnfa) (*cnfa, error) {
	cx, cy := epsClosures(x.b), epsClosures(y.b)
	out := newBuilder(maxContent)
	type pair struct{ p, q int32 }
	ids := map[pair]int32{}
	var queue []pair
	get := func(p pair) int32 {
		if id, ok := ids[p]; ok {
			return id
		}
		id := out.node()
		ids[p] = id
		queue = append(queue, p)
		return id
	}
	acc := out.node()
	start := get(pair{x.start, y.start})
	for len(queue) > 0 && out.err == nil {
		p := queue[0]
		queue = queue[1:]
		id := ids[p]
		xs, ys := cx(p.p), cy(p.q)
		if slices.Contains(xs, x.accept) && slices.Contains(ys, y.accept) {
			out.eps(id, acc)
		}
		for _, a := range xs {
			for _, ea := range x.b.nodes[a].edges {
				for _, bn := range ys {
					for _, eb := range y.b.nodes[bn].edges {
						lo, hi := max(ea.lo, eb.lo), min(ea.hi, eb.hi)
						if lo <= hi {
							out.rng(id, lo, hi, get(pair{ea.to, eb.to}))
						}
					}
				}
			}
		}
	}
	if out.err != nil {
		return nil, fmt.Errorf("string constraints (pattern, format, length) too large to combine")
	}
	return &cnfa{out, start, acc}, nil
}

// epsClosures returns a memoised function giving the nodes reachable from a
// node by epsilon edges (the node included).
func epsClosures(b *builder) func(int32) []int32 {
	memo := map[int32][]int32{}
	return func(n int32) []int32 {
		if c, ok := memo[n]; ok {
			return c
		}
		c := []int32{n}
		for i := 0; i < len(c); i++ {
			for _, t := range b.nodes[c[i]].eps {
				if !slices.Contains(c, t) {
					c = append(c, t)
				}
			}
		}
		memo[n] = c
		return c
	}
}

// keyNotIn accepts a JSON string (quotes included) whose value is none of
// names. Characters are followed through a byte trie of the names, short
// escapes decoded; a \uXXXX escape leaves the trie (so a name spelt with
// \u escapes is not caught, as in llama.cpp). The automaton is deterministic.
func keyNotIn(names []string) *cnfa {
	b := newBuilder(maxContent)
	type tnode struct {
		kids map[byte]*tnode
		term bool
		id   int32
		need int  // continuation bytes still due in the current character
		pos  int  // bytes of the current character read so far
		lead byte // its first byte
	}
	root := &tnode{}
	all := []*tnode{root}
	for _, name := range names {
		t := root
		for i := 0; i < len(name); i++ {
			c := name[i]
			k := t.kids[c]
			if k == nil {
				k = &tnode{}
				if t.need == 0 {
					k.need, k.pos, k.lead = utf8Len(c)-1, 1, c
				} else {
					k.need, k.pos, k.lead = t.need-1, t.pos+1, t.lead
				}
				if t.kids == nil {
					t.kids = map[byte]*tnode{}
				}
				t.kids[c] = k
				all = append(all, k)
			}
			t = k
		}
		t.term = true
	}
	start, accept, free := b.node(), b.node(), b.node()
	b.char(free, free)
	b.rng(free, '"', '"', accept)
	// tail[k]: k continuation bytes, then free.
	tail := []int32{free}
	for k := 1; k <= 3; k++ {
		n := b.node()
		b.rng(n, 0x80, 0xBF, tail[k-1])
		tail = append(tail, n)
	}
	for _, t := range all {
		t.id = b.node()
	}
	b.rng(start, '"', '"', root.id)
	for _, t := range all {
		if t.need == 0 {
			var skip [256]bool
			for c, k := range t.kids {
				if c >= 0x20 && c != '"' && c != '\\' && (c < 0x80 || c >= 0xC2 && c <= 0xF4) {
					b.rng(t.id, c, c, k.id)
					skip[c] = true
				}
			}
			b.rawChars(t.id, free, &skip)
			e := b.node()
			b.rng(t.id, '\\', '\\', e)
			for _, esc := range [...][2]byte{{'"', '"'}, {'\\', '\\'}, {'/', '/'}, {'b', '\b'}, {'f', '\f'}, {'n', '\n'}, {'r', '\r'}, {'t', '\t'}} {
				to := free
				if k := t.kids[esc[1]]; k != nil {
					to = k.id
				}
				b.rng(e, esc[0], esc[0], to)
			}
			b.uescape(e, free)
			if !t.term {
				b.rng(t.id, '"', '"', accept)
			}
			continue
		}
		lo, hi := byte(0x80), byte(0xBF)
		if t.pos == 1 {
			lo, hi = secondByte(t.lead)
		}
		runStart := -1
		for c := int(lo); c <= int(hi)+1; c++ {
			var k *tnode
			if c <= int(hi) {
				k = t.kids[byte(c)]
			}
			if k != nil {
				b.rng(t.id, byte(c), byte(c), k.id)
			}
			if (k != nil || c > int(hi)) && runStart >= 0 {
				b.rng(t.id, byte(runStart), byte(c-1), tail[t.need-1])
				runStart = -1
			} else if k == nil && c <= int(hi) && runStart < 0 {
				runStart = c
			}
		}
	}
	return &cnfa{b, start, accept}
}

func utf8Len(lead byte) int {
	switch {
	case lead < 0xC0:
		return 1
	case lead < 0xE0:
		return 2
	case lead < 0xF0:
		return 3
	}
	return 4
}

// secondByte is the range of the byte after a UTF-8 lead byte.
func secondByte(lead byte) (lo, hi byte) {
	switch lead {
	case 0xE0:
		return 0xA0, 0xBF
	case 0xED:
		return 0x80, 0x9F
	case 0xF0:
		return 0x90, 0xBF
	case 0xF4:
		return 0x80, 0x8F
	}
	return 0x80, 0xBF
}

// String formats constrained as in llama.cpp's json-schema-to-grammar; other
// formats are annotations.
var formats = map[string]string{
	"date":      `^` + dateRE + `$`,
	"time":      `^` + timeRE + `$`,
	"date-time": `^` + dateRE + `T` + timeRE + `$`,
	"uuid":      `^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`,
}

const (
	dateRE = `[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])`
	timeRE = `([01][0-9]|2[0-3]):[0-5][0-9]:[0-5][0-9](\.[0-9]{3})?(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])`
)

// compilePattern compiles an ECMA-262 pattern (JSON Schema's dialect) to an
// automaton over JSON string content. Patterns are searches: an unanchored
// side matches any characters. Characters JSON must escape ('"', '\\',
// control characters) are matched in their escaped form; all others raw.
func compilePattern(pat string) (*cnfa, error) {
	re, err := syntax.Parse(ecmaToRE2(pat), syntax.Perl)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %v", pat, err)
	}
	re = re.Simplify()
	subs := []*syntax.Regexp{re}
	if re.Op == syntax.OpConcat {
		subs = re.Sub
	}
	anchorStart, anchorEnd := false, false
	if len(subs) > 0 && subs[0].Op == syntax.OpBeginText {
		anchorStart, subs = true, subs[1:]
	}
	if len(subs) > 0 && subs[len(subs)-1].Op == syntax.OpEndText {
		anchorEnd, subs = true, subs[:len(subs)-1]
	}
	p := &rx{b: newBuilder(maxContent)}
	start := p.b.node()
	cur := start
	if !anchorStart {
		p.b.char(cur, cur)
	}
	for _, s := range subs {
		if cur, err = p.re(cur, s, pat); err != nil {
			return nil, err
		}
	}
	if !anchorEnd {
		l := p.b.node()
		p.b.eps(cur, l)
		p.b.char(l, l)
		cur = l
	}
	if p.b.err != nil {
		return nil, fmt.Errorf("pattern %q too large", pat)
	}
	return &cnfa{p.b, start, cur}, nil
}

// ecmaToRE2 rewrites the ECMA escapes RE2 lacks: \uXXXX (surrogate pairs
// joined) and \u{X...} become \x{...}.
func ecmaToRE2(p string) string {
	var sb strings.Builder
	hex4 := func(s string) (rune, bool) {
		if len(s) < 4 {
			return 0, false
		}
		var r rune
		for i := range 4 {
			d := unhex(s[i])
			if d < 0 {
				return 0, false
			}
			r = r<<4 | rune(d)
		}
		return r, true
	}
	for i := 0; i < len(p); i++ {
		if p[i] != '\\' || i+1 >= len(p) {
			sb.WriteByte(p[i])
			continue
		}
		if p[i+1] == 'u' {
			if r, ok := hex4(p[i+2:]); ok {
				n := 6
				if utf16IsHigh(r) && i+12 <= len(p) && p[i+6] == '\\' && p[i+7] == 'u' {
					if lo, ok := hex4(p[i+8:]); ok && lo >= 0xDC00 && lo <= 0xDFFF {
						r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
						n = 12
					}
				}
				fmt.Fprintf(&sb, `\x{%x}`, r)
				i += n - 1
				continue
			}
			if i+2 < len(p) && p[i+2] == '{' {
				if j := strings.IndexByte(p[i+2:], '}'); j > 0 {
					sb.WriteString(`\x`)
					sb.WriteString(p[i+2 : i+3+j])
					i += 2 + j
					continue
				}
			}
		}
		sb.WriteString(p[i : i+2])
		i++
	}
	return sb.String()
}

func utf16IsHigh(r rune) bool { return r >= 0xD800 && r <= 0xDBFF }

func unhex(c byte) int {
	switch {
	case c >= '0' && c <= '9':
		return int(c - '0')
	case c >= 'a' && c <= 'f':
		return int(c-'a') + 10
	case c >= 'A' && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

type rx struct{ b *builder }

func (p *rx) re(from int32, r *syntax.Regexp, pat string) (int32, error) {
	b := p.b
	if b.err != nil {
		return from, nil
	}
	switch r.Op {
	case syntax.OpNoMatch:
		return b.node(), nil // a dead end, pruned later
	case syntax.OpEmptyMatch:
		return from, nil
	case syntax.OpLiteral:
		for _, c := range r.Rune {
			cls := []rune{c, c}
			if r.Flags&syntax.FoldCase != 0 {
				cls = foldClass(c)
			}
			nx := b.node()
			p.class(from, nx, cls)
			from = nx
		}
		return from, nil
	case syntax.OpCharClass:
		nx := b.node()
		p.class(from, nx, r.Rune)
		return nx, nil
	case syntax.OpAnyCharNotNL: // ECMA '.': no line terminators
		nx := b.node()
		p.class(from, nx, []rune{0, '\n' - 1, '\n' + 1, '\r' - 1, '\r' + 1, 0x2027, 0x202A, unicode.MaxRune})
		return nx, nil
	case syntax.OpAnyChar:
		nx := b.node()
		p.class(from, nx, []rune{0, unicode.MaxRune})
		return nx, nil
	case syntax.OpCapture:
		return p.re(from, r.Sub[0], pat)
	case syntax.OpStar:
		l := b.node()
		b.eps(from, l)
		e, err := p.re(l, r.Sub[0], pat)
		b.eps(e, l)
		return l, err
	case syntax.OpPlus:
		s := b.node()
		b.eps(from, s)
		e, err := p.re(s, r.Sub[0], pat)
		b.eps(e, s)
		out := b.node()
		b.eps(e, out)
		return out, err
	case syntax.OpQuest:
		e, err := p.re(from, r.Sub[0], pat)
		out := b.node()
		b.eps(from, out)
		b.eps(e, out)
		return out, err
	case syntax.OpRepeat: // Simplify rewrites these; kept for safety
		var err error
		for i := 0; i < r.Min && err == nil && b.err == nil; i++ {
			from, err = p.re(from, r.Sub[0], pat)
		}
		if r.Max < 0 {
			return p.re(from, &syntax.Regexp{Op: syntax.OpStar, Sub: r.Sub}, pat)
		}
		out := b.node()
		b.eps(from, out)
		for i := r.Min; i < r.Max && err == nil && b.err == nil; i++ {
			from, err = p.re(from, r.Sub[0], pat)
			b.eps(from, out)
		}
		return out, err
	case syntax.OpConcat:
		var err error
		for _, s := range r.Sub {
			if from, err = p.re(from, s, pat); err != nil {
				return from, err
			}
		}
		return from, nil
	case syntax.OpAlternate:
		out := b.node()
		for _, s := range r.Sub {
			e, err := p.re(from, s, pat)
			if err != nil {
				return out, err
			}
			b.eps(e, out)
		}
		return out, nil
	}
	return from, fmt.Errorf("pattern %q: assertions other than a leading ^ and a trailing $ are not supported", pat)
}

// foldClass returns the case-folding orbit of c as a sorted range list.
func foldClass(c rune) []rune {
	rs := []rune{c}
	for f := unicode.SimpleFold(c); f != c; f = unicode.SimpleFold(f) {
		rs = append(rs, f)
	}
	slices.Sort(rs)
	var cls []rune
	for _, r := range rs {
		cls = append(cls, r, r)
	}
	return cls
}

func needsEscape(r rune) bool { return r < 0x20 || r == '"' || r == '\\' }

// class adds, from node from to node to, one character of the rune class
// cls (pairs lo, hi): raw UTF-8 for ordinary characters, escape sequences for
// those JSON must escape (\uXXXX hex digits in either case). Byte sequences
// share prefixes through a small trie to keep the automaton deterministic.
func (p *rx) class(from, to int32, cls []rune) {
	b := p.b
	type key struct {
		n      int32
		lo, hi byte
	}
	trie := map[key]int32{}
	insert := func(seq [][2]byte) {
		cur := from
		for i, r := range seq {
			if i == len(seq)-1 {
				b.rng(cur, r[0], r[1], to)
				return
			}
			k := key{cur, r[0], r[1]}
			n, ok := trie[k]
			if !ok {
				n = b.node()
				b.rng(cur, r[0], r[1], n)
				trie[k] = n
			}
			cur = n
		}
	}
	for i := 0; i+1 < len(cls) && b.err == nil; i += 2 {
		lo, hi := cls[i], cls[i+1]
		for lo <= hi {
			if needsEscape(lo) {
				for _, seq := range escapeSeqs(lo) {
					insert(seq)
				}
				lo++
				continue
			}
			end := hi
			switch {
			case lo < '"' && end >= '"':
				end = '"' - 1
			case lo < '\\' && end >= '\\':
				end = '\\' - 1
			}
			utf8Seqs(lo, end, insert)
			lo = end + 1
		}
	}
}

// escapeSeqs returns the byte sequences of the JSON escapes of r.
func escapeSeqs(r rune) [][][2]byte {
	short := appendEscapedRune(nil, r)
	var seq [][2]byte
	if len(short) == 2 {
		for _, c := range short {
			seq = append(seq, [2]byte{c, c})
		}
		return [][][2]byte{seq}
	}
	// \u00XX: each letter digit in either case.
	alts := func(d byte) [][2]byte {
		if d < 10 {
			return [][2]byte{{'0' + d, '0' + d}}
		}
		return [][2]byte{{'a' + d - 10, 'a' + d - 10}, {'A' + d - 10, 'A' + d - 10}}
	}
	var out [][][2]byte
	for _, h := range alts(byte(r >> 4)) {
		for _, l := range alts(byte(r & 15)) {
			out = append(out, [][2]byte{{'\\', '\\'}, {'u', 'u'}, {'0', '0'}, {'0', '0'}, h, l})
		}
	}
	return out
}

// utf8Seqs calls emit with byte-range sequences whose concatenated languages
// are exactly the UTF-8 encodings of runes lo..hi (surrogates excluded).
func utf8Seqs(lo, hi rune, emit func([][2]byte)) {
	if lo > hi {
		return
	}
	if lo <= 0xDFFF && hi >= 0xD800 {
		if lo < 0xD800 {
			utf8Seqs(lo, 0xD7FF, emit)
		}
		if hi > 0xDFFF {
			utf8Seqs(0xE000, hi, emit)
		}
		return
	}
	for _, m := range [...]rune{0x7F, 0x7FF, 0xFFFF} {
		if lo <= m && m < hi {
			utf8Seqs(lo, m, emit)
			utf8Seqs(m+1, hi, emit)
			return
		}
	}
	if hi <= 0x7F {
		emit([][2]byte{{byte(lo), byte(hi)}})
		return
	}
	n := utf8.RuneLen(lo)
	for i := 1; i < n; i++ {
		m := rune(1)<<(6*i) - 1
		if lo&^m != hi&^m {
			if lo&m != 0 {
				utf8Seqs(lo, lo|m, emit)
				utf8Seqs((lo|m)+1, hi, emit)
				return
			}
			if hi&m != m {
				utf8Seqs(lo, (hi&^m)-1, emit)
				utf8Seqs(hi&^m, hi, emit)
				return
			}
		}
	}
	var a, z [4]byte
	utf8.EncodeRune(a[:], lo)
	utf8.EncodeRune(z[:], hi)
	seq := make([][2]byte, n)
	for i := range n {
		seq[i] = [2]byte{a[i], z[i]}
	}
	emit(seq)
}
