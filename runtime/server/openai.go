package server

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"github.com/hearth-llm/hearth/runtime/chatfmt"
	"math"
	"net/http"
	"strings"

	"github.com/hearth-llm/hearth/loader/chat"
	"github.com/hearth-llm/hearth/runtime/grammar"
	"github.com/hearth-llm/hearth/runtime/models"
)

// OpenAI wire types: only the fields Hearth reads or writes.

type oaiChatRequest struct {
	Model               string          `json:"model"`
	Messages            []oaiMessage    `json:"messages"`
	Stream              bool            `json:"stream"`
	StreamOptions       *oaiStreamOpts  `json:"stream_options"`
	Stop                json.RawMessage `json:"stop"`
	MaxTokens           *int64          `json:"max_tokens"`
	MaxCompletionTokens *int64          `json:"max_completion_tokens"`
	Temperature         *float64        `json:"temperature"`
	TopP                *float64        `json:"top_p"`
	Seed                *int64          `json:"seed"`
	FrequencyPenalty    *float64        `json:"frequency_penalty"`
	PresencePenalty     *float64        `json:"presence_penalty"`
	ResponseFormat      *oaiFormat      `json:"response_format"`
	N                   *int            `json:"n"`
	Tools               json.RawMessage `json:"tools"`
	ToolChoice          json.RawMessage `json:"tool_choice"`
	ParallelToolCalls   *bool           `json:"parallel_tool_calls"`
	ReasoningEffort     string          `json:"reasoning_effort"`
	ChatTemplateKwargs  map[string]any  `json:"chat_template_kwargs"`
	Logprobs            *bool           `json:"logprobs"`
	TopLogprobs         *int            `json:"top_logprobs"`
}

type oaiStreamOpts struct {
	IncludeUsage bool `json:"include_usage"`
}

type oaiFormat struct {
	Type       string         `json:"type"`
	JSONSchema *oaiJSONSchema `json:"json_schema"`
}

type oaiJSONSchema struct {
	Name   string          `json:"name"`
	Schema json.RawMessage `json:"schema"`
	Strict *bool           `json:"strict"`
}

type oaiMessage struct {
	Role             string          `json:"role"`
	Content          json.RawMessage `json:"content"`
	Name             string          `json:"name"`
	ToolCalls        []oaiToolCall   `json:"tool_calls"`
	ToolCallID       string          `json:"tool_call_id"`
	ReasoningContent string          `json:"reasoning_content"`
	Reasoning        string          `json:"reasoning"`
}

type oaiCompletionRequest struct {
	Model            string          `json:"model"`
	Prompt           json.RawMessage `json:"prompt"`
	Stream           bool            `json:"stream"`
	StreamOptions    *oaiStreamOpts  `json:"stream_options"`
	Stop             json.RawMessage `json:"stop"`
	MaxTokens        *int64          `json:"max_tokens"`
	Temperature      *float64        `json:"temperature"`
	TopP             *float64        `json:"top_p"`
	Seed             *int64          `json:"seed"`
	FrequencyPenalty *float64        `json:"frequency_penalty"`
	PresencePenalty  *float64        `json:"presence_penalty"`
	N                *int            `json:"n"`
	BestOf           *int            `json:"best_of"`
	Echo             bool            `json:"echo"`
	Suffix           string          `json:"suffix"`
	Logprobs         *int            `json:"logprobs"`
}

type oaiEmbeddingRequest struct {
	Model          string          `json:"model"`
	Input          json.RawMessage `json:"input"`
	EncodingFormat string          `json:"encoding_format"`
	Dimensions     int             `json:"dimensions"`
}

type oaiUsage struct {
	PromptTokens     int `json:"prompt_tokens"`
	CompletionTokens int `json:"completion_tokens"`
	TotalTokens      int `json:"total_tokens"`
}

type oaiChatMessage struct {
	Role             string        `json:"role,omitempty"`
	Content          string        `json:"content,omitempty"`
	ReasoningContent string        `json:"reasoning_content,omitempty"`
	ToolCalls        []oaiToolCall `json:"tool_calls,omitempty"`
}

type oaiChatChoice struct {
	Index        int             `json:"index"`
	Message      *oaiChatMessage `json:"message,omitempty"`
	Delta        *oaiChatMessage `json:"delta,omitempty"`
	Logprobs     any             `json:"logprobs"`
	FinishReason *string         `json:"finish_reason"`
}

type oaiChatResponse struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint string          `json:"system_fingerprint"`
	Choices           []oaiChatChoice `json:"choices"`
	Usage             *oaiUsage       `json:"usage,omitempty"`
}

