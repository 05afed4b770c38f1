package grammar

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// ErrInvalidGrammar wraps errors for malformed compositions (Compile, Lazy):
// a Repeat with min > max, an empty TextUntil stop, a trigger the grammar
// cannot start with.
var ErrInvalidGrammar = errors.New("grammar: invalid grammar")

// Expr is a part of a composed grammar (see Compile): a set of byte
// strings. Exprs are immutable values built by the functions below; one
// Expr may be used several times, in several grammars. The zero Expr is the
// empty string.
type Expr struct{ x *expr }

type exprKind uint8

const (
	eEmpty exprKind = iota
	eLit
	eSeq
	eAlt
	eRepeat
	eSchema
	eAnyJSON
	eString
	eText
	eWs
)

type expr struct {
	kind     exprKind
	s        string
	kids     []Expr
	min, max int
	schema   []byte
	stops    []string
}

// Lit is exactly the bytes of s.
func Lit(s string) Expr { return Expr{&expr{kind: eLit, s: s}} }

// Seq is its parts one after the other (the empty string when there are
// none).
func Seq(parts ...Expr) Expr { return Expr{&expr{kind: eSeq, kids: slices.Clone(parts)}} }

// Alt is any one of alts (nothing at all when there are none). Alternatives
// may overlap: the matcher follows every one that still fits.
func Alt(alts ...Expr) Expr { return Expr{&expr{kind: eAlt, kids: slices.Clone(alts)}} }

// Opt is e or the empty string.
func Opt(e Expr) Expr { return Repeat(e, 0, 1) }

// Repeat is e repeated at least min and at most max times (no bound when
// max < 0). Compile fails when 0 <= max < min.
func Repeat(e Expr, min, max int) Expr {
	return Expr{&expr{kind: eRepeat, kids: []Expr{e}, min: min, max: max}}
}

// Sep is at least min copies of e separated by sep (no bound on the count).
func Sep(e, sep Expr, min int) Expr {
	more := Repeat(Seq(sep, e), max(min-1, 0), -1)
	if min <= 0 {
		return Opt(Seq(e, more))
	}
	return Seq(e, more)
}

// Schema is one JSON value valid for the JSON schema (its raw text), as
// FromSchema compiles it, without leading or trailing whitespace. A $ref
// "#" inside refers to this schema's root. Schema errors (ErrInvalidSchema,
// ErrUnsupported, as FromSchema's) surface at Compile.
func Schema(schema []byte) Expr { return Expr{&expr{kind: eSchema, schema: slices.Clone(schema)}} }

// AnyJSON is any JSON value (containers nested at most 32 levels), without
// surrounding whitespace.
func AnyJSON() Expr { return Expr{&expr{kind: eAnyJSON}} }

// JSONString is any JSON string, quotes included.
func JSONString() Expr { return Expr{&expr{kind: eString}} }

// Ws is optional JSON whitespace as JSON() allows it between tokens: nothing,
// one space, or a newline and up to 20 spaces or tabs.
func Ws() Expr { return Expr{&expr{kind: eWs}} }

// TextUntil is any valid UTF-8 text, possibly empty, that contains none of
// stops (free content, reasoning, raw parameter values). It is meant to be
// followed by one of the stops, which then ends the text at its first
// occurrence: the text also never ends with the start of a stop that the
// following stop would complete earlier (text "ab" before stop "abab"), so
// splitting the output at the first stop recovers exactly the text. With
// no stops it is any text. Keep the stops few and short: the text's states
// are the prefixes of the stops, and Mask stays fast only while they are
// well under a few hundred (Compile fails past 1024 bytes of stops).
func TextUntil(stops ...string) Expr {
	return Expr{&expr{kind: eText, stops: slices.Clone(stops), max: -1}}
}

// TextLen is TextUntil of min to max characters (max < 0: no bound), for
// strings a schema bounds (minLength, maxLength) where they are not JSON
// strings. Its automaton grows with max: keep max to a few thousand.
func TextLen(min, max int, stops ...string) Expr {
	return Expr{&expr{kind: eText, stops: slices.Clone(stops), min: min, max: max}}
}

// Compile builds a Grammar accepting exactly the strings of root: no
// whitespace is added before or after it. The result behaves as FromSchema's
// grammars do: Mask allows the end-of-generation tokens only when the text
// so far is one of root's strings, and Done reports when no byte may
// follow. Errors wrap ErrInvalidGrammar, or the schema errors of a Schema
// part (ErrInvalidSchema, ErrUnsupported) with the part's index.
func Compile(root Expr) (*Grammar, error) {
	c := newCompiler(nil)
	p := &composer{c: c, rules: map[*expr]int32{}}
	id, start, end := c.b.rule()
	if err := p.emit(root, start, end); err != nil {
		return nil, err
	}
	if c.b.err != nil {
		return nil, c.b.err
	}
	return c.b.finish(id)
}

type composer struct {
	c       *compiler
	rules   map[*expr]int32 // repeated Exprs compiled as rules
	schemas int
}

