package grammar

import (
	"slices"
	"strconv"
)

// flatten merges allOf members (and the target of a $ref with sibling
// keywords) into one schema. Merging is structural: properties are united
// (a property in several members gets allOf of its schemas), required lists
// united, types intersected, numeric bounds tightened; any other keyword
// must agree.
func (c *compiler) flatten(s *jv, path string, depth int) (*jv, error) {
	if depth > maxSchemaDepth {
		return nil, unsup(path, "allOf/$ref nested deeper than %d", maxSchemaDepth)
	}
	var parts []*jv
	var paths []string
	if ref := s.get("$ref"); ref != nil {
		t, tp, err := c.resolve(ref, path)
		if err != nil {
			return nil, err
		}
		parts, paths = append(parts, t), append(paths, tp)
	}
	if all := s.get("allOf"); all != nil {
		if all.kind != jarr || len(all.arr) == 0 {
			return nil, invalid(path, "allOf must be a non-empty array")
		}
		for i, p := range all.arr {
			parts, paths = append(parts, p), append(paths, pathKey(pathKey(path, "allOf"), strconv.Itoa(i)))
		}
	}
	parts, paths = append(parts, without(s, "allOf", "$ref")), append(paths, path)
	acc := &jv{kind: jobj}
	for i, p := range parts {
		p, ppath, err := c.deref(p, paths[i])
		if err != nil {
			return nil, err
		}
		switch {
		case p.kind == jbool && p.b:
			continue
		case p.kind == jbool:
			return nil, invalid(ppath, "allOf member false accepts no value")
		case p.kind != jobj:
			return nil, invalid(ppath, "a schema must be an object or a boolean")
		}
		if err := checkKeywords(p, ppath); err != nil {
			return nil, err
		}
		if p.get("allOf") != nil || p.get("$ref") != nil {
			if p, err = c.flatten(p, ppath, depth+1); err != nil {
				return nil, err
			}
		}
		if acc, err = merge(acc, p, ppath); err != nil {
			return nil, err
		}
	}
	return acc, nil
}

// merge returns the conjunction of object schemas a and b where it can be
// written as one schema.
func merge(a, b *jv, path string) (*jv, error) {
	out := &jv{kind: jobj, obj: slices.Clone(a.obj)}
	for _, m := range b.obj {
		i := slices.IndexFunc(out.obj, func(o jmember) bool { return o.key == m.key })
		if i < 0 {
			out.obj = append(out.obj, m)
			continue
		}
		av, bv := out.obj[i].val, m.val
		nv := av
		switch m.key {
		case "properties":
			if av.kind != jobj || bv.kind != jobj {
				return nil, invalid(path, "properties must be an object")
			}
			p := &jv{kind: jobj, obj: slices.Clone(av.obj)}
			for _, pm := range bv.obj {
				j := slices.IndexFunc(p.obj, func(o jmember) bool { return o.key == pm.key })
				if j < 0 {
					p.obj = append(p.obj, pm)
					continue
				}
				p.obj[j].val = &jv{kind: jobj, obj: []jmember{{"allOf", &jv{kind: jarr, arr: []*jv{p.obj[j].val, pm.val}}}}}
			}
			nv = p
		case "required":
			if av.kind != jarr || bv.kind != jarr {
				return nil, invalid(path, "required must be an array of strings")
			}
			r := &jv{kind: jarr, arr: slices.Clone(av.arr)}
			for _, e := range bv.arr {
				if !slices.ContainsFunc(r.arr, e.equal) {
					r.arr = append(r.arr, e)
				}
			}
			nv = r
		case "type":
			ta, err := typeList(av, path)
			if err != nil {
				return nil, err
			}
			tb, err := typeList(bv, path)
			if err != nil {
				return nil, err
			}
			t := &jv{kind: jarr}
			for _, x := range ta {
				for _, y := range tb {
					switch {
					case x == y, x == "integer" && y == "number":
						t.arr = append(t.arr, &jv{kind: jstr, s: x})
					case x == "number" && y == "integer":
						t.arr = append(t.arr, &jv{kind: jstr, s: y})
					}
				}
			}
			if len(t.arr) == 0 {
				return nil, invalid(path, "allOf: no type satisfies every member")
			}
			nv = t
		case "minLength", "minItems", "minimum":
			if x, ok := av.number(); ok {
				if y, ok := bv.number(); ok && y > x {
					nv = bv
				}
			}
		case "maxLength", "maxItems", "maximum":
			if x, ok := av.number(); ok {
				if y, ok := bv.number(); ok && y < x {
					nv = bv
				}
			}
		case "additionalProperties":
			switch {
			case isFalse(av):
			case isFalse(bv):
				nv = bv
			case !av.equal(bv):
				return nil, unsup(path, "allOf: members with different additionalProperties")
			}
		default:
			if constraints[m.key] && !av.equal(bv) {
				return nil, unsup(path, "allOf: members with different %q", m.key)
			}
		}
		out.obj[i].val = nv
	}
	return out, nil
}

func typeList(t *jv, path string) ([]string, error) {
	switch t.kind {
	case jstr:
		return []string{t.s}, nil
	case jarr:
		var out []string
		for _, e := range t.arr {
			if e.kind != jstr {
				return nil, invalid(path, "type must be a string or a list of strings")
			}
			out = append(out, e.s)
		}
		return out, nil
	}
	return nil, invalid(path, "type must be a string or a list of strings")
}
