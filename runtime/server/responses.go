package server

import (
	"container/list"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/hearth-llm/hearth/loader/chat"
	"github.com/hearth-llm/hearth/runtime/chatfmt"
	"github.com/hearth-llm/hearth/runtime/grammar"
)

// OpenAI's Responses API (POST /v1/responses, GET and DELETE
// /v1/responses/{id}) over the chat pipeline: one chatfmt.Conversation per
// request, built from the stored conversation of previous_response_id,
// the instructions and the input items; the output items are the chat
// turn's reasoning, content and calls, in the order the parser completes
// them.

// Bounds of the response store: the most recent responses, by count and
// by the bytes of their text, least recently used out first.
const (
	respStoreCount = 1000
	respStoreBytes = 64 << 20
)

// Metadata limits, OpenAI's.
const (
	maxMetadataKeys     = 16
	maxMetadataKeyLen   = 64
	maxMetadataValueLen = 512
)

type respRequest struct {
	Model              string            `json:"model"`
	Input              json.RawMessage   `json:"input"`
	Instructions       json.RawMessage   `json:"instructions"`
	Tools              json.RawMessage   `json:"tools"`
	ToolChoice         json.RawMessage   `json:"tool_choice"`
	ParallelToolCalls  *bool             `json:"parallel_tool_calls"`
	Text               *respTextConfig   `json:"text"`
	Reasoning          *respReasoning    `json:"reasoning"`
	MaxOutputTokens    *int64            `json:"max_output_tokens"`
	Temperature        *float64          `json:"temperature"`
	TopP               *float64          `json:"top_p"`
	Stream             bool              `json:"stream"`
	Store              *bool             `json:"store"`
	PreviousResponseID string            `json:"previous_response_id"`
	Metadata           map[string]string `json:"metadata"`
	User               *string           `json:"user"`
	Background         bool              `json:"background"`
	Prompt             json.RawMessage   `json:"prompt"`
}

type respTextConfig struct {
	Format json.RawMessage `json:"format"`
}

type respReasoning struct {
	Effort  *string `json:"effort"`
	Summary *string `json:"summary"`
}

// respFormat is text.format.
type respFormat struct {
	Type        string          `json:"type"`
	Name        string          `json:"name,omitempty"`
	Description string          `json:"description,omitempty"`
	Schema      json.RawMessage `json:"schema,omitempty"`
	Strict      *bool           `json:"strict,omitempty"`
}

// respTool is a function tool, as requested and as echoed.
type respTool struct {
	Type        string          `json:"type"`
	Name        string          `json:"name"`
	Description *string         `json:"description"`
	Parameters  json.RawMessage `json:"parameters"`
	Strict      *bool           `json:"strict"`
}

// respInputItem is one input item: a message (type "message" or none), a
// function_call, a function_call_output or a reasoning item.
type respInputItem struct {
	Type      string          `json:"type"`
	Role      string          `json:"role"`
	Content   json.RawMessage `json:"content"`
	CallID    string          `json:"call_id"`
	Name      string          `json:"name"`
	Arguments string          `json:"arguments"`
	Output    json.RawMessage `json:"output"`
	Summary   []respPart      `json:"summary"`
}

// respPart is a content part: input_text, output_text, refusal,
// reasoning_text, summary_text.
type respPart struct {
	Type    string `json:"type"`
	Text    string `json:"text"`
	Refusal string `json:"refusal,omitempty"`
}

func (p respPart) MarshalJSON() ([]byte, error) {
	if p.Type == "output_text" {
		return json.Marshal(struct {
			Type        string `json:"type"`
			Text        string `json:"text"`
			Annotations []any  `json:"annotations"`
			Logprobs    []any  `json:"logprobs"`
		}{p.Type, p.Text, []any{}, []any{}})
	}
	return json.Marshal(struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}{p.Type, p.Text})
}

// respItem is an output item: reasoning, message or function_call.
type respItem struct {
	Type    string
	ID      string
	Status  string
	Content []respPart // reasoning and message
	// function_call
	CallID, Name, Arguments string
}

