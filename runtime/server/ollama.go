package server

import (
	"context"
	"encoding/json"
	"fmt"
	"github.com/hearth-llm/hearth/runtime/chatfmt"
	"math"
	"net/http"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"

	"github.com/hearth-llm/hearth/loader/chat"
	"github.com/hearth-llm/hearth/runtime/grammar"
	"github.com/hearth-llm/hearth/runtime/models"
)

// maxEmbedInputs bounds the inputs of one embedding request.
const maxEmbedInputs = 2048

// streamer writes a streamed response, NDJSON (Ollama) or server-sent
// events (OpenAI), sending the headers with the first line and flushing
// after each.
type streamer struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	sse     bool
	started bool
}

func newStreamer(w http.ResponseWriter, sse bool) *streamer {
	return &streamer{w: w, rc: http.NewResponseController(w), sse: sse}
}

func (st *streamer) start() {
	if st.started {
		return
	}
	st.started = true
	h := st.w.Header()
	if st.sse {
		h.Set("Content-Type", "text/event-stream")
		h.Set("Cache-Control", "no-cache")
	} else {
		h.Set("Content-Type", "application/x-ndjson")
	}
	h.Set("X-Accel-Buffering", "no")
	st.w.WriteHeader(http.StatusOK)
}

func (st *streamer) send(v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	if st.sse {
		return st.line("data: " + string(b) + "\n\n")
	}
	return st.line(string(b) + "\n")
}

func (st *streamer) line(s string) error {
	st.start()
	if _, err := st.w.Write([]byte(s)); err != nil {
		return err
	}
	return st.rc.Flush()
}

// fail reports err: as the response when nothing was sent yet, else
// in-band ({"error": ...} in the API's shape, an error event for
// Anthropic's), which the clients read.
func (st *streamer) fail(r *http.Request, d dialect, err error) {
	if !st.started {
		writeError(st.w, r, d, err)
		return
	}
	ae := classify(err)
	noteError(r, ae)
	switch {
	case ae.status == statusClientClosed:
	case d == dialectAnthropic:
		st.event("error", errorBody(d, ae))
	default:
		st.send(errorBody(d, ae))
	}
}

// event sends v as a server-sent event named name (Anthropic's streams
// name every event).
func (st *streamer) event(name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return st.line("event: " + name + "\ndata: " + string(b) + "\n\n")
}

func wantStream(p *bool) bool { return p == nil || *p }

// respondOllama runs job and answers as Ollama does: streamed, one NDJSON
// chunk per piece of text and then final(out, ""); else final with the
// whole text. Errors go out in Ollama's shape either way.
func respondOllama[T any](s *Server, w http.ResponseWriter, r *http.Request, job *genJob, stream bool,
	chunk func(text string) T, final func(out *genOutcome, text string) T) {
	if stream {
		st := newStreamer(w, false)
		out, err := s.generate(r, job, func(text string, lps []TokenLogprob) error {
			c := chunk(text)
			withOllamaLogprobs(&c, lps)
			return st.send(c)
		})
		if err != nil {
			st.fail(r, dialectOllama, err)
			return
		}
		st.send(final(out, ""))
		return
	}
	out, text, ok := s.generateAll(w, r, job, dialectOllama)
	if !ok {
		return
	}
	v := final(out, text)
	withOllamaLogprobs(&v, out.logprobs)
	writeJSON(w, http.StatusOK, v)
}

func durPtr(d *api.Duration) *time.Duration {
	if d == nil {
		return nil
	}
	return &d.Duration
}

func metricsOf(out *genOutcome, now time.Time) api.Metrics {
	return api.Metrics{
		TotalDuration:      now.Sub(out.start),
		LoadDuration:       out.loadDur,
		PromptEvalCount:    out.res.PromptTokens,
		PromptEvalDuration: out.res.PromptDuration,
		EvalCount:          len(out.res.Tokens),
		EvalDuration:       out.res.GenDuration,
	}
}

