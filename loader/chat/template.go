package chat

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/loaders"
)

var (
	// ErrLimit means a render passed one of its Limits (time, steps,
	// macro depth, output or value size). The template, not the caller's
	// messages, is normally at fault.
	ErrLimit = errors.New("chat: template render limit exceeded")
	// ErrUnsupported means the template uses a construct Hearth does not
	// render (file access such as {% include %}, recursive for-loops, a
	// reserved name, nesting deeper than the parser allows).
	ErrUnsupported = errors.New("chat: unsupported template construct")
	// ErrSyntax wraps the parser's message for a malformed template.
	ErrSyntax = errors.New("chat: template syntax error")
)

// RaiseError is the error a template raises with raise_exception(message),
// such as "Conversation roles must alternate user/assistant/...". Its message
// is meant for the client that sent the conversation.
type RaiseError struct {
	Message string
}

func (e *RaiseError) Error() string { return "chat: template raised: " + e.Message }

// Message is one turn of a conversation. The optional fields are passed to
// the template only when set, so a template's `message.tool_calls is
// defined` stays false for plain turns.
type Message struct {
	Role    string
	Content string
	// Thinking is an assistant turn's reasoning, bound as both
	// reasoning_content (Qwen, DeepSeek, the OpenAI-compatible spelling)
	// and thinking (gpt-oss, Ollama).
	Thinking string
	// ToolCalls are the functions an assistant turn called, bound as
	// tool_calls: [{id, type: "function", function: {name, arguments}}].
	ToolCalls []ToolCall
	// ToolCallID (tool_call_id) and Name (name and tool_name) say which
	// call a tool turn answers.
	ToolCallID, Name string
}

// ToolCall is one function call in an assistant turn. Arguments is what the
// template sees under function.arguments: normally the decoded JSON object
// (templates iterate it or apply tojson), a string when the caller only has
// text.
type ToolCall struct {
	ID        string
	Name      string
	Arguments any
}

// Options are the per-render inputs besides the messages.
type Options struct {
	// BOSToken and EOSToken are the model's special-token texts
	// (tokenizer.ggml.bos_token_id's piece), bound to bos_token and
	// eos_token.
	BOSToken, EOSToken string
	// AddGenerationPrompt asks the template to end with the header of an
	// assistant turn.
	AddGenerationPrompt bool
	// Extra holds further template variables (tools, enable_thinking,
	// date_string, ...). Values must be JSON-like: nil, bool, numbers,
	// strings, slices and string-keyed maps of those; anything else goes
	// through a JSON round trip. Extra may not redefine the names Render
	// binds (messages, bos_token, eos_token, add_generation_prompt,
	// raise_exception, strftime_now, ...). Render does not modify Extra.
	Extra map[string]any
	// Now is strftime_now's clock; the zero time means time.Now().
	Now time.Time
	// Limits bound the render; zero fields take defaults.
	Limits Limits
}

// Template is a parsed chat template. It is immutable after New and safe for
// concurrent Render calls.
type Template struct {
	src  string
	tmpl *exec.Template
}

const templateName = "/chat_template"

// maxErrorBytes bounds the length of a render error's message.
const maxErrorBytes = 1024

// New parses src, a Jinja2 chat template in Hugging Face's dialect (as stored
// under tokenizer.chat_template in GGUF metadata). It returns an error wrapping
// ErrSyntax for a malformed template and ErrUnsupported for one using a
// construct outside the sandbox (see doc.go); it never panics.
func New(src string) (t *Template, err error) {
	if len(src) > maxTemplateBytes {
		return nil, fmt.Errorf("%w: template of %d bytes (limit %d)", ErrUnsupported, len(src), maxTemplateBytes)
	}
	if err := checkNesting(src); err != nil {
		return nil, err
	}
	orig := src
	src = wrapConditionals(src)
	defer func() {
		if p := recover(); p != nil {
			t, err = nil, fmt.Errorf("%w: parser panicked: %v", ErrSyntax, p)
		}
	}()
	loader, err := loaders.NewMemoryLoader(map[string]string{templateName: src})
	if err != nil {
		return nil, fmt.Errorf("chat: %w", err)
	}
	tmpl, err := exec.NewTemplate(templateName, hfConfig(), loader, sharedEnv)
	if err != nil {
		if errors.Is(err, ErrUnsupported) {
			return nil, err
		}
		return nil, fmt.Errorf("%w: %s", ErrSyntax, trimSource(err.Error(), src))
	}
	if err := sandbox(tmpl.Root()); err != nil {
		return nil, err
	}
	return &Template{src: orig, tmpl: tmpl}, nil
}