// emit adds e between nodes from and to of the current rule.
func (p *composer) emit(e Expr, from, to int32) error {
	b := p.c.b
	if b.err != nil {
		return b.err
	}
	x := e.x
	if x == nil {
		b.eps(from, to)
		return nil
	}
	switch x.kind {
	case eLit:
		b.eps(b.lit(from, x.s), to)
	case eSeq:
		if len(x.kids) == 0 {
			b.eps(from, to)
		}
		cur := from
		for i, k := range x.kids {
			next := to
			if i < len(x.kids)-1 {
				next = b.node()
			}
			if err := p.emit(k, cur, next); err != nil {
				return err
			}
			cur = next
		}
	case eAlt:
		for _, k := range x.kids {
			if err := p.emit(k, from, to); err != nil {
				return err
			}
		}
	case eRepeat:
		return p.repeat(x, from, to)
	case eSchema:
		r, err := p.schema(x.schema)
		if err != nil {
			return err
		}
		b.call(from, r, to)
	case eAnyJSON:
		b.call(from, p.c.anyValue(0), to)
	case eString:
		b.call(from, p.c.stringRule(), to)
	case eWs:
		b.eps(p.c.ws(from), to)
	case eText:
		r, err := p.c.textRule(x.stops, x.min, x.max)
		if err != nil {
			return err
		}
		b.call(from, r, to)
	}
	return b.err
}

// repeat adds min to max copies of x.kids[0]. A single copy is inlined;
// more are calls to one rule, so a large part is not duplicated.
func (p *composer) repeat(x *expr, from, to int32) error {
	b := p.c.b
	if x.max >= 0 && x.max < x.min {
		return fmt.Errorf("%w: Repeat min %d > max %d", ErrInvalidGrammar, x.min, x.max)
	}
	if x.min <= 1 && x.max == 1 {
		if x.min == 0 {
			b.eps(from, to)
		}
		return p.emit(x.kids[0], from, to)
	}
	if x.max == 0 {
		b.eps(from, to)
		return nil
	}
	r, err := p.rule(x.kids[0])
	if err != nil {
		return err
	}
	cur := from
	for range x.min {
		n := b.node()
		b.call(cur, r, n)
		cur = n
		if b.err != nil {
			return b.err
		}
	}
	if x.max < 0 {
		b.call(cur, r, cur)
		b.eps(cur, to)
		return b.err
	}
	for range x.max - x.min {
		b.eps(cur, to)
		n := b.node()
		b.call(cur, r, n)
		cur = n
		if b.err != nil {
			return b.err
		}
	}
	b.eps(cur, to)
	return b.err
}

// rule compiles e as a rule of its own (once per Expr).
func (p *composer) rule(e Expr) (int32, error) {
	if e.x != nil {
		if r, ok := p.rules[e.x]; ok {
			return r, nil
		}
	}
	id, start, end := p.c.b.rule()
	if e.x != nil {
		p.rules[e.x] = id
	}
	return id, p.emit(e, start, end)
}

// schema compiles one Schema part with its own root for "#" references.
func (p *composer) schema(src []byte) (int32, error) {
	p.schemas++
	n := p.schemas - 1
	v, err := parseJSON(src)
	if err != nil {
		return 0, fmt.Errorf("schema part %d: %w", n, err)
	}
	c := p.c
	saved := c.root
	c.root = v
	defer func() { c.root = saved }()
	if v.kind == jbool && v.b {
		return c.anyValue(0), nil
	}
	r, err := c.compile(v, "", 0)
	if err != nil {
		return 0, fmt.Errorf("schema part %d: %w", n, err)
	}
	return r, nil
}

// maxStopBytes bounds the total length of one TextUntil's stops.
const maxStopBytes = 1024

// textRule returns the rule of TextUntil(stops...), shared by equal stop
// sets.
func (c *compiler) textRule(stops []string, minLen, maxLen int) (int32, error) {
	if minLen < 0 || (maxLen >= 0 && maxLen < minLen) || maxLen > maxTextLen {
		return 0, fmt.Errorf("%w: TextLen(%d, %d): want 0 <= min <= max <= %d", ErrInvalidGrammar, minLen, maxLen, maxTextLen)
	}
	stops = slices.Clone(stops)
	slices.Sort(stops)
	stops = slices.Compact(stops)
	total := 0
	for _, s := range stops {
		if s == "" {
			return 0, fmt.Errorf("%w: TextUntil with an empty stop", ErrInvalidGrammar)
		}
		total += len(s)
	}
	if total > maxStopBytes {
		return 0, fmt.Errorf("%w: TextUntil stops longer than %d bytes in all", ErrUnsupported, maxStopBytes)
	}
	key := fmt.Sprintf("text\x00%d\x00%d\x00%s", minLen, maxLen, strings.Join(stops, "\x00"))
	return c.shared(key, func(start, end int32) {
		c.b.textUntil(start, end, stops, minLen, maxLen)
	}), nil
}
