package grammar

import (
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
)

// The typed bodies of schemas: literals, strings, integers, objects, arrays.

// literals adds the compact JSON text of each value (const/enum) that fits
// types (all when types is empty), sharing prefixes through a trie.
func (c *compiler) literals(from, to int32, vals []*jv, types []string, path string) error {
	b := c.b
	kids := map[[2]int32]int32{}
	n := 0
	for _, v := range vals {
		if len(types) > 0 && !typeFits(v, types) {
			continue
		}
		n++
		cur := from
		for _, ch := range appendJSON(nil, v) {
			k := [2]int32{cur, int32(ch)}
			nx, ok := kids[k]
			if !ok {
				nx = b.node()
				b.rng(cur, ch, ch, nx)
				kids[k] = nx
			}
			cur = nx
		}
		b.eps(cur, to)
		if b.err != nil {
			return b.err
		}
	}
	if n == 0 {
		return invalid(path, "enum/const has no value of the schema's type")
	}
	return nil
}

func typeFits(v *jv, types []string) bool {
	for _, t := range types {
		switch {
		case t == "integer" && v.kind == jnum:
			if f, ok := v.number(); ok && f == math.Trunc(f) {
				return true
			}
		case t == "number" && v.kind == jnum,
			t == "null" && v.kind == jnull,
			t == "boolean" && v.kind == jbool,
			t == "string" && v.kind == jstr,
			t == "array" && v.kind == jarr,
			t == "object" && v.kind == jobj:
			return true
		}
	}
	return false
}

// count reads a non-negative integer keyword; -1 when absent.
func count(s *jv, k, path string) (int, error) {
	v := s.get(k)
	if v == nil {
		return -1, nil
	}
	f, ok := v.number()
	if !ok || f < 0 || f != math.Trunc(f) {
		return 0, invalid(path, "%s must be a non-negative integer", k)
	}
	if f > 1<<30 {
		return 0, unsup(path, "%s %v too large", k, v.s)
	}
	return int(f), nil
}

func (c *compiler) str(s *jv, from, to int32, path string) error {
	minL, err := count(s, "minLength", path)
	if err != nil {
		return err
	}
	maxL, err := count(s, "maxLength", path)
	if err != nil {
		return err
	}
	if maxL >= 0 && minL > maxL {
		return invalid(path, "minLength %d > maxLength %d", minL, maxL)
	}
	pattern, format := "", ""
	if p := s.get("pattern"); p != nil {
		if p.kind != jstr {
			return invalid(path, "pattern must be a string")
		}
		pattern = p.s
	}
	if f := s.get("format"); f != nil && f.kind == jstr {
		format = formats[f.s]
	}
	if pattern == "" && format == "" && minL <= 0 && maxL < 0 {
		c.b.call(from, c.stringRule(), to)
		return nil
	}
	// Strings with the same constraints share one rule.
	key := fmt.Sprintf("string/%d/%d/%q/%q", minL, maxL, pattern, format)
	if r, ok := c.rules[key]; ok {
		c.b.call(from, r, to)
		return nil
	}
	var parts []*cnfa
	for _, p := range []string{pattern, format} {
		if p == "" {
			continue
		}
		a, err := compilePattern(p)
		if err != nil {
			return unsup(path, "%v", err)
		}
		parts = append(parts, a)
	}
	if minL > 0 || maxL >= 0 {
		a, err := lengthNFA(max(minL, 0), maxL)
		if err != nil {
			return unsup(path, "%v", err)
		}
		parts = append(parts, a)
	}
	a := parts[0]
	for _, p := range parts[1:] {
		if a, err = intersect(a, p); err != nil {
			return unsup(path, "%v", err)
		}
	}
	r := c.shared(key, func(start, end int32) {
		q := c.b.lit(start, `"`)
		e := c.b.node()
		a.emit(c.b, q, e)
		c.b.eps(c.b.lit(e, `"`), end)
	})
	c.b.call(from, r, to)
	return c.b.err
}

// maxInt bounds integers as llama.cpp's integral-part does (16 digits).
const maxInt = 9999999999999999