// trimSource drops the template text gonja quotes into its parse errors.
func trimSource(msg, src string) string {
	return strings.Replace(msg, "template '"+src+"'", "template", 1)
}

// Source returns the template text New was given.
func (t *Template) Source() string { return t.src }

// Render renders msgs with opts. See RenderContext.
func (t *Template) Render(msgs []Message, opts Options) (string, error) {
	return t.RenderContext(context.Background(), msgs, opts)
}

// RenderContext renders msgs with opts, stopping early when ctx ends or the
// render passes opts.Limits. Errors: *RaiseError for raise_exception,
// ErrLimit (with the context's error when ctx ended), otherwise a wrapped
// gonja evaluation error. It never panics.
//
// A template that raises on a leading system message (Gemma's "System role
// not supported") gets it as llama.cpp gives it then: prepended, with a
// newline, to the next message's content (dropped when it is alone).
func (t *Template) RenderContext(ctx context.Context, msgs []Message, opts Options) (string, error) {
	out, err := t.render(ctx, msgs, opts)
	var raised *RaiseError
	if err != nil && errors.As(err, &raised) && len(msgs) > 0 && msgs[0].Role == "system" {
		folded := slices.Clone(msgs[1:])
		if len(folded) > 0 {
			folded[0].Content = msgs[0].Content + "\n" + folded[0].Content
		}
		if out2, err2 := t.render(ctx, folded, opts); err2 == nil {
			return out2, nil
		}
	}
	return out, err
}

func (t *Template) render(ctx context.Context, msgs []Message, opts Options) (out string, err error) {
	limits := opts.Limits.withDefaults()
	ctx, cancel := context.WithTimeout(ctx, limits.Timeout)
	defer cancel()
	st := &renderState{ctx: ctx, limits: limits}

	data := make(map[string]any, 16+len(opts.Extra))
	for k, v := range opts.Extra {
		if reservedNames[k] || strings.HasPrefix(k, reservedPrefix) {
			return "", fmt.Errorf("chat: Extra may not set %q", k)
		}
		nv, err := normalize(v, 0)
		if err != nil {
			return "", fmt.Errorf("chat: Extra[%q]: %w", k, err)
		}
		data[k] = nv
	}
	messages := make([]any, len(msgs))
	for i, m := range msgs {
		v, err := normalize(m.templateValue(), 0)
		if err != nil {
			return "", fmt.Errorf("chat: messages[%d]: %w", i, err)
		}
		messages[i] = v
	}
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	data["messages"] = messages
	data["bos_token"] = opts.BOSToken
	data["eos_token"] = opts.EOSToken
	data["add_generation_prompt"] = opts.AddGenerationPrompt
	data["raise_exception"] = func(va *exec.VarArgs) *exec.Value {
		msg := ""
		if len(va.Args) > 0 {
			msg = va.Args[0].String()
		}
		if st.raised == nil {
			st.raised = &RaiseError{Message: msg}
		}
		return exec.AsValue(st.raised)
	}
	data["strftime_now"] = strftimeNow(now)
	data[stateKey] = st
	data[mulKey] = mulFunction
	data[itemKey] = itemFunction

	w := &limitWriter{limit: limits.MaxOutputBytes, st: st}
	defer func() {
		if p := recover(); p != nil {
			msg := fmt.Sprint(p)
			if len(msg) > maxErrorBytes {
				msg = msg[:maxErrorBytes] + "..."
			}
			out, err = "", fmt.Errorf("chat: render panicked: %s", msg)
		}
	}()
	rerr := t.tmpl.Execute(w, exec.NewContext(data))
	switch {
	case st.raised != nil:
		return "", st.raised
	case st.failed != nil:
		return "", st.failed
	case rerr != nil:
		if ctx.Err() != nil {
			return "", fmt.Errorf("%w: %w", ErrLimit, ctx.Err())
		}
		// gonja flattens the errors of filters and methods into strings
		// and quotes whole values into its messages: keep the message
		// short and recover ErrLimit from its text.
		msg := rerr.Error()
		if len(msg) > maxErrorBytes {
			msg = msg[:maxErrorBytes] + "..."
		}
		if strings.Contains(rerr.Error(), ErrLimit.Error()) {
			return "", fmt.Errorf("%w: %s", ErrLimit, msg)
		}
		return "", fmt.Errorf("chat: render: %s", msg)
	}
	return w.b.String(), nil
}

