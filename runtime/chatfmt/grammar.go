package chatfmt

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/hearth-llm/hearth/runtime/grammar"
)

// Grammar is the constraint a turn generates under, or nil for none:
//
//   - tool choice required or a named function: the whole answer is the
//     format's call section (after the reasoning block, when the model
//     thinks), each call's arguments valid for its function's schema;
//   - auto: the same section as a lazy grammar, off until the format's
//     trigger (<tool_call>, [TOOL_CALLS], to=functions., ...) appears, so
//     free text is free and a call, once begun, always parses;
//   - no tools (or none): respond, the response format's own grammar
//     (which also wins over auto calls: a client asking for a JSON
//     document gets one).
func (f Format) Grammar(c *Conversation, o ParseOptions, respond *grammar.Grammar) (*grammar.Grammar, error) {
	forced := c.usesTools() && (c.Choice == ChoiceRequired || c.Choice == ChoiceFunction)
	if !forced && (respond != nil || !c.usesTools()) {
		return respond, nil
	}
	tools := c.Tools
	if c.Choice == ChoiceFunction {
		i := slices.IndexFunc(tools, func(t Tool) bool { return t.Name == c.Function })
		tools = tools[i : i+1]
	}
	calls, err := f.callSection(tools, c.Parallel)
	if err != nil {
		return nil, err
	}
	if forced {
		g, err := grammar.Compile(grammar.Seq(f.reasoningPrefix(c, o), calls.forced))
		if err != nil {
			return nil, fmt.Errorf("tools: %w", err)
		}
		return g, nil
	}
	g, err := grammar.Compile(calls.lazy)
	if err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	g, err = g.Lazy(calls.triggers...)
	if err != nil {
		return nil, fmt.Errorf("tools: %w", err)
	}
	return g, nil
}

// reasoningPrefix is what may come before a forced call: the reasoning
// block (required when the prompt opened it; none when the request turned
// thinking off, which holds models whose template cannot switch it off to
// it too), and whitespace.
func (f Format) reasoningPrefix(c *Conversation, o ParseOptions) grammar.Expr {
	off := c.Think.Set && !c.Think.On && c.Think.Effort == ""
	switch {
	case off && !o.InReasoning:
		return grammar.Ws()
	case f.Syntax == Harmony:
		analysis := grammar.Seq(grammar.Lit(hChannel+"analysis"+hMessage), grammar.TextUntil(hEnd, hChannel, hStart, hMessage), grammar.Lit(hEnd+hStart+"assistant"))
		return grammar.Opt(analysis)
	case f.ThinkEnd == "" || o.NoReasoning:
		return grammar.Ws()
	}
	// The reasoning may not spell a call's marker: the parser would take
	// it for the call (a call may end the reasoning).
	thought := grammar.TextUntil(append([]string{f.ThinkEnd}, f.callMarkers()...)...)
	if o.InReasoning {
		return grammar.Seq(thought, grammar.Lit(f.ThinkEnd), grammar.Ws())
	}
	block := grammar.Seq(grammar.Lit(f.ThinkStart), thought, grammar.Lit(f.ThinkEnd))
	return grammar.Seq(grammar.Ws(), grammar.Opt(block), grammar.Ws())
}

// callMarkers are the texts that open a call anywhere in the output.
func (f Format) callMarkers() []string {
	p := tagParser{f: f, o: ParseOptions{ParseTools: true}}
	return p.anywhere()
}

// section is a format's call section: forced is the whole answer's, lazy
// begins with one of the triggers.
type section struct {
	forced, lazy grammar.Expr
	triggers     []string
}