func (it *respItem) MarshalJSON() ([]byte, error) {
	content := it.Content
	if content == nil {
		content = []respPart{}
	}
	switch it.Type {
	case "reasoning":
		return json.Marshal(struct {
			Type    string     `json:"type"`
			ID      string     `json:"id"`
			Summary []respPart `json:"summary"`
			Content []respPart `json:"content"`
		}{it.Type, it.ID, []respPart{}, content})
	case "message":
		return json.Marshal(struct {
			Type    string     `json:"type"`
			ID      string     `json:"id"`
			Status  string     `json:"status"`
			Role    string     `json:"role"`
			Content []respPart `json:"content"`
		}{it.Type, it.ID, it.Status, "assistant", content})
	}
	return json.Marshal(struct {
		Type      string `json:"type"`
		ID        string `json:"id"`
		CallID    string `json:"call_id"`
		Name      string `json:"name"`
		Arguments string `json:"arguments"`
		Status    string `json:"status"`
	}{it.Type, it.ID, it.CallID, it.Name, it.Arguments, it.Status})
}

type respUsage struct {
	InputTokens        int `json:"input_tokens"`
	InputTokensDetails struct {
		CachedTokens int `json:"cached_tokens"`
	} `json:"input_tokens_details"`
	OutputTokens        int `json:"output_tokens"`
	OutputTokensDetails struct {
		ReasoningTokens int `json:"reasoning_tokens"`
	} `json:"output_tokens_details"`
	TotalTokens int `json:"total_tokens"`
}

type respErrorObject struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

// respObject is the response object: what POST answers, what the stream's
// response.* events carry, and what GET returns.
type respObject struct {
	ID                string           `json:"id"`
	Object            string           `json:"object"`
	CreatedAt         int64            `json:"created_at"`
	Status            string           `json:"status"`
	Background        bool             `json:"background"`
	Error             *respErrorObject `json:"error"`
	IncompleteDetails *struct {
		Reason string `json:"reason"`
	} `json:"incomplete_details"`
	Instructions       *string       `json:"instructions"`
	MaxOutputTokens    *int64        `json:"max_output_tokens"`
	Model              string        `json:"model"`
	Output             []*respItem   `json:"output"`
	ParallelToolCalls  bool          `json:"parallel_tool_calls"`
	PreviousResponseID *string       `json:"previous_response_id"`
	Reasoning          respReasoning `json:"reasoning"`
	Store              bool          `json:"store"`
	Temperature        float64       `json:"temperature"`
	Text               struct {
		Format json.RawMessage `json:"format"`
	} `json:"text"`
	ToolChoice any               `json:"tool_choice"`
	Tools      []respTool        `json:"tools"`
	TopP       float64           `json:"top_p"`
	Truncation string            `json:"truncation"`
	Usage      *respUsage        `json:"usage"`
	User       *string           `json:"user"`
	Metadata   map[string]string `json:"metadata"`
}

// respCall is a request checked and turned into a chat turn.
type respCall struct {
	turn *chatTurn
	// history is the conversation to store with the output: the previous
	// response's, then the input items (never the instructions, which
	// OpenAI does not carry over).
	history []chat.Message
	resp    *respObject
}

