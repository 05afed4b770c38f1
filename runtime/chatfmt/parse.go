package chatfmt

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"errors"
	"io"
	"slices"
	"strings"
	"unicode"
)

// Tool is one function a request offers the model.
type Tool struct {
	Name        string
	Description string
	// Parameters is the JSON schema of the arguments object; nil: any
	// object.
	Parameters json.RawMessage
}

// Call is one function call the model made.
type Call struct {
	ID   string
	Name string
	// Arguments is a compact JSON object.
	Arguments string
}

// Delta is what a piece of output added: content, reasoning and the calls
// completed.
type Delta struct {
	Content, Reasoning string
	Calls              []Call
}

// Add appends o to d.
func (d *Delta) Add(o Delta) {
	d.Content += o.Content
	d.Reasoning += o.Reasoning
	d.Calls = append(d.Calls, o.Calls...)
}

// Empty reports whether d carries nothing.
func (d Delta) Empty() bool { return d.Content == "" && d.Reasoning == "" && len(d.Calls) == 0 }

// ParseOptions say what to look for in one generation's output.
type ParseOptions struct {
	// Tools offered; calls are parsed only when ParseTools is set.
	Tools      []Tool
	ParseTools bool
	// InReasoning: the prompt opened a reasoning block (the generation
	// prompt ends with the think tag), so output starts inside it.
	InReasoning bool
	// NoReasoning: reasoning is not separated (the client asked for
	// none and the model cannot reason anyway); think tags stay content.
	NoReasoning bool
}

// Parser splits a generation's text, as it streams, into content,
// reasoning and tool calls. Text that may begin a marker is held back until
// the next piece decides, so no marker ever reaches content.
type Parser interface {
	// Push adds generated text and returns what it completed.
	Push(text string) Delta
	// Finish ends the output: held text is released, and an unfinished
	// tool call that does not parse is returned as content.
	Finish() Delta
}

// NewParser starts parsing one generation's output.
func (f Format) NewParser(o ParseOptions) Parser {
	if f.Syntax == Harmony {
		return newHarmonyParser(o)
	}
	p := &tagParser{f: f, o: o, start: true}
	if o.InReasoning && f.ThinkEnd != "" && !o.NoReasoning {
		p.state = inReasoning
	}
	return p
}

// NewCallID makes an id for a call the model did not name: "call_" and 24
// random alphanumerics, like OpenAI's.
func NewCallID() string {
	const alnum = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
	var b [24]byte
	rand.Read(b[:])
	for i := range b {
		b[i] = alnum[int(b[i])%len(alnum)]
	}
	return "call_" + string(b[:])
}

type parseState int

const (
	inContent parseState = iota
	inReasoning
	inTools
)

// tagParser parses the formats whose markers are plain text (every syntax
// but Harmony).
type tagParser struct {
	f     Format
	o     ParseOptions
	state parseState
	buf   string
	// start: nothing but whitespace has been output yet (reasoning tags
	// and the JSON-only syntaxes are recognised only there).
	start bool
	// afterReasoning: strip whitespace before the content that follows.
	afterReasoning bool
	// sectionCalls counts the calls parsed in the current tool section.
	sectionCalls int
	// thinking: reasoning text has been emitted in the open block.
	thinking bool
	// gap is the whitespace held between content and a marker.
	gap string
}

// anywhere are the markers that open a tool section wherever they appear.
func (p *tagParser) anywhere() []string {
	if !p.o.ParseTools {
		return nil
	}
	switch p.f.Syntax {
	case Hermes:
		return []string{"<tool_call>"}
	case QwenXML:
		return []string{"<tool_call>", "<function="}
	case Llama3:
		// The second is how a constrained call begins.
		return []string{"<|python_tag|>", `{"name": "`}
	case MistralJSON, MistralArgs:
		return []string{"[TOOL_CALLS]"}
	case DeepSeekR1:
		return []string{dsCallsBegin, dsCallBegin}
	case Gemma4:
		return []string{g4Call}
	}
	return nil
}

// jsonOnly says calls are a bare JSON object as the whole answer.
func (p *tagParser) jsonOnly() bool {
	return p.o.ParseTools && (p.f.Syntax == Llama3 || p.f.Syntax == Generic)
}

func (p *tagParser) Push(text string) Delta {
	p.buf += text
	return p.step(false)
}

func (p *tagParser) Finish() Delta {
	return p.step(true)
}

