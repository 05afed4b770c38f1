package grammar

import (
	"cmp"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// constraints are the keywords FromSchema enforces.
var constraints = map[string]bool{
	"type": true, "enum": true, "const": true, "nullable": true,
	"properties": true, "required": true, "additionalProperties": true,
	"items": true, "prefixItems": true, "additionalItems": true, "minItems": true, "maxItems": true,
	"minLength": true, "maxLength": true, "pattern": true, "format": true,
	"minimum": true, "maximum": true, "exclusiveMinimum": true, "exclusiveMaximum": true,
	"anyOf": true, "oneOf": true, "allOf": true, "$ref": true,
}

// unsupported are keywords that restrict the valid documents in ways a
// grammar cannot express (or this package does not); a schema using them is
// refused rather than silently loosened. A few values are no-ops and pass.
var unsupported = map[string]func(v *jv) bool{
	"not": nil, "if": nil, "then": nil, "else": nil,
	"dependentRequired": nil, "dependentSchemas": nil, "dependencies": nil,
	"patternProperties": nil, "propertyNames": nil,
	"unevaluatedProperties": isFalse, // objects are closed by default here
	"unevaluatedItems":      nil,
	"contains":              nil, "minContains": nil, "maxContains": nil,
	"uniqueItems":   isFalse,
	"multipleOf":    nil,
	"minProperties": func(v *jv) bool { f, ok := v.number(); return ok && f <= 0 },
	"maxProperties": nil,
	"contentSchema": nil,
	"$dynamicRef":   nil, "$recursiveRef": nil,
}

func isFalse(v *jv) bool { return v.kind == jbool && !v.b }

var typeNames = []string{"null", "boolean", "object", "array", "number", "integer", "string"}

type compiler struct {
	b     *builder
	root  *jv
	rules map[string]int32 // shared rules by name
	memo  map[*jv]int32    // compiled subschemas
	busy  map[*jv]bool     // $ref-only schemas being resolved
}

func newCompiler(root *jv) *compiler {
	return &compiler{
		b:     newBuilder(maxStates),
		root:  root,
		rules: map[string]int32{},
		memo:  map[*jv]int32{},
		busy:  map[*jv]bool{},
	}
}

// finishRoot wraps rule value in the root rule (value, then at most one
// trailing space or newline) and compiles the grammar.
func (c *compiler) finishRoot(value int32) (*Grammar, error) {
	id, start, end := c.b.rule()
	v := c.b.node()
	c.b.call(start, value, v)
	c.b.trailing(v, end)
	return c.b.finish(id)
}

// FromSchema compiles a JSON schema (its raw JSON text) into a Grammar
// accepting the documents the schema describes, as llama.cpp's
// json-schema-to-grammar converter would (see the package documentation for
// the keywords supported and the few places this package deliberately
// differs). Errors wrap ErrInvalidSchema for malformed schemas and
// ErrUnsupported for keywords or sizes it cannot enforce; the message names
// the keyword and where it is.
func FromSchema(schema []byte) (*Grammar, error) {
	v, err := parseJSON(schema)
	if err != nil {
		return nil, err
	}
	c := newCompiler(v)
	var r int32
	if v.kind == jbool && v.b {
		r = c.anyValue(0)
	} else if r, err = c.compile(v, "", 0); err != nil {
		return nil, err
	}
	return c.finishRoot(r)
}

func at(path string) string {
	if path == "" {
		return "at /"
	}
	return "at " + path
}

func invalid(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrInvalidSchema, at(path), fmt.Sprintf(format, args...))
}

func unsup(path, format string, args ...any) error {
	return fmt.Errorf("%w: %s: %s", ErrUnsupported, at(path), fmt.Sprintf(format, args...))
}

func pathKey(path, k string) string {
	return path + "/" + strings.ReplaceAll(strings.ReplaceAll(k, "~", "~0"), "/", "~1")
}