func (s *Server) handleResponses(w http.ResponseWriter, r *http.Request) {
	var req respRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	noteModel(r, req.Model)
	rc, err := s.checkResponses(&req)
	if err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	job := rc.turn.job(s.cfg.KeepAlive, func(o *genOptions) error {
		return oaiSampling(o, req.Temperature, req.TopP, nil, nil, nil, req.MaxOutputTokens, nil)
	})
	if err := job.precheck(); err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	b := &respBuilder{resp: rc.resp}
	if req.Stream {
		b.st = newStreamer(w, true)
	}
	out, all, err := s.runChat(r, job, rc.turn, func(d chatfmt.Delta, _ []TokenLogprob) error { return b.add(d) })
	if err != nil {
		b.fail(w, r, err)
		return
	}
	resp := rc.resp
	status := "completed"
	if out.res.DoneReason == "length" {
		status = "incomplete"
		resp.IncompleteDetails = &struct {
			Reason string `json:"reason"`
		}{"max_output_tokens"}
	}
	resp.Status = status
	u := &respUsage{InputTokens: out.res.PromptTokens, OutputTokens: len(out.res.Tokens)}
	u.InputTokensDetails.CachedTokens = out.res.PromptCached
	u.OutputTokensDetails.ReasoningTokens = min(rc.turn.reasoningTexts, u.OutputTokens)
	u.TotalTokens = u.InputTokens + u.OutputTokens
	resp.Usage = u
	b.finish(status)
	body, err := json.Marshal(resp)
	if err != nil {
		b.fail(w, r, err)
		return
	}
	if resp.Store {
		s.responses.put(resp.ID, append(rc.history, outputMessage(all)), body)
	}
	if b.st != nil {
		b.event("response."+status, map[string]any{"response": json.RawMessage(body)})
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(append(body, '\n'))
}

func (s *Server) handleGetResponse(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	body, ok := s.responses.body(id)
	if !ok {
		writeError(w, r, dialectOpenAI, respNotFound(id, ""))
		return
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(http.StatusOK)
	w.Write(append(body, '\n'))
}

func (s *Server) handleDeleteResponse(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if !s.responses.remove(id) {
		writeError(w, r, dialectOpenAI, respNotFound(id, ""))
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "object": "response", "deleted": true})
}

// respNotFound is the 404 for an id the store does not hold (never
// stored, store=false, evicted, deleted).
func respNotFound(id, param string) *apiError {
	e := &apiError{status: http.StatusNotFound, msg: fmt.Sprintf("Response with id %q not found.", id), param: param}
	if param == "previous_response_id" {
		e.msg = fmt.Sprintf("Previous response with id %q not found: Hearth keeps the last %d responses made with store true (in memory, until restart).", id, respStoreCount)
		e.code = "previous_response_not_found"
	}
	return e
}

// checkResponses validates the request and builds its turn and the
// response object's echo of it.
func (s *Server) checkResponses(req *respRequest) (*respCall, error) {
	bad := func(format string, args ...any) (*respCall, error) {
		return nil, errorf(http.StatusBadRequest, format, args...)
	}
	switch {
	case req.Model == "":
		return bad("model is required")
	case req.Background:
		return bad("background is not supported: Hearth answers in the request")
	case len(req.Prompt) > 0 && string(req.Prompt) != "null":
		return bad("prompt (stored prompt templates) is not supported")
	case req.MaxOutputTokens != nil && (*req.MaxOutputTokens < 1 || *req.MaxOutputTokens > maxNumCtx):
		return bad("max_output_tokens %d: want 1..%d", *req.MaxOutputTokens, maxNumCtx)
	case len(req.Metadata) > maxMetadataKeys:
		return bad("metadata has %d keys: at most %d", len(req.Metadata), maxMetadataKeys)
	}
	for k, v := range req.Metadata {
		if utf8.RuneCountInString(k) > maxMetadataKeyLen || utf8.RuneCountInString(v) > maxMetadataValueLen {
			return bad("metadata: keys are at most %d characters, values at most %d", maxMetadataKeyLen, maxMetadataValueLen)
		}
	}
	resp := &respObject{ID: newID("resp_"), Object: "response", CreatedAt: s.now().Unix(), Status: "in_progress",
		Model: req.Model, Output: []*respItem{}, MaxOutputTokens: req.MaxOutputTokens, Temperature: 1, TopP: 1,
		Truncation: "disabled", User: req.User, Metadata: req.Metadata, Store: req.Store == nil || *req.Store}
	if resp.Metadata == nil {
		resp.Metadata = map[string]string{}
	}
	if req.Temperature != nil {
		resp.Temperature = *req.Temperature
	}
	if req.TopP != nil {
		resp.TopP = *req.TopP
	}

	var conv chatfmt.Conversation
	var history []chat.Message
	if req.PreviousResponseID != "" {
		prev, ok := s.responses.history(req.PreviousResponseID)
		if !ok {
			return nil, respNotFound(req.PreviousResponseID, "previous_response_id")
		}
		history = prev
		resp.PreviousResponseID = &req.PreviousResponseID
	}
	input, err := s.respInput(req.Model, req.Input, history)
	if err != nil {
		return nil, err
	}
	history = append(history, input...)
	if len(req.Instructions) > 0 && string(req.Instructions) != "null" {
		var ins string
		if err := json.Unmarshal(req.Instructions, &ins); err != nil {
			return bad("instructions must be a string")
		}
		resp.Instructions = &ins
		conv.Messages = append(conv.Messages, chat.Message{Role: "system", Content: ins})
	}
	conv.Messages = append(conv.Messages, history...)
	if len(conv.Messages) == 0 {
		return bad("input is required")
	}

	if conv.Tools, resp.Tools, err = respTools(req.Tools); err != nil {
		return nil, err
	}
	if conv.Choice, conv.Function, resp.ToolChoice, err = respToolChoice(req.ToolChoice); err != nil {
		return nil, err
	}
	conv.Parallel = req.ParallelToolCalls == nil || *req.ParallelToolCalls
	resp.ParallelToolCalls = conv.Parallel
	if req.Reasoning != nil {
		resp.Reasoning = *req.Reasoning
		if e := req.Reasoning.Effort; e != nil && *e != "" {
			conv.Think = oaiThink(*e)
		}
	}
	var format *grammar.Grammar
	resp.Text.Format = json.RawMessage(`{"type":"text"}`)
	if req.Text != nil {
		if format, resp.Text.Format, err = respTextFormat(req.Text.Format); err != nil {
			return nil, err
		}
	}
	turn, err := newChatTurn(req.Model, conv, format)
	if err != nil {
		return nil, err
	}
	return &respCall{turn: turn, history: history, resp: resp}, nil
}

// respInput turns the input (a string, or a list of items) into messages.
// Earlier calls are found in prior (the previous response's conversation)
// too, to name the function a function_call_output answers.
func (s *Server) respInput(model string, raw json.RawMessage, prior []chat.Message) ([]chat.Message, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var text string
	if json.Unmarshal(raw, &text) == nil {
		return []chat.Message{{Role: "user", Content: text}}, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, errorf(http.StatusBadRequest, "input must be a string or an array of input items")
	}
	names := map[string]string{} // call_id → function name
	for _, m := range prior {
		for _, c := range m.ToolCalls {
			names[c.ID] = c.Name
		}
	}
	var msgs []chat.Message
	// assistant is the assistant message the next reasoning, message or
	// call joins: output items of one turn are one assistant message.
	assistant := func() *chat.Message {
		if n := len(msgs); n > 0 && msgs[n-1].Role == "assistant" {
			return &msgs[n-1]
		}
		msgs = append(msgs, chat.Message{Role: "assistant"})
		return &msgs[len(msgs)-1]
	}
	for i, rawItem := range items {
		var it respInputItem
		if err := json.Unmarshal(rawItem, &it); err != nil {
			return nil, errorf(http.StatusBadRequest, "input[%d] is not a valid input item: %v", i, err)
		}
		switch it.Type {
		case "", "message":
			content, err := respContent(it.Content, i)
			if errors.Is(err, errImagePart) {
				return nil, s.refuseImages(model)
			}
			if err != nil {
				return nil, err
			}
			switch it.Role {
			case "user", "system":
				msgs = append(msgs, chat.Message{Role: it.Role, Content: content})
			case "developer":
				msgs = append(msgs, chat.Message{Role: "system", Content: content})
			case "assistant":
				a := assistant()
				if a.Content != "" || len(a.ToolCalls) > 0 {
					msgs = append(msgs, chat.Message{Role: "assistant"})
					a = &msgs[len(msgs)-1]
				}
				a.Content = content
			case "":
				return nil, errorf(http.StatusBadRequest, "input[%d] has no role (or type)", i)
			default:
				return nil, errorf(http.StatusBadRequest, "input[%d]: role %q: want user, assistant, system or developer", i, it.Role)
			}
		case "function_call":
			if it.CallID == "" {
				return nil, errorf(http.StatusBadRequest, "input[%d]: function_call needs a call_id", i)
			}
			call, err := oaiHistoryCall(oaiToolCall{ID: it.CallID, Function: oaiToolFunction{Name: it.Name, Arguments: it.Arguments}})
			if err != nil {
				return nil, errorf(http.StatusBadRequest, "input[%d]: function_call: %v", i, strings.TrimPrefix(err.Error(), "function."))
			}
			a := assistant()
			a.ToolCalls = append(a.ToolCalls, call)
			names[it.CallID] = it.Name
		case "function_call_output":
			if it.CallID == "" {
				return nil, errorf(http.StatusBadRequest, "input[%d]: function_call_output needs a call_id", i)
			}
			out, err := respContent(it.Output, i)
			if err != nil {
				return nil, errorf(http.StatusBadRequest, "input[%d]: output must be a string or an array of input_text parts", i)
			}
			msgs = append(msgs, chat.Message{Role: "tool", Content: out, ToolCallID: it.CallID, Name: names[it.CallID]})
		case "reasoning":
			var text strings.Builder
			var parts []respPart
			if len(it.Content) > 0 && string(it.Content) != "null" {
				if err := json.Unmarshal(it.Content, &parts); err != nil {
					return nil, errorf(http.StatusBadRequest, "input[%d]: reasoning content must be an array of reasoning_text parts", i)
				}
			}
			if len(parts) == 0 {
				parts = it.Summary
			}
			for _, p := range parts {
				text.WriteString(p.Text)
			}
			a := assistant()
			if a.Content != "" || len(a.ToolCalls) > 0 {
				msgs = append(msgs, chat.Message{Role: "assistant"})
				a = &msgs[len(msgs)-1]
			}
			a.Thinking += text.String()
		default:
			return nil, errorf(http.StatusBadRequest, "input[%d]: item type %q is not supported (Hearth takes message, function_call, function_call_output and reasoning items)", i, it.Type)
		}
	}
	return msgs, nil
}

// respContent reads a message's content: a string, or text parts
// (input_text, output_text, refusal).
func respContent(raw json.RawMessage, i int) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []respPart
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errorf(http.StatusBadRequest, "input[%d].content must be a string or an array of content parts", i)
	}
	var b strings.Builder
	for _, p := range parts {
		switch p.Type {
		case "input_text", "output_text", "text":
			b.WriteString(p.Text)
		case "refusal":
			b.WriteString(p.Refusal)
		case "input_image":
			return "", errImagePart
		default:
			return "", errorf(http.StatusBadRequest, "input[%d]: content parts of type %q are not supported", i, p.Type)
		}
	}
	return b.String(), nil
}

