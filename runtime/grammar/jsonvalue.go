package grammar

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"unicode/utf8"
)

// jv is a parsed JSON value that keeps the order of object members, which
// the schema's property order needs.
type jv struct {
	kind jkind
	b    bool
	s    string // string value, or the number's text
	arr  []*jv
	obj  []jmember
}

type jkind uint8

const (
	jnull jkind = iota
	jbool
	jnum
	jstr
	jarr
	jobj
)

type jmember struct {
	key string
	val *jv
}

func (k jkind) String() string {
	return [...]string{"null", "boolean", "number", "string", "array", "object"}[k]
}

// get returns the member k of an object, or nil.
func (v *jv) get(k string) *jv {
	if v == nil || v.kind != jobj {
		return nil
	}
	for i := range v.obj {
		if v.obj[i].key == k {
			return v.obj[i].val
		}
	}
	return nil
}

// parseJSON parses one JSON document, rejecting trailing data, duplicate keys
// and nesting deeper than maxJSONDepth.
func parseJSON(data []byte) (*jv, error) { return parseJSONDup(data, false) }

// parseJSONDup is parseJSON, accepting duplicate keys when dup is set (the
// first occurrence is what get returns).
func parseJSONDup(data []byte, dup bool) (*jv, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	v, err := parseValue(dec, 0, dup)
	if err != nil {
		return nil, err
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, fmt.Errorf("%w: data after the schema", ErrInvalidSchema)
	}
	return v, nil
}

func parseValue(dec *json.Decoder, depth int, dup bool) (*jv, error) {
	if depth > maxJSONDepth {
		return nil, fmt.Errorf("%w: nested deeper than %d", ErrInvalidSchema, maxJSONDepth)
	}
	tok, err := dec.Token()
	if err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return nil, fmt.Errorf("%w: %v", ErrInvalidSchema, err)
	}
	switch t := tok.(type) {
	case nil:
		return &jv{kind: jnull}, nil
	case bool:
		return &jv{kind: jbool, b: t}, nil
	case json.Number:
		return &jv{kind: jnum, s: string(t)}, nil
	case string:
		return &jv{kind: jstr, s: t}, nil
	case json.Delim:
		v := &jv{kind: jarr}
		if t == '{' {
			v.kind = jobj
		}
		for dec.More() {
			if v.kind == jobj {
				kt, err := dec.Token()
				if err != nil {
					return nil, fmt.Errorf("%w: %v", ErrInvalidSchema, err)
				}
				k, _ := kt.(string)
				if !dup && v.get(k) != nil {
					return nil, fmt.Errorf("%w: duplicate key %q", ErrInvalidSchema, k)
				}
				val, err := parseValue(dec, depth+1, dup)
				if err != nil {
					return nil, err
				}
				v.obj = append(v.obj, jmember{k, val})
			} else {
				val, err := parseValue(dec, depth+1, dup)
				if err != nil {
					return nil, err
				}
				v.arr = append(v.arr, val)
			}
		}
		if _, err := dec.Token(); err != nil { // the closing delimiter
			return nil, fmt.Errorf("%w: %v", ErrInvalidSchema, err)
		}
		return v, nil
	}
	return nil, fmt.Errorf("%w: unexpected token %v", ErrInvalidSchema, tok)
}

// appendJSON appends the compact JSON text of v: no whitespace, object
// members in order, numbers as written, strings escaped minimally.
func appendJSON(dst []byte, v *jv) []byte {
	switch v.kind {
	case jnull:
		return append(dst, "null"...)
	case jbool:
		return strconv.AppendBool(dst, v.b)
	case jnum:
		return append(dst, v.s...)
	case jstr:
		return appendString(dst, v.s)
	case jarr:
		dst = append(dst, '[')
		for i, e := range v.arr {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendJSON(dst, e)
		}
		return append(dst, ']')
	default:
		dst = append(dst, '{')
		for i, m := range v.obj {
			if i > 0 {
				dst = append(dst, ',')
			}
			dst = appendString(dst, m.key)
			dst = append(dst, ':')
			dst = appendJSON(dst, m.val)
		}
		return append(dst, '}')
	}
}

// appendString appends s as a JSON string: '"', '\\' and control characters
// escaped (short forms where JSON has them), everything else raw UTF-8.
func appendString(dst []byte, s string) []byte {
	dst = append(dst, '"')
	for _, r := range s {
		dst = appendEscapedRune(dst, r)
	}
	return append(dst, '"')
}

func appendEscapedRune(dst []byte, r rune) []byte {
	switch r {
	case '"':
		return append(dst, `\"`...)
	case '\\':
		return append(dst, `\\`...)
	case '\b':
		return append(dst, `\b`...)
	case '\f':
		return append(dst, `\f`...)
	case '\n':
		return append(dst, `\n`...)
	case '\r':
		return append(dst, `\r`...)
	case '\t':
		return append(dst, `\t`...)
	}
	if r < 0x20 {
		const hex = "0123456789abcdef"
		return append(dst, '\\', 'u', '0', '0', hex[r>>4], hex[r&15])
	}
	return utf8.AppendRune(dst, r)
}

// equal reports whether a and b are the same JSON (numbers compared by text).
func (v *jv) equal(o *jv) bool {
	return bytes.Equal(appendJSON(nil, v), appendJSON(nil, o))
}

// number returns the value of a JSON number.
func (v *jv) number() (float64, bool) {
	if v == nil || v.kind != jnum {
		return 0, false
	}
	f, err := strconv.ParseFloat(v.s, 64)
	return f, err == nil || errors.Is(err, strconv.ErrRange)
}
