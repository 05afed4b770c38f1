package server

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	"github.com/hearth-llm/hearth/loader/chat"
	"github.com/hearth-llm/hearth/runtime/chatfmt"
)

// Anthropic Messages API (/v1/messages, /v1/messages/count_tokens): only
// the fields Hearth reads or writes. A request becomes one
// chatfmt.Conversation, as OpenAI's and Ollama's chats do (chat.go).

type antRequest struct {
	Model         string          `json:"model"`
	MaxTokens     *int64          `json:"max_tokens"`
	System        json.RawMessage `json:"system"`
	Messages      []antMessage    `json:"messages"`
	Tools         json.RawMessage `json:"tools"`
	ToolChoice    json.RawMessage `json:"tool_choice"`
	StopSequences []string        `json:"stop_sequences"`
	Temperature   *float64        `json:"temperature"`
	TopP          *float64        `json:"top_p"`
	TopK          *int64          `json:"top_k"`
	Thinking      json.RawMessage `json:"thinking"`
	Stream        bool            `json:"stream"`
	// metadata (user_id) and the rest are accepted and ignored.
}

type antMessage struct {
	Role    string          `json:"role"`
	Content json.RawMessage `json:"content"`
}

// antBlock is one content block of a request, of any type.
type antBlock struct {
	Type string `json:"type"`
	Text string `json:"text"`
	// tool_use
	ID    string          `json:"id"`
	Name  string          `json:"name"`
	Input json.RawMessage `json:"input"`
	// tool_result
	ToolUseID string          `json:"tool_use_id"`
	Content   json.RawMessage `json:"content"`
	IsError   bool            `json:"is_error"`
	// thinking
	Thinking string `json:"thinking"`
}

type antUsage struct {
	InputTokens  int `json:"input_tokens"`
	OutputTokens int `json:"output_tokens"`
}

type antResponse struct {
	ID           string   `json:"id"`
	Type         string   `json:"type"`
	Role         string   `json:"role"`
	Model        string   `json:"model"`
	Content      []any    `json:"content"`
	StopReason   *string  `json:"stop_reason"`
	StopSequence *string  `json:"stop_sequence"`
	Usage        antUsage `json:"usage"`
}

// antBlocks reads a content field: a string (one text block) or an array
// of blocks. errImagePart marks an image block.
func antBlocks(raw json.RawMessage, field string) ([]antBlock, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, errorf(http.StatusBadRequest, "%s is required", field)
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return []antBlock{{Type: "text", Text: s}}, nil
	}
	var blocks []antBlock
	if err := json.Unmarshal(raw, &blocks); err != nil {
		return nil, errorf(http.StatusBadRequest, "%s must be a string or an array of content blocks", field)
	}
	for i, b := range blocks {
		switch b.Type {
		case "image":
			return nil, errImagePart
		case "":
			return nil, errorf(http.StatusBadRequest, "%s[%d] has no type", field, i)
		}
	}
	return blocks, nil
}

// antText joins text blocks with sep; any other type is refused.
func antText(raw json.RawMessage, field, sep string) (string, error) {
	blocks, err := antBlocks(raw, field)
	if err != nil {
		return "", err
	}
	var b strings.Builder
	for i, bl := range blocks {
		if bl.Type != "text" {
			return "", errorf(http.StatusBadRequest, "%s[%d]: blocks of type %q are not supported here (want text)", field, i, bl.Type)
		}
		if i > 0 {
			b.WriteString(sep)
		}
		b.WriteString(bl.Text)
	}
	return b.String(), nil
}

// checkAnthropic converts a request into a conversation; count says it is
// count_tokens, which has no max_tokens. An image anywhere is refused as
// the other APIs refuse it.
func (s *Server) checkAnthropic(req *antRequest, count bool) (chatfmt.Conversation, error) {
	conv, err := antConversation(req, count)
	if errors.Is(err, errImagePart) {
		return conv, s.refuseImages(req.Model)
	}
	return conv, err
}

