package server

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/anthropics/anthropic-sdk-go/v2"
	aopt "github.com/anthropics/anthropic-sdk-go/v2/option"
)

// anthropicClient is the Anthropic SDK pointed at the test server, with
// the server's key (sent as x-api-key) when it has one.
func (e *env) anthropicClient(opts ...aopt.RequestOption) anthropic.Client {
	base := []aopt.RequestOption{aopt.WithBaseURL(e.http.URL + "/"), aopt.WithAPIKey(cmpOr(e.apiKey, "unused")), aopt.WithMaxRetries(0)}
	return anthropic.NewClient(append(base, opts...)...)
}

func antWeatherTool() anthropic.ToolParam {
	var schema struct {
		Properties any      `json:"properties"`
		Required   []string `json:"required"`
	}
	json.Unmarshal(weatherParams, &schema)
	return anthropic.ToolParam{Name: "get_weather", Description: anthropic.String("Weather now"),
		InputSchema: anthropic.ToolInputSchemaParam{Properties: schema.Properties, Required: schema.Required}}
}

// antStreamed runs params streamed, accumulating the message as the SDK
// does.
func antStreamed(t *testing.T, c anthropic.Client, params anthropic.MessageNewParams) anthropic.Message {
	t.Helper()
	stream := c.Messages.NewStreaming(context.Background(), params)
	var m anthropic.Message
	for stream.Next() {
		if err := m.Accumulate(stream.Current()); err != nil {
			t.Fatal(err)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	return m
}

func TestAnthropicMessages(t *testing.T) {
	f := templateFake(t, "Qwen-Qwen3-0.6B", "<think>\nLet me", " greet.\n</think>\n\n", "Hello", " there", "!")
	e := newEnv(t, map[string]*fakeRunner{"qwen": f}, nil)
	c := e.anthropicClient()
	params := anthropic.MessageNewParams{Model: "qwen", MaxTokens: 100,
		System:   []anthropic.TextBlockParam{{Text: "Be brief."}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hi"))}}
	m, err := c.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	check := func(how string, m anthropic.Message) {
		t.Helper()
		if !strings.HasPrefix(m.ID, "msg_") || m.Model != "qwen" || m.StopReason != anthropic.StopReasonEndTurn || m.StopSequence != "" {
			t.Errorf("%s: message %s", how, m.RawJSON())
		}
		if len(m.Content) != 2 || m.Content[0].Type != "thinking" || m.Content[0].Thinking != "Let me greet." ||
			m.Content[1].Type != "text" || m.Content[1].Text != "Hello there!" {
			t.Errorf("%s: content %+v", how, m.Content)
		}
		prompt := f.lastRequest(t).Prompt
		if m.Usage.InputTokens != int64(len(prompt)) || m.Usage.OutputTokens != 6 {
			t.Errorf("%s: usage %+v, want %d in, 6 out", how, m.Usage, len(prompt))
		}
		if p := detok(prompt); !strings.Contains(p, "<|im_start|>system\nBe brief.<|im_end|>") || !strings.Contains(p, "<|im_start|>user\nHi<|im_end|>") {
			t.Errorf("%s: prompt %q", how, p)
		}
	}
	check("non-streaming", *m)
	check("streaming", antStreamed(t, c, params))

	// The raw stream: named events, a ping, one block per kind.
	_, h, body := e.do("POST", "/v1/messages", `{"model":"qwen","max_tokens":50,"stream":true,"messages":[{"role":"user","content":"Hi"}]}`,
		"anthropic-version", "2023-06-01")
	if ct := h.Get("Content-Type"); ct != "text/event-stream" {
		t.Errorf("Content-Type %q", ct)
	}
	var events []string
	sc := bufio.NewScanner(strings.NewReader(body))
	for sc.Scan() {
		if name, ok := strings.CutPrefix(sc.Text(), "event: "); ok && (len(events) == 0 || events[len(events)-1] != name) {
			events = append(events, name)
		}
	}
	want := "message_start ping content_block_start content_block_delta content_block_stop content_block_start content_block_delta content_block_stop message_delta message_stop"
	if got := strings.Join(events, " "); got != want {
		t.Errorf("events:\n got %s\nwant %s\n%s", got, want, body)
	}

	// Thinking on and off reach the template.
	params.Thinking = anthropic.ThinkingConfigParamOfEnabled(1024)
	if _, err := c.Messages.New(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	if p := detok(f.lastRequest(t).Prompt); strings.Contains(p, "</think>") {
		t.Errorf("thinking enabled: the prompt closes the think block: %q", p)
	}
	params.Thinking = anthropic.ThinkingConfigParamUnion{OfDisabled: &anthropic.ThinkingConfigDisabledParam{}}
	if _, err := c.Messages.New(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	if p := detok(f.lastRequest(t).Prompt); !strings.HasSuffix(p, "<think>\n\n</think>\n\n") {
		t.Errorf("thinking disabled: prompt ends %q", p[max(0, len(p)-30):])
	}

	// Sampling and max_tokens (this SDK no longer has the sampling
	// fields; older clients and other languages' send them).
	params.Thinking = anthropic.ThinkingConfigParamUnion{}
	params.MaxTokens = 3
	m, err = c.Messages.New(context.Background(), params,
		aopt.WithJSONSet("temperature", 0.25), aopt.WithJSONSet("top_k", 7), aopt.WithJSONSet("top_p", 0.5))
	if err != nil {
		t.Fatal(err)
	}
	s := f.lastRequest(t).Sampling
	if s.Temperature != 0.25 || s.TopK != 7 || s.TopP != 0.5 || f.lastRequest(t).NumPredict != 3 {
		t.Errorf("sampling %+v, num_predict %d", s, f.lastRequest(t).NumPredict)
	}
	if m.StopReason != anthropic.StopReasonMaxTokens {
		t.Errorf("stop_reason %q, want max_tokens", m.StopReason)
	}
}

func TestAnthropicStopSequences(t *testing.T) {
	f := templateFake(t, "Qwen-Qwen3-0.6B", "Hello", " wor", "ld END", " more")
	e := newEnv(t, map[string]*fakeRunner{"qwen": f}, nil)
	c := e.anthropicClient()
	params := anthropic.MessageNewParams{Model: "qwen", MaxTokens: 100, StopSequences: []string{"STOP", "d EN"},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Hi"))}}
	for _, stream := range []bool{false, true} {
		var m anthropic.Message
		if stream {
			m = antStreamed(t, c, params)
		} else {
			got, err := c.Messages.New(context.Background(), params)
			if err != nil {
				t.Fatal(err)
			}
			m = *got
		}
		if m.StopReason != anthropic.StopReasonStopSequence || m.StopSequence != "d EN" || len(m.Content) != 1 || m.Content[0].Text != "Hello worl" {
			t.Errorf("stream %v: %s", stream, m.RawJSON())
		}
	}
}

func TestAnthropicTools(t *testing.T) {
	f := templateFake(t, "Qwen-Qwen3-0.6B", qwenCall...)
	none := templateFake(t, "Qwen-Qwen3-0.6B", "Sunny.")
	e := newEnv(t, map[string]*fakeRunner{"qwen": f, "none": none}, nil)
	c := e.anthropicClient()
	params := anthropic.MessageNewParams{Model: "qwen", MaxTokens: 200,
		Tools:    []anthropic.ToolUnionParam{{OfTool: ptr(antWeatherTool())}},
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))}}
	check := func(how string, m anthropic.Message) {
		t.Helper()
		if m.StopReason != anthropic.StopReasonToolUse || len(m.Content) != 2 {
			t.Fatalf("%s: %s", how, m.RawJSON())
		}
		if b := m.Content[0]; b.Type != "thinking" || b.Thinking != "The user wants weather." {
			t.Errorf("%s: thinking block %+v", how, b)
		}
		b := m.Content[1]
		if b.Type != "tool_use" || b.Name != "get_weather" || !strings.HasPrefix(b.ID, "toolu_") || string(b.Input) != `{"city":"Paris"}` {
			t.Errorf("%s: tool_use block %s", how, b.RawJSON())
		}
		prompt := detok(f.lastRequest(t).Prompt)
		if !strings.Contains(prompt, `"name": "get_weather"`) || !strings.Contains(prompt, "<tools>") {
			t.Errorf("%s: the tools are not in the prompt:\n%s", how, prompt)
		}
		if g := f.lastRequest(t).Grammar; g == nil || len(g.Triggers()) == 0 {
			t.Errorf("%s: auto: want a lazy grammar, got %v", how, g)
		}
	}
	m, err := c.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	check("non-streaming", *m)
	check("streaming", antStreamed(t, c, params))

	// The call and its result go back into the template: the tool turn
	// is named after the tool_use it answers.
	call := m.Content[1]
	history := params
	history.Messages = append(history.Messages,
		anthropic.NewAssistantMessage(anthropic.NewThinkingBlock("", "The user wants weather."), anthropic.NewToolUseBlock(call.ID, json.RawMessage(call.Input), call.Name)),
		anthropic.NewUserMessage(anthropic.NewToolResultBlock(call.ID, "18C and sunny", false)))
	if _, err := c.Messages.New(context.Background(), history); err != nil {
		t.Fatal(err)
	}
	prompt := detok(f.lastRequest(t).Prompt)
	for _, want := range []string{"<think>\nThe user wants weather.\n</think>",
		"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
		"<tool_response>\n18C and sunny\n</tool_response>"} {
		if !strings.Contains(prompt, want) {
			t.Errorf("history: prompt lacks %q:\n%s", want, prompt)
		}
	}
	// An error result says so, and text after it is a user turn after
	// it; a result for no call is refused.
	history.Messages[len(history.Messages)-1] = anthropic.NewUserMessage(anthropic.NewToolResultBlock(call.ID, "no such city", true), anthropic.NewTextBlock("Thanks"))
	if _, err := c.Messages.New(context.Background(), history); err != nil {
		t.Fatal(err)
	}
	if prompt := detok(f.lastRequest(t).Prompt); !strings.Contains(prompt, "<tool_response>\nError: no such city\n</tool_response><|im_end|>\n<|im_start|>user\nThanks<|im_end|>") {
		t.Errorf("is_error: %s", prompt)
	}
	history.Messages[len(history.Messages)-1] = anthropic.NewUserMessage(anthropic.NewToolResultBlock("toolu_other", "x", false))
	_, err = c.Messages.New(context.Background(), history)
	antWantError(t, "unknown tool_use_id", err, 400, "invalid_request_error")

	// tool_choice: any and tool force a call from the start, none hides
	// the tools; a tool that is not offered is a 400.
	for _, tc := range []struct {
		name   string
		choice anthropic.ToolChoiceUnionParam
		forced bool
	}{
		{"any", anthropic.ToolChoiceUnionParam{OfAny: &anthropic.ToolChoiceAnyParam{DisableParallelToolUse: anthropic.Bool(true)}}, true},
		{"tool", anthropic.ToolChoiceParamOfTool("get_weather"), true},
		{"auto", anthropic.ToolChoiceUnionParam{OfAuto: &anthropic.ToolChoiceAutoParam{}}, false},
	} {
		params.ToolChoice = tc.choice
		if _, err := c.Messages.New(context.Background(), params); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if g := f.lastRequest(t).Grammar; g == nil || (len(g.Triggers()) == 0) != tc.forced {
			t.Errorf("%s: grammar %v, want forced %v", tc.name, g, tc.forced)
		}
	}
	params.Model, params.ToolChoice = "none", anthropic.ToolChoiceUnionParam{OfNone: &anthropic.ToolChoiceNoneParam{}}
	m, err = c.Messages.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if p := detok(none.lastRequest(t).Prompt); strings.Contains(p, "<tools>") || none.lastRequest(t).Grammar != nil || m.StopReason != "end_turn" {
		t.Errorf("tool_choice none: grammar %v, stop %q, prompt %s", none.lastRequest(t).Grammar, m.StopReason, p)
	}
	params.Model, params.ToolChoice = "qwen", anthropic.ToolChoiceParamOfTool("get_time")
	_, err = c.Messages.New(context.Background(), params)
	antWantError(t, "unknown forced tool", err, 400, "invalid_request_error")
}

func TestAnthropicCountTokens(t *testing.T) {
	f := templateFake(t, "Qwen-Qwen3-0.6B", "Hi")
	e := newEnv(t, map[string]*fakeRunner{"qwen": f}, nil)
	c := e.anthropicClient()
	msgs := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("Weather in Paris?"))}
	tool := antWeatherTool()
	n, err := c.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{Model: "qwen", Messages: msgs,
		System: anthropic.MessageCountTokensParamsSystemUnion{OfString: anthropic.String("Be brief.")},
		Tools:  []anthropic.MessageCountTokensToolUnionParam{{OfTool: &tool}}})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(f.reqs); got != 0 {
		t.Errorf("count_tokens generated %d times", got)
	}
	_, err = c.Messages.New(context.Background(), anthropic.MessageNewParams{Model: "qwen", MaxTokens: 10, Messages: msgs,
		System: []anthropic.TextBlockParam{{Text: "Be brief."}}, Tools: []anthropic.ToolUnionParam{{OfTool: &tool}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := len(f.lastRequest(t).Prompt); n.InputTokens != int64(want) {
		t.Errorf("input_tokens %d, want the prompt's %d", n.InputTokens, want)
	}
	plain, err := c.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{Model: "qwen", Messages: msgs})
	if err != nil {
		t.Fatal(err)
	}
	if plain.InputTokens >= n.InputTokens {
		t.Errorf("without tools and system: %d tokens, with: %d", plain.InputTokens, n.InputTokens)
	}
	_, err = c.Messages.CountTokens(context.Background(), anthropic.MessageCountTokensParams{Model: "nope", Messages: msgs})
	antWantError(t, "count_tokens unknown model", err, 404, "not_found_error")
}

// antWantError checks err is the SDK's API error with status and type.
func antWantError(t *testing.T, name string, err error, status int, typ string) {
	t.Helper()
	var ae *anthropic.Error
	if !errors.As(err, &ae) {
		t.Errorf("%s: %v, want an API error", name, err)
		return
	}
	if ae.StatusCode != status || string(ae.Type()) != typ || ae.Message == "" {
		t.Errorf("%s: %d %q %q, want %d %s", name, ae.StatusCode, ae.Type(), ae.Message, status, typ)
	}
}

func TestAnthropicErrors(t *testing.T) {
	f := newFake("a")
	f.info.Template = testTemplate
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, func(c *Config) { c.APIKey = "sekret" })
	c := e.anthropicClient()
	hi := []anthropic.MessageParam{anthropic.NewUserMessage(anthropic.NewTextBlock("hi"))}

	// x-api-key (what the SDK sends) and Bearer both pass; a wrong key is
	// an authentication_error.
	if _, err := c.Messages.New(context.Background(), anthropic.MessageNewParams{Model: "tiny", MaxTokens: 5, Messages: hi}); err != nil {
		t.Fatal(err)
	}
	wrong := e.anthropicClient(aopt.WithAPIKey("wrong"))
	_, err := wrong.Messages.New(context.Background(), anthropic.MessageNewParams{Model: "tiny", MaxTokens: 5, Messages: hi})
	antWantError(t, "wrong key", err, 401, "authentication_error")
	body := `{"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":"hi"}]}`
	for _, h := range [][]string{{"Authorization", "Bearer sekret"}, {"x-api-key", "sekret", "anthropic-version", "2023-06-01"}} {
		if code, _, out := e.do("POST", "/v1/messages", body, h...); code != 200 {
			t.Errorf("%v: %d %s", h, code, out)
		}
	}
	if code, _, out := e.do("POST", "/v1/messages/count_tokens", body, "x-api-key", "nope"); code != 401 || !strings.Contains(out, `"authentication_error"`) {
		t.Errorf("count_tokens wrong key: %d %s", code, out)
	}

	// Unknown models, streamed or not, are a 404 before any event.
	_, err = c.Messages.New(context.Background(), anthropic.MessageNewParams{Model: "nope", MaxTokens: 5, Messages: hi})
	antWantError(t, "unknown model", err, 404, "not_found_error")
	stream := c.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{Model: "nope", MaxTokens: 5, Messages: hi})
	for stream.Next() {
	}
	antWantError(t, "unknown model streamed", stream.Err(), 404, "not_found_error")
	// Images are refused as in the other APIs.
	img := anthropic.NewImageBlockBase64("image/png", "iVBORw0KGgo=")
	_, err = c.Messages.New(context.Background(), anthropic.MessageNewParams{Model: "tiny", MaxTokens: 5,
		Messages: []anthropic.MessageParam{anthropic.NewUserMessage(img)}})
	antWantError(t, "image", err, 400, "invalid_request_error")
	// Thinking on a model that cannot.
	_, err = c.Messages.New(context.Background(), anthropic.MessageNewParams{Model: "tiny", MaxTokens: 5, Messages: hi,
		Thinking: anthropic.ThinkingConfigParamOfEnabled(1024)})
	antWantError(t, "thinking unsupported", err, 400, "invalid_request_error")

	// The status of each error type.
	for _, c := range []struct {
		err    error
		status int
		typ    string
	}{
		{ErrBusy, 503, "overloaded_error"},
		{errors.New("boom"), 500, "api_error"},
		{errorf(413, "big"), 413, "request_too_large"},
		{errorf(405, "method"), 405, "invalid_request_error"},
	} {
		rec := httptest.NewRecorder()
		writeError(rec, httptest.NewRequest("POST", "/v1/messages", nil), dialectAnthropic, c.err)
		var v struct {
			Type  string
			Error struct{ Type, Message string }
		}
		json.Unmarshal(rec.Body.Bytes(), &v)
		if rec.Code != c.status || v.Type != "error" || v.Error.Type != c.typ || v.Error.Message == "" {
			t.Errorf("%v: %d %s", c.err, rec.Code, rec.Body)
		}
	}
	// Once a stream has begun, an error is an error event, which the SDK
	// reads as an API error.
	mid := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := newStreamer(w, true)
		st.event("message_start", map[string]any{"type": "message_start", "message": antResponse{ID: "msg_1", Type: "message", Role: "assistant", Content: []any{}}})
		st.fail(r, dialectAnthropic, ErrBusy)
	}))
	defer mid.Close()
	midClient := anthropic.NewClient(aopt.WithBaseURL(mid.URL+"/"), aopt.WithAPIKey("k"), aopt.WithMaxRetries(0))
	stream = midClient.Messages.NewStreaming(context.Background(), anthropic.MessageNewParams{Model: "tiny", MaxTokens: 5, Messages: hi})
	for stream.Next() {
	}
	var ae *anthropic.Error
	if err := stream.Err(); !errors.As(err, &ae) || ae.Type() != "overloaded_error" {
		t.Errorf("error event: %v", err)
	}
	if code, _, out := e.do("GET", "/v1/messages", "", "x-api-key", "sekret"); code != http.StatusMethodNotAllowed || !strings.Contains(out, `"type":"error"`) {
		t.Errorf("GET /v1/messages: %d %s", code, out)
	}
}
