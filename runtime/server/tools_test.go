package server

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go"

	"github.com/hearth-llm/hearth/loader/chat"
)

// templateFake is a fake runner with a real model's chat template (from
// runtime/chatfmt's testdata) that answers with pieces.
func templateFake(t testing.TB, template string, pieces ...string) *fakeRunner {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("..", "chatfmt", "testdata", "templates", template+".jinja"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := chat.New(string(src))
	if err != nil {
		t.Fatal(err)
	}
	f := newFake(pieces...)
	f.info.Template = tmpl
	f.info.BOS, f.info.EOS = "", "<|im_end|>"
	return f
}

var weatherParams = json.RawMessage(`{"type":"object","properties":{"city":{"type":"string","description":"The city"}},"required":["city"]}`)

// qwenCall is what Qwen 3 writes for a call after thinking, in pieces
// that cut its markers.
var qwenCall = []string{"<thi", "nk>\nThe user wants", " weather.\n</th", "ink>\n\n<tool", "_call>\n{\"name\": \"get_weather\", ", "\"arguments\": {\"city\": \"Paris\"}}\n</tool_call>"}

func TestOllamaChatTools(t *testing.T) {
	f := templateFake(t, "Qwen-Qwen3-0.6B", qwenCall...)
	e := newEnv(t, map[string]*fakeRunner{"qwen": f}, nil)
	var params api.ToolFunctionParameters
	if err := json.Unmarshal(weatherParams, &params); err != nil {
		t.Fatal(err)
	}
	tools := api.Tools{{Type: "function", Function: api.ToolFunction{Name: "get_weather", Description: "Weather now", Parameters: params}}}
	for _, stream := range []bool{false, true} {
		var msg api.Message
		var chunks int
		err := e.ollama.Chat(context.Background(), &api.ChatRequest{Model: "qwen", Stream: &stream, Tools: tools,
			Messages: []api.Message{{Role: "user", Content: "Weather in Paris?"}}}, func(r api.ChatResponse) error {
			chunks++
			msg.Content += r.Message.Content
			msg.Thinking += r.Message.Thinking
			msg.ToolCalls = append(msg.ToolCalls, r.Message.ToolCalls...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		if msg.Content != "" || msg.Thinking != "The user wants weather." || len(msg.ToolCalls) != 1 {
			t.Fatalf("stream %v: %+v", stream, msg)
		}
		c := msg.ToolCalls[0].Function
		if city, _ := c.Arguments.Get("city"); c.Name != "get_weather" || city != "Paris" {
			t.Errorf("stream %v: call %+v", stream, c)
		}
		prompt := detok(f.lastRequest(t).Prompt)
		if !strings.Contains(prompt, `"name": "get_weather"`) || !strings.Contains(prompt, "<tools>") {
			t.Errorf("the tools are not in the prompt:\n%s", prompt)
		}
		if g := f.lastRequest(t).Grammar; g == nil || len(g.Triggers()) == 0 {
			t.Errorf("auto tool choice: want a lazy grammar, got %v", g)
		}
	}

	// The call and its result go back into the template.
	args := api.NewToolCallFunctionArguments()
	args.Set("city", "Paris")
	stream := false
	err := e.ollama.Chat(context.Background(), &api.ChatRequest{Model: "qwen", Stream: &stream, Tools: tools, Messages: []api.Message{
		{Role: "user", Content: "Weather in Paris?"},
		{Role: "assistant", ToolCalls: []api.ToolCall{{Function: api.ToolCallFunction{Name: "get_weather", Arguments: args}}}},
		{Role: "tool", ToolName: "get_weather", Content: "18C and sunny"},
	}}, func(api.ChatResponse) error { return nil })
	if err != nil {
		t.Fatal(err)
	}
	prompt := detok(f.lastRequest(t).Prompt)
	for _, want := range []string{"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", "<tool_response>\n18C and sunny\n</tool_response>"} {
		if !strings.Contains(prompt, want) {
			t.Errorf("history: prompt lacks %q:\n%s", want, prompt)
		}
	}
}

func TestOllamaThink(t *testing.T) {
	f := templateFake(t, "Qwen-Qwen3-0.6B", "Hi", "!")
	g := templateFake(t, "google-gemma-2-2b-it", "Hi")
	e := newEnv(t, map[string]*fakeRunner{"qwen": f, "gemma": g}, nil)
	stream := false
	chatWith := func(model string, think *api.ThinkValue) error {
		return e.ollama.Chat(context.Background(), &api.ChatRequest{Model: model, Stream: &stream, Think: think,
			Messages: []api.Message{{Role: "user", Content: "hi"}}}, func(api.ChatResponse) error { return nil })
	}
	if err := chatWith("qwen", &api.ThinkValue{Value: false}); err != nil {
		t.Fatal(err)
	}
	if p := detok(f.lastRequest(t).Prompt); !strings.HasSuffix(p, "<think>\n\n</think>\n\n") {
		t.Errorf("think false: prompt ends %q", p[max(0, len(p)-30):])
	}
	if err := chatWith("qwen", &api.ThinkValue{Value: true}); err != nil {
		t.Fatal(err)
	}
	if p := detok(f.lastRequest(t).Prompt); strings.Contains(p, "</think>") {
		t.Errorf("think true: the prompt closes the think block: %q", p)
	}
	err := chatWith("gemma", &api.ThinkValue{Value: true})
	var se api.StatusError
	if !asStatus(err, &se) || se.StatusCode != http.StatusBadRequest || !strings.Contains(se.ErrorMessage, "does not support thinking") {
		t.Errorf("gemma think=true: %v, want 400 does not support thinking", err)
	}
}

func asStatus(err error, se *api.StatusError) bool {
	s, ok := err.(api.StatusError)
	if ok {
		*se = s
	}
	return ok
}

func oaiWeatherTool() openai.ChatCompletionToolParam {
	var params map[string]any
	json.Unmarshal(weatherParams, &params)
	return openai.ChatCompletionToolParam{Function: openai.FunctionDefinitionParam{Name: "get_weather", Parameters: params}}
}

func TestOpenAIChatTools(t *testing.T) {
	f := templateFake(t, "Qwen-Qwen3-0.6B", qwenCall...)
	e := newEnv(t, map[string]*fakeRunner{"qwen": f}, nil)
	params := openai.ChatCompletionNewParams{Model: "qwen", Tools: []openai.ChatCompletionToolParam{oaiWeatherTool()},
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Paris?")}}
	resp, err := e.openai.Chat.Completions.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	ch := resp.Choices[0]
	if ch.FinishReason != "tool_calls" || len(ch.Message.ToolCalls) != 1 || ch.Message.Content != "" {
		t.Fatalf("choice %+v", ch)
	}
	call := ch.Message.ToolCalls[0]
	if call.Function.Name != "get_weather" || call.Function.Arguments != `{"city":"Paris"}` || !strings.HasPrefix(call.ID, "call_") {
		t.Errorf("call %+v", call)
	}
	if rc := ch.Message.JSON.ExtraFields["reasoning_content"].Raw(); rc != `"The user wants weather."` {
		t.Errorf("reasoning_content %s", rc)
	}

	// Streamed: the accumulator sees one finished call.
	stream := e.openai.Chat.Completions.NewStreaming(context.Background(), params)
	var acc openai.ChatCompletionAccumulator
	var finished []openai.FinishedChatCompletionToolCall
	for stream.Next() {
		acc.AddChunk(stream.Current())
		if tc, ok := acc.JustFinishedToolCall(); ok {
			finished = append(finished, tc)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	got := acc.Choices[0]
	if got.FinishReason != "tool_calls" || len(got.Message.ToolCalls) != 1 || got.Message.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` {
		t.Fatalf("accumulated %+v", got)
	}
	if len(finished) != 1 || finished[0].Name != "get_weather" {
		t.Errorf("finished calls %+v", finished)
	}

	// Forced: required and a named function give a grammar without
	// triggers; a name that is not a tool is a 400.
	params.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")}
	if _, err := e.openai.Chat.Completions.New(context.Background(), params); err != nil {
		t.Fatal(err)
	}
	if g := f.lastRequest(t).Grammar; g == nil || len(g.Triggers()) != 0 {
		t.Errorf("required: want a grammar from the start, got %v", g)
	}
	status, _, body := e.do("POST", "/v1/chat/completions", `{"model": "qwen", "messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "f"}}], "tool_choice": {"type": "function", "function": {"name": "g"}}}`)
	if status != http.StatusBadRequest || !strings.Contains(body, "not among the tools") {
		t.Errorf("unknown forced function: %d %s", status, body)
	}
}

// TestToolFamilies: the same conversation through Ollama's client and
// openai-go (streamed) over three template families, each answering in its
// own syntax, thinking first: one call, the reasoning apart, no content.
func TestToolFamilies(t *testing.T) {
	families := []struct {
		template string
		pieces   []string
	}{
		{"Qwen-Qwen3-0.6B", qwenCall},
		{"openai-gpt-oss-120b", []string{"<|channel|>analysis<|message|>The user wants", " weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>", `{"city": "Paris"}`}},
		{"mistralai-Ministral-3-14B-Reasoning-2512", []string{"[THINK]The user wants weather.[/THINK]", "[TOOL_CALLS]get_", `weather[ARGS]{"city": "Paris"}`}},
	}
	var params api.ToolFunctionParameters
	json.Unmarshal(weatherParams, &params)
	tools := api.Tools{{Type: "function", Function: api.ToolFunction{Name: "get_weather", Parameters: params}}}
	for _, fam := range families {
		t.Run(fam.template, func(t *testing.T) {
			f := templateFake(t, fam.template, fam.pieces...)
			e := newEnv(t, map[string]*fakeRunner{"m": f}, nil)
			var msg api.Message
			err := e.ollama.Chat(context.Background(), &api.ChatRequest{Model: "m", Tools: tools,
				Messages: []api.Message{{Role: "user", Content: "Weather in Paris?"}}}, func(r api.ChatResponse) error {
				msg.Content += r.Message.Content
				msg.Thinking += r.Message.Thinking
				msg.ToolCalls = append(msg.ToolCalls, r.Message.ToolCalls...)
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if city, _ := msg.ToolCalls[0].Function.Arguments.Get("city"); len(msg.ToolCalls) != 1 || city != "Paris" || msg.Content != "" || msg.Thinking != "The user wants weather." {
				t.Errorf("ollama: %+v", msg)
			}
			stream := e.openai.Chat.Completions.NewStreaming(context.Background(), openai.ChatCompletionNewParams{Model: "m",
				Tools: []openai.ChatCompletionToolParam{oaiWeatherTool()}, Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Weather in Paris?")}})
			var acc openai.ChatCompletionAccumulator
			reasoning := ""
			for stream.Next() {
				c := stream.Current()
				acc.AddChunk(c)
				if len(c.Choices) > 0 {
					var rc string
					json.Unmarshal([]byte(c.Choices[0].Delta.JSON.ExtraFields["reasoning_content"].Raw()), &rc)
					reasoning += rc
				}
			}
			if err := stream.Err(); err != nil {
				t.Fatal(err)
			}
			ch := acc.Choices[0]
			if len(ch.Message.ToolCalls) != 1 || ch.Message.ToolCalls[0].Function.Arguments != `{"city":"Paris"}` || ch.Message.Content != "" ||
				ch.FinishReason != "tool_calls" || reasoning != "The user wants weather." {
				t.Errorf("openai: %+v, reasoning %q", ch, reasoning)
			}
		})
	}
}

func TestOllamaGenerateThink(t *testing.T) {
	f := templateFake(t, "Qwen-Qwen3-0.6B", "<think>\nhmm", "\n</think>\n\n", "Hello!")
	e := newEnv(t, map[string]*fakeRunner{"qwen": f}, nil)
	for _, stream := range []bool{false, true} {
		var resp api.GenerateResponse
		err := e.ollama.Generate(context.Background(), &api.GenerateRequest{Model: "qwen", Prompt: "hi", Stream: &stream, Think: &api.ThinkValue{Value: true}},
			func(r api.GenerateResponse) error {
				resp.Response += r.Response
				resp.Thinking += r.Thinking
				return nil
			})
		if err != nil {
			t.Fatal(err)
		}
		if resp.Response != "Hello!" || resp.Thinking != "hmm" {
			t.Errorf("stream %v: response %q thinking %q", stream, resp.Response, resp.Thinking)
		}
	}
	stream := false
	err := e.ollama.Generate(context.Background(), &api.GenerateRequest{Model: "qwen", Prompt: "hi", Stream: &stream, Think: &api.ThinkValue{Value: false}},
		func(api.GenerateResponse) error { return nil })
	if p := detok(f.lastRequest(t).Prompt); err != nil || !strings.HasSuffix(p, "<think>\n\n</think>\n\n") {
		t.Errorf("think false: %v, prompt ends %q", err, p[max(0, len(p)-30):])
	}
}