type oaiTextChoice struct {
	Text         string  `json:"text"`
	Index        int     `json:"index"`
	Logprobs     any     `json:"logprobs"`
	FinishReason *string `json:"finish_reason"`
}

type oaiCompletionResponse struct {
	ID                string          `json:"id"`
	Object            string          `json:"object"`
	Created           int64           `json:"created"`
	Model             string          `json:"model"`
	SystemFingerprint string          `json:"system_fingerprint"`
	Choices           []oaiTextChoice `json:"choices"`
	Usage             *oaiUsage       `json:"usage,omitempty"`
}

type oaiModel struct {
	ID      string `json:"id"`
	Object  string `json:"object"`
	Created int64  `json:"created"`
	OwnedBy string `json:"owned_by"`
	// Version is Hearth's: the sha256 of the model's GGUF file (of the
	// adapter's, for a LoRA adapter).
	Version string `json:"version,omitempty"`
	// Root and Parent are vLLM's: for a LoRA adapter, its file and its
	// base model; absent for a model.
	Root   string  `json:"root,omitempty"`
	Parent *string `json:"parent,omitempty"`
}

const fingerprint = "fp_hearth"

func newID(prefix string) string {
	var b [12]byte
	rand.Read(b[:])
	return prefix + hex.EncodeToString(b[:])
}

// oaiStrings reads a field that is a string, an array of strings, or null.
func oaiStrings(raw json.RawMessage, field string) ([]string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var one string
	if json.Unmarshal(raw, &one) == nil {
		return []string{one}, nil
	}
	var many []string
	if err := json.Unmarshal(raw, &many); err != nil {
		return nil, errorf(http.StatusBadRequest, "%s must be a string or an array of strings", field)
	}
	return many, nil
}

// errImagePart marks a message with an image part.
var errImagePart = errors.New("image content part")

// oaiContent reads a message's content: a string, null, or an array of
// parts of which only text parts are accepted.
func oaiContent(raw json.RawMessage, i int) (string, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return "", nil
	}
	var s string
	if json.Unmarshal(raw, &s) == nil {
		return s, nil
	}
	var parts []struct {
		Type string `json:"type"`
		Text string `json:"text"`
	}
	if err := json.Unmarshal(raw, &parts); err != nil {
		return "", errorf(http.StatusBadRequest, "messages[%d].content must be a string or an array of content parts", i)
	}
	var b strings.Builder
	for _, p := range parts {
		switch p.Type {
		case "text":
			b.WriteString(p.Text)
		case "image_url", "input_image":
			return "", errImagePart
		default:
			return "", errorf(http.StatusBadRequest, "messages[%d]: content parts of type %q are not supported", i, p.Type)
		}
	}
	return b.String(), nil
}

// oaiSampling maps OpenAI's sampling fields onto Ollama options, with
// the defaults Ollama's compatibility layer uses (temperature 1, top_p 1).
func oaiSampling(o *genOptions, temp, topP *float64, seed *int64, freq, pres *float64, maxTokens *int64, stop []string) error {
	m := map[string]any{"temperature": 1.0, "top_p": 1.0}
	if temp != nil {
		m["temperature"] = *temp
	}
	if topP != nil {
		m["top_p"] = *topP
	}
	if freq != nil {
		m["frequency_penalty"] = *freq
	}
	if pres != nil {
		m["presence_penalty"] = *pres
	}
	if seed != nil {
		if *seed > maxSeed || *seed < -maxSeed {
			return errorf(http.StatusBadRequest, "seed %d is out of range", *seed)
		}
		m["seed"] = float64(*seed)
	}
	if maxTokens != nil {
		if *maxTokens < 1 || *maxTokens > maxNumCtx {
			return errorf(http.StatusBadRequest, "max_tokens %d: want 1..%d", *maxTokens, maxNumCtx)
		}
		m["num_predict"] = float64(*maxTokens)
	}
	if err := o.apply(m); err != nil {
		return err
	}
	if stop != nil {
		o.Stop = stop
	}
	return nil
}