func (f Format) callSection(tools []Tool, parallel bool) (section, error) {
	many := func(one, sep grammar.Expr) grammar.Expr {
		if parallel {
			return grammar.Sep(one, sep, 1)
		}
		return one
	}
	alt := func(each func(t Tool, args grammar.Expr) grammar.Expr) grammar.Expr {
		var alts []grammar.Expr
		for _, t := range tools {
			alts = append(alts, each(t, schemaOf(t)))
		}
		return grammar.Alt(alts...)
	}
	named := func(nameKey, argsKey string) grammar.Expr {
		return alt(func(t Tool, args grammar.Expr) grammar.Expr {
			return grammar.Seq(grammar.Lit(`{"name": `+quote(t.Name)+`, "`+argsKey+`": `), args, grammar.Lit("}"))
		})
	}
	var s section
	switch f.Syntax {
	case Hermes:
		one := grammar.Seq(grammar.Lit("<tool_call>\n"), named("name", "arguments"), grammar.Lit("\n</tool_call>"))
		s.forced = many(one, grammar.Lit("\n"))
		s.lazy, s.triggers = s.forced, []string{"<tool_call>"}
	case QwenXML:
		one := grammar.Seq(grammar.Lit("<tool_call>\n"), alt(func(t Tool, _ grammar.Expr) grammar.Expr {
			return grammar.Seq(grammar.Lit("<function="+t.Name+">\n"), xmlParams(t), grammar.Lit("</function>\n</tool_call>"))
		}))
		s.forced = many(one, grammar.Lit("\n"))
		s.lazy, s.triggers = s.forced, []string{"<tool_call>"}
	case Llama3:
		s.forced = named("name", "parameters")
		s.lazy = grammar.Alt(grammar.Seq(grammar.Lit("<|python_tag|>"), s.forced), s.forced)
		s.triggers = []string{"<|python_tag|>", `{"name": "`}
	case MistralJSON:
		calls := many(named("name", "arguments"), grammar.Lit(", "))
		s.forced = grammar.Seq(grammar.Lit("[TOOL_CALLS]["), calls, grammar.Lit("]"))
		s.lazy, s.triggers = s.forced, []string{"[TOOL_CALLS]"}
	case MistralArgs:
		one := grammar.Seq(grammar.Lit("[TOOL_CALLS]"), alt(func(t Tool, args grammar.Expr) grammar.Expr {
			return grammar.Seq(grammar.Lit(t.Name+"[ARGS]"), args)
		}))
		s.forced = one
		if parallel {
			s.forced = grammar.Repeat(one, 1, -1)
		}
		s.lazy, s.triggers = s.forced, []string{"[TOOL_CALLS]"}
	case DeepSeekR1:
		one := grammar.Seq(grammar.Lit(dsCallBegin+"function"+dsSep), alt(func(t Tool, args grammar.Expr) grammar.Expr {
			return grammar.Seq(grammar.Lit(t.Name+"\n```json\n"), args)
		}), grammar.Lit("\n```"+dsCallEnd))
		s.forced = grammar.Seq(grammar.Lit(dsCallsBegin), many(one, grammar.Lit("\n")), grammar.Lit(dsCallsEnd))
		s.lazy, s.triggers = s.forced, []string{dsCallsBegin}
	case Gemma4:
		one := grammar.Seq(grammar.Lit(g4CallHead), alt(func(t Tool, _ grammar.Expr) grammar.Expr {
			return grammar.Seq(grammar.Lit(t.Name), gemmaArgs(t.Parameters))
		}), grammar.Lit(g4CallEnd))
		s.forced = one
		if parallel {
			s.forced = grammar.Repeat(one, 1, -1)
		}
		s.lazy, s.triggers = s.forced, []string{g4Call}
	case Harmony:
		// One call per message: the call ends the turn (<|call|>).
		header := grammar.Alt(grammar.Lit(" "+hConstrain+"json"+hMessage), grammar.Lit(hChannel+"commentary "+hConstrain+"json"+hMessage),
			grammar.Lit(hChannel+"commentary json"+hMessage))
		call := alt(func(t Tool, args grammar.Expr) grammar.Expr { return grammar.Seq(grammar.Lit(t.Name), header, args) })
		s.forced = grammar.Seq(grammar.Lit(hChannel+"commentary to=functions."), call)
		s.lazy, s.triggers = grammar.Seq(grammar.Lit(" to=functions."), call), []string{" to=functions."}
	default:
		calls := many(named("name", "arguments"), grammar.Lit(", "))
		s.forced = grammar.Seq(grammar.Lit(`{"tool_calls": [`), calls, grammar.Lit("]}"))
		s.lazy, s.triggers = s.forced, []string{`{"tool_calls"`}
	}
	return s, nil
}

