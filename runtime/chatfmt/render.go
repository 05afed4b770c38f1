package chatfmt

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"unicode"

	"github.com/hearth-llm/hearth/loader/chat"
)

// Choice is how the model may use the tools (OpenAI's tool_choice,
// Anthropic's tool_choice).
type Choice int

const (
	// ChoiceAuto: the model decides; a call is constrained once it begins.
	ChoiceAuto Choice = iota
	// ChoiceNone: no calls; the tools are not shown to the model.
	ChoiceNone
	// ChoiceRequired: the answer is one or more calls.
	ChoiceRequired
	// ChoiceFunction: the answer is a call of Conversation.Function.
	ChoiceFunction
)

// Think is what a request asks of the model's reasoning.
type Think struct {
	// Set: the request said; otherwise the model's default applies.
	Set bool
	On  bool
	// Effort is "low", "medium" or "high" (gpt-oss); "" for none.
	Effort string
}

// Conversation is one chat request, whichever API sent it.
type Conversation struct {
	Messages []chat.Message
	Tools    []Tool
	Choice   Choice
	// Function names the function ChoiceFunction forces.
	Function string
	// Parallel allows several calls in one answer (parallel_tool_calls,
	// default true).
	Parallel bool
	Think    Think
}

// Errors a request gets for asking what the model cannot do.
var (
	ErrNoThinking = errors.New("does not support thinking")
	ErrBadTools   = errors.New("invalid tools")
)

// Check validates the tools and the choice.
func (c *Conversation) Check() error {
	seen := map[string]bool{}
	for i, t := range c.Tools {
		if t.Name == "" {
			return fmt.Errorf("%w: tools[%d] has no name", ErrBadTools, i)
		}
		if seen[t.Name] {
			return fmt.Errorf("%w: two tools are named %q", ErrBadTools, t.Name)
		}
		seen[t.Name] = true
		if t.Parameters != nil {
			var v any
			if json.Unmarshal(t.Parameters, &v) != nil {
				return fmt.Errorf("%w: tools[%d] (%s): parameters is not JSON", ErrBadTools, i, t.Name)
			}
			if _, ok := v.(map[string]any); !ok && v != nil {
				return fmt.Errorf("%w: tools[%d] (%s): parameters must be a JSON schema object", ErrBadTools, i, t.Name)
			}
		}
	}
	switch c.Choice {
	case ChoiceRequired:
		if len(c.Tools) == 0 {
			return fmt.Errorf("%w: tool_choice requires a call but no tools were given", ErrBadTools)
		}
	case ChoiceFunction:
		if !seen[c.Function] {
			return fmt.Errorf("%w: tool_choice names %q, which is not among the tools", ErrBadTools, c.Function)
		}
	}
	switch c.Think.Effort {
	case "", "low", "medium", "high":
	default:
		return fmt.Errorf("%w: reasoning effort %q: want low, medium or high", ErrBadTools, c.Think.Effort)
	}
	return nil
}

// usesTools says calls are possible.
func (c *Conversation) usesTools() bool { return len(c.Tools) > 0 && c.Choice != ChoiceNone }

// Prepared is a conversation ready for the template.
type Prepared struct {
	Messages []chat.Message
	// Extra are the template variables to add (tools, enable_thinking,
	// reasoning_effort).
	Extra map[string]any
}

// Prepare turns the conversation into the template's inputs.
func (f Format) Prepare(c *Conversation) (Prepared, error) {
	p := Prepared{Extra: map[string]any{}}
	if c.Think.Set && (c.Think.On || c.Think.Effort != "") && !f.Thinks {
		return p, ErrNoThinking
	}
	if f.CanDisable {
		// Thinking is on unless the request turns it off (llama.cpp and
		// Ollama alike): some templates close the think block when
		// enable_thinking is undefined.
		p.Extra["enable_thinking"] = !c.Think.Set || c.Think.On || c.Think.Effort != ""
	}
	if c.Think.Set {
		if f.Effort {
			effort := c.Think.Effort
			if effort == "" && c.Think.On {
				effort = "medium"
			}
			if effort != "" {
				p.Extra["reasoning_effort"] = effort
			}
		}
	}
	p.Messages = c.Messages
	if !c.usesTools() {
		if f.Syntax == Generic {
			p.Messages = genericHistory(c.Messages)
		}
		return p, nil
	}
	if f.TemplateTools {
		tools := make([]any, len(c.Tools))
		for i, t := range c.Tools {
			tools[i] = t.templateValue()
		}
		p.Extra["tools"] = tools
		return p, nil
	}
	// The template shows no tools: Hearth describes them in the system
	// message, in the model's own call syntax when it has one (its
	// template still writes earlier calls), else in the generic one.
	if f.Syntax == Generic {
		p.Messages = genericHistory(c.Messages)
	}
	p.Messages = withSystem(p.Messages, f.instructions(c.Tools))
	return p, nil
}