func (s *Server) handleOAIChat(w http.ResponseWriter, r *http.Request) {
	var req oaiChatRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	noteModel(r, req.Model)
	conv, stop, err := s.checkOAIChat(&req)
	if err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	g, err := oaiGrammar(req.ResponseFormat)
	if err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	lpOn, lpTop, err := oaiChatLogprobs(req.Logprobs, req.TopLogprobs)
	if err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	turn, err := newChatTurn(req.Model, conv, g)
	if err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	maxTokens := req.MaxTokens
	if req.MaxCompletionTokens != nil {
		maxTokens = req.MaxCompletionTokens
	}
	job := turn.job(s.cfg.KeepAlive, func(o *genOptions) error {
		return oaiSampling(o, req.Temperature, req.TopP, req.Seed, req.FrequencyPenalty, req.PresencePenalty, maxTokens, stop)
	})
	job.logprobs, job.topLogprobs = lpOn, lpTop
	if err := job.precheck(); err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	id, created := newID("chatcmpl-"), s.now().Unix()
	resp := func(choices []oaiChatChoice, object string) oaiChatResponse {
		return oaiChatResponse{ID: id, Object: object, Created: created, Model: req.Model, SystemFingerprint: fingerprint, Choices: choices}
	}
	usage := func(out *genOutcome) *oaiUsage {
		n := len(out.res.Tokens)
		return &oaiUsage{PromptTokens: out.res.PromptTokens, CompletionTokens: n, TotalTokens: out.res.PromptTokens + n}
	}
	finish := func(out *genOutcome) *string {
		reason := out.res.DoneReason
		if turn.calls > 0 && reason == "stop" {
			reason = "tool_calls"
		}
		return &reason
	}
	if req.Stream {
		st := newStreamer(w, true)
		role := "assistant"
		out, _, err := s.runChat(r, job, turn, func(d chatfmt.Delta, lps []TokenLogprob) error {
			m := &oaiChatMessage{Role: role, Content: d.Content, ReasoningContent: d.Reasoning, ToolCalls: oaiToolCalls(d.Calls, turn.calls-len(d.Calls))}
			role = ""
			return st.send(resp([]oaiChatChoice{{Delta: m, Logprobs: oaiChatLogprobsOf(lpOn, lps)}}, "chat.completion.chunk"))
		})
		if err != nil {
			st.fail(r, dialectOpenAI, err)
			return
		}
		st.send(resp([]oaiChatChoice{{Delta: &oaiChatMessage{Role: role}, FinishReason: finish(out)}}, "chat.completion.chunk"))
		if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
			c := resp([]oaiChatChoice{}, "chat.completion.chunk")
			c.Usage = usage(out)
			st.send(c)
		}
		st.line("data: [DONE]\n\n")
		return
	}
	out, all, err := s.runChat(r, job, turn, nil)
	if err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	m := &oaiChatMessage{Role: "assistant", Content: all.Content, ReasoningContent: all.Reasoning, ToolCalls: oaiToolCalls(all.Calls, 0)}
	c := resp([]oaiChatChoice{{Message: m, FinishReason: finish(out), Logprobs: oaiChatLogprobsOf(lpOn, out.logprobs)}}, "chat.completion")
	c.Usage = usage(out)
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) checkOAIChat(req *oaiChatRequest) (chatfmt.Conversation, []string, error) {
	var conv chatfmt.Conversation
	if req.Model == "" {
		return conv, nil, errorf(http.StatusBadRequest, "model is required")
	}
	if len(req.Messages) == 0 {
		return conv, nil, errorf(http.StatusBadRequest, "messages must not be empty")
	}
	conv.Messages = make([]chat.Message, len(req.Messages))
	for i, m := range req.Messages {
		text, err := oaiContent(m.Content, i)
		if errors.Is(err, errImagePart) {
			return conv, nil, s.refuseImages(req.Model)
		}
		if err != nil {
			return conv, nil, err
		}
		role := m.Role
		switch role {
		case "":
			return conv, nil, errorf(http.StatusBadRequest, "messages[%d] has no role", i)
		case "developer":
			role = "system"
		}
		cm := chat.Message{Role: role, Content: text, ToolCallID: m.ToolCallID, Name: m.Name, Thinking: m.ReasoningContent}
		if cm.Thinking == "" {
			cm.Thinking = m.Reasoning
		}
		for j, c := range m.ToolCalls {
			call, err := oaiHistoryCall(c)
			if err != nil {
				return conv, nil, errorf(http.StatusBadRequest, "messages[%d].tool_calls[%d]: %v", i, j, err)
			}
			cm.ToolCalls = append(cm.ToolCalls, call)
		}
		conv.Messages[i] = cm
	}
	stop, err := oaiStrings(req.Stop, "stop")
	if err == nil {
		err = checkStops(stop)
	}
	if err == nil {
		conv.Tools, err = oaiTools(req.Tools)
	}
	if err == nil {
		conv.Choice, conv.Function, err = oaiToolChoice(req.ToolChoice)
	}
	conv.Parallel = req.ParallelToolCalls == nil || *req.ParallelToolCalls
	if req.ReasoningEffort != "" {
		conv.Think = oaiThink(req.ReasoningEffort)
	}
	if v, ok := req.ChatTemplateKwargs["enable_thinking"].(bool); ok {
		conv.Think.Set, conv.Think.On = true, v
	}
	switch {
	case err != nil:
		return conv, nil, err
	case req.N != nil && *req.N != 1:
		return conv, nil, errorf(http.StatusBadRequest, "n must be 1: Hearth returns one choice")
	}
	return conv, stop, nil
}