// step consumes as much of buf as can be decided.
func (p *tagParser) step(final bool) Delta {
	var d Delta
	for {
		progressed := false
		switch p.state {
		case inReasoning:
			progressed = p.reasoning(&d, final)
		case inContent:
			progressed = p.content(&d, final)
		case inTools:
			progressed = p.tools(&d, final)
		}
		if !progressed {
			break
		}
	}
	if final && p.buf != "" {
		// Only held marker prefixes can be left: they were text.
		if p.state == inReasoning {
			d.Reasoning += p.buf
		} else {
			d.Content += p.buf
		}
		p.buf = ""
	}
	return d
}

func (p *tagParser) reasoning(d *Delta, final bool) bool {
	end := strings.Index(p.buf, p.f.ThinkEnd)
	// A tool call may also end the reasoning (Qwen 3.5 calls from inside
	// an unclosed think block).
	at, _ := firstOf(p.buf, p.anywhere())
	if end >= 0 && (at < 0 || end <= at) {
		p.think(d, p.buf[:end], true)
		p.buf = p.buf[end+len(p.f.ThinkEnd):]
		p.state, p.afterReasoning, p.start = inContent, true, false
		return true
	}
	if at >= 0 {
		p.think(d, p.buf[:at], true)
		p.buf = p.buf[at:]
		p.state, p.start = inTools, false
		p.sectionCalls = 0
		return true
	}
	if final {
		p.think(d, p.buf, true)
		p.buf = ""
		return false
	}
	keep := heldPrefix(p.buf, append([]string{p.f.ThinkEnd}, p.anywhere()...))
	// Whitespace before that is held too: reasoning is trimmed at both
	// ends.
	keep = len(p.buf) - len(strings.TrimRightFunc(p.buf[:len(p.buf)-keep], unicode.IsSpace))
	p.think(d, p.buf[:len(p.buf)-keep], false)
	p.buf = p.buf[len(p.buf)-keep:]
	return false
}

// think emits reasoning text without the whitespace at its start, and, when
// the block closes, at its end.
func (p *tagParser) think(d *Delta, text string, closing bool) {
	if !p.thinking {
		text = strings.TrimLeftFunc(text, unicode.IsSpace)
	}
	if closing {
		text = strings.TrimRightFunc(text, unicode.IsSpace)
		p.thinking = false
	} else if text != "" {
		p.thinking = true
	}
	d.Reasoning += text
}

func (p *tagParser) content(d *Delta, final bool) bool {
	if p.afterReasoning {
		t := strings.TrimLeftFunc(p.buf, unicode.IsSpace)
		if t == "" && !final {
			p.buf = ""
			return false
		}
		p.buf, p.afterReasoning = t, false
	}
	if p.start {
		// Whitespace before the answer is dropped.
		t := strings.TrimLeftFunc(p.buf, unicode.IsSpace)
		p.buf = t
		if t == "" {
			return false
		}
		if p.f.ThinkStart != "" && !p.o.NoReasoning {
			if strings.HasPrefix(t, p.f.ThinkStart) {
				p.buf = t[len(p.f.ThinkStart):]
				p.state, p.start = inReasoning, false
				return true
			}
			if strings.HasPrefix(p.f.ThinkStart, t) && !final {
				return false // may still become the tag
			}
		}
		if p.jsonOnly() && t[0] == '{' {
			p.buf = t
			p.state, p.start = inTools, false
			p.sectionCalls = 0
			return true
		}
		p.start = false
	}
	if at, _ := firstOf(p.buf, p.anywhere()); at >= 0 {
		// The whitespace between text and a call is neither's (unless
		// the call turns out to be text).
		text := strings.TrimRightFunc(p.buf[:at], unicode.IsSpace)
		d.Content += text
		p.gap = p.buf[len(text):at]
		p.buf = p.buf[at:]
		p.state = inTools
		p.sectionCalls = 0
		return true
	}
	if final {
		d.Content += p.buf
		p.buf = ""
		return false
	}
	keep := heldPrefix(p.buf, p.anywhere())
	if len(p.anywhere()) > 0 {
		// Trailing whitespace waits to see whether a call follows.
		keep = len(p.buf) - len(strings.TrimRightFunc(p.buf[:len(p.buf)-keep], unicode.IsSpace))
	}
	d.Content += p.buf[:len(p.buf)-keep]
	p.buf = p.buf[len(p.buf)-keep:]
	return false
}

// errMore: the call is not complete yet; errBad: it never will parse.
var (
	errMore = errors.New("incomplete")
	errBad  = errors.New("malformed")
)