// respTools reads tools: function tools only.
func respTools(raw json.RawMessage) ([]chatfmt.Tool, []respTool, error) {
	echo := []respTool{}
	if len(raw) == 0 || string(raw) == "null" {
		return nil, echo, nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return nil, nil, errorf(http.StatusBadRequest, `tools must be an array of {"type": "function", "name": ..., "parameters": ...}`)
	}
	var tools []chatfmt.Tool
	for i, item := range items {
		var t respTool
		if err := json.Unmarshal(item, &t); err != nil {
			return nil, nil, errorf(http.StatusBadRequest, "tools[%d] is not a valid tool: %v", i, err)
		}
		if t.Type != "function" {
			return nil, nil, errorf(http.StatusBadRequest, "tools[%d]: tool type %q is not supported: Hearth serves function tools only", i, t.Type)
		}
		desc := ""
		if t.Description != nil {
			desc = *t.Description
		}
		t.Parameters = nullAsNil(t.Parameters)
		tools = append(tools, chatfmt.Tool{Name: t.Name, Description: desc, Parameters: t.Parameters})
		if t.Strict == nil { // OpenAI's default; Hearth's calls always follow the schema
			t.Strict = ptrTo(true)
		}
		if t.Parameters == nil {
			t.Parameters = json.RawMessage("null")
		}
		echo = append(echo, t)
	}
	return tools, echo, nil
}