// schemaOf is a tool's arguments schema; any object when it has none.
func schemaOf(t Tool) grammar.Expr {
	if len(t.Parameters) == 0 {
		return grammar.Schema([]byte(`{"type": "object"}`))
	}
	return grammar.Schema(t.Parameters)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}

// xmlParams are a tool's parameters as Qwen's XML writes them, in the
// schema's order: required ones present, optional ones skippable; a string
// parameter is raw text, any other its JSON value.
func xmlParams(t Tool) grammar.Expr {
	props, required := orderedProperties(t.Parameters)
	var parts []grammar.Expr
	for _, p := range props {
		value := xmlValue(p)
		one := grammar.Seq(grammar.Lit("<parameter="+p.name+">\n"), value, grammar.Lit("\n</parameter>\n"))
		if !slices.Contains(required, p.name) {
			one = grammar.Opt(one)
		}
		parts = append(parts, one)
	}
	return grammar.Seq(parts...)
}

// xmlValue is a parameter's value: raw text for a plain string (within
// its length bounds), one of the raw values of a string enum or const,
// else (other types, and strings with a pattern or format) its JSON, which
// the parser decodes.
func xmlValue(p property) grammar.Expr {
	if p.typ != "string" {
		return grammar.Schema(p.schema)
	}
	var s struct {
		Enum      []any  `json:"enum"`
		Const     any    `json:"const"`
		Pattern   string `json:"pattern"`
		Format    string `json:"format"`
		MinLength int    `json:"minLength"`
		MaxLength *int   `json:"maxLength"`
	}
	json.Unmarshal(p.schema, &s)
	if s.Const != nil {
		s.Enum = []any{s.Const}
	}
	if len(s.Enum) > 0 {
		var alts []grammar.Expr
		for _, v := range s.Enum {
			if str, ok := v.(string); ok && !strings.Contains(str, "</parameter>") {
				alts = append(alts, grammar.Lit(str))
			}
		}
		if len(alts) > 0 {
			return grammar.Alt(alts...)
		}
	}
	if s.Pattern != "" || s.Format != "" || len(s.Enum) > 0 {
		return grammar.Schema(p.schema)
	}
	return textLen(s.MinLength, s.MaxLength, "</parameter>")
}

type property struct {
	name, typ string
	schema    json.RawMessage
}

// orderedProperties reads a schema's properties in their order in the
// JSON text.
func orderedProperties(schema json.RawMessage) ([]property, []string) {
	var s struct {
		Properties json.RawMessage `json:"properties"`
		Required   []string        `json:"required"`
	}
	if len(schema) == 0 || json.Unmarshal(schema, &s) != nil || len(s.Properties) == 0 {
		return nil, nil
	}
	dec := json.NewDecoder(bytes.NewReader(s.Properties))
	if tok, err := dec.Token(); err != nil || tok != json.Delim('{') {
		return nil, s.Required
	}
	var out []property
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			break
		}
		name, _ := tok.(string)
		var raw json.RawMessage
		if dec.Decode(&raw) != nil {
			break
		}
		var typ struct {
			Type any `json:"type"`
		}
		json.Unmarshal(raw, &typ)
		t, _ := typ.Type.(string)
		out = append(out, property{name: name, typ: t, schema: raw})
	}
	return out, s.Required
}