func (s *Server) handleGenerate(w http.ResponseWriter, r *http.Request) {
	var req api.GenerateRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	noteModel(r, req.Model)
	g, err := s.checkGenerate(&req)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	keep := s.keepAlive(durPtr(req.KeepAlive))
	if req.Prompt == "" && req.System == "" {
		s.loadOnly(w, r, req.Model, keep, false)
		return
	}
	if req.Think != nil && req.Think.Value != nil {
		s.generateThinking(w, r, &req, g, keep)
		return
	}
	job := &genJob{
		model: req.Model, keepAlive: keep,
		options: func(o *genOptions) error { return o.apply(req.Options) },
		prompt: func(ctx context.Context, l *loaded) ([]int32, error) {
			return generatePrompt(ctx, l, req.Prompt, req.System, req.Raw, req.Context)
		},
		grammar:  g,
		logprobs: req.Logprobs, topLogprobs: req.TopLogprobs,
	}
	if err := job.precheck(); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	final := func(out *genOutcome, text string) api.GenerateResponse {
		ctxIDs := make([]int, 0, len(out.prompt)+len(out.res.Tokens))
		for _, id := range out.prompt {
			ctxIDs = append(ctxIDs, int(id))
		}
		for _, id := range out.res.Tokens {
			ctxIDs = append(ctxIDs, int(id))
		}
		now := s.now()
		return api.GenerateResponse{Model: req.Model, CreatedAt: now.UTC(), Response: text, Done: true,
			DoneReason: out.res.DoneReason, Context: ctxIDs, Metrics: metricsOf(out, now)}
	}
	respondOllama(s, w, r, job, wantStream(req.Stream), func(text string) api.GenerateResponse {
		return api.GenerateResponse{Model: req.Model, CreatedAt: s.now().UTC(), Response: text}
	}, final)
}

// generateThinking answers /api/generate with think set: the prompt (and
// system) as a one-turn conversation through the chat pipeline, so the
// template gets enable_thinking or the effort and the reasoning comes
// back apart, in thinking.
func (s *Server) generateThinking(w http.ResponseWriter, r *http.Request, req *api.GenerateRequest, g *grammar.Grammar, keep time.Duration) {
	conv := chatfmt.Conversation{Messages: []chat.Message{{Role: "user", Content: req.Prompt}}}
	if req.System != "" {
		conv.Messages = append([]chat.Message{{Role: "system", Content: req.System}}, conv.Messages...)
	}
	if err := ollamaThink(req.Think, &conv); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	turn, err := newChatTurn(req.Model, conv, g)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	job := turn.job(keep, func(o *genOptions) error { return o.apply(req.Options) })
	job.logprobs, job.topLogprobs = req.Logprobs, req.TopLogprobs
	if err := job.precheck(); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	final := func(out *genOutcome, d chatfmt.Delta) api.GenerateResponse {
		ctxIDs := make([]int, 0, len(out.prompt)+len(out.res.Tokens))
		for _, id := range append(slices.Clone(out.prompt), out.res.Tokens...) {
			ctxIDs = append(ctxIDs, int(id))
		}
		now := s.now()
		return api.GenerateResponse{Model: req.Model, CreatedAt: now.UTC(), Response: d.Content, Thinking: d.Reasoning, Done: true,
			DoneReason: out.res.DoneReason, Context: ctxIDs, Metrics: metricsOf(out, now)}
	}
	if wantStream(req.Stream) {
		st := newStreamer(w, false)
		out, _, err := s.runChat(r, job, turn, func(d chatfmt.Delta, lps []TokenLogprob) error {
			c := api.GenerateResponse{Model: req.Model, CreatedAt: s.now().UTC(), Response: d.Content, Thinking: d.Reasoning}
			withOllamaLogprobs(&c, lps)
			return st.send(c)
		})
		if err != nil {
			st.fail(r, dialectOllama, err)
			return
		}
		st.send(final(out, chatfmt.Delta{}))
		return
	}
	out, all, err := s.runChat(r, job, turn, nil)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	v := final(out, all)
	withOllamaLogprobs(&v, out.logprobs)
	writeJSON(w, http.StatusOK, v)
}