func ptrTo[T any](v T) *T { return &v }

// respToolChoice reads tool_choice: "none", "auto", "required" or
// {"type": "function", "name": ...}; hosted and MCP tools are refused.
func respToolChoice(raw json.RawMessage) (chatfmt.Choice, string, any, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return chatfmt.ChoiceAuto, "", "auto", nil
	}
	var mode string
	if json.Unmarshal(raw, &mode) == nil {
		switch mode {
		case "auto":
			return chatfmt.ChoiceAuto, "", mode, nil
		case "none":
			return chatfmt.ChoiceNone, "", mode, nil
		case "required":
			return chatfmt.ChoiceRequired, "", mode, nil
		}
		return 0, "", nil, errorf(http.StatusBadRequest, "tool_choice %q: want none, auto, required or a function", mode)
	}
	var named struct {
		Type string `json:"type"`
		Name string `json:"name"`
	}
	if err := json.Unmarshal(raw, &named); err != nil {
		return 0, "", nil, errorf(http.StatusBadRequest, `tool_choice must be "none", "auto", "required" or {"type": "function", "name": ...}`)
	}
	if named.Type != "function" {
		return 0, "", nil, errorf(http.StatusBadRequest, "tool_choice type %q is not supported: Hearth serves function tools only", named.Type)
	}
	if named.Name == "" {
		return 0, "", nil, errorf(http.StatusBadRequest, "tool_choice: a function choice needs a name")
	}
	return chatfmt.ChoiceFunction, named.Name, map[string]string{"type": "function", "name": named.Name}, nil
}

