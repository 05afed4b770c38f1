package eval

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/hearth-llm/hearth/runtime/grammar"
)

// schemaCheck validates JSON documents against a schema with the grammar
// Hearth constrains generation with. That grammar fixes the order of an
// object's properties (the schema's), so a document is first rewritten
// with its keys in the schema's order: a check should not fail a server
// that wrote them in another.
type schemaCheck struct {
	g      *grammar.Grammar
	schema any // as decodeOrdered returns it
}

func newSchemaCheck(schema []byte) (*schemaCheck, error) {
	g, err := grammar.FromSchema(schema)
	if err != nil {
		return nil, err
	}
	s, err := decodeOrdered(json.NewDecoder(bytes.NewReader(schema)))
	if err != nil {
		return nil, err
	}
	return &schemaCheck{g: g, schema: s}, nil
}

func (s *schemaCheck) validate(doc string) error {
	d := json.NewDecoder(bytes.NewReader([]byte(doc)))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil {
		return fmt.Errorf("not JSON: %v", err)
	}
	if d.More() {
		return errors.New("not one JSON document")
	}
	var b bytes.Buffer
	if err := writeOrdered(&b, v, s.schema); err != nil {
		return err
	}
	m := s.g.NewMatcher(grammar.NewVocab(nil, nil))
	if err := m.AcceptBytes(b.Bytes()); err != nil {
		return fmt.Errorf("not a document of the schema: %v", err)
	}
	if !m.Complete() {
		return errors.New("not a document of the schema: incomplete")
	}
	return nil
}

// writeOrdered writes v as compact JSON, the keys of each object in the
// order of the matching schema's "properties", the others after them in
// sorted order.
func writeOrdered(b *bytes.Buffer, v any, schema any) error {
	sm, _ := schema.(*object)
	props, _ := sm.get("properties").(*object)
	switch x := v.(type) {
	case map[string]any:
		var order []string
		if props != nil {
			order = props.keys
		}
		keys := make([]string, 0, len(x))
		for _, k := range order {
			if _, ok := x[k]; ok {
				keys = append(keys, k)
			}
		}
		var rest []string
		for k := range x {
			if !slices.Contains(order, k) {
				rest = append(rest, k)
			}
		}
		slices.Sort(rest)
		keys = append(keys, rest...)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			kb, _ := json.Marshal(k)
			b.Write(kb)
			b.WriteByte(':')
			if err := writeOrdered(b, x[k], props.get(k)); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	case []any:
		b.WriteByte('[')
		for i, e := range x {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeOrdered(b, e, sm.get("items")); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	default:
		vb, err := json.Marshal(x)
		if err != nil {
			return err
		}
		b.Write(vb)
	}
	return nil
}

// object is a JSON object that remembers the order of its keys.
type object struct {
	keys []string
	m    map[string]any
}

func (o *object) get(k string) any {
	if o == nil {
		return nil
	}
	return o.m[k]
}

// decodeOrdered reads one JSON value, objects as *object.
func decodeOrdered(d *json.Decoder) (any, error) {
	t, err := d.Token()
	if err != nil {
		return nil, err
	}
	switch t {
	case json.Delim('{'):
		o := &object{m: map[string]any{}}
		for d.More() {
			kt, err := d.Token()
			if err != nil {
				return nil, err
			}
			k, _ := kt.(string)
			v, err := decodeOrdered(d)
			if err != nil {
				return nil, err
			}
			if _, dup := o.m[k]; !dup {
				o.keys = append(o.keys, k)
			}
			o.m[k] = v
		}
		_, err := d.Token()
		return o, err
	case json.Delim('['):
		var a []any
		for d.More() {
			v, err := decodeOrdered(d)
			if err != nil {
				return nil, err
			}
			a = append(a, v)
		}
		_, err := d.Token()
		return a, err
	}
	return t, nil
}