func (p *tagParser) tools(d *Delta, final bool) bool {
	t := strings.TrimLeftFunc(p.buf, unicode.IsSpace)
	if t == "" {
		if final {
			p.buf = ""
		}
		return false
	}
	// Between calls: another call, or text that ends the section.
	if p.sectionCalls > 0 && !p.opensCall(t) {
		if !final && p.mayOpenCall(t) {
			return false
		}
		p.state = inContent
		p.buf = t
		return true
	}
	calls, n, err := p.parseCalls(t)
	switch {
	case err == nil:
		p.gap = ""
		d.Calls = append(d.Calls, calls...)
		p.sectionCalls += len(calls)
		p.buf = t[n:]
		return true
	case errors.Is(err, errMore) && !final:
		return false
	}
	// Malformed, or cut short: the marker was text after all. Its first
	// byte (ASCII in every syntax) goes to content and the rest is read
	// again, where a later marker may open a real call.
	d.Content += p.gap + t[:1]
	p.gap = ""
	p.buf = t[1:]
	p.state = inContent
	return true
}

// opensCall says t starts with a call.
func (p *tagParser) opensCall(t string) bool {
	if p.jsonOnly() {
		return t[0] == '{' || strings.HasPrefix(t, "<|python_tag|>") || t[0] == ';' || t[0] == ','
	}
	for _, m := range p.anywhere() {
		if strings.HasPrefix(t, m) {
			return true
		}
	}
	// Inside a section: Mistral's next [TOOL_CALLS] and DeepSeek's next
	// call or closing marker.
	return p.f.Syntax == DeepSeekR1 && strings.HasPrefix(t, dsCallsEnd)
}

// mayOpenCall says t is a prefix of something that opens a call.
func (p *tagParser) mayOpenCall(t string) bool {
	ms := p.anywhere()
	if p.f.Syntax == DeepSeekR1 {
		ms = append(ms, dsCallsEnd)
	}
	for _, m := range ms {
		if strings.HasPrefix(m, t) {
			return true
		}
	}
	return false
}

// parseCalls reads the calls at the start of t (which opens a call) and
// says how many bytes they took.
func (p *tagParser) parseCalls(t string) ([]Call, int, error) {
	switch p.f.Syntax {
	case Hermes:
		return parseHermes(t)
	case QwenXML:
		return parseQwenXML(t, p.o.Tools)
	case Llama3:
		return knownCalls(parseLlama3(t))(p.o.Tools)
	case MistralJSON:
		return parseMistralJSON(t)
	case MistralArgs:
		return parseMistralArgs(t)
	case DeepSeekR1:
		return parseDeepSeek(t)
	case Gemma4:
		return parseGemma4(t)
	}
	return knownCalls(parseGeneric(t))(p.o.Tools)
}

// knownCalls refuses calls of functions not offered, for the syntaxes
// whose calls are bare JSON (a JSON answer with a "name" is not a call
// unless it names a tool).
func knownCalls(calls []Call, n int, err error) func([]Tool) ([]Call, int, error) {
	return func(tools []Tool) ([]Call, int, error) {
		if err != nil || len(tools) == 0 {
			return calls, n, err
		}
		for _, c := range calls {
			if !slices.ContainsFunc(tools, func(t Tool) bool { return t.Name == c.Name }) {
				return nil, 0, errBad
			}
		}
		return calls, n, nil
	}
}

// firstOf finds the earliest of markers in s.
func firstOf(s string, markers []string) (at int, marker string) {
	at = -1
	for _, m := range markers {
		if i := strings.Index(s, m); i >= 0 && (at < 0 || i < at) {
			at, marker = i, m
		}
	}
	return at, marker
}

// heldPrefix is the length of the longest suffix of s that is a proper
// prefix of one of markers: text to hold back.
func heldPrefix(s string, markers []string) int {
	keep := 0
	for _, m := range markers {
		for k := min(len(m)-1, len(s)); k > keep; k-- {
			if strings.HasSuffix(s, m[:k]) {
				keep = k
				break
			}
		}
	}
	return keep
}

// jsonPrefix decodes the JSON value at the start of s.
func jsonPrefix(s string) (json.RawMessage, int, error) {
	dec := json.NewDecoder(strings.NewReader(s))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
			return nil, 0, errMore
		}
		return nil, 0, errBad
	}
	return v, int(dec.InputOffset()), nil
}