// respTextFormat compiles text.format as chat's response_format, and
// returns it as echoed.
func respTextFormat(raw json.RawMessage) (*grammar.Grammar, json.RawMessage, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, json.RawMessage(`{"type":"text"}`), nil
	}
	var f respFormat
	if err := json.Unmarshal(raw, &f); err != nil {
		return nil, nil, errorf(http.StatusBadRequest, `text.format must be {"type": "text"}, {"type": "json_object"} or {"type": "json_schema", "name": ..., "schema": ...}`)
	}
	var g *grammar.Grammar
	var err error
	switch f.Type {
	case "text":
	case "json_object":
		g = grammar.JSON()
	case "json_schema":
		f.Schema = nullAsNil(f.Schema)
		g, err = schemaGrammar(f.Schema, "text.format.schema")
	default:
		err = errorf(http.StatusBadRequest, "text.format.type %q: want text, json_object or json_schema", f.Type)
	}
	if err != nil {
		return nil, nil, err
	}
	echo, err := json.Marshal(f)
	return g, echo, err
}

// outputMessage is the answer as the assistant message the next turn's
// conversation holds.
func outputMessage(all chatfmt.Delta) chat.Message {
	m := chat.Message{Role: "assistant", Content: all.Content, Thinking: all.Reasoning}
	for _, c := range all.Calls {
		var args any = map[string]any{}
		json.Unmarshal([]byte(c.Arguments), &args)
		m.ToolCalls = append(m.ToolCalls, chat.ToolCall{ID: c.ID, Name: c.Name, Arguments: args})
	}
	return m
}

// respBuilder builds the output items from the chat turn's deltas and,
// when streaming, sends the events that build them on the client's side:
// output_item.added, content_part.added, the text deltas, then the .done
// events when the item closes (the next item begins, or the answer ends).
type respBuilder struct {
	resp *respObject
	st   *streamer // nil: not streaming
	seq  int
	open *respItem // the reasoning or message item text is going into
	// began: response.created and response.in_progress went out.
	began bool
}

