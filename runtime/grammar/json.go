package grammar

import "sync"

// This file holds the JSON building blocks shared by JSON() and schemas:
// whitespace, string characters, strings, numbers, literals and free-form
// values. Value fragments never include surrounding whitespace; containers
// put ws after "{", "[", ",", ":" and after every key and value, which
// allows the same documents as llama.cpp's grammars (where every value rule
// ends with "space").

// ws adds llama.cpp's bounded whitespace, ws ::= | " " | "\n" [ \t]{0,20},
// from node from and returns the node after it. It is a call to one shared
// rule, so each use costs a node, not the 22 of the rule.
func (c *compiler) ws(from int32) int32 {
	r := c.shared("ws", func(start, end int32) {
		b := c.b
		b.eps(start, end)
		b.rng(start, ' ', ' ', end)
		cur := b.node()
		b.rng(start, '\n', '\n', cur)
		b.eps(cur, end)
		for range 20 {
			nx := b.node()
			b.rng(cur, ' ', ' ', nx)
			b.rng(cur, '\t', '\t', nx)
			b.eps(nx, end)
			cur = nx
		}
	})
	out := c.b.node()
	c.b.call(from, r, out)
	return out
}

// trailing adds what may follow the root value: nothing, one space or one
// newline.
func (b *builder) trailing(from, to int32) {
	b.eps(from, to)
	b.rng(from, ' ', ' ', to)
	b.rng(from, '\n', '\n', to)
}

// utf8Tails makes the continuation nodes of multi-byte UTF-8 characters that
// end at node to.
type utf8Tails struct {
	c1, c2, c3     int32 // need 1, 2, 3 more bytes 80..BF
	e0, ed, f0, f4 int32 // second byte restricted (no overlongs, surrogates, > U+10FFFF)
}

func (b *builder) tails(to int32) utf8Tails {
	var t utf8Tails
	t.c1 = b.node()
	b.rng(t.c1, 0x80, 0xBF, to)
	t.c2 = b.node()
	b.rng(t.c2, 0x80, 0xBF, t.c1)
	t.c3 = b.node()
	b.rng(t.c3, 0x80, 0xBF, t.c2)
	t.e0 = b.node()
	b.rng(t.e0, 0xA0, 0xBF, t.c1)
	t.ed = b.node()
	b.rng(t.ed, 0x80, 0x9F, t.c1)
	t.f0 = b.node()
	b.rng(t.f0, 0x90, 0xBF, t.c2)
	t.f4 = b.node()
	b.rng(t.f4, 0x80, 0x8F, t.c2)
	return t
}

// leadTarget returns the node after first byte c of a character in a string
// (ASCII: to itself), or -1 when c cannot start an unescaped character.
func (t *utf8Tails) leadTarget(c byte, to int32) int32 {
	switch {
	case c < 0x20 || c == '"' || c == '\\':
		return -1
	case c < 0x80:
		return to
	case c < 0xC2:
		return -1
	case c < 0xE0:
		return t.c1
	case c == 0xE0:
		return t.e0
	case c < 0xED:
		return t.c2
	case c == 0xED:
		return t.ed
	case c < 0xF0:
		return t.c2
	case c == 0xF0:
		return t.f0
	case c < 0xF4:
		return t.c3
	case c == 0xF4:
		return t.f4
	}
	return -1
}

// rawChars adds edges from node from for every unescaped string character
// (valid UTF-8, no control characters, no '"' or '\\') to node to, except
// characters whose first byte is in skip.
func (b *builder) rawChars(from, to int32, skip *[256]bool) {
	t := b.tails(to)
	start, prev := -1, int32(-1)
	flush := func(end int) {
		if start >= 0 {
			b.rng(from, byte(start), byte(end), prev)
		}
		start = -1
	}
	for c := 0; c < 256; c++ {
		tgt := t.leadTarget(byte(c), to)
		if skip != nil && skip[c] {
			tgt = -1
		}
		if tgt != prev || tgt < 0 {
			flush(c - 1)
		}
		if tgt >= 0 && start < 0 {
			start = c
		}
		prev = tgt
	}
	flush(255)
}

