package chatfmt

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"

	"github.com/hearth-llm/hearth/runtime/grammar"
)

// Gemma 4's markers: a call is <|tool_call>call:NAME{key:value,...}<tool_call|>
// whose values are Gemma's own notation: strings between <|"|> quotes,
// bare keys, JSON numbers, booleans and null, nested {...} and [...].
// Reasoning is the thought channel, <|channel>thought ... <channel|>.
const (
	g4Call     = "<|tool_call>"
	g4CallEnd  = "<tool_call|>"
	g4Quote    = `<|"|>`
	g4Thought  = "<|channel>thought"
	g4Channel  = "<channel|>"
	g4CallHead = g4Call + "call:"
)

// parseGemma4 reads one call.
func parseGemma4(t string) ([]Call, int, error) {
	i, err := expect(t, 0, g4CallHead)
	if err != nil {
		return nil, 0, err
	}
	brace := strings.IndexByte(t[i:], '{')
	if brace < 0 {
		if len(t)-i > 256 {
			return nil, 0, errBad
		}
		return nil, 0, errMore
	}
	name := strings.TrimSpace(t[i : i+brace])
	if name == "" || strings.ContainsAny(name, " \n<") {
		return nil, 0, errBad
	}
	args, n, err := gemmaValue(t, i+brace, 0)
	if err != nil {
		return nil, 0, err
	}
	end, err := expect(t, n, g4CallEnd)
	if err != nil {
		return nil, 0, err
	}
	a, err := arguments(args)
	if err != nil {
		return nil, 0, err
	}
	return []Call{{ID: NewCallID(), Name: name, Arguments: a}}, end, nil
}

// gemmaValue reads one value of Gemma's notation at s[i:] as JSON.
func gemmaValue(s string, i, depth int) (json.RawMessage, int, error) {
	if depth > 32 {
		return nil, 0, errBad
	}
	for i < len(s) && (s[i] == ' ' || s[i] == '\n') {
		i++
	}
	if i == len(s) {
		return nil, 0, errMore
	}
	rest := s[i:]
	switch {
	case strings.HasPrefix(rest, g4Quote):
		end := strings.Index(rest[len(g4Quote):], g4Quote)
		if end < 0 {
			return nil, 0, errMore
		}
		b, _ := json.Marshal(rest[len(g4Quote) : len(g4Quote)+end])
		return b, i + 2*len(g4Quote) + end, nil
	case strings.HasPrefix(g4Quote, rest):
		return nil, 0, errMore
	case rest[0] == '{':
		return gemmaObject(s, i+1, depth)
	case rest[0] == '[':
		var b bytes.Buffer
		b.WriteByte('[')
		i++
		for k := 0; ; k++ {
			for i < len(s) && s[i] == ' ' {
				i++
			}
			if i == len(s) {
				return nil, 0, errMore
			}
			if s[i] == ']' {
				b.WriteByte(']')
				return b.Bytes(), i + 1, nil
			}
			if k > 0 {
				if s[i] != ',' {
					return nil, 0, errBad
				}
				i++
				b.WriteByte(',')
			}
			v, n, err := gemmaValue(s, i, depth+1)
			if err != nil {
				return nil, 0, err
			}
			b.Write(v)
			i = n
		}
	}
	// A scalar: up to the next delimiter, then JSON.
	end := strings.IndexAny(rest, ",}]<")
	if end < 0 {
		return nil, 0, errMore
	}
	lit := strings.TrimSpace(rest[:end])
	var v any
	if lit == "" || json.Unmarshal([]byte(lit), &v) != nil {
		return nil, 0, errBad
	}
	if _, isStr := v.(string); isStr {
		return nil, 0, errBad
	}
	return json.RawMessage(lit), i + end, nil
}

// gemmaObject reads {key:value,...} after its brace; keys are bare or
// quoted.
func gemmaObject(s string, i, depth int) (json.RawMessage, int, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	for k := 0; ; k++ {
		for i < len(s) && (s[i] == ' ' || s[i] == '\n') {
			i++
		}
		if i == len(s) {
			return nil, 0, errMore
		}
		if s[i] == '}' {
			b.WriteByte('}')
			return b.Bytes(), i + 1, nil
		}
		if k > 0 {
			if s[i] != ',' {
				return nil, 0, errBad
			}
			i++
			b.WriteByte(',')
		}
		var key string
		rest := s[i:]
		if strings.HasPrefix(rest, g4Quote) {
			end := strings.Index(rest[len(g4Quote):], g4Quote)
			if end < 0 {
				return nil, 0, errMore
			}
			key = rest[len(g4Quote) : len(g4Quote)+end]
			i += 2*len(g4Quote) + end
		} else {
			colon := strings.IndexByte(rest, ':')
			if colon < 0 {
				if len(rest) > 256 {
					return nil, 0, errBad
				}
				return nil, 0, errMore
			}
			key = strings.TrimSpace(rest[:colon])
			if key == "" || strings.ContainsAny(key, "{}[],<") {
				return nil, 0, errBad
			}
			i += colon
		}
		if i == len(s) {
			return nil, 0, errMore
		}
		if s[i] != ':' {
			return nil, 0, errBad
		}
		kb, _ := json.Marshal(key)
		b.Write(kb)
		b.WriteByte(':')
		v, n, err := gemmaValue(s, i+1, depth+1)
		if err != nil {
			return nil, 0, err
		}
		b.Write(v)
		i = n
	}
}