// event sends one event, after response.created and response.in_progress
// when it is the first (so errors before any output are plain HTTP
// errors).
func (b *respBuilder) event(typ string, fields map[string]any) error {
	if b.st == nil {
		return nil
	}
	if !b.began {
		b.began = true
		for _, t := range []string{"response.created", "response.in_progress"} {
			if err := b.send(t, map[string]any{"response": b.resp}); err != nil {
				return err
			}
		}
	}
	return b.send(typ, fields)
}

func (b *respBuilder) send(typ string, fields map[string]any) error {
	fields["type"] = typ
	fields["sequence_number"] = b.seq
	b.seq++
	data, err := json.Marshal(fields)
	if err != nil {
		return err
	}
	return b.st.line("event: " + typ + "\ndata: " + string(data) + "\n\n")
}

func (b *respBuilder) add(d chatfmt.Delta) error {
	if d.Reasoning != "" {
		if err := b.text("reasoning", d.Reasoning); err != nil {
			return err
		}
	}
	if d.Content != "" {
		if err := b.text("message", d.Content); err != nil {
			return err
		}
	}
	for _, c := range d.Calls {
		if err := b.call(c); err != nil {
			return err
		}
	}
	return nil
}

// index is the output index of the last item.
func (b *respBuilder) index() int { return len(b.resp.Output) - 1 }

// text adds text to the open item of kind (reasoning or message), opening
// one when the last is another.
func (b *respBuilder) text(kind, text string) error {
	if b.open == nil || b.open.Type != kind {
		if err := b.close("completed"); err != nil {
			return err
		}
		if err := b.openItem(kind); err != nil {
			return err
		}
	}
	part := &b.open.Content[0]
	part.Text += text
	ev := map[string]any{"item_id": b.open.ID, "output_index": b.index(), "content_index": 0, "delta": text}
	typ := "response.reasoning_text.delta"
	if kind == "message" {
		typ = "response.output_text.delta"
		ev["logprobs"] = []any{}
	}
	return b.event(typ, ev)
}

func (b *respBuilder) openItem(kind string) error {
	it := &respItem{Type: kind, ID: newID("rs_"), Status: "in_progress"}
	part := respPart{Type: "reasoning_text"}
	if kind == "message" {
		it.ID, part.Type = newID("msg_"), "output_text"
	}
	b.resp.Output = append(b.resp.Output, it)
	if err := b.event("response.output_item.added", map[string]any{"output_index": b.index(), "item": it}); err != nil {
		return err
	}
	it.Content = []respPart{part}
	b.open = it
	return b.event("response.content_part.added", map[string]any{"item_id": it.ID, "output_index": b.index(), "content_index": 0, "part": part})
}

// close ends the open item, if any, with status.
func (b *respBuilder) close(status string) error {
	it := b.open
	if it == nil {
		return nil
	}
	b.open = nil
	part := it.Content[0]
	typ := "response.reasoning_text.done"
	if it.Type == "message" {
		typ = "response.output_text.done"
	}
	ev := map[string]any{"item_id": it.ID, "output_index": b.index(), "content_index": 0, "text": part.Text}
	if it.Type == "message" {
		ev["logprobs"] = []any{}
	}
	if err := b.event(typ, ev); err != nil {
		return err
	}
	if err := b.event("response.content_part.done", map[string]any{"item_id": it.ID, "output_index": b.index(), "content_index": 0, "part": part}); err != nil {
		return err
	}
	it.Status = status
	return b.event("response.output_item.done", map[string]any{"output_index": b.index(), "item": it})
}

// call adds a completed call: one arguments delta with all of them.
func (b *respBuilder) call(c chatfmt.Call) error {
	if err := b.close("completed"); err != nil {
		return err
	}
	it := &respItem{Type: "function_call", ID: newID("fc_"), CallID: c.ID, Name: c.Name, Status: "in_progress"}
	b.resp.Output = append(b.resp.Output, it)
	i := b.index()
	if err := b.event("response.output_item.added", map[string]any{"output_index": i, "item": it}); err != nil {
		return err
	}
	it.Arguments = c.Arguments
	if err := b.event("response.function_call_arguments.delta", map[string]any{"item_id": it.ID, "output_index": i, "delta": c.Arguments}); err != nil {
		return err
	}
	if err := b.event("response.function_call_arguments.done", map[string]any{"item_id": it.ID, "output_index": i, "name": c.Name, "arguments": c.Arguments}); err != nil {
		return err
	}
	it.Status = "completed"
	return b.event("response.output_item.done", map[string]any{"output_index": i, "item": it})
}