// arguments turns a call's arguments (an object, or a string holding one)
// into a compact JSON object.
func arguments(raw json.RawMessage) (string, error) {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return "{}", nil
	}
	if raw[0] == '"' {
		var s string
		if err := json.Unmarshal(raw, &s); err != nil {
			return "", errBad
		}
		raw = json.RawMessage(strings.TrimSpace(s))
		if len(raw) == 0 {
			return "{}", nil
		}
	}
	var buf bytes.Buffer
	if err := json.Compact(&buf, raw); err != nil || buf.Len() == 0 || buf.Bytes()[0] != '{' {
		return "", errBad
	}
	return buf.String(), nil
}

// namedCall is the JSON most syntaxes put a call in.
type namedCall struct {
	Name       string          `json:"name"`
	Arguments  json.RawMessage `json:"arguments"`
	Parameters json.RawMessage `json:"parameters"`
	ID         string          `json:"id"`
	// Function holds OpenAI's nesting ({"type": "function", "function":
	// {...}}) that some models copy.
	Function *namedCall `json:"function"`
}

func (c namedCall) call() (Call, error) {
	if c.Function != nil && c.Name == "" {
		id := c.ID
		c = *c.Function
		if c.ID == "" {
			c.ID = id
		}
	}
	if c.Name == "" {
		return Call{}, errBad
	}
	raw := c.Arguments
	if raw == nil {
		raw = c.Parameters
	}
	args, err := arguments(raw)
	if err != nil {
		return Call{}, err
	}
	id := c.ID
	if id == "" {
		id = NewCallID()
	}
	return Call{ID: id, Name: c.Name, Arguments: args}, nil
}

// jsonCall decodes one namedCall at the start of s.
func jsonCall(s string) (Call, int, error) {
	raw, n, err := jsonPrefix(s)
	if err != nil {
		return Call{}, 0, err
	}
	var nc namedCall
	if json.Unmarshal(raw, &nc) != nil || (nc.Function == nil && nc.Arguments == nil && nc.Parameters == nil) {
		return Call{}, 0, errBad // {"name": ...} alone is data, not a call
	}
	c, err := nc.call()
	return c, n, err
}

// expect consumes lit after optional whitespace at s[i:].
func expect(s string, i int, lit string) (int, error) {
	j := i + len(s[i:]) - len(strings.TrimLeftFunc(s[i:], unicode.IsSpace))
	rest := s[j:]
	switch {
	case strings.HasPrefix(rest, lit):
		return j + len(lit), nil
	case strings.HasPrefix(lit, rest):
		return 0, errMore
	}
	return 0, errBad
}

// parseHermes reads <tool_call>{json}</tool_call>.
func parseHermes(t string) ([]Call, int, error) {
	i, err := expect(t, 0, "<tool_call>")
	if err != nil {
		return nil, 0, err
	}
	j := i + len(t[i:]) - len(strings.TrimLeftFunc(t[i:], unicode.IsSpace))
	c, n, err := jsonCall(t[j:])
	if err != nil {
		return nil, 0, err
	}
	end, err := expect(t, j+n, "</tool_call>")
	if err != nil {
		return nil, 0, err
	}
	return []Call{c}, end, nil
}

// parseLlama3 reads [<|python_tag|>]{"name", "parameters"}, and the ; or ,
// some models put between calls.
func parseLlama3(t string) ([]Call, int, error) {
	i := 0
	if t[0] == ';' || t[0] == ',' {
		i = 1
	}
	if rest := strings.TrimLeftFunc(t[i:], unicode.IsSpace); strings.HasPrefix(rest, "<|python_tag|>") {
		i = len(t) - len(rest) + len("<|python_tag|>")
	} else if strings.HasPrefix("<|python_tag|>", rest) {
		return nil, 0, errMore
	}
	j := i + len(t[i:]) - len(strings.TrimLeftFunc(t[i:], unicode.IsSpace))
	if j == len(t) {
		return nil, 0, errMore
	}
	c, n, err := jsonCall(t[j:])
	if err != nil {
		return nil, 0, err
	}
	return []Call{c}, j + n, nil
}

