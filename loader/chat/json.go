package chat

import (
	"fmt"
	"math"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/nikolalohinski/gonja/v2/exec"
)

// filterToJSON is HF's tojson: json.dumps(x, ensure_ascii=False, indent=None,
// separators=None, sort_keys=False), so its output matches Python's byte for
// byte: ", " and ": " separators without indent, "," and ": " with it, no
// HTML escaping, floats as Python's repr. One difference: Go maps have no
// order, so keys of dicts that came from Go maps (messages, Options.Extra,
// namespace) are written sorted; dict literals written in the template keep
// their order.
func filterToJSON(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	j := jsonWriter{itemSep: ", ", keySep: ": ", limit: defaultMaxBytes}
	if st, err := stateOf(e.Environment.Context); err == nil {
		j.limit = st.limits.MaxValueBytes
	}
	arg := func(i int, name string) *exec.Value {
		if v, ok := params.KwArgs[name]; ok {
			return v
		}
		if i < len(params.Args) {
			return params.Args[i]
		}
		return nil
	}
	for name := range params.KwArgs {
		switch name {
		case "ensure_ascii", "indent", "separators", "sort_keys":
		default:
			return exec.AsValue(fmt.Errorf("tojson: unexpected argument %q", name))
		}
	}
	if v := arg(0, "ensure_ascii"); v != nil {
		j.ascii = v.IsTrue()
	}
	if v := arg(1, "indent"); v != nil && !v.IsNil() {
		switch {
		case v.IsInteger():
			n := v.Integer()
			if n < 0 {
				n = 0
			}
			if n > 64 {
				return exec.AsValue(fmt.Errorf("%w: tojson indent %d (limit 64)", ErrLimit, n))
			}
			j.indent = strings.Repeat(" ", n)
		case v.IsString():
			if len(v.String()) > 64 {
				return exec.AsValue(fmt.Errorf("%w: tojson indent string over 64 bytes", ErrLimit))
			}
			j.indent = v.String()
		default:
			return exec.AsValue(fmt.Errorf("tojson: indent must be an integer or a string"))
		}
		j.indented = true
		j.itemSep = ","
	}
	if v := arg(2, "separators"); v != nil && !v.IsNil() {
		if !v.IsList() || v.Len() != 2 {
			return exec.AsValue(fmt.Errorf("tojson: separators must be a pair of strings"))
		}
		j.itemSep, j.keySep = v.Index(0).String(), v.Index(1).String()
	}
	if v := arg(3, "sort_keys"); v != nil {
		j.sortKeys = v.IsTrue()
	}
	if err := j.value(reflect.ValueOf(in), 0); err != nil {
		return exec.AsValue(err)
	}
	return exec.AsSafeValue(j.b.String())
}

type jsonWriter struct {
	b               strings.Builder
	itemSep, keySep string
	indent          string
	indented        bool
	ascii, sortKeys bool
	limit           int
}

var valueType = reflect.TypeFor[*exec.Value]()

func (j *jsonWriter) newline(depth int) {
	if !j.indented {
		return
	}
	j.b.WriteByte('\n')
	for range depth {
		j.b.WriteString(j.indent)
	}
}

func (j *jsonWriter) value(v reflect.Value, depth int) error {
	if j.b.Len() > j.limit {
		return fmt.Errorf("%w: tojson output over %d bytes", ErrLimit, j.limit)
	}
	if depth > maxMeasureDepth {
		return fmt.Errorf("tojson: circular reference or nesting deeper than %d", maxMeasureDepth)
	}
	for v.IsValid() && (v.Kind() == reflect.Interface || v.Kind() == reflect.Pointer) {
		if v.IsNil() {
			j.b.WriteString("null")
			return nil
		}
		if v.Type() == valueType {
			v = v.Interface().(*exec.Value).Val
			continue
		}
		if v.Type() == reflect.TypeFor[*exec.Dict]() {
			return j.dict(v.Interface().(*exec.Dict), depth)
		}
		v = v.Elem()
	}
	if !v.IsValid() {
		j.b.WriteString("null")
		return nil
	}
	switch v.Kind() {
	case reflect.Bool:
		if v.Bool() {
			j.b.WriteString("true")
		} else {
			j.b.WriteString("false")
		}
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		j.b.WriteString(strconv.FormatInt(v.Int(), 10))
	case reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		j.b.WriteString(strconv.FormatUint(v.Uint(), 10))
	case reflect.Float32, reflect.Float64:
		j.b.WriteString(pyFloat(v.Float()))
	case reflect.String:
		j.str(v.String())
	case reflect.Slice, reflect.Array:
		if v.Len() == 0 {
			j.b.WriteString("[]")
			return nil
		}
		j.b.WriteByte('[')
		for i := 0; i < v.Len(); i++ {
			if i > 0 {
				j.b.WriteString(j.itemSep)
			}
			j.newline(depth + 1)
			if err := j.value(v.Index(i), depth+1); err != nil {
				return err
			}
		}
		j.newline(depth)
		j.b.WriteByte(']')
	case reflect.Map:
		keys := v.MapKeys()
		names := make([]string, len(keys))
		for i, k := range keys {
			names[i] = keyString(k)
		}
		order := make([]int, len(keys))
		for i := range order {
			order[i] = i
		}
		slices.SortFunc(order, func(a, b int) int { return strings.Compare(names[a], names[b]) })
		if len(keys) == 0 {
			j.b.WriteString("{}")
			return nil
		}
		j.b.WriteByte('{')
		for n, i := range order {
			if n > 0 {
				j.b.WriteString(j.itemSep)
			}
			j.newline(depth + 1)
			j.str(names[i])
			j.b.WriteString(j.keySep)
			if err := j.value(v.MapIndex(keys[i]), depth+1); err != nil {
				return err
			}
		}
		j.newline(depth)
		j.b.WriteByte('}')
	case reflect.Struct:
		if v.Type() == reflect.TypeFor[exec.Dict]() {
			d := v.Interface().(exec.Dict)
			return j.dict(&d, depth)
		}
		if t, ok := v.Interface().(time.Time); ok {
			j.str(t.Format(time.RFC3339Nano))
			return nil
		}
		return fmt.Errorf("tojson: object of type %s is not JSON serializable", v.Type())
	default:
		return fmt.Errorf("tojson: object of type %s is not JSON serializable", v.Type())
	}
	return nil
}