// compile returns the rule for schema s, compiling it on first use. Every
// subschema becomes one rule, so recursive $refs become recursive calls.
func (c *compiler) compile(s *jv, path string, depth int) (int32, error) {
	if depth > maxSchemaDepth {
		return 0, unsup(path, "schema nested deeper than %d", maxSchemaDepth)
	}
	switch s.kind {
	case jbool:
		if s.b {
			return c.anyValue(1), nil
		}
		return 0, invalid(path, "schema false accepts no value")
	case jobj:
	default:
		return 0, invalid(path, "a schema must be an object or a boolean, not a %v", s.kind)
	}
	if r, ok := c.memo[s]; ok {
		return r, nil
	}
	if err := checkKeywords(s, path); err != nil {
		return 0, err
	}
	if ref := s.get("$ref"); ref != nil && !hasConstraints(s, "$ref") {
		if c.busy[s] {
			return 0, invalid(path, "circular $ref")
		}
		c.busy[s] = true
		t, tpath, err := c.resolve(ref, path)
		if err != nil {
			return 0, err
		}
		r, err := c.compile(t, tpath, depth+1)
		delete(c.busy, s)
		if err != nil {
			return 0, err
		}
		c.memo[s] = r
		return r, nil
	}
	if r, ok := c.simple(s); ok {
		c.memo[s] = r
		return r, nil
	}
	id, start, end := c.b.rule()
	c.memo[s] = id
	if err := c.body(s, start, end, path, depth); err != nil {
		return 0, err
	}
	return id, c.b.err
}

// simple returns the shared rule for schemas with no constraint but a single
// scalar type, and for schemas with no constraint at all.
func (c *compiler) simple(s *jv) (int32, bool) {
	t := s.get("type")
	if hasConstraints(s, "type") {
		return 0, false
	}
	if t == nil {
		return c.anyValue(1), true
	}
	if t.kind != jstr {
		return 0, false
	}
	switch t.s {
	case "string":
		return c.stringRule(), true
	case "number":
		return c.numberRule(), true
	case "integer":
		return c.integerRule(), true
	case "boolean":
		return c.boolRule(), true
	case "null":
		return c.nullRule(), true
	}
	return 0, false
}

func checkKeywords(s *jv, path string) error {
	for _, m := range s.obj {
		if ok, known := unsupported[m.key]; known && (ok == nil || !ok(m.val)) {
			return unsup(path, "keyword %q", m.key)
		}
	}
	return nil
}

// hasConstraints reports whether s has a constraint keyword other than
// those in except.
func hasConstraints(s *jv, except ...string) bool {
	for _, m := range s.obj {
		if constraints[m.key] && !slices.Contains(except, m.key) {
			return true
		}
	}
	return false
}

// without returns a copy of object s lacking the keys given.
func without(s *jv, keys ...string) *jv {
	out := &jv{kind: jobj}
	for _, m := range s.obj {
		if !slices.Contains(keys, m.key) {
			out.obj = append(out.obj, m)
		}
	}
	return out
}

// resolve follows a $ref: "#" or a local JSON pointer "#/...". It returns
// the target and its path.
func (c *compiler) resolve(ref *jv, path string) (*jv, string, error) {
	if ref.kind != jstr {
		return nil, "", invalid(path, "$ref must be a string")
	}
	r := ref.s
	if r == "#" {
		return c.root, "", nil
	}
	if !strings.HasPrefix(r, "#/") {
		return nil, "", unsup(path, "$ref %q: only local references (#/...) are supported", r)
	}
	cur := c.root
	for _, tok := range strings.Split(r[2:], "/") {
		if t, err := url.PathUnescape(tok); err == nil {
			tok = t
		}
		tok = strings.ReplaceAll(strings.ReplaceAll(tok, "~1", "/"), "~0", "~")
		var next *jv
		switch cur.kind {
		case jobj:
			next = cur.get(tok)
		case jarr:
			if i, err := strconv.Atoi(tok); err == nil && i >= 0 && i < len(cur.arr) {
				next = cur.arr[i]
			}
		}
		if next == nil {
			return nil, "", invalid(path, "$ref %q: no such definition", r)
		}
		cur = next
	}
	return cur, r[1:], nil
}

// deref follows $refs of schemas that are nothing but a $ref.
func (c *compiler) deref(s *jv, path string) (*jv, string, error) {
	for range maxSchemaDepth {
		ref := s.get("$ref")
		if ref == nil || hasConstraints(s, "$ref") {
			return s, path, nil
		}
		var err error
		if s, path, err = c.resolve(ref, path); err != nil {
			return nil, "", err
		}
	}
	return nil, "", invalid(path, "circular $ref")
}