// templateValue is the message as templates see it: {role, content} and
// the optional fields that are set. Arguments were normalized by render.
func (m Message) templateValue() map[string]any {
	v := map[string]any{"role": m.Role, "content": m.Content}
	if m.Thinking != "" {
		v["reasoning_content"] = m.Thinking
		v["thinking"] = m.Thinking
	}
	if len(m.ToolCalls) > 0 {
		calls := make([]any, len(m.ToolCalls))
		for i, c := range m.ToolCalls {
			fn := map[string]any{"name": c.Name, "arguments": c.Arguments}
			call := map[string]any{"type": "function", "function": fn}
			if c.ID != "" {
				call["id"] = c.ID
			}
			calls[i] = call
		}
		v["tool_calls"] = calls
	}
	if m.ToolCallID != "" {
		v["tool_call_id"] = m.ToolCallID
	}
	if m.Name != "" {
		v["name"] = m.Name
		v["tool_name"] = m.Name
	}
	return v
}

// EmitsBOS reports whether the template itself writes bos at the start of its
// output, found by rendering two probe conversations. When it does, tokenize
// the render without adding BOS (add_special=false) and let special-token
// parsing turn the text into the BOS id; when it does not, tokenize with the
// model's add_bos setting. Doing both gives a double BOS. An empty bos is never
// emitted.
func (t *Template) EmitsBOS(bos string) bool {
	if bos == "" {
		return false
	}
	probes := [][]Message{
		{{Role: "user", Content: "x"}},
		{{Role: "system", Content: "s"}, {Role: "user", Content: "x"}},
	}
	for _, msgs := range probes {
		out, err := t.Render(msgs, Options{BOSToken: bos, EOSToken: "</eos-probe>", AddGenerationPrompt: true,
			Now: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)})
		if err == nil {
			return strings.HasPrefix(out, bos)
		}
	}
	return false
}

// fallbackSource is ChatML, the format llama.cpp also falls back to when a
// model has no template: widely understood by instruction-tuned models, with
// unambiguous turn boundaries. It emits no BOS; tokenize it with the model's
// add_bos setting.
const fallbackSource = "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>\n' }}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"

var fallback = mustNew(fallbackSource)

// Fallback returns the template for models without one: ChatML
// ("<|im_start|>role\ncontent<|im_end|>\n" per turn, then
// "<|im_start|>assistant\n" when a generation prompt is asked for), as llama.cpp
// uses. It emits no BOS.
func Fallback() *Template { return fallback }

func mustNew(src string) *Template {
	t, err := New(src)
	if err != nil {
		panic(err)
	}
	return t
}

// normalize copies a caller's value into the JSON-like types templates see.
func normalize(v any, depth int) (any, error) {
	if depth > maxMeasureDepth {
		return nil, errors.New("nested too deep")
	}
	switch v := v.(type) {
	case nil, bool, string, int, int64, float64:
		return v, nil
	case int8, int16, int32, uint8, uint16, uint32:
		return reflect.ValueOf(v).Convert(reflect.TypeFor[int]()).Interface(), nil
	case uint, uint64:
		u := reflect.ValueOf(v).Uint()
		if u > math.MaxInt64 {
			return float64(u), nil
		}
		return int(u), nil
	case float32:
		return float64(v), nil
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return int(i), nil
		}
		f, err := v.Float64()
		return f, err
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			nx, err := normalize(x, depth+1)
			if err != nil {
				return nil, err
			}
			out[i] = nx
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			nx, err := normalize(x, depth+1)
			if err != nil {
				return nil, err
			}
			out[k] = nx
		}
		return out, nil
	}
	// Anything else (typed slices and maps, structs): through JSON.
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.UseNumber()
	var x any
	if err := dec.Decode(&x); err != nil {
		return nil, err
	}
	return normalize(x, depth)
}