func antConversation(req *antRequest, count bool) (chatfmt.Conversation, error) {
	var conv chatfmt.Conversation
	switch {
	case req.Model == "":
		return conv, errorf(http.StatusBadRequest, "model: field required")
	case req.MaxTokens == nil && !count:
		return conv, errorf(http.StatusBadRequest, "max_tokens: field required")
	case len(req.Messages) == 0:
		return conv, errorf(http.StatusBadRequest, "messages: at least one message is required")
	}
	if len(req.System) > 0 && string(req.System) != "null" {
		sys, err := antText(req.System, "system", "\n\n")
		if err != nil {
			return conv, err
		}
		if sys != "" {
			conv.Messages = append(conv.Messages, chat.Message{Role: "system", Content: sys})
		}
	}
	names := map[string]string{} // tool_use id -> tool name, for the results
	for i, m := range req.Messages {
		field := fmt.Sprintf("messages[%d].content", i)
		blocks, err := antBlocks(m.Content, field)
		if err != nil {
			return conv, err
		}
		var msgs []chat.Message
		switch m.Role {
		case "user":
			msgs, err = antUserTurn(blocks, field, names)
		case "assistant":
			msgs, err = antAssistantTurn(blocks, field, names)
		default:
			err = errorf(http.StatusBadRequest, "messages[%d].role %q: want user or assistant (system goes in the top-level system field)", i, m.Role)
		}
		if err != nil {
			return conv, err
		}
		conv.Messages = append(conv.Messages, msgs...)
	}
	if err := checkStops(req.StopSequences); err != nil {
		return conv, err
	}
	var err error
	if conv.Tools, err = antTools(req.Tools); err != nil {
		return conv, err
	}
	if conv.Choice, conv.Function, conv.Parallel, err = antToolChoice(req.ToolChoice); err != nil {
		return conv, err
	}
	if conv.Think, err = antThinking(req.Thinking); err != nil {
		return conv, err
	}
	return conv, nil
}

// antUserTurn is a user message: its text, and each tool_result as a tool
// turn (named after the tool_use it answers), in the blocks' order.
func antUserTurn(blocks []antBlock, field string, names map[string]string) ([]chat.Message, error) {
	var msgs []chat.Message
	var text strings.Builder
	flush := func() {
		if text.Len() > 0 {
			msgs = append(msgs, chat.Message{Role: "user", Content: text.String()})
			text.Reset()
		}
	}
	for j, b := range blocks {
		switch b.Type {
		case "text":
			text.WriteString(b.Text)
		case "tool_result":
			name, ok := names[b.ToolUseID]
			if !ok {
				return nil, errorf(http.StatusBadRequest, "%s[%d]: tool_result.tool_use_id %q answers no earlier tool_use", field, j, b.ToolUseID)
			}
			content := ""
			if len(b.Content) > 0 && string(b.Content) != "null" {
				var err error
				if content, err = antText(b.Content, fmt.Sprintf("%s[%d].content", field, j), "\n"); err != nil {
					return nil, err
				}
			}
			if b.IsError {
				content = "Error: " + content
			}
			flush()
			msgs = append(msgs, chat.Message{Role: "tool", Content: content, ToolCallID: b.ToolUseID, Name: name})
		default:
			return nil, errorf(http.StatusBadRequest, "%s[%d]: blocks of type %q are not supported in a user turn (want text or tool_result)", field, j, b.Type)
		}
	}
	flush()
	if len(msgs) == 0 {
		msgs = append(msgs, chat.Message{Role: "user"})
	}
	return msgs, nil
}

// antAssistantTurn is an assistant message: text, thinking and tool_use
// blocks make one turn (redacted thinking is dropped: only the model that
// wrote it could read it).
func antAssistantTurn(blocks []antBlock, field string, names map[string]string) ([]chat.Message, error) {
	m := chat.Message{Role: "assistant"}
	for j, b := range blocks {
		switch b.Type {
		case "text":
			m.Content += b.Text
		case "thinking":
			m.Thinking += b.Thinking
		case "redacted_thinking":
		case "tool_use":
			if b.ID == "" || b.Name == "" {
				return nil, errorf(http.StatusBadRequest, "%s[%d]: tool_use needs an id and a name", field, j)
			}
			var args any = map[string]any{}
			if len(b.Input) > 0 && string(b.Input) != "null" {
				if err := json.Unmarshal(b.Input, &args); err != nil {
					return nil, errorf(http.StatusBadRequest, "%s[%d]: tool_use.input is not JSON", field, j)
				}
				if _, ok := args.(map[string]any); !ok {
					return nil, errorf(http.StatusBadRequest, "%s[%d]: tool_use.input must be an object", field, j)
				}
			}
			names[b.ID] = b.Name
			m.ToolCalls = append(m.ToolCalls, chat.ToolCall{ID: b.ID, Name: b.Name, Arguments: args})
		default:
			return nil, errorf(http.StatusBadRequest, "%s[%d]: blocks of type %q are not supported in an assistant turn (want text, thinking or tool_use)", field, j, b.Type)
		}
	}
	return []chat.Message{m}, nil
}