// gemmaArgs is the grammar of a function's arguments in Gemma's notation:
// the schema's properties in sorted order (the template writes them so),
// required ones present, optional ones skippable, each value as
// gemmaSchemaValue spells it.
func gemmaArgs(schema json.RawMessage) grammar.Expr {
	var s struct {
		Properties map[string]json.RawMessage `json:"properties"`
		Required   []string                   `json:"required"`
	}
	json.Unmarshal(schema, &s)
	names := make([]string, 0, len(s.Properties))
	for k := range s.Properties {
		names = append(names, k)
	}
	sort.Strings(names)
	required := map[string]bool{}
	for _, r := range s.Required {
		required[r] = true
	}
	// members(i, first) is the members from names[i] on, first saying no
	// member was written yet (so no comma before the next). Optional
	// members branch; more than a dozen of them would blow the grammar up,
	// so past that they are all written (a stricter, still valid, form).
	optional := 0
	for _, n := range names {
		if !required[n] {
			optional++
		}
	}
	var members func(i int, first bool) grammar.Expr
	members = func(i int, first bool) grammar.Expr {
		if i == len(names) {
			return grammar.Seq()
		}
		sep := grammar.Lit(",")
		if first {
			sep = grammar.Seq()
		}
		one := grammar.Seq(sep, grammar.Lit(names[i]+":"), gemmaSchemaValue(s.Properties[names[i]], 0), members(i+1, false))
		if required[names[i]] || optional > 12 {
			return one
		}
		return grammar.Alt(one, members(i+1, first))
	}
	return grammar.Seq(grammar.Lit("{"), members(0, true), grammar.Lit("}"))
}

// textLen is text between a schema's length bounds, up to stop (past
// grammar's bound on TextLen, the upper one is dropped).
func textLen(minLen int, maxLen *int, stop string) grammar.Expr {
	hi := -1
	if maxLen != nil && *maxLen <= 4096 {
		hi = *maxLen
	}
	if minLen < 0 || minLen > 4096 || (hi >= 0 && hi < minLen) {
		minLen = 0
	}
	return grammar.TextLen(minLen, hi, stop)
}

// gemmaSchemaValue is one value of a schema in Gemma's notation: strings
// between <|"|> (an enum's values literally), numbers, integers, booleans
// and null as JSON spells them, objects and arrays recursively.
func gemmaSchemaValue(schema json.RawMessage, depth int) grammar.Expr {
	var s struct {
		Type       any                        `json:"type"`
		Enum       []any                      `json:"enum"`
		Properties map[string]json.RawMessage `json:"properties"`
		Items      json.RawMessage            `json:"items"`
		MinLength  int                        `json:"minLength"`
		MaxLength  *int                       `json:"maxLength"`
	}
	json.Unmarshal(schema, &s)
	str := func(text grammar.Expr) grammar.Expr {
		return grammar.Seq(grammar.Lit(g4Quote), text, grammar.Lit(g4Quote))
	}
	if len(s.Enum) > 0 {
		var alts []grammar.Expr
		for _, v := range s.Enum {
			if x, ok := v.(string); ok {
				alts = append(alts, str(grammar.Lit(x)))
			} else if b, err := json.Marshal(v); err == nil {
				alts = append(alts, grammar.Lit(string(b)))
			}
		}
		return grammar.Alt(alts...)
	}
	typ, _ := s.Type.(string)
	switch {
	case typ == "string":
		return str(textLen(s.MinLength, s.MaxLength, g4Quote))
	case typ == "object" && depth < 4:
		return gemmaArgs(schema)
	case typ == "array" && depth < 4:
		item := gemmaSchemaValue(s.Items, depth+1)
		return grammar.Seq(grammar.Lit("["), grammar.Opt(grammar.Sep(item, grammar.Lit(","), 1)), grammar.Lit("]"))
	case typ == "integer" || typ == "number" || typ == "boolean" || typ == "null":
		return grammar.Schema(schema)
	}
	// Anything else (no type, several types, deep nesting): a string.
	return str(grammar.TextUntil(g4Quote))
}