func (s *Server) checkGenerate(req *api.GenerateRequest) (*grammar.Grammar, error) {
	if req.Model == "" {
		return nil, errorf(http.StatusBadRequest, "model is required")
	}
	switch {
	case len(req.Images) > 0:
		return nil, s.refuseImages(req.Model)
	case req.Suffix != "":
		return nil, errorf(http.StatusBadRequest, "model %q does not support insert (suffix)", req.Model)
	case req.Template != "":
		return nil, errorf(http.StatusBadRequest, "template overrides are not supported: Hearth renders the model's own (Jinja) chat template; use raw to send a formatted prompt")
	case req.Think != nil && req.Think.Value != nil && req.Raw:
		return nil, errorf(http.StatusBadRequest, "think needs the model's template: it does not apply to raw prompts")
	case req.Think != nil && req.Think.Value != nil && len(req.Context) > 0:
		return nil, errorf(http.StatusBadRequest, "think with context is not supported: use /api/chat for conversations")
	case req.DebugRenderOnly:
		return nil, fmt.Errorf("%w: _debug_render_only", ErrUnsupported)
	}
	if err := checkTopLogprobs(req.TopLogprobs, "top_logprobs"); err != nil {
		return nil, err
	}
	return parseFormat(req.Format)
}

// loadOnly answers a request without a prompt, as Ollama does: it loads
// the model (done_reason "load"), or with keep_alive 0 unloads it
// ("unload").
func (s *Server) loadOnly(w http.ResponseWriter, r *http.Request, name string, keep time.Duration, isChat bool) {
	reason := "load"
	switch e := s.loras.lookup(name); {
	case keep == 0 && e != nil:
		// An adapter: unloaded from its base, which stays for the others.
		for _, rm := range s.mgr.snapshot() {
			s.loras.drop(rm.l, e.run())
		}
		reason = "unload"
	case keep == 0:
		if _, err := s.cfg.Store.Resolve(name); err != nil {
			writeError(w, r, dialectOllama, err)
			return
		}
		s.mgr.unloadNow(name)
		reason = "unload"
	default:
		_, _, release, _, err := s.acquireFor(r.Context(), r, name, keep)
		if err != nil {
			writeError(w, r, dialectOllama, err)
			return
		}
		release()
	}
	now := s.now().UTC()
	if isChat {
		writeJSON(w, http.StatusOK, api.ChatResponse{Model: name, CreatedAt: now,
			Message: api.Message{Role: "assistant"}, Done: true, DoneReason: reason})
		return
	}
	writeJSON(w, http.StatusOK, api.GenerateResponse{Model: name, CreatedAt: now, Done: true, DoneReason: reason})
}

func (s *Server) handleChat(w http.ResponseWriter, r *http.Request) {
	var req api.ChatRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	noteModel(r, req.Model)
	conv, err := s.checkChat(&req)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	g, err := parseFormat(req.Format)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	keep := s.keepAlive(durPtr(req.KeepAlive))
	if len(conv.Messages) == 0 {
		s.loadOnly(w, r, req.Model, keep, true)
		return
	}
	turn, err := newChatTurn(req.Model, conv, g)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	job := turn.job(keep, func(o *genOptions) error { return o.apply(req.Options) })
	job.logprobs, job.topLogprobs = req.Logprobs, req.TopLogprobs
	if err := job.precheck(); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	msg := func(d chatfmt.Delta, first int) api.Message {
		m := api.Message{Role: "assistant", Content: d.Content, Thinking: d.Reasoning}
		for i, c := range d.Calls {
			m.ToolCalls = append(m.ToolCalls, ollamaToolCall(c, first+i))
		}
		return m
	}
	if wantStream(req.Stream) {
		st := newStreamer(w, false)
		out, _, err := s.runChat(r, job, turn, func(d chatfmt.Delta, lps []TokenLogprob) error {
			c := api.ChatResponse{Model: req.Model, CreatedAt: s.now().UTC(), Message: msg(d, turn.calls-len(d.Calls))}
			withOllamaLogprobs(&c, lps)
			return st.send(c)
		})
		if err != nil {
			st.fail(r, dialectOllama, err)
			return
		}
		now := s.now()
		st.send(api.ChatResponse{Model: req.Model, CreatedAt: now.UTC(), Message: api.Message{Role: "assistant"},
			Done: true, DoneReason: out.res.DoneReason, Metrics: metricsOf(out, now)})
		return
	}
	out, all, err := s.runChat(r, job, turn, nil)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	now := s.now()
	c := api.ChatResponse{Model: req.Model, CreatedAt: now.UTC(), Message: msg(all, 0),
		Done: true, DoneReason: out.res.DoneReason, Metrics: metricsOf(out, now)}
	withOllamaLogprobs(&c, out.logprobs)
	writeJSON(w, http.StatusOK, c)
}