// callExamples show each syntax's call, for the system message of
// templates that do not describe tools themselves.
var callExamples = map[Syntax]string{
	Generic:     `{"tool_calls": [{"name": "<function name>", "arguments": {<arguments>}}]}`,
	Hermes:      "<tool_call>\n{\"name\": \"<function name>\", \"arguments\": {<arguments>}}\n</tool_call>",
	QwenXML:     "<tool_call>\n<function=<function name>>\n<parameter=<name>>\n<value>\n</parameter>\n</function>\n</tool_call>",
	Llama3:      `{"name": "<function name>", "parameters": {<arguments>}}`,
	MistralJSON: `[TOOL_CALLS][{"name": "<function name>", "arguments": {<arguments>}}]`,
	MistralArgs: "[TOOL_CALLS]<function name>[ARGS]{<arguments>}",
	DeepSeekR1:  dsCallsBegin + dsCallBegin + "function" + dsSep + "<function name>\n```json\n{<arguments>}\n```" + dsCallEnd + dsCallsEnd,
	Harmony:     "<|channel|>commentary to=functions.<function name> <|constrain|>json<|message|>{<arguments>}<|call|>",
	Gemma4:      g4CallHead + "<function name>{<key>:<value>,...}" + g4CallEnd,
}

// templateValue is the tool as templates and OpenAI see it.
func (t Tool) templateValue() map[string]any {
	fn := map[string]any{"name": t.Name}
	if t.Description != "" {
		fn["description"] = t.Description
	}
	var params any = map[string]any{"type": "object", "properties": map[string]any{}}
	if t.Parameters != nil {
		var v any
		if json.Unmarshal(t.Parameters, &v) == nil && v != nil {
			params = v
		}
	}
	fn["parameters"] = params
	return map[string]any{"type": "function", "function": fn}
}

// instructions describe the tools and how to call them.
func (f Format) instructions(tools []Tool) string {
	var b strings.Builder
	b.WriteString("You can call functions. To call one, answer with ")
	if f.Syntax == Generic {
		b.WriteString("only a JSON object of the form ")
	}
	b.WriteString(callExamples[f.Syntax])
	if f.Syntax == Generic {
		b.WriteString(" and nothing else")
	}
	b.WriteString("; otherwise answer normally. The functions:\n")
	for _, t := range tools {
		v, _ := json.Marshal(t.templateValue()["function"])
		b.Write(v)
		b.WriteByte('\n')
	}
	return strings.TrimRight(b.String(), "\n")
}

// genericHistory writes earlier calls and their results as text, for
// templates that know no tool turns.
func genericHistory(msgs []chat.Message) []chat.Message {
	out := make([]chat.Message, 0, len(msgs))
	for _, m := range msgs {
		switch {
		case len(m.ToolCalls) > 0:
			calls := make([]map[string]any, len(m.ToolCalls))
			for i, c := range m.ToolCalls {
				calls[i] = map[string]any{"name": c.Name, "arguments": c.Arguments}
			}
			b, _ := json.Marshal(map[string]any{"tool_calls": calls})
			text := string(b)
			if m.Content != "" {
				text = m.Content + "\n" + text
			}
			out = append(out, chat.Message{Role: "assistant", Content: text, Thinking: m.Thinking})
		case m.Role == "tool":
			name := m.Name
			if name == "" {
				name = m.ToolCallID
			}
			text := "Result of the function call"
			if name != "" {
				text += " " + name
			}
			out = append(out, chat.Message{Role: "user", Content: text + ":\n" + m.Content})
		default:
			out = append(out, m)
		}
	}
	return out
}

// withSystem puts text at the start of the system message (a new one when
// there is none).
func withSystem(msgs []chat.Message, text string) []chat.Message {
	if len(msgs) > 0 && msgs[0].Role == "system" {
		out := slices.Clone(msgs)
		out[0].Content = text + "\n\n" + out[0].Content
		return out
	}
	return append([]chat.Message{{Role: "system", Content: text}}, msgs...)
}

// ParseOptions are the options for parsing the answer to c, given the
// prompt the template rendered (whose end may open a reasoning block).
func (f Format) ParseOptions(c *Conversation, prompt string) ParseOptions {
	o := ParseOptions{Tools: c.Tools, ParseTools: c.usesTools()}
	if f.ThinkStart != "" {
		tail := strings.TrimRightFunc(prompt, unicode.IsSpace)
		o.InReasoning = strings.HasSuffix(tail, f.ThinkStart)
	}
	return o
}