func (c *compiler) integer(s *jv, from, to int32, path string) error {
	lo, hi := int64(-maxInt), int64(maxInt)
	bounded := false
	bound := func(k string, isMin bool) error {
		v := s.get(k)
		if v == nil || v.kind == jbool {
			return nil
		}
		f, ok := v.number()
		if !ok {
			return invalid(path, "%s must be a number", k)
		}
		bounded = true
		excl := k == "exclusiveMinimum" || k == "exclusiveMaximum"
		other := "exclusiveMaximum"
		if isMin {
			other = "exclusiveMinimum"
		}
		if e := s.get(other); !excl && e != nil && e.kind == jbool && e.b {
			excl = true // draft 4: a boolean modifying minimum/maximum
		}
		if isMin {
			x := math.Ceil(f)
			if excl && x == f {
				x++
			}
			lo = max(lo, clampInt(x))
		} else {
			x := math.Floor(f)
			if excl && x == f {
				x--
			}
			hi = min(hi, clampInt(x))
		}
		return nil
	}
	for _, k := range []string{"minimum", "exclusiveMinimum"} {
		if err := bound(k, true); err != nil {
			return err
		}
	}
	for _, k := range []string{"maximum", "exclusiveMaximum"} {
		if err := bound(k, false); err != nil {
			return err
		}
	}
	if !bounded {
		c.b.call(from, c.integerRule(), to)
		return nil
	}
	if lo > maxInt || hi < -maxInt {
		return unsup(path, "integer bounds beyond 16 digits")
	}
	if lo > hi {
		return invalid(path, "no integer between minimum and maximum")
	}
	b := c.b
	if hi >= 0 {
		digitRange(b, from, to, uint64(max(lo, 0)), uint64(hi))
	}
	if lo < 0 {
		neg := b.lit(from, "-")
		digitRange(b, neg, to, uint64(max(-hi, 1)), uint64(-lo))
	}
	return b.err
}

func clampInt(f float64) int64 {
	switch {
	case f > maxInt:
		return maxInt + 1
	case f < -maxInt:
		return -maxInt - 1
	}
	return int64(f)
}

// digitRange adds the decimal texts (no leading zeros) of the integers
// lo..hi between nodes from and to.
func digitRange(b *builder, from, to int32, lo, hi uint64) {
	hi = min(hi, maxInt)
	if lo > hi {
		return
	}
	pow := uint64(1)
	for l := 1; l <= 16; l++ {
		first, last := pow, pow*10-1
		if l == 1 {
			first = 0
		}
		pow *= 10
		a, z := max(lo, first), min(hi, last)
		if a <= z {
			sameLength(b, from, to, strconv.FormatUint(a, 10), strconv.FormatUint(z, 10))
		}
	}
}

// sameLength adds the digit strings between lo and hi (equal lengths).
func sameLength(b *builder, from, to int32, lo, hi string) {
	if lo == "" {
		b.eps(from, to)
		return
	}
	if strings.Trim(lo[1:], "0") == "" && strings.Trim(hi[1:], "9") == "" {
		n := b.node()
		b.rng(from, lo[0], hi[0], n)
		anyDigits(b, n, to, len(lo)-1)
		return
	}
	if lo[0] == hi[0] {
		n := b.node()
		b.rng(from, lo[0], lo[0], n)
		sameLength(b, n, to, lo[1:], hi[1:])
		return
	}
	n := b.node()
	b.rng(from, lo[0], lo[0], n)
	sameLength(b, n, to, lo[1:], strings.Repeat("9", len(lo)-1))
	if lo[0]+1 <= hi[0]-1 {
		n := b.node()
		b.rng(from, lo[0]+1, hi[0]-1, n)
		anyDigits(b, n, to, len(lo)-1)
	}
	n = b.node()
	b.rng(from, hi[0], hi[0], n)
	sameLength(b, n, to, strings.Repeat("0", len(lo)-1), hi[1:])
}

func anyDigits(b *builder, from, to int32, n int) {
	for range n {
		nx := b.node()
		b.rng(from, '0', '9', nx)
		from = nx
	}
	b.eps(from, to)
}

type prop struct {
	name     string
	rule     int32
	required bool
}