// antTools reads tools: client (custom) tools only; server tools
// (bash_…, web_search_…, …) are refused.
func antTools(raw json.RawMessage) ([]chatfmt.Tool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var ts []struct {
		Type        string          `json:"type"`
		Name        string          `json:"name"`
		Description string          `json:"description"`
		InputSchema json.RawMessage `json:"input_schema"`
	}
	if err := json.Unmarshal(raw, &ts); err != nil {
		return nil, errorf(http.StatusBadRequest, `tools must be an array of {"name", "description", "input_schema"}`)
	}
	out := make([]chatfmt.Tool, 0, len(ts))
	for i, t := range ts {
		if t.Type != "" && t.Type != "custom" {
			return nil, errorf(http.StatusBadRequest, "tools[%d]: only client tools are supported (type %q)", i, t.Type)
		}
		schema := nullAsNil(t.InputSchema)
		if schema == nil {
			return nil, errorf(http.StatusBadRequest, "tools[%d].input_schema: field required", i)
		}
		out = append(out, chatfmt.Tool{Name: t.Name, Description: t.Description, Parameters: schema})
	}
	return out, nil
}

// antToolChoice reads tool_choice: {"type": "auto" | "any" | "tool" (with
// "name") | "none", "disable_parallel_tool_use"}; absent is auto.
func antToolChoice(raw json.RawMessage) (chatfmt.Choice, string, bool, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return chatfmt.ChoiceAuto, "", true, nil
	}
	var tc struct {
		Type                   string `json:"type"`
		Name                   string `json:"name"`
		DisableParallelToolUse bool   `json:"disable_parallel_tool_use"`
	}
	if err := json.Unmarshal(raw, &tc); err != nil {
		return 0, "", false, errorf(http.StatusBadRequest, `tool_choice must be {"type": "auto" | "any" | "tool" | "none"}`)
	}
	parallel := !tc.DisableParallelToolUse
	switch tc.Type {
	case "auto":
		return chatfmt.ChoiceAuto, "", parallel, nil
	case "any":
		return chatfmt.ChoiceRequired, "", parallel, nil
	case "none":
		return chatfmt.ChoiceNone, "", parallel, nil
	case "tool":
		if tc.Name == "" {
			return 0, "", false, errorf(http.StatusBadRequest, "tool_choice.name: field required when type is tool")
		}
		return chatfmt.ChoiceFunction, tc.Name, parallel, nil
	}
	return 0, "", false, errorf(http.StatusBadRequest, "tool_choice.type %q: want auto, any, tool or none", tc.Type)
}

// antThinking reads thinking: enabled (budget_tokens, at least 1; Hearth
// does not hold thinking to it, max_tokens bounds the whole answer),
// disabled, or adaptive and absent (the model's default).
func antThinking(raw json.RawMessage) (chatfmt.Think, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return chatfmt.Think{}, nil
	}
	var th struct {
		Type         string `json:"type"`
		BudgetTokens *int64 `json:"budget_tokens"`
	}
	if err := json.Unmarshal(raw, &th); err != nil {
		return chatfmt.Think{}, errorf(http.StatusBadRequest, `thinking must be {"type": "enabled", "budget_tokens": N} or {"type": "disabled"}`)
	}
	switch th.Type {
	case "enabled":
		if th.BudgetTokens == nil || *th.BudgetTokens < 1 || *th.BudgetTokens > maxNumCtx {
			return chatfmt.Think{}, errorf(http.StatusBadRequest, "thinking.budget_tokens: want 1..%d", maxNumCtx)
		}
		return chatfmt.Think{Set: true, On: true}, nil
	case "disabled":
		return chatfmt.Think{Set: true}, nil
	case "adaptive":
		return chatfmt.Think{}, nil
	}
	return chatfmt.Think{}, errorf(http.StatusBadRequest, "thinking.type %q: want enabled, disabled or adaptive", th.Type)
}

