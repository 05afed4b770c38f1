package server

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"

	"github.com/hearth-llm/hearth/loader/chat"
	"github.com/hearth-llm/hearth/runtime/chatfmt"
)

// oaiToolCall is a call in OpenAI's shape: in messages (history and
// answers) and, with Index, in streamed deltas.
type oaiToolCall struct {
	Index    *int            `json:"index,omitempty"`
	ID       string          `json:"id,omitempty"`
	Type     string          `json:"type,omitempty"`
	Function oaiToolFunction `json:"function"`
}

type oaiToolFunction struct {
	Name      string `json:"name,omitempty"`
	Arguments string `json:"arguments"`
}

// oaiToolCalls are parsed calls in OpenAI's shape, numbered from first.
func oaiToolCalls(calls []chatfmt.Call, first int) []oaiToolCall {
	out := make([]oaiToolCall, 0, len(calls))
	for i, c := range calls {
		idx := first + i
		out = append(out, oaiToolCall{Index: &idx, ID: c.ID, Type: "function", Function: oaiToolFunction{Name: c.Name, Arguments: c.Arguments}})
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

// oaiHistoryCall is an earlier call the client sends back: its arguments
// are a JSON object in a string.
func oaiHistoryCall(c oaiToolCall) (chat.ToolCall, error) {
	if c.Function.Name == "" {
		return chat.ToolCall{}, fmt.Errorf("function.name is required")
	}
	var args any = map[string]any{}
	if a := bytes.TrimSpace([]byte(c.Function.Arguments)); len(a) > 0 {
		if err := json.Unmarshal(a, &args); err != nil {
			return chat.ToolCall{}, fmt.Errorf("function.arguments is not JSON: %v", err)
		}
	}
	return chat.ToolCall{ID: c.ID, Name: c.Function.Name, Arguments: args}, nil
}

// oaiTool is one entry of tools: only function tools.
type oaiTool struct {
	Type     string `json:"type"`
	Function *struct {
		Name        string          `json:"name"`
		Description string          `json:"description"`
		Parameters  json.RawMessage `json:"parameters"`
		Strict      *bool           `json:"strict"`
	} `json:"function"`
}

// oaiTools reads the tools field.
func oaiTools(raw json.RawMessage) ([]chatfmt.Tool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var ts []oaiTool
	if err := json.Unmarshal(raw, &ts); err != nil {
		return nil, errorf(http.StatusBadRequest, "tools must be an array of {\"type\": \"function\", \"function\": {...}}")
	}
	out := make([]chatfmt.Tool, 0, len(ts))
	for i, t := range ts {
		if t.Type != "function" || t.Function == nil {
			return nil, errorf(http.StatusBadRequest, "tools[%d]: only function tools are supported (type %q)", i, t.Type)
		}
		out = append(out, chatfmt.Tool{Name: t.Function.Name, Description: t.Function.Description, Parameters: nullAsNil(t.Function.Parameters)})
	}
	return out, nil
}

func nullAsNil(raw json.RawMessage) json.RawMessage {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	return raw
}

// oaiToolChoice reads tool_choice: "none", "auto", "required", or
// {"type": "function", "function": {"name": ...}}.
func oaiToolChoice(raw json.RawMessage) (chatfmt.Choice, string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return chatfmt.ChoiceAuto, "", nil
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		switch mode {
		case "auto":
			return chatfmt.ChoiceAuto, "", nil
		case "none":
			return chatfmt.ChoiceNone, "", nil
		case "required":
			return chatfmt.ChoiceRequired, "", nil
		}
		return 0, "", errorf(http.StatusBadRequest, "tool_choice %q: want none, auto, required or a function", mode)
	}
	var named struct {
		Type     string `json:"type"`
		Function struct {
			Name string `json:"name"`
		} `json:"function"`
	}
	if err := json.Unmarshal(raw, &named); err != nil || named.Type != "function" || named.Function.Name == "" {
		return 0, "", errorf(http.StatusBadRequest, `tool_choice must be "none", "auto", "required" or {"type": "function", "function": {"name": ...}}`)
	}
	return chatfmt.ChoiceFunction, named.Function.Name, nil
}

// dropNullFields removes the top-level null members of a JSON object
// (Ollama's typed parameters write "properties": null for a function
// without parameters, which is no schema).
func dropNullFields(raw json.RawMessage) json.RawMessage {
	var m map[string]json.RawMessage
	if json.Unmarshal(raw, &m) != nil {
		return raw
	}
	changed := false
	for k, v := range m {
		if string(v) == "null" {
			delete(m, k)
			changed = true
		}
	}
	if !changed {
		return raw
	}
	out, err := json.Marshal(m)
	if err != nil {
		return raw
	}
	return out
}