func (c *compiler) object(s *jv, from, to int32, path string, depth int) error {
	b := c.b
	props, req, ap := s.get("properties"), s.get("required"), s.get("additionalProperties")
	if props != nil && props.kind != jobj {
		return invalid(path, "properties must be an object")
	}
	if ap != nil && ap.kind != jobj && ap.kind != jbool {
		return invalid(path, "additionalProperties must be a schema")
	}
	var required []string
	if req != nil {
		if req.kind != jarr {
			return invalid(path, "required must be an array of strings")
		}
		for _, r := range req.arr {
			if r.kind != jstr {
				return invalid(path, "required must be an array of strings")
			}
			if !slices.Contains(required, r.s) {
				required = append(required, r.s)
			}
		}
	}
	apFalse := ap != nil && ap.kind == jbool && !ap.b
	apPath := pathKey(path, "additionalProperties")
	if props == nil && len(required) == 0 {
		switch {
		case ap == nil || ap.kind == jbool && ap.b:
			b.call(from, c.anyObject(1), to)
		case apFalse:
			b.eps(b.lit(c.ws(b.lit(from, "{")), "}"), to)
		default:
			v, err := c.compile(ap, apPath, depth+1)
			if err != nil {
				return err
			}
			c.mapBody(from, to, c.stringRule(), nil, v)
		}
		return b.err
	}
	var list []prop
	var names []string
	if props != nil {
		for _, m := range props.obj {
			req := slices.Contains(required, m.key)
			if isFalse(m.val) {
				if req {
					return invalid(path, "required property %q has schema false", m.key)
				}
				continue
			}
			r, err := c.compile(m.val, pathKey(pathKey(path, "properties"), m.key), depth+1)
			if err != nil {
				return err
			}
			list = append(list, prop{m.key, r, req})
			names = append(names, m.key)
		}
	}
	addl := int32(-1)
	if props == nil && ap == nil {
		addl = c.anyValue(1) // only required names: open, as an object without properties is
	} else if ap != nil && !apFalse {
		var err error
		if addl, err = c.compile(ap, apPath, depth+1); err != nil {
			return err
		}
	}
	for _, r := range required {
		if props.get(r) != nil {
			continue
		}
		if apFalse {
			return invalid(path, "required property %q is not allowed by additionalProperties false", r)
		}
		v := addl
		if v < 0 {
			v = c.anyValue(1)
		}
		list = append(list, prop{r, v, true})
		names = append(names, r)
	}
	// Node st[h][i]: before property i, h = whether a member came before.
	n := len(list)
	var st [2][]int32
	for h := range st {
		st[h] = make([]int32, n+1)
		for i := range st[h] {
			st[h][i] = b.node()
		}
	}
	b.eps(c.ws(b.lit(from, "{")), st[0][0])
	for i, p := range list {
		if !p.required {
			b.eps(st[0][i], st[0][i+1])
			b.eps(st[1][i], st[1][i+1])
		}
		kv := b.node()
		b.eps(st[0][i], kv)
		b.eps(c.ws(b.lit(st[1][i], ",")), kv)
		colon := c.ws(b.lit(c.ws(b.lit(kv, string(appendString(nil, p.name)))), ":"))
		v := b.node()
		b.call(colon, p.rule, v)
		b.eps(c.ws(v), st[1][i+1])
		if b.err != nil {
			return b.err
		}
	}
	if addl >= 0 {
		kv := b.node()
		b.eps(st[0][n], kv)
		b.eps(c.ws(b.lit(st[1][n], ",")), kv)
		var after int32
		if len(names) == 0 {
			after = c.keyValue(kv, c.stringRule(), nil, addl)
		} else {
			after = c.keyValue(kv, -1, keyNotIn(names), addl)
		}
		b.eps(after, st[1][n])
	}
	closeAt := b.node()
	b.eps(st[0][n], closeAt)
	b.eps(st[1][n], closeAt)
	b.eps(b.lit(closeAt, "}"), to)
	return b.err
}

func (c *compiler) array(s *jv, from, to int32, path string, depth int) error {
	b := c.b
	items, prefix := s.get("items"), s.get("prefixItems")
	restSchema := items
	restPath := pathKey(path, "items")
	var tuple []*jv
	tuplePath := pathKey(path, "prefixItems")
	switch {
	case prefix != nil:
		if prefix.kind != jarr {
			return invalid(path, "prefixItems must be an array")
		}
		tuple = prefix.arr
	case items != nil && items.kind == jarr: // draft 4-2019 tuple form
		tuple, tuplePath = items.arr, restPath
		restSchema, restPath = s.get("additionalItems"), pathKey(path, "additionalItems")
	}
	var pos []int32
	for i, t := range tuple {
		r, err := c.compile(t, pathKey(tuplePath, strconv.Itoa(i)), depth+1)
		if err != nil {
			return err
		}
		pos = append(pos, r)
	}
	rest := int32(-1)
	switch {
	case restSchema == nil:
		if tuple == nil {
			rest = c.anyValue(1)
		} // after a tuple: no more items, as llama.cpp
	case isFalse(restSchema):
	default:
		var err error
		if rest, err = c.compile(restSchema, restPath, depth+1); err != nil {
			return err
		}
	}
	minN, err := count(s, "minItems", path)
	if err != nil {
		return err
	}
	maxN, err := count(s, "maxItems", path)
	if err != nil {
		return err
	}
	if minN < 0 {
		minN = len(pos) // llama.cpp requires every prefix item
	}
	if rest < 0 && (maxN < 0 || maxN > len(pos)) {
		maxN = len(pos)
	}
	if maxN >= 0 && minN > maxN {
		return invalid(path, "no array length satisfies minItems and maxItems")
	}
	closeAt := b.node()
	b.eps(b.lit(closeAt, "]"), to)
	cur := c.ws(b.lit(from, "["))
	unroll := maxN
	if maxN < 0 {
		unroll = max(minN, len(pos))
	}
	for j := 0; j < unroll; j++ {
		if j >= minN {
			b.eps(cur, closeAt)
		}
		x := cur
		if j > 0 {
			x = c.ws(b.lit(x, ","))
		}
		r := rest
		if j < len(pos) {
			r = pos[j]
		}
		v := b.node()
		b.call(x, r, v)
		cur = c.ws(v)
		if b.err != nil {
			return b.err
		}
	}
	b.eps(cur, closeAt)
	if maxN < 0 {
		v := b.node()
		if unroll == 0 {
			b.call(cur, rest, v)
		} else {
			b.call(c.ws(b.lit(cur, ",")), rest, v)
		}
		loop := c.ws(v)
		b.eps(loop, closeAt)
		b.call(c.ws(b.lit(loop, ",")), rest, v)
	}
	return b.err
}