// parseGeneric reads Hearth's generic {"tool_calls": [...]} (or a single
// {"tool_call": {...}}).
func parseGeneric(t string) ([]Call, int, error) {
	raw, n, err := jsonPrefix(t)
	if err != nil {
		return nil, 0, err
	}
	var v struct {
		ToolCalls []namedCall `json:"tool_calls"`
		ToolCall  *namedCall  `json:"tool_call"`
	}
	if json.Unmarshal(raw, &v) != nil {
		return nil, 0, errBad
	}
	if v.ToolCall != nil {
		v.ToolCalls = append(v.ToolCalls, *v.ToolCall)
	}
	if len(v.ToolCalls) == 0 {
		return nil, 0, errBad
	}
	calls := make([]Call, 0, len(v.ToolCalls))
	for _, nc := range v.ToolCalls {
		c, err := nc.call()
		if err != nil {
			return nil, 0, err
		}
		calls = append(calls, c)
	}
	return calls, n, nil
}

// parseMistralJSON reads [TOOL_CALLS][{...}, ...].
func parseMistralJSON(t string) ([]Call, int, error) {
	i, err := expect(t, 0, "[TOOL_CALLS]")
	if err != nil {
		return nil, 0, err
	}
	j := i + len(t[i:]) - len(strings.TrimLeftFunc(t[i:], unicode.IsSpace))
	if j == len(t) {
		return nil, 0, errMore
	}
	raw, n, err := jsonPrefix(t[j:])
	if err != nil {
		return nil, 0, err
	}
	var ncs []namedCall
	if json.Unmarshal(raw, &ncs) != nil {
		var one namedCall
		if json.Unmarshal(raw, &one) != nil {
			return nil, 0, errBad
		}
		ncs = []namedCall{one}
	}
	if len(ncs) == 0 {
		return nil, 0, errBad
	}
	calls := make([]Call, 0, len(ncs))
	for _, nc := range ncs {
		c, err := nc.call()
		if err != nil {
			return nil, 0, err
		}
		calls = append(calls, c)
	}
	return calls, j + n, nil
}

// parseMistralArgs reads [TOOL_CALLS]NAME[CALL_ID]ID[ARGS]{...}.
func parseMistralArgs(t string) ([]Call, int, error) {
	i, err := expect(t, 0, "[TOOL_CALLS]")
	if err != nil {
		return nil, 0, err
	}
	rest := t[i:]
	at, marker := firstOf(rest, []string{"[ARGS]", "[CALL_ID]"})
	if at < 0 {
		if len(rest) > 256 {
			return nil, 0, errBad
		}
		return nil, 0, errMore
	}
	c := Call{Name: strings.TrimSpace(rest[:at])}
	if c.Name == "" || strings.ContainsAny(c.Name, " \n{[") {
		return nil, 0, errBad
	}
	i += at + len(marker)
	if marker == "[CALL_ID]" {
		k := strings.Index(t[i:], "[ARGS]")
		if k < 0 {
			if len(t)-i > 64 {
				return nil, 0, errBad
			}
			return nil, 0, errMore
		}
		c.ID = strings.TrimSpace(t[i : i+k])
		i += k + len("[ARGS]")
	}
	j := i + len(t[i:]) - len(strings.TrimLeftFunc(t[i:], unicode.IsSpace))
	if j == len(t) {
		return nil, 0, errMore
	}
	raw, n, err := jsonPrefix(t[j:])
	if err != nil {
		return nil, 0, err
	}
	if c.Arguments, err = arguments(raw); err != nil {
		return nil, 0, err
	}
	if c.ID == "" {
		c.ID = NewCallID()
	}
	return []Call{c}, j + n, nil
}

// parseDeepSeek reads DeepSeek R1's calls section, a call at a time; the
// section's closing marker is consumed with no call.
func parseDeepSeek(t string) ([]Call, int, error) {
	i := 0
	if strings.HasPrefix(t, dsCallsEnd) {
		return nil, len(dsCallsEnd), nil
	}
	if strings.HasPrefix(t, dsCallsBegin) {
		i = len(dsCallsBegin)
	}
	i, err := expect(t, i, dsCallBegin)
	if err != nil {
		return nil, 0, err
	}
	sep := strings.Index(t[i:], dsSep)
	if sep < 0 {
		if len(t)-i > 32 {
			return nil, 0, errBad
		}
		return nil, 0, errMore
	}
	i += sep + len(dsSep)
	nl := strings.IndexByte(t[i:], '\n')
	if nl < 0 {
		return nil, 0, errMore
	}
	c := Call{Name: strings.TrimSpace(t[i : i+nl])}
	if c.Name == "" {
		return nil, 0, errBad
	}
	i += nl + 1
	if i, err = expect(t, i, "```json"); err != nil {
		return nil, 0, err
	}
	j := i + len(t[i:]) - len(strings.TrimLeftFunc(t[i:], unicode.IsSpace))
	if j == len(t) {
		return nil, 0, errMore
	}
	raw, n, err := jsonPrefix(t[j:])
	if err != nil {
		return nil, 0, err
	}
	if c.Arguments, err = arguments(raw); err != nil {
		return nil, 0, err
	}
	i = j + n
	if i, err = expect(t, i, "```"); err != nil {
		return nil, 0, err
	}
	if i, err = expect(t, i, dsCallEnd); err != nil {
		return nil, 0, err
	}
	c.ID = NewCallID()
	return []Call{c}, i, nil
}

