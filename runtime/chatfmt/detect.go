package chatfmt

import (
	"strings"
)

// Syntax is how a model writes tool calls.
type Syntax int

const (
	// Generic: the template takes no tools. Hearth describes the tools in
	// the system message and asks for {"tool_calls": [{"name", "arguments"}]}
	// as the whole answer (see doc.go).
	Generic Syntax = iota
	// Hermes: <tool_call>{"name": ..., "arguments": {...}}</tool_call>,
	// repeated (Hermes 2 Pro/3, Qwen 2.5, Qwen 3).
	Hermes
	// QwenXML: <tool_call><function=NAME><parameter=P>value</parameter>
	// </function></tool_call> (Qwen3-Coder, Qwen 3.5, Nemotron Nano 3).
	QwenXML
	// Llama3: {"name": ..., "parameters": {...}} as the whole answer,
	// optionally after <|python_tag|> (Llama 3.1-3.3).
	Llama3
	// MistralJSON: [TOOL_CALLS][{"name": ..., "arguments": {...}}, ...]
	// (Mistral Nemo, Mistral 7B v0.3).
	MistralJSON
	// MistralArgs: [TOOL_CALLS]NAME[CALL_ID]ID[ARGS]{...}, the call id
	// optional (Mistral Small 3.2, Devstral, Ministral 3, Magistral).
	MistralArgs
	// Harmony: gpt-oss channels; a call is a commentary message addressed
	// to=functions.NAME.
	Harmony
	// DeepSeekR1: <｜tool▁calls▁begin｜><｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME
	// ```json {...} ```<｜tool▁call▁end｜>...<｜tool▁calls▁end｜>.
	DeepSeekR1
	// Gemma4: <|tool_call>call:NAME{key:<|"|>text<|"|>,n:3}<tool_call|>.
	Gemma4
)

var syntaxNames = [...]string{"generic", "hermes", "qwen-xml", "llama3-json", "mistral-json", "mistral-args", "harmony", "deepseek-r1", "gemma4"}

func (s Syntax) String() string {
	if int(s) < len(syntaxNames) {
		return syntaxNames[s]
	}
	return "unknown"
}

// DeepSeek's markers (full-width bars and the U+2581 lower block).
const (
	dsCallsBegin = "<｜tool▁calls▁begin｜>"
	dsCallsEnd   = "<｜tool▁calls▁end｜>"
	dsCallBegin  = "<｜tool▁call▁begin｜>"
	dsCallEnd    = "<｜tool▁call▁end｜>"
	dsSep        = "<｜tool▁sep｜>"
)

// Harmony's markers.
const (
	hStart     = "<|start|>"
	hChannel   = "<|channel|>"
	hMessage   = "<|message|>"
	hEnd       = "<|end|>"
	hCall      = "<|call|>"
	hReturn    = "<|return|>"
	hConstrain = "<|constrain|>"
)

// Format is what a chat template implies about its model's output: how it
// writes tool calls and how it marks its reasoning. It is detected once per
// model (Detect) and used by every API.
type Format struct {
	Syntax Syntax
	// TemplateTools says the template renders the tools itself (it reads
	// the tools variable); otherwise Hearth adds them to the system
	// message.
	TemplateTools bool
	// ThinkStart and ThinkEnd delimit reasoning ("<think>", "</think>");
	// empty when the model does not reason in tags (Harmony reasons in its
	// analysis channel).
	ThinkStart, ThinkEnd string
	// Thinks says the model can reason (tags or channel); CanDisable that
	// the template switches reasoning off (enable_thinking, reasoning
	// effort), Effort that it takes a reasoning effort (gpt-oss).
	Thinks, CanDisable, Effort bool
	// Preserved are control tokens the parser must see in the output
	// text (they print as nothing otherwise).
	Preserved []string
}

// Detect reads a chat template's source.
func Detect(src string) Format {
	has := func(subs ...string) bool {
		for _, s := range subs {
			if !strings.Contains(src, s) {
				return false
			}
		}
		return true
	}
	f := Format{TemplateTools: strings.Contains(src, "tools")}
	switch {
	case has(hChannel):
		f.Syntax = Harmony
		f.Thinks, f.CanDisable, f.Effort = true, false, true
		f.Preserved = []string{hStart, hChannel, hMessage, hEnd, hConstrain, hCall, hReturn}
		return f
	case has(g4CallHead):
		f.Syntax = Gemma4
		f.ThinkStart, f.ThinkEnd, f.Thinks = g4Thought, g4Channel, true
		f.CanDisable = strings.Contains(src, "enable_thinking")
		f.Preserved = []string{g4Call, g4CallEnd, g4Quote, "<|channel>", g4Channel}
		return f
	case has("[TOOL_CALLS]", "[ARGS]"):
		f.Syntax = MistralArgs
		f.Preserved = []string{"[TOOL_CALLS]", "[ARGS]", "[CALL_ID]"}
	case has("[TOOL_CALLS]"):
		f.Syntax = MistralJSON
		f.Preserved = []string{"[TOOL_CALLS]"}
	case has("<tool_call>", "<function=", "<parameter="):
		f.Syntax = QwenXML
	case has(dsCallsBegin):
		f.Syntax = DeepSeekR1
		f.Preserved = []string{dsCallsBegin, dsCallsEnd, dsCallBegin, dsCallEnd, dsSep}
	case has("<tool_call>"):
		f.Syntax = Hermes
	case has("<|python_tag|>"), has(`"parameters"`, "ipython"):
		f.Syntax = Llama3
		f.Preserved = []string{"<|python_tag|>"}
	default:
		f.Syntax = Generic
		f.TemplateTools = false
	}
	switch {
	case has("[THINK]", "[/THINK]"):
		f.ThinkStart, f.ThinkEnd, f.Thinks = "[THINK]", "[/THINK]", true
		f.Preserved = append(f.Preserved, "[THINK]", "[/THINK]")
	case has("</think>"):
		f.ThinkStart, f.ThinkEnd, f.Thinks = "<think>", "</think>", true
		f.CanDisable = strings.Contains(src, "enable_thinking")
	}
	return f
}
