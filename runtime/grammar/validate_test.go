package grammar

import (
	"fmt"
	"math"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"
)

// validate checks document d against schema s (rooted at root) for the
// keywords this package supports, with its stricter object semantics:
// without additionalProperties, an object with properties admits no other
// key, and declared keys come in declared order before any other.
func validate(root, s, d *jv) error {
	return validateDepth(root, s, d, 0)
}

func validateDepth(root, s, d *jv, depth int) error {
	return validateOpen(root, s, d, depth, false)
}

// validateOpen validates with open objects (any extra key, in any order)
// when open is set: members of allOf each see only part of the object.
func validateOpen(root, s, d *jv, depth int, open bool) error {
	if depth > 2000 {
		return fmt.Errorf("validator: too deep")
	}
	if s.kind == jbool {
		if s.b {
			return nil
		}
		return fmt.Errorf("schema false")
	}
	if ref := s.get("$ref"); ref != nil {
		t := root
		if ref.s != "#" {
			for _, tok := range strings.Split(strings.TrimPrefix(ref.s, "#/"), "/") {
				t = t.get(tok)
			}
		}
		if err := validateDepth(root, t, d, depth+1); err != nil {
			return fmt.Errorf("$ref %s: %w", ref.s, err)
		}
	}
	if all := s.get("allOf"); all != nil {
		for _, a := range all.arr {
			if err := validateOpen(root, a, d, depth+1, true); err != nil {
				return fmt.Errorf("allOf: %w", err)
			}
		}
	}
	for _, k := range []string{"anyOf", "oneOf"} {
		if alts := s.get(k); alts != nil {
			var errs []string
			for _, a := range alts.arr {
				err := validateDepth(root, a, d, depth+1)
				if err == nil {
					errs = nil
					break
				}
				errs = append(errs, err.Error())
			}
			if errs != nil {
				return fmt.Errorf("%s: none matches: %v", k, errs)
			}
		}
	}
	if c := s.get("const"); c != nil && !sameValue(c, d) {
		return fmt.Errorf("const: %s", appendJSON(nil, d))
	}
	if e := s.get("enum"); e != nil && !slices.ContainsFunc(e.arr, func(x *jv) bool { return sameValue(x, d) }) {
		return fmt.Errorf("enum: %s", appendJSON(nil, d))
	}
	if t := s.get("type"); t != nil {
		types, _ := typeList(t, "")
		if n := s.get("nullable"); n != nil && n.b {
			types = append(types, "null")
		}
		if !typeFits(d, types) {
			return fmt.Errorf("type %v: %s", types, appendJSON(nil, d))
		}
		if slices.Equal(types, []string{"integer"}) {
			if err := intBounds(s, d); err != nil {
				return err
			}
		}
	}
	switch d.kind {
	case jstr:
		n := utf8.RuneCountInString(d.s)
		if v, _ := count(s, "minLength", ""); v >= 0 && n < v {
			return fmt.Errorf("minLength: %q", d.s)
		}
		if v, _ := count(s, "maxLength", ""); v >= 0 && n > v {
			return fmt.Errorf("maxLength: %q", d.s)
		}
		if p := s.get("pattern"); p != nil && !regexp.MustCompile(ecmaToRE2(p.s)).MatchString(d.s) {
			return fmt.Errorf("pattern %s: %q", p.s, d.s)
		}
		if f := s.get("format"); f != nil && formats[f.s] != "" && !regexp.MustCompile(formats[f.s]).MatchString(d.s) {
			return fmt.Errorf("format %s: %q", f.s, d.s)
		}
	case jobj:
		props, ap := s.get("properties"), s.get("additionalProperties")
		if props == nil && ap == nil && s.get("required") == nil {
			break
		}
		for _, r := range s.get("required").arrOrNil() {
			if d.get(r.s) == nil {
				return fmt.Errorf("required %q missing", r.s)
			}
		}
		last := -1
		extra := false
		for _, m := range d.obj {
			i := slices.IndexFunc(props.objOrNil(), func(p jmember) bool { return p.key == m.key })
			if i >= 0 {
				if !open && (i <= last || extra) {
					return fmt.Errorf("property %q out of order", m.key)
				}
				last = i
				if err := validateDepth(root, props.obj[i].val, m.val, depth+1); err != nil {
					return fmt.Errorf("property %q: %w", m.key, err)
				}
				continue
			}
			extra = true
			if slices.ContainsFunc(s.get("required").arrOrNil(), func(r *jv) bool { return r.s == m.key }) && props != nil {
				continue // required but undeclared: any value
			}
			if !open && (ap == nil && props != nil || ap != nil && isFalse(ap)) {
				return fmt.Errorf("additional property %q", m.key)
			}
			if ap != nil {
				if err := validateDepth(root, ap, m.val, depth+1); err != nil {
					return fmt.Errorf("additional property %q: %w", m.key, err)
				}
			}
		}
	case jarr:
		prefix := s.get("prefixItems").arrOrNil()
		for i, e := range d.arr {
			var is *jv
			switch {
			case i < len(prefix):
				is = prefix[i]
			case s.get("items") != nil:
				is = s.get("items")
			case prefix != nil:
				return fmt.Errorf("item %d after prefixItems", i)
			default:
				continue
			}
			if err := validateDepth(root, is, e, depth+1); err != nil {
				return fmt.Errorf("item %d: %w", i, err)
			}
		}
		if v, _ := count(s, "minItems", ""); v >= 0 && len(d.arr) < v {
			return fmt.Errorf("minItems")
		}
		if v, _ := count(s, "maxItems", ""); v >= 0 && len(d.arr) > v {
			return fmt.Errorf("maxItems")
		}
	}
	return nil
}

func (v *jv) arrOrNil() []*jv {
	if v == nil {
		return nil
	}
	return v.arr
}

func (v *jv) objOrNil() []jmember {
	if v == nil {
		return nil
	}
	return v.obj
}

func sameValue(a, b *jv) bool {
	if a.kind == jnum && b.kind == jnum {
		x, _ := a.number()
		y, _ := b.number()
		return x == y
	}
	return a.equal(b)
}

func intBounds(s, d *jv) error {
	x, _ := d.number()
	for _, k := range []string{"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum"} {
		b := s.get(k)
		if b == nil || b.kind != jnum {
			continue
		}
		y, _ := b.number()
		ok := true
		switch k {
		case "minimum":
			ok = x >= y
			if e := s.get("exclusiveMinimum"); e != nil && e.kind == jbool && e.b {
				ok = x > y
			}
		case "maximum":
			ok = x <= y
		case "exclusiveMinimum":
			ok = x > y
		case "exclusiveMaximum":
			ok = x < y
		}
		if !ok || math.Abs(x) > maxInt {
			return fmt.Errorf("%s %v: %s", k, y, d.s)
		}
	}
	return nil
}
