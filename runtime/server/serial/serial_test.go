package serial_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go"

	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/server/serial"
	"github.com/hearth-llm/hearth/runtime/server/servertest"
)

// serve starts a server over the shared stories260K model as "stories".
func serve(t *testing.T) (*api.Client, openai.Client, string) {
	return servertest.Stories(t, serial.Loader(engine.Options{Threads: 2}))
}

// TestGenerateGolden is the end-to-end check: a greedy
// /api/generate on the real engine, through Ollama's client.
func TestGenerateGolden(t *testing.T) {
	c, oc, base := serve(t)
	ctx := context.Background()
	var text strings.Builder
	var final api.GenerateResponse
	err := c.Generate(ctx, &api.GenerateRequest{Model: "stories", Prompt: "Once upon a time",
		Options: map[string]any{"num_predict": 8, "temperature": 0}},
		func(r api.GenerateResponse) error {
			text.WriteString(r.Response)
			if r.Done {
				final = r
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if text.String() != ", there was a little girl" {
		t.Errorf("generated %q, want %q", text.String(), ", there was a little girl")
	}
	if final.DoneReason != "length" || final.EvalCount != 8 || final.PromptEvalCount != 5 || len(final.Context) != 13 ||
		final.PromptEvalDuration <= 0 || final.EvalDuration <= 0 || final.LoadDuration <= 0 {
		t.Errorf("final %+v", final)
	}

	// The returned context continues the story; its prefix is reused.
	var more api.GenerateResponse
	err = c.Generate(ctx, &api.GenerateRequest{Model: "stories", Prompt: " named", Context: final.Context, Stream: ptr(false),
		Options: map[string]any{"num_predict": 4, "temperature": 0}},
		func(r api.GenerateResponse) error { more = r; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if more.Response == "" || len(more.Context) <= len(final.Context) {
		t.Errorf("continuation %+v", more)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "hearth_prefix_cache_hit_ratio 0.") {
		t.Error("the continuation did not reuse the first request's sequence")
	}

	// The same through OpenAI's completions API (no template, like raw).
	cr, err := oc.Completions.New(ctx, openai.CompletionNewParams{Model: "stories",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")}, MaxTokens: openai.Int(8),
		Temperature: openai.Float(0)})
	if err != nil {
		t.Fatal(err)
	}
	if cr.Choices[0].Text != ", there was a little girl" || cr.Usage.CompletionTokens != 8 {
		t.Errorf("completion %q, usage %+v", cr.Choices[0].Text, cr.Usage)
	}

	// Stop strings cut the text.
	var stopped api.GenerateResponse
	c.Generate(ctx, &api.GenerateRequest{Model: "stories", Prompt: "Once upon a time", Stream: ptr(false),
		Options: map[string]any{"num_predict": 8, "temperature": 0, "stop": []string{"little"}}},
		func(r api.GenerateResponse) error { stopped = r; return nil })
	if stopped.Response != ", there was a " || stopped.DoneReason != "stop" {
		t.Errorf("stopped: %q %q", stopped.Response, stopped.DoneReason)
	}
}

// TestChatAndErrors: chat on a model without a template (ChatML fallback)
// runs; embeddings work (a decoder's mean-pooled hidden states); a prompt
// longer than num_ctx is a 400.
func TestChatAndErrors(t *testing.T) {
	c, oc, _ := serve(t)
	ctx := context.Background()
	resp, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "stories",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")}, MaxTokens: openai.Int(4)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Usage.CompletionTokens == 0 || resp.Usage.PromptTokens == 0 {
		t.Errorf("chat usage %+v", resp.Usage)
	}
	er, err := c.Embed(ctx, &api.EmbedRequest{Model: "stories", Input: []string{"a cat", "a dog"}})
	if err != nil || len(er.Embeddings) != 2 || len(er.Embeddings[0]) != 64 || er.PromptEvalCount == 0 {
		t.Errorf("embed: %v, %+v", err, er)
	}
	var se api.StatusError
	err = c.Generate(ctx, &api.GenerateRequest{Model: "stories", Prompt: strings.Repeat("Once upon a time ", 20),
		Options: map[string]any{"num_ctx": 16}}, func(api.GenerateResponse) error { return nil })
	if !errors.As(err, &se) || se.StatusCode != 400 {
		t.Errorf("long prompt: %v", err)
	}
}

// TestCancel: a cancelled request stops the engine; the next request runs.
func TestCancel(t *testing.T) {
	c, _, _ := serve(t)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	c.Generate(ctx, &api.GenerateRequest{Model: "stories", Prompt: "Once", Options: map[string]any{"num_predict": 400}},
		func(api.GenerateResponse) error {
			if n++; n == 2 {
				cancel()
			}
			return nil
		})
	if n > 100 {
		t.Errorf("%d pieces after cancel", n)
	}
	var r api.GenerateResponse
	err := c.Generate(context.Background(), &api.GenerateRequest{Model: "stories", Prompt: "Once upon a time", Stream: ptr(false),
		Options: map[string]any{"num_predict": 8, "temperature": 0}}, func(x api.GenerateResponse) error { r = x; return nil })
	if err != nil || r.Response != ", there was a little girl" {
		t.Errorf("after cancel: %q %v", r.Response, err)
	}
}

func ptr[T any](v T) *T { return &v }

// TestStructuredOutputs: format and response_format constrain what the
// serial runner generates.
func TestStructuredOutputs(t *testing.T) {
	servertest.StructuredOutputs(t, serial.Loader(engine.Options{Threads: 2}))
}

// TestEmbeddings: the bert and nomic-bert test models through the
// embedding endpoints, and generation refused for them.
func TestEmbeddings(t *testing.T) {
	servertest.Embeddings(t, serial.Loader(engine.Options{Threads: 2}))
}

// TestLogprobs: logprobs through this runner on a real model.
func TestLogprobs(t *testing.T) {
	servertest.Logprobs(t, serial.Loader(engine.Options{Threads: 2}))
}

// TestPreserve: preserved control tokens through this runner.
func TestPreserve(t *testing.T) {
	servertest.Preserve(t, serial.Loader(engine.Options{Threads: 2}))
}