// antSampling maps the sampling fields onto options, with Anthropic's
// defaults (temperature 1, no top_p, no top_k unless asked).
func antSampling(o *genOptions, req *antRequest) error {
	if err := oaiSampling(o, req.Temperature, req.TopP, nil, nil, nil, req.MaxTokens, req.StopSequences); err != nil {
		return err
	}
	if req.TopK != nil {
		if *req.TopK < 0 || *req.TopK > maxInt {
			return errorf(http.StatusBadRequest, "top_k %d: want 0..%d", *req.TopK, maxInt)
		}
		o.Sampling.TopK = int(*req.TopK)
	}
	return nil
}

// antToolID is a call's id in Anthropic's style: Hearth's own "call_" ids
// become "toolu_" ones; a model's own id is kept.
func antToolID(id string) string {
	if rest, ok := strings.CutPrefix(id, "call_"); ok {
		return "toolu_" + rest
	}
	return id
}

// antContent builds the answer's content blocks as the deltas come: a new
// block whenever the kind changes (thinking, text, tool_use), each call
// its own block. When emit is set, it streams them as it goes.
type antContent struct {
	blocks []any
	open   string // kind of the last block, while it may still grow: "thinking", "text" or ""
	emit   func(event string, v any) error
}

func (c *antContent) add(d chatfmt.Delta) error {
	if d.Reasoning != "" {
		if err := c.grow("thinking", d.Reasoning); err != nil {
			return err
		}
	}
	if d.Content != "" {
		if err := c.grow("text", d.Content); err != nil {
			return err
		}
	}
	for _, call := range d.Calls {
		if err := c.closeBlock(); err != nil {
			return err
		}
		input := call.Arguments
		if input == "" {
			input = "{}"
		}
		block := map[string]any{"type": "tool_use", "id": antToolID(call.ID), "name": call.Name, "input": json.RawMessage(input)}
		c.blocks = append(c.blocks, block)
		if c.emit == nil {
			continue
		}
		i := len(c.blocks) - 1
		start := map[string]any{"type": "tool_use", "id": block["id"], "name": call.Name, "input": map[string]any{}}
		if err := c.emit("content_block_start", map[string]any{"type": "content_block_start", "index": i, "content_block": start}); err != nil {
			return err
		}
		if err := c.emit("content_block_delta", map[string]any{"type": "content_block_delta", "index": i,
			"delta": map[string]any{"type": "input_json_delta", "partial_json": input}}); err != nil {
			return err
		}
		if err := c.emit("content_block_stop", map[string]any{"type": "content_block_stop", "index": i}); err != nil {
			return err
		}
	}
	return nil
}

// grow adds text to the open block of kind, starting one when the last
// block is of another kind.
func (c *antContent) grow(kind, text string) error {
	if c.open != kind {
		if err := c.closeBlock(); err != nil {
			return err
		}
		block := map[string]any{"type": kind, kind: ""}
		if kind == "thinking" {
			block["signature"] = ""
		}
		c.blocks = append(c.blocks, block)
		c.open = kind
		if c.emit != nil {
			start := map[string]any{"type": kind, kind: ""}
			if kind == "thinking" {
				start["signature"] = ""
			}
			if err := c.emit("content_block_start", map[string]any{"type": "content_block_start", "index": len(c.blocks) - 1, "content_block": start}); err != nil {
				return err
			}
		}
	}
	i := len(c.blocks) - 1
	block := c.blocks[i].(map[string]any)
	block[kind] = block[kind].(string) + text
	if c.emit == nil {
		return nil
	}
	return c.emit("content_block_delta", map[string]any{"type": "content_block_delta", "index": i,
		"delta": map[string]any{"type": kind + "_delta", kind: text}})
}

// closeBlock ends the open text or thinking block.
func (c *antContent) closeBlock() error {
	if c.open == "" {
		return nil
	}
	c.open = ""
	if c.emit == nil {
		return nil
	}
	return c.emit("content_block_stop", map[string]any{"type": "content_block_stop", "index": len(c.blocks) - 1})
}

// antStop is the answer's stop_reason and stop_sequence.
func antStop(out *genOutcome, calls int) (string, *string) {
	switch {
	case calls > 0 && out.res.DoneReason != "length":
		return "tool_use", nil
	case out.stop != "":
		seq := out.stop
		return "stop_sequence", &seq
	case out.res.DoneReason == "length":
		return "max_tokens", nil
	}
	return "end_turn", nil
}