// oaiGrammar compiles response_format: json_object is any JSON object,
// json_schema its schema (any JSON object when it has none).
func oaiGrammar(f *oaiFormat) (*grammar.Grammar, error) {
	if f == nil {
		return nil, nil
	}
	switch f.Type {
	case "", "text":
		return nil, nil
	case "json_object":
		return grammar.JSON(), nil
	case "json_schema":
		if f.JSONSchema == nil {
			return nil, errorf(http.StatusBadRequest, "response_format.json_schema is required when type is json_schema")
		}
		return schemaGrammar(f.JSONSchema.Schema, "response_format.json_schema.schema")
	}
	return nil, errorf(http.StatusBadRequest, "response_format.type %q: want text, json_object or json_schema", f.Type)
}

// schemaGrammar compiles a JSON schema given in field; none (absent or
// null) is any JSON object.
func schemaGrammar(schema json.RawMessage, field string) (*grammar.Grammar, error) {
	if len(schema) == 0 || string(schema) == "null" {
		return grammar.JSON(), nil
	}
	g, err := grammar.FromSchema(schema)
	if err != nil {
		return nil, errorf(http.StatusBadRequest, "invalid %s: %v", field, err)
	}
	return g, nil
}

// oaiThink reads a reasoning effort (chat's reasoning_effort, Responses'
// reasoning.effort): "none" turns thinking off, "minimal" on without an
// effort, others are the effort (checked by chatfmt.Conversation.Check).
func oaiThink(effort string) chatfmt.Think {
	t := chatfmt.Think{Set: true, On: effort != "none", Effort: effort}
	if effort == "none" || effort == "minimal" {
		t.Effort = ""
	}
	return t
}

func (s *Server) handleOAICompletions(w http.ResponseWriter, r *http.Request) {
	var req oaiCompletionRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	noteModel(r, req.Model)
	prompt, stop, err := checkOAICompletion(&req)
	if err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	lpOn, lpTop, err := oaiCompletionLogprobs(req.Logprobs)
	if err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	job := &genJob{
		model: req.Model, keepAlive: s.cfg.KeepAlive,
		options: func(o *genOptions) error {
			return oaiSampling(o, req.Temperature, req.TopP, req.Seed, req.FrequencyPenalty, req.PresencePenalty, req.MaxTokens, stop)
		},
		// The completions API continues text as it is: no chat template.
		prompt:   func(ctx context.Context, l *loaded) ([]int32, error) { return l.runner.Tokenize(prompt, true, true) },
		logprobs: lpOn, topLogprobs: lpTop,
	}
	if err := job.precheck(); err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	id, created := newID("cmpl-"), s.now().Unix()
	resp := func(choice oaiTextChoice) oaiCompletionResponse {
		return oaiCompletionResponse{ID: id, Object: "text_completion", Created: created, Model: req.Model,
			SystemFingerprint: fingerprint, Choices: []oaiTextChoice{choice}}
	}
	usage := func(out *genOutcome) *oaiUsage {
		n := len(out.res.Tokens)
		return &oaiUsage{PromptTokens: out.res.PromptTokens, CompletionTokens: n, TotalTokens: out.res.PromptTokens + n}
	}
	if req.Stream {
		st := newStreamer(w, true)
		out, err := s.generate(r, job, func(text string, lps []TokenLogprob) error {
			return st.send(resp(oaiTextChoice{Text: text, Logprobs: oaiCompletionLogprobsOf(lpOn, lps)}))
		})
		if err != nil {
			st.fail(r, dialectOpenAI, err)
			return
		}
		reason := out.res.DoneReason
		st.send(resp(oaiTextChoice{FinishReason: &reason}))
		if req.StreamOptions != nil && req.StreamOptions.IncludeUsage {
			c := resp(oaiTextChoice{})
			c.Choices = []oaiTextChoice{}
			c.Usage = usage(out)
			st.send(c)
		}
		st.line("data: [DONE]\n\n")
		return
	}
	out, text, ok := s.generateAll(w, r, job, dialectOpenAI)
	if !ok {
		return
	}
	reason := out.res.DoneReason
	c := resp(oaiTextChoice{Text: text, FinishReason: &reason, Logprobs: oaiCompletionLogprobsOf(lpOn, out.logprobs)})
	c.Usage = usage(out)
	writeJSON(w, http.StatusOK, c)
}