// ollamaThink reads Ollama's think: true, false, or an effort.
func ollamaThink(v *api.ThinkValue, conv *chatfmt.Conversation) error {
	if v == nil || v.Value == nil {
		return nil
	}
	if !v.IsValid() {
		return errorf(http.StatusBadRequest, "think must be true, false, \"low\", \"medium\" or \"high\"")
	}
	conv.Think.Set = true
	switch x := v.Value.(type) {
	case bool:
		conv.Think.On = x
	case string:
		conv.Think.On, conv.Think.Effort = true, x
	}
	return nil
}

// ollamaToolCall is a parsed call in Ollama's shape.
func ollamaToolCall(c chatfmt.Call, index int) api.ToolCall {
	args := api.NewToolCallFunctionArguments()
	json.Unmarshal([]byte(c.Arguments), &args) // compact JSON object: cannot fail
	return api.ToolCall{ID: c.ID, Function: api.ToolCallFunction{Index: index, Name: c.Name, Arguments: args}}
}

// checkChat refuses what Hearth cannot do and converts the request.
func (s *Server) checkChat(req *api.ChatRequest) (chatfmt.Conversation, error) {
	var conv chatfmt.Conversation
	if req.Model == "" {
		return conv, errorf(http.StatusBadRequest, "model is required")
	}
	conv.Messages = make([]chat.Message, 0, len(req.Messages))
	for i, m := range req.Messages {
		if len(m.Images) > 0 {
			return conv, s.refuseImages(req.Model)
		}
		if m.Role == "" {
			return conv, errorf(http.StatusBadRequest, "messages[%d] has no role", i)
		}
		cm := chat.Message{Role: m.Role, Content: m.Content, Thinking: m.Thinking, ToolCallID: m.ToolCallID, Name: m.ToolName}
		for _, c := range m.ToolCalls {
			cm.ToolCalls = append(cm.ToolCalls, chat.ToolCall{ID: c.ID, Name: c.Function.Name, Arguments: c.Function.Arguments.ToMap()})
		}
		conv.Messages = append(conv.Messages, cm)
	}
	for _, t := range req.Tools {
		params, err := json.Marshal(t.Function.Parameters)
		if err != nil {
			return conv, errorf(http.StatusBadRequest, "tool %q: %v", t.Function.Name, err)
		}
		params = dropNullFields(params)
		conv.Tools = append(conv.Tools, chatfmt.Tool{Name: t.Function.Name, Description: t.Function.Description, Parameters: params})
	}
	conv.Parallel = true
	if err := ollamaThink(req.Think, &conv); err != nil {
		return conv, err
	}
	switch {
	case req.DebugRenderOnly:
		return conv, fmt.Errorf("%w: _debug_render_only", ErrUnsupported)
	}
	if err := checkTopLogprobs(req.TopLogprobs, "top_logprobs"); err != nil {
		return conv, err
	}
	return conv, nil
}

// embed runs one embedding request against the Runner.
func (s *Server) embed(r *http.Request, name string, keep time.Duration, inputs []string, truncate bool, opts map[string]any) (EmbedResult, time.Duration, error) {
	if len(inputs) > maxEmbedInputs {
		return EmbedResult{}, 0, fmt.Errorf("%w: %d inputs (limit %d)", ErrInvalid, len(inputs), maxEmbedInputs)
	}
	o := defaultGenOptions()
	if err := o.apply(opts); err != nil {
		return EmbedResult{}, 0, err
	}
	if e := s.loras.lookup(name); e != nil {
		return EmbedResult{}, 0, fmt.Errorf("%w: %q is a LoRA adapter of %s: embeddings run on base models (name %s)", ErrUnsupported, name, e.base.Short(), e.base.Short())
	}
	done, err := s.admit()
	if err != nil {
		return EmbedResult{}, 0, err
	}
	defer done()
	l, loadDur, err := s.acquire(r.Context(), name)
	if err != nil {
		return EmbedResult{}, 0, err
	}
	defer s.mgr.release(l, keep)
	if len(inputs) == 0 {
		return EmbedResult{Vectors: [][]float32{}}, loadDur, nil
	}
	if !l.info.Embeddings {
		return EmbedResult{}, 0, fmt.Errorf("%w: model %q does not produce embeddings yet", ErrUnsupported, name)
	}
	res, err := l.runner.Embed(r.Context(), &EmbedRequest{Inputs: inputs, NumCtx: o.NumCtx, Truncate: truncate})
	if err != nil {
		return EmbedResult{}, 0, err
	}
	if len(res.Vectors) != len(inputs) {
		return EmbedResult{}, 0, fmt.Errorf("runner returned %d embeddings for %d inputs", len(res.Vectors), len(inputs))
	}
	return res, loadDur, nil
}