func (s *Server) handleAnthropicMessages(w http.ResponseWriter, r *http.Request) {
	var req antRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectAnthropic, err)
		return
	}
	noteModel(r, req.Model)
	conv, err := s.checkAnthropic(&req, false)
	if err != nil {
		writeError(w, r, dialectAnthropic, err)
		return
	}
	turn, err := newChatTurn(req.Model, conv, nil)
	if err != nil {
		writeError(w, r, dialectAnthropic, err)
		return
	}
	job := turn.job(s.cfg.KeepAlive, func(o *genOptions) error { return antSampling(o, &req) })
	if err := job.precheck(); err != nil {
		writeError(w, r, dialectAnthropic, err)
		return
	}
	// The prompt's length, for message_start, which goes out before the
	// runner reports it.
	promptTokens := 0
	prompt := job.prompt
	job.prompt = func(ctx context.Context, l *loaded) ([]int32, error) {
		toks, err := prompt(ctx, l)
		promptTokens = len(toks)
		return toks, err
	}
	id := newID("msg_")
	msg := func(content []any) antResponse {
		return antResponse{ID: id, Type: "message", Role: "assistant", Model: req.Model, Content: content}
	}
	if !req.Stream {
		content := &antContent{}
		out, _, err := s.runChat(r, job, turn, func(d chatfmt.Delta, _ []TokenLogprob) error { return content.add(d) })
		if err != nil {
			writeError(w, r, dialectAnthropic, err)
			return
		}
		m := msg(content.blocks)
		if m.Content == nil {
			m.Content = []any{}
		}
		reason, seq := antStop(out, turn.calls)
		m.StopReason, m.StopSequence = &reason, seq
		m.Usage = antUsage{InputTokens: out.res.PromptTokens, OutputTokens: len(out.res.Tokens)}
		writeJSON(w, http.StatusOK, m)
		return
	}
	st := newStreamer(w, true)
	started := false
	start := func() error {
		if started {
			return nil
		}
		started = true
		m := msg([]any{})
		m.Usage.InputTokens = promptTokens
		if err := st.event("message_start", map[string]any{"type": "message_start", "message": m}); err != nil {
			return err
		}
		return st.event("ping", map[string]string{"type": "ping"})
	}
	content := &antContent{emit: func(event string, v any) error {
		if err := start(); err != nil {
			return err
		}
		return st.event(event, v)
	}}
	out, _, err := s.runChat(r, job, turn, func(d chatfmt.Delta, _ []TokenLogprob) error { return content.add(d) })
	if err == nil {
		err = start()
	}
	if err == nil {
		err = content.closeBlock()
	}
	if err != nil {
		st.fail(r, dialectAnthropic, err)
		return
	}
	reason, seq := antStop(out, turn.calls)
	st.event("message_delta", map[string]any{"type": "message_delta",
		"delta": map[string]any{"stop_reason": reason, "stop_sequence": seq},
		"usage": map[string]int{"output_tokens": len(out.res.Tokens)}})
	st.event("message_stop", map[string]string{"type": "message_stop"})
}

// handleAnthropicCountTokens answers count_tokens: the prompt the request
// would render (the template with its tools and system message) in
// tokens, without generating.
func (s *Server) handleAnthropicCountTokens(w http.ResponseWriter, r *http.Request) {
	var req antRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectAnthropic, err)
		return
	}
	noteModel(r, req.Model)
	conv, err := s.checkAnthropic(&req, true)
	if err != nil {
		writeError(w, r, dialectAnthropic, err)
		return
	}
	turn, err := newChatTurn(req.Model, conv, nil)
	if err != nil {
		writeError(w, r, dialectAnthropic, err)
		return
	}
	n, err := s.countTokens(r.Context(), turn)
	if err != nil {
		writeError(w, r, dialectAnthropic, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]int{"input_tokens": n})
}

// countTokens renders and tokenizes turn's prompt with its model.
func (s *Server) countTokens(ctx context.Context, turn *chatTurn) (int, error) {
	done, err := s.admit()
	if err != nil {
		return 0, err
	}
	defer done()
	l, _, err := s.acquire(ctx, s.baseName(turn.model))
	if err != nil {
		return 0, err
	}
	defer s.mgr.release(l, s.cfg.KeepAlive)
	toks, err := turn.prompt(ctx, l)
	if err != nil {
		return 0, err
	}
	return len(toks), nil
}