// escapes adds the JSON escape sequences from node from to node to.
func (b *builder) escapes(from, to int32) {
	e := b.node()
	b.rng(from, '\\', '\\', e)
	for _, c := range []byte(`"\/bfnrt`) {
		b.rng(e, c, c, to)
	}
	b.uescape(e, to)
}

// uescape adds "u" and four hex digits from node from (after the
// backslash) to node to, excluding UTF-16 surrogates (\uD800-\uDFFF): every
// escape then stands for one character, so documents decode to valid
// Unicode and string lengths count exactly.
func (b *builder) uescape(from, to int32) {
	u := b.node()
	b.rng(from, 'u', 'u', u)
	two := b.node() // two hex digits left
	any3, d := b.node(), b.node()
	for _, r := range [][2]byte{{'0', '9'}, {'A', 'C'}, {'a', 'c'}, {'E', 'F'}, {'e', 'f'}} {
		b.rng(u, r[0], r[1], any3)
	}
	b.rng(u, 'D', 'D', d)
	b.rng(u, 'd', 'd', d)
	b.hex(any3, two)
	b.rng(d, '0', '7', two)
	one := b.node()
	b.hex(two, one)
	b.hex(one, to)
}

func (b *builder) hex(from, to int32) {
	b.rng(from, '0', '9', to)
	b.rng(from, 'A', 'F', to)
	b.rng(from, 'a', 'f', to)
}

// char adds one JSON string character (raw or escaped) from node from to
// node to (they may be the same node, making a loop).
func (b *builder) char(from, to int32) {
	b.rawChars(from, to, nil)
	b.escapes(from, to)
}

// Shared rules, built once per grammar.

func (c *compiler) shared(name string, build func(start, end int32)) int32 {
	if r, ok := c.rules[name]; ok {
		return r
	}
	id, start, end := c.b.rule()
	c.rules[name] = id
	build(start, end)
	return id
}

func (c *compiler) stringRule() int32 {
	return c.shared("string", func(start, end int32) {
		b := c.b
		s := b.lit(start, `"`)
		b.char(s, s)
		b.rng(s, '"', '"', end)
	})
}

// integral adds llama.cpp's integral-part: [0] | [1-9] [0-9]{0,15}.
func (b *builder) integral(from, to int32) {
	b.rng(from, '0', '0', to)
	cur := b.node()
	b.rng(from, '1', '9', cur)
	b.eps(cur, to)
	for range 15 {
		nx := b.node()
		b.rng(cur, '0', '9', nx)
		b.eps(nx, to)
		cur = nx
	}
}

func (c *compiler) numberRule() int32 {
	return c.shared("number", func(start, end int32) {
		b := c.b
		// "-"? integral-part ("." [0-9]{1,16})? ([eE] [-+]? integral-part)?
		i := b.node()
		b.eps(start, i)
		b.rng(start, '-', '-', i)
		frac := b.node()
		b.integral(i, frac)
		exp := b.node()
		b.eps(frac, exp)
		cur := b.lit(frac, ".")
		for range 16 {
			nx := b.node()
			b.rng(cur, '0', '9', nx)
			b.eps(nx, exp)
			cur = nx
		}
		e := b.node()
		b.rng(exp, 'e', 'e', e)
		b.rng(exp, 'E', 'E', e)
		es := b.node()
		b.eps(e, es)
		b.rng(e, '+', '+', es)
		b.rng(e, '-', '-', es)
		b.integral(es, end)
		b.eps(exp, end)
	})
}

func (c *compiler) integerRule() int32 {
	return c.shared("integer", func(start, end int32) {
		i := c.b.node()
		c.b.eps(start, i)
		c.b.rng(start, '-', '-', i)
		c.b.integral(i, end)
	})
}