// body adds schema s between nodes from and to of the current rule.
func (c *compiler) body(s *jv, from, to int32, path string, depth int) error {
	if depth > maxSchemaDepth {
		return unsup(path, "schema nested deeper than %d", maxSchemaDepth)
	}
	if s.get("allOf") != nil || s.get("$ref") != nil {
		m, err := c.flatten(s, path, depth)
		if err != nil {
			return err
		}
		if err := checkKeywords(m, path); err != nil {
			return err
		}
		return c.body(m, from, to, path, depth+1)
	}
	anyOf, oneOf := s.get("anyOf"), s.get("oneOf")
	if anyOf != nil && oneOf != nil {
		return unsup(path, "anyOf together with oneOf")
	}
	if alts := cmp.Or(anyOf, oneOf); alts != nil {
		kw := "anyOf"
		if oneOf != nil {
			kw = "oneOf" // treated as anyOf, as llama.cpp does
		}
		if alts.kind != jarr || len(alts.arr) == 0 {
			return invalid(path, "%s must be a non-empty array", kw)
		}
		rest := without(s, "anyOf", "oneOf")
		shared := hasConstraints(rest)
		for i, a := range alts.arr {
			apath := pathKey(pathKey(path, kw), strconv.Itoa(i))
			if shared {
				// Distribute the sibling keywords into each alternative.
				ra, rpath, err := c.deref(a, apath)
				if err != nil {
					return err
				}
				if ra.kind == jbool {
					if !ra.b {
						continue
					}
					ra = &jv{kind: jobj}
				}
				if ra.kind != jobj {
					return invalid(rpath, "a schema must be an object or a boolean")
				}
				if a, err = merge(rest, ra, apath); err != nil {
					return err
				}
			} else if a.kind == jbool && !a.b {
				continue
			}
			r, err := c.compile(a, apath, depth+1)
			if err != nil {
				return err
			}
			c.b.call(from, r, to)
		}
		return nil
	}
	types, err := schemaTypes(s, path)
	if err != nil {
		return err
	}
	if v := s.get("const"); v != nil {
		return c.literals(from, to, []*jv{v}, types, path)
	}
	if v := s.get("enum"); v != nil {
		if v.kind != jarr {
			return invalid(path, "enum must be an array")
		}
		return c.literals(from, to, v.arr, types, path)
	}
	if len(types) == 0 {
		c.b.call(from, c.anyValue(1), to)
		return nil
	}
	for _, t := range types {
		var err error
		switch t {
		case "null":
			c.b.call(from, c.nullRule(), to)
		case "boolean":
			c.b.call(from, c.boolRule(), to)
		case "number":
			c.b.call(from, c.numberRule(), to) // minimum/maximum not enforced on numbers
		case "integer":
			err = c.integer(s, from, to, path)
		case "string":
			err = c.str(s, from, to, path)
		case "object":
			err = c.object(s, from, to, path, depth)
		case "array":
			err = c.array(s, from, to, path, depth)
		}
		if err != nil {
			return err
		}
	}
	return c.b.err
}

// schemaTypes returns the types s allows: its "type" (plus "null" when
// "nullable" is true), or, without "type", those its keywords imply; none
// means any value.
func schemaTypes(s *jv, path string) ([]string, error) {
	var types []string
	t := s.get("type")
	switch {
	case t == nil:
		infer := []struct {
			typ  string
			keys []string
		}{
			{"object", []string{"properties", "additionalProperties", "required"}},
			{"array", []string{"items", "prefixItems", "additionalItems", "minItems", "maxItems"}},
			{"string", []string{"minLength", "maxLength", "pattern", "format"}},
			{"number", []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"}},
		}
		for _, in := range infer {
			for _, k := range in.keys {
				if s.get(k) != nil {
					types = append(types, in.typ)
					break
				}
			}
		}
		if len(types) == 0 {
			return nil, nil
		}
	case t.kind == jstr:
		types = []string{t.s}
	case t.kind == jarr:
		if len(t.arr) == 0 {
			return nil, invalid(path, "type must not be an empty list")
		}
		for _, e := range t.arr {
			if e.kind != jstr {
				return nil, invalid(path, "type must be a string or a list of strings")
			}
			types = append(types, e.s)
		}
	default:
		return nil, invalid(path, "type must be a string or a list of strings")
	}
	for _, ty := range types {
		if !slices.Contains(typeNames, ty) {
			return nil, invalid(path, "unknown type %q", ty)
		}
	}
	if n := s.get("nullable"); n != nil && n.kind == jbool && n.b {
		types = append(types, "null")
	}
	slices.Sort(types)
	types = slices.Compact(types)
	if slices.Contains(types, "number") {
		types = slices.DeleteFunc(types, func(t string) bool { return t == "integer" })
	}
	return types, nil
}