// finish closes the last item; an answer with no output at all gets an
// empty message.
func (b *respBuilder) finish(status string) {
	if len(b.resp.Output) == 0 {
		b.openItem("message")
	}
	b.close(status)
}

// fail reports err: as the HTTP answer when nothing was streamed yet, else
// as an error event and response.failed.
func (b *respBuilder) fail(w http.ResponseWriter, r *http.Request, err error) {
	if b.st == nil || !b.st.started {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	ae := classify(err)
	noteError(r, ae)
	if ae.status == statusClientClosed {
		return
	}
	code := "server_error"
	if ae.status < 500 {
		code = "invalid_request"
	}
	b.event("error", map[string]any{"code": code, "message": ae.msg, "param": nil})
	b.resp.Status = "failed"
	b.resp.Error = &respErrorObject{Code: code, Message: ae.msg}
	b.event("response.failed", map[string]any{"response": b.resp})
}

// respStore keeps recent responses: their conversation (for
// previous_response_id) and their JSON (for GET). Safe for concurrent use.
type respStore struct {
	mu       sync.Mutex
	maxCount int
	maxBytes int64
	bytes    int64
	lru      *list.List // of *storedResp, most recent first
	byID     map[string]*list.Element
}

type storedResp struct {
	id   string
	msgs []chat.Message
	body []byte
	size int64
}

func newRespStore(maxCount int, maxBytes int64) *respStore {
	return &respStore{maxCount: maxCount, maxBytes: maxBytes, lru: list.New(), byID: map[string]*list.Element{}}
}

// put keeps a response, evicting the least recently used beyond the
// bounds. A response larger than the whole budget is not kept.
func (rs *respStore) put(id string, msgs []chat.Message, body []byte) {
	size := int64(len(body) + len(id))
	for _, m := range msgs {
		size += int64(len(m.Content) + len(m.Thinking) + len(m.Role) + len(m.ToolCallID) + len(m.Name) + 64)
		for _, c := range m.ToolCalls {
			a, _ := json.Marshal(c.Arguments)
			size += int64(len(c.ID) + len(c.Name) + len(a))
		}
	}
	if size > rs.maxBytes {
		return
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	rs.byID[id] = rs.lru.PushFront(&storedResp{id: id, msgs: msgs, body: body, size: size})
	rs.bytes += size
	for rs.lru.Len() > rs.maxCount || rs.bytes > rs.maxBytes {
		rs.drop(rs.lru.Back())
	}
}

func (rs *respStore) drop(e *list.Element) {
	sr := rs.lru.Remove(e).(*storedResp)
	delete(rs.byID, sr.id)
	rs.bytes -= sr.size
}

func (rs *respStore) get(id string) (*storedResp, bool) {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	e, ok := rs.byID[id]
	if !ok {
		return nil, false
	}
	rs.lru.MoveToFront(e)
	return e.Value.(*storedResp), true
}

// history is a copy of the conversation of response id.
func (rs *respStore) history(id string) ([]chat.Message, bool) {
	sr, ok := rs.get(id)
	if !ok {
		return nil, false
	}
	return append([]chat.Message(nil), sr.msgs...), true
}

func (rs *respStore) body(id string) ([]byte, bool) {
	sr, ok := rs.get(id)
	if !ok {
		return nil, false
	}
	return sr.body, true
}

func (rs *respStore) remove(id string) bool {
	rs.mu.Lock()
	defer rs.mu.Unlock()
	e, ok := rs.byID[id]
	if ok {
		rs.drop(e)
	}
	return ok
}