// parseQwenXML reads <tool_call><function=NAME><parameter=P>V</parameter>
// </function></tool_call>; <tool_call> may be missing (Qwen3-Coder). A
// value is raw text for a string parameter, else JSON when it parses.
func parseQwenXML(t string, tools []Tool) ([]Call, int, error) {
	i := 0
	wrapped := false
	if j, err := expect(t, 0, "<tool_call>"); err == nil {
		i, wrapped = j, true
	} else if errors.Is(err, errMore) {
		return nil, 0, err
	}
	i, err := expect(t, i, "<function=")
	if err != nil {
		return nil, 0, err
	}
	gt := strings.IndexByte(t[i:], '>')
	if gt < 0 {
		if len(t)-i > 256 {
			return nil, 0, errBad
		}
		return nil, 0, errMore
	}
	name := strings.TrimSpace(t[i : i+gt])
	if name == "" {
		return nil, 0, errBad
	}
	i += gt + 1
	types := paramTypes(tools, name)
	args := map[string]json.RawMessage{}
	var order []string
	for {
		j := i + len(t[i:]) - len(strings.TrimLeftFunc(t[i:], unicode.IsSpace))
		rest := t[j:]
		if strings.HasPrefix(rest, "</function>") {
			i = j + len("</function>")
			break
		}
		if !strings.HasPrefix(rest, "<parameter=") {
			if strings.HasPrefix("<parameter=", rest) || strings.HasPrefix("</function>", rest) {
				return nil, 0, errMore
			}
			return nil, 0, errBad
		}
		j += len("<parameter=")
		gt := strings.IndexByte(t[j:], '>')
		if gt < 0 {
			return nil, 0, errMore
		}
		key := strings.TrimSpace(t[j : j+gt])
		j += gt + 1
		end := strings.Index(t[j:], "</parameter>")
		if end < 0 {
			return nil, 0, errMore
		}
		val := t[j : j+end]
		val = strings.TrimPrefix(val, "\n")
		val = strings.TrimSuffix(val, "\n")
		if _, dup := args[key]; !dup {
			order = append(order, key)
		}
		args[key] = paramValue(val, types[key])
		i = j + end + len("</parameter>")
	}
	if wrapped {
		if i, err = expect(t, i, "</tool_call>"); err != nil {
			return nil, 0, err
		}
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for k, key := range order {
		if k > 0 {
			b.WriteByte(',')
		}
		kb, _ := json.Marshal(key)
		b.Write(kb)
		b.WriteByte(':')
		b.Write(args[key])
	}
	b.WriteByte('}')
	return []Call{{ID: NewCallID(), Name: name, Arguments: b.String()}}, i, nil
}

// paramTypes maps a tool's parameters to their schema types.
func paramTypes(tools []Tool, name string) map[string]string {
	out := map[string]string{}
	for _, t := range tools {
		if t.Name != name || t.Parameters == nil {
			continue
		}
		var s struct {
			Properties map[string]struct {
				Type json.RawMessage `json:"type"`
			} `json:"properties"`
		}
		if json.Unmarshal(t.Parameters, &s) != nil {
			continue
		}
		for k, p := range s.Properties {
			var one string
			if json.Unmarshal(p.Type, &one) == nil {
				out[k] = one
			}
		}
	}
	return out
}

// paramValue is one XML parameter value as JSON: a string parameter's
// raw text, unless it is written as a JSON string (constrained strings
// are, see xmlValue).
func paramValue(val, typ string) json.RawMessage {
	if t := strings.TrimSpace(val); typ == "string" && len(t) >= 2 && t[0] == '"' && json.Valid([]byte(t)) {
		return json.RawMessage(t)
	}
	if typ != "string" {
		if t := strings.TrimSpace(val); t != "" && json.Valid([]byte(t)) {
			var b bytes.Buffer
			json.Compact(&b, []byte(t))
			return b.Bytes()
		}
	}
	b, _ := json.Marshal(val)
	return b
}