func checkOAICompletion(req *oaiCompletionRequest) (string, []string, error) {
	if req.Model == "" {
		return "", nil, errorf(http.StatusBadRequest, "model is required")
	}
	prompts, err := oaiStrings(req.Prompt, "prompt")
	if err != nil {
		return "", nil, errorf(http.StatusBadRequest, "prompt must be a string (token-id prompts are not supported)")
	}
	stop, err := oaiStrings(req.Stop, "stop")
	if err == nil {
		err = checkStops(stop)
	}
	switch {
	case err != nil:
		return "", nil, err
	case len(prompts) != 1:
		return "", nil, errorf(http.StatusBadRequest, "prompt must be one string (got %d)", len(prompts))
	case prompts[0] == "":
		return "", nil, errorf(http.StatusBadRequest, "prompt must not be empty")
	case req.N != nil && *req.N != 1, req.BestOf != nil && *req.BestOf != 1:
		return "", nil, errorf(http.StatusBadRequest, "n and best_of must be 1")
	case req.Echo:
		return "", nil, errorf(http.StatusBadRequest, "echo is not supported")
	case req.Suffix != "":
		return "", nil, errorf(http.StatusBadRequest, "model %q does not support insert (suffix)", req.Model)
	}
	return prompts[0], stop, nil
}

func (s *Server) handleOAIEmbeddings(w http.ResponseWriter, r *http.Request) {
	var req oaiEmbeddingRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	noteModel(r, req.Model)
	inputs, err := oaiStrings(req.Input, "input")
	switch {
	case req.Model == "":
		err = errorf(http.StatusBadRequest, "model is required")
	case err != nil:
		err = errorf(http.StatusBadRequest, "input must be a string or an array of strings (token-id inputs are not supported)")
	case len(inputs) == 0:
		err = errorf(http.StatusBadRequest, "input must not be empty")
	case req.Dimensions < 0:
		err = errorf(http.StatusBadRequest, "dimensions must not be negative")
	case req.EncodingFormat != "" && req.EncodingFormat != "float" && req.EncodingFormat != "base64":
		err = errorf(http.StatusBadRequest, "encoding_format must be float or base64")
	}
	for i, in := range inputs {
		if err == nil && in == "" {
			err = errorf(http.StatusBadRequest, "input[%d] is empty", i)
		}
	}
	if err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	res, _, err := s.embed(r, req.Model, s.cfg.KeepAlive, inputs, true, nil)
	if err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	type item struct {
		Object    string `json:"object"`
		Embedding any    `json:"embedding"`
		Index     int    `json:"index"`
	}
	data := make([]item, len(res.Vectors))
	for i, v := range res.Vectors {
		var e any = normalize(v, req.Dimensions)
		if req.EncodingFormat == "base64" {
			e = base64Floats(e.([]float32))
		}
		data[i] = item{Object: "embedding", Embedding: e, Index: i}
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"object": "list", "data": data, "model": req.Model,
		"usage": map[string]int{"prompt_tokens": res.PromptTokens, "total_tokens": res.PromptTokens},
	})
}

// base64Floats is OpenAI's base64 encoding of a vector: little-endian
// float32s.
func base64Floats(v []float32) string {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return base64.StdEncoding.EncodeToString(b)
}

func oaiModelOf(m models.Model) oaiModel {
	return oaiModel{ID: m.Name.Short(), Object: "model", Created: m.ModifiedAt.Unix(), OwnedBy: m.Name.Namespace, Version: m.Version}
}

func (s *Server) handleOAIModels(w http.ResponseWriter, r *http.Request) {
	all, err := s.baseModels()
	if err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	data := make([]oaiModel, 0, len(all))
	for _, m := range all {
		data = append(data, oaiModelOf(m))
	}
	for _, e := range s.loras.list() {
		data = append(data, s.oaiAdapterModel(e))
	}
	writeJSON(w, http.StatusOK, map[string]any{"object": "list", "data": data})
}

func (s *Server) handleOAIModel(w http.ResponseWriter, r *http.Request) {
	if e := s.loras.lookup(r.PathValue("model")); e != nil {
		writeJSON(w, http.StatusOK, s.oaiAdapterModel(e))
		return
	}
	m, err := s.cfg.Store.Resolve(r.PathValue("model"))
	if err != nil {
		writeError(w, r, dialectOpenAI, err)
		return
	}
	writeJSON(w, http.StatusOK, oaiModelOf(m))
}