func (c *compiler) boolRule() int32 {
	return c.shared("boolean", func(start, end int32) {
		c.b.eps(c.b.lit(start, "true"), end)
		c.b.eps(c.b.lit(start, "false"), end)
	})
}

func (c *compiler) nullRule() int32 {
	return c.shared("null", func(start, end int32) {
		c.b.eps(c.b.lit(start, "null"), end)
	})
}

// anyValue is any JSON value at container nesting level d: objects and
// arrays only while d < maxNest, so free-form values nest at most maxNest
// levels deep.
func (c *compiler) anyValue(d int) int32 {
	if d > maxNest {
		d = maxNest
	}
	return c.shared(nameLevel("value", d), func(start, end int32) {
		for _, r := range []int32{c.stringRule(), c.numberRule(), c.boolRule(), c.nullRule()} {
			c.b.call(start, r, end)
		}
		if d < maxNest {
			c.b.call(start, c.anyObject(d), end)
			c.b.call(start, c.anyArray(d), end)
		}
	})
}

// anyObject is an object at level d with any keys and values.
func (c *compiler) anyObject(d int) int32 {
	return c.shared(nameLevel("object", d), func(start, end int32) {
		c.mapBody(start, end, c.stringRule(), nil, c.anyValue(d+1))
	})
}

func (c *compiler) anyArray(d int) int32 {
	return c.shared(nameLevel("array", d), func(start, end int32) {
		b := c.b
		v := c.anyValue(d + 1)
		open := c.ws(b.lit(start, "["))
		closeAt := b.node()
		b.eps(open, closeAt)
		item := b.node()
		b.call(open, v, item)
		loop := c.ws(item)
		b.eps(loop, closeAt)
		b.call(c.ws(b.lit(loop, ",")), v, item)
		b.eps(b.lit(closeAt, "]"), end)
	})
}

// mapBody adds "{" ws (key ws ":" ws value ws ("," ws key ws ":" ws value
// ws)*)? "}" from start to end, where a key is a call to keyRule (or, when
// keyRule < 0, the content automaton key) and a value a call to value.
func (c *compiler) mapBody(start, end, keyRule int32, key *cnfa, value int32) {
	b := c.b
	open := c.ws(b.lit(start, "{"))
	closeAt := b.node()
	b.eps(open, closeAt)
	kv := b.node()
	b.eps(open, kv)
	more := c.keyValue(kv, keyRule, key, value)
	b.eps(more, closeAt)
	b.eps(c.ws(b.lit(more, ",")), kv)
	b.eps(b.lit(closeAt, "}"), end)
}

// keyValue adds key ws ":" ws value ws from node from and returns the node
// after it.
func (c *compiler) keyValue(from, keyRule int32, key *cnfa, value int32) int32 {
	b := c.b
	k := b.node()
	if keyRule >= 0 {
		b.call(from, keyRule, k)
	} else {
		key.emit(b, from, k)
	}
	colon := c.ws(b.lit(c.ws(k), ":"))
	v := b.node()
	b.call(colon, value, v)
	return c.ws(v)
}

func nameLevel(s string, d int) string {
	return s + "/" + string(rune('0'+d/10)) + string(rune('0'+d%10))
}

var jsonGrammar = sync.OnceValue(func() *Grammar {
	c := newCompiler(nil)
	g, err := c.finishRoot(c.anyObject(0))
	if err != nil {
		panic("grammar: building the JSON grammar: " + err.Error())
	}
	return g
})

// JSON returns the grammar of Ollama's format "json" and OpenAI's
// response_format json_object: one JSON object (as llama.cpp's json.gbnf,
// whose root is an object), containers nested at most 32 levels, numbers
// with at most 16 integral digits, 16 fraction digits and a 16-digit
// exponent, whitespace bounded as in llama.cpp, no leading whitespace and at
// most one trailing space or newline. The result is built once and shared.
func JSON() *Grammar { return jsonGrammar() }