func (j *jsonWriter) dict(d *exec.Dict, depth int) error {
	if len(d.Pairs) == 0 {
		j.b.WriteString("{}")
		return nil
	}
	pairs := d.Pairs
	if j.sortKeys {
		pairs = slices.Clone(pairs)
		slices.SortStableFunc(pairs, func(a, b *exec.Pair) int {
			return strings.Compare(keyString(reflect.ValueOf(a.Key)), keyString(reflect.ValueOf(b.Key)))
		})
	}
	j.b.WriteByte('{')
	for n, p := range pairs {
		if n > 0 {
			j.b.WriteString(j.itemSep)
		}
		j.newline(depth + 1)
		j.str(keyString(reflect.ValueOf(p.Key)))
		j.b.WriteString(j.keySep)
		if err := j.value(reflect.ValueOf(p.Value), depth+1); err != nil {
			return err
		}
	}
	j.newline(depth)
	j.b.WriteByte('}')
	return nil
}

// keyString is how json.dumps writes a dict key: strings as they are,
// numbers as numbers, True/False/None as true/false/null.
func keyString(k reflect.Value) string {
	for k.IsValid() && (k.Kind() == reflect.Interface || k.Kind() == reflect.Pointer) {
		if k.IsNil() {
			return "null"
		}
		if k.Type() == valueType {
			k = k.Interface().(*exec.Value).Val
			continue
		}
		k = k.Elem()
	}
	if !k.IsValid() {
		return "null"
	}
	switch k.Kind() {
	case reflect.String:
		return k.String()
	case reflect.Bool:
		return strconv.FormatBool(k.Bool())
	case reflect.Float32, reflect.Float64:
		return pyFloat(k.Float())
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
		return strconv.FormatInt(k.Int(), 10)
	}
	return fmt.Sprint(k.Interface())
}

// str writes s as json.dumps does: ", \, \b, \f, \n, \r, \t and other
// control characters escaped; with ensure_ascii, everything outside ASCII
// printable as \uXXXX (surrogate pairs above the BMP). Invalid UTF-8 becomes
// U+FFFD.
func (j *jsonWriter) str(s string) {
	const hex = "0123456789abcdef"
	u4 := func(r rune) {
		j.b.WriteString(`\u`)
		j.b.WriteByte(hex[r>>12&0xf])
		j.b.WriteByte(hex[r>>8&0xf])
		j.b.WriteByte(hex[r>>4&0xf])
		j.b.WriteByte(hex[r&0xf])
	}
	j.b.WriteByte('"')
	for _, r := range s { // invalid bytes arrive as utf8.RuneError
		switch r {
		case '"':
			j.b.WriteString(`\"`)
		case '\\':
			j.b.WriteString(`\\`)
		case '\b':
			j.b.WriteString(`\b`)
		case '\f':
			j.b.WriteString(`\f`)
		case '\n':
			j.b.WriteString(`\n`)
		case '\r':
			j.b.WriteString(`\r`)
		case '\t':
			j.b.WriteString(`\t`)
		default:
			switch {
			case r < 0x20:
				u4(r)
			case j.ascii && r > 0x7e:
				if r > 0xffff {
					r -= 0x10000
					u4(0xd800 + r>>10)
					u4(0xdc00 + r&0x3ff)
				} else {
					u4(r)
				}
			default:
				j.b.WriteRune(r)
			}
		}
	}
	j.b.WriteByte('"')
}

// pyFloat formats f as Python's repr (and so json.dumps) does: the shortest
// round-trip digits, fixed notation for 1e-4 <= |f| < 1e16 with at least one
// decimal, exponent notation with a two-digit exponent otherwise.
func pyFloat(f float64) string {
	switch {
	case math.IsNaN(f):
		return "NaN"
	case math.IsInf(f, 1):
		return "Infinity"
	case math.IsInf(f, -1):
		return "-Infinity"
	}
	e := strconv.FormatFloat(f, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.IndexByte(e, 'e')+1:])
	if f != 0 && (exp < -4 || exp >= 16) {
		return e
	}
	s := strconv.FormatFloat(f, 'f', -1, 64)
	if !strings.ContainsAny(s, ".") {
		s += ".0"
	}
	return s
}