// embedInputs reads /api/embed's input: a string or an array of strings.
func embedInputs(v any) ([]string, error) {
	switch v := v.(type) {
	case nil:
		return nil, nil
	case string:
		if v == "" {
			return nil, nil
		}
		return []string{v}, nil
	case []any:
		out := make([]string, len(v))
		for i, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, errorf(http.StatusBadRequest, "input must be a string or an array of strings")
			}
			out[i] = s
		}
		return out, nil
	}
	return nil, errorf(http.StatusBadRequest, "input must be a string or an array of strings")
}

// normalize scales v to unit length (Ollama's /api/embed does), after
// keeping only its first dims values when dims > 0.
func normalize(v []float32, dims int) []float32 {
	if dims > 0 && dims < len(v) {
		v = v[:dims]
	}
	var sum float64
	for _, x := range v {
		sum += float64(x) * float64(x)
	}
	out := make([]float32, len(v))
	if sum == 0 {
		return out
	}
	inv := 1 / math.Sqrt(sum)
	for i, x := range v {
		out[i] = float32(float64(x) * inv)
	}
	return out
}

func (s *Server) handleEmbed(w http.ResponseWriter, r *http.Request) {
	var req api.EmbedRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	if req.Model == "" {
		writeError(w, r, dialectOllama, errorf(http.StatusBadRequest, "model is required"))
		return
	}
	noteModel(r, req.Model)
	inputs, err := embedInputs(req.Input)
	if err == nil && req.Dimensions < 0 {
		err = errorf(http.StatusBadRequest, "dimensions must not be negative")
	}
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	start := s.now()
	truncate := req.Truncate == nil || *req.Truncate
	res, loadDur, err := s.embed(r, req.Model, s.keepAlive(durPtr(req.KeepAlive)), inputs, truncate, req.Options)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	out := api.EmbedResponse{Model: req.Model, Embeddings: make([][]float32, len(res.Vectors)),
		LoadDuration: loadDur, PromptEvalCount: res.PromptTokens}
	for i, v := range res.Vectors {
		out.Embeddings[i] = normalize(v, req.Dimensions)
	}
	out.TotalDuration = s.now().Sub(start)
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleEmbeddings(w http.ResponseWriter, r *http.Request) {
	var req api.EmbeddingRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	if req.Model == "" {
		writeError(w, r, dialectOllama, errorf(http.StatusBadRequest, "model is required"))
		return
	}
	noteModel(r, req.Model)
	var inputs []string
	if req.Prompt != "" {
		inputs = []string{req.Prompt}
	}
	res, _, err := s.embed(r, req.Model, s.keepAlive(durPtr(req.KeepAlive)), inputs, true, req.Options)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	out := api.EmbeddingResponse{Embedding: []float64{}}
	if len(res.Vectors) == 1 {
		for _, x := range res.Vectors[0] {
			out.Embedding = append(out.Embedding, float64(x))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// details describes m for listings; a file that cannot be read still
// lists, with empty details.
func (s *Server) details(m models.Model) (api.ModelDetails, models.Info) {
	info, err := s.cfg.Store.Describe(m)
	if err != nil {
		s.log.Warn("model metadata", "model", m.Name.Short(), "error", err)
		return api.ModelDetails{Format: "gguf"}, info
	}
	d := api.ModelDetails{Format: info.Format, Family: info.Arch, ParameterSize: info.ParameterSize, QuantizationLevel: info.QuantizationLevel}
	if info.Arch != "" {
		d.Families = []string{info.Arch}
	}
	return d, info
}

func digestHex(d string) string { return strings.TrimPrefix(d, "sha256:") }

func (s *Server) handleTags(w http.ResponseWriter, r *http.Request) {
	all, err := s.baseModels()
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	out := api.ListResponse{Models: []api.ListModelResponse{}}
	for _, m := range all {
		d, _ := s.details(m)
		out.Models = append(out.Models, api.ListModelResponse{Name: m.Name.Short(), Model: m.Name.Short(),
			ModifiedAt: m.ModifiedAt, Size: m.Size, Digest: digestHex(m.Digest), Details: d})
	}
	out.Models = append(out.Models, s.adapterTags()...)
	// Most recently modified first, as Ollama lists them.
	sort.SliceStable(out.Models, func(i, j int) bool { return out.Models[i].ModifiedAt.After(out.Models[j].ModifiedAt) })
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handleShow(w http.ResponseWriter, r *http.Request) {
	var req api.ShowRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	//lint:ignore SA1019 older clients still send the model as name
	name, ok := requiredModel(w, r, req.Model, req.Name)
	if !ok {
		return
	}
	ad := s.loras.lookup(name)
	if ad != nil {
		name = ad.base.String()
	}
	m, err := s.cfg.Store.Resolve(name)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	d, info := s.details(m)
	meta, tensors, err := s.cfg.Store.Metadata(m, req.Verbose)
	if err != nil {
		writeError(w, r, dialectOllama, fmt.Errorf("%w: reading %s: %v", ErrInvalid, m.Name.Short(), err))
		return
	}
	params := formatParams(m.Params)
	out := api.ShowResponse{
		Modelfile:    modelfile(m, params),
		Parameters:   params,
		Template:     info.ChatTemplate,
		System:       m.System,
		Details:      d,
		ModelInfo:    meta,
		Capabilities: capabilities(info),
		ModifiedAt:   m.ModifiedAt,
	}
	if lic, ok := meta["general.license"].(string); ok {
		out.License = lic
	}
	if out.ModelInfo == nil {
		out.ModelInfo = map[string]any{}
	}
	out.ModelInfo["hearth.version"] = m.Version
	if ad != nil {
		out.Details.ParentModel = ad.base.Short()
		out.Modelfile = adapterModelfile(ad)
		out.ModifiedAt = ad.modified
		out.ModelInfo["hearth.adapter.path"] = ad.Path
		out.ModelInfo["hearth.adapter.scale"] = ad.Scale
		out.ModelInfo["hearth.adapter.version"] = ad.digest
	}
	for _, t := range tensors {
		out.Tensors = append(out.Tensors, api.Tensor{Name: t.Name, Type: t.Type, Shape: t.Shape})
	}
	writeJSON(w, http.StatusOK, out)
}

// capabilities are what /api/show says a model can do: embeddings for a
// file that names a pooling type (as Ollama decides), else completion.
// Every model with a chat template takes tools (through its template's
// syntax, or the generic one); thinking is for templates that mark
// reasoning.
func capabilities(info models.Info) []model.Capability {
	if info.Embedding {
		return []model.Capability{model.CapabilityEmbedding}
	}
	caps := []model.Capability{model.CapabilityCompletion}
	if info.ChatTemplate == "" {
		return caps
	}
	caps = append(caps, model.CapabilityTools)
	if chatfmt.Detect(info.ChatTemplate).Thinks {
		caps = append(caps, model.CapabilityThinking)
	}
	return caps
}

// formatParams writes an Ollama params layer as `ollama show` prints it:
// one "name value" line per value, sorted.
func formatParams(p map[string]any) string {
	var lines []string
	for k, v := range p {
		vs, ok := v.([]any)
		if !ok {
			vs = []any{v}
		}
		for _, x := range vs {
			b, _ := json.Marshal(x)
			lines = append(lines, fmt.Sprintf("%-30s %s", k, b))
		}
	}
	sort.Strings(lines)
	return strings.Join(lines, "\n")
}

func modelfile(m models.Model, params string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Modelfile generated by Hearth\nFROM %s\n", m.Path)
	for _, l := range strings.Split(params, "\n") {
		if l != "" {
			fmt.Fprintf(&b, "PARAMETER %s\n", l)
		}
	}
	if m.System != "" {
		fmt.Fprintf(&b, "SYSTEM %q\n", m.System)
	}
	return b.String()
}

// psModel is an /api/ps entry: Ollama's, and Hearth's versions. A model
// being swapped lists its serving version and, while requests still hold
// it, its retired one.
type psModel struct {
	api.ProcessModelResponse
	// Version is the sha256 of the GGUF file loaded.
	Version string `json:"version"`
	// State is "serving", or "retired" (replaced; finishing its requests).
	State string `json:"state"`
	// Requests holding this version now.
	Requests int `json:"requests"`
	// Loading is a newer version being loaded in the background.
	Loading string `json:"loading_version,omitempty"`
	// FailedVersion and Error say why the newest version of the file is
	// not serving (it failed to load, or waits for memory).
	FailedVersion string `json:"failed_version,omitempty"`
	Error         string `json:"error,omitempty"`
	// Adapters are the LoRA adapters resident on this model's runner.
	Adapters []string `json:"adapters,omitempty"`
}

func (s *Server) handlePs(w http.ResponseWriter, r *http.Request) {
	out := struct {
		Models []psModel `json:"models"`
	}{Models: []psModel{}}
	now := s.now()
	for _, rm := range s.mgr.snapshot() {
		l := rm.l
		d, _ := s.details(l.model)
		exp := rm.expires
		if rm.refs > 0 {
			exp = forever
			if ka := rm.keepAlive; ka >= 0 {
				if ka == 0 {
					ka = s.cfg.KeepAlive
				}
				exp = now.Add(ka)
			}
		}
		size := l.info.Size
		if size == 0 {
			size = l.model.Size
		}
		pm := psModel{ProcessModelResponse: api.ProcessModelResponse{Name: l.model.Name.Short(), Model: l.model.Name.Short(),
			Size: size, Digest: digestHex(l.model.Digest), Details: d, ExpiresAt: exp, SizeVRAM: l.info.VRAM,
			ContextLength: l.info.DefaultNumCtx}, Version: l.model.Version, State: "serving", Requests: rm.refs, Loading: rm.loading}
		if rm.retired {
			pm.State = "retired"
		}
		pm.Adapters = l.resident()
		if f := rm.failed; f != nil {
			pm.FailedVersion, pm.Error = f.version, f.err.Error()
		}
		out.Models = append(out.Models, pm)
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) handlePull(w http.ResponseWriter, r *http.Request) {
	var req api.PullRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	//lint:ignore SA1019 older clients still send the model as name
	name, ok := requiredModel(w, r, req.Model, req.Name)
	if !ok {
		return
	}
	stream := wantStream(req.Stream)
	st := newStreamer(w, false)
	o := s.cfg.Pull
	o.Name = ""
	o.Progress = func(p models.Progress) {
		if stream {
			st.send(api.ProgressResponse{Status: p.Status, Digest: p.Digest, Total: p.Total, Completed: p.Completed})
		}
	}
	if _, err := s.cfg.Store.Pull(r.Context(), name, o); err != nil {
		st.fail(r, dialectOllama, err)
		return
	}
	if !stream {
		writeJSON(w, http.StatusOK, api.ProgressResponse{Status: "success"})
	}
}

func (s *Server) handleDelete(w http.ResponseWriter, r *http.Request) {
	var req api.DeleteRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	//lint:ignore SA1019 older clients still send the model as name
	name, ok := requiredModel(w, r, req.Model, req.Name)
	if !ok {
		return
	}
	if s.deleteAdapter(w, r, name) {
		return
	}
	m, err := s.cfg.Store.Resolve(name)
	if err == nil && m.Source != models.SourceHearth {
		err = fmt.Errorf("%w: remove %q with `ollama rm`", models.ErrReadOnly, m.Name.Short())
	}
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	s.mgr.unloadNow(name)
	if err := s.cfg.Store.Delete(name); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

func (s *Server) handleCopy(w http.ResponseWriter, r *http.Request) {
	var req api.CopyRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	if req.Source == "" || req.Destination == "" {
		writeError(w, r, dialectOllama, errorf(http.StatusBadRequest, "source and destination are required"))
		return
	}
	noteModel(r, req.Source)
	if _, err := s.cfg.Store.Copy(req.Source, req.Destination); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// requiredModel returns the model a request names (Ollama accepts "model"
// and the older "name"), or answers 400 and returns false when it names
// none.
func requiredModel(w http.ResponseWriter, r *http.Request, model, name string) (string, bool) {
	if model == "" {
		model = name
	}
	if model == "" {
		writeError(w, r, dialectOllama, errorf(http.StatusBadRequest, "model is required"))
		return "", false
	}
	noteModel(r, model)
	return model, true
}
