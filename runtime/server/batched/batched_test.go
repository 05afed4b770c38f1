package batched_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go"

	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/server/batched"
	"github.com/hearth-llm/hearth/runtime/server/servertest"
)

// serve starts a server over the shared stories260K model as "stories".
func serve(t *testing.T) (*api.Client, openai.Client, string) {
	return servertest.Stories(t, batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 16 << 20}))
}

func ptr[T any](v T) *T { return &v }

func generate(t *testing.T, c *api.Client, prompt string, opts map[string]any) api.GenerateResponse {
	t.Helper()
	var r api.GenerateResponse
	err := c.Generate(context.Background(), &api.GenerateRequest{Model: "stories", Prompt: prompt, Stream: ptr(false), Options: opts},
		func(x api.GenerateResponse) error { r = x; return nil })
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// TestGenerateGolden: a greedy /api/generate through Ollama's client, a
// continuation through the returned context, OpenAI completions, and stop
// strings.
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
	if final.DoneReason != "length" || final.EvalCount != 8 || final.PromptEvalCount != 5 || len(final.Context) != 13 {
		t.Errorf("final %+v", final)
	}
	// A long story, then its continuation through the returned context:
	// the shared prefix's full KV blocks are reused.
	long := generate(t, c, "Once upon a time, there was a little girl named Lily. She loved to play outside in the park.",
		map[string]any{"num_predict": 24, "temperature": 0})
	cont := api.GenerateRequest{Model: "stories", Prompt: " Then", Context: long.Context, Stream: ptr(false),
		Options: map[string]any{"num_predict": 4, "temperature": 0}}
	var next api.GenerateResponse
	if err := c.Generate(ctx, &cont, func(r api.GenerateResponse) error { next = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if next.Response == "" || len(next.Context) <= len(long.Context) {
		t.Errorf("continuation %+v", next)
	}
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "hearth_prefix_cache_hit_ratio 0.") {
		t.Error("the continuation reused no cached KV block")
	}

	cr, err := oc.Completions.New(ctx, openai.CompletionNewParams{Model: "stories",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")}, MaxTokens: openai.Int(8),
		Temperature: openai.Float(0)})
	if err != nil {
		t.Fatal(err)
	}
	if cr.Choices[0].Text != ", there was a little girl" || cr.Usage.CompletionTokens != 8 {
		t.Errorf("completion %q, usage %+v", cr.Choices[0].Text, cr.Usage)
	}
	stopped := generate(t, c, "Once upon a time", map[string]any{"num_predict": 8, "temperature": 0, "stop": []string{"little"}})
	if stopped.Response != ", there was a " || stopped.DoneReason != "stop" {
		t.Errorf("stopped: %q %q", stopped.Response, stopped.DoneReason)
	}
}

// TestConcurrentMatchesAlone: 8 concurrent greedy requests return what
// each returns alone.
func TestConcurrentMatchesAlone(t *testing.T) {
	c, _, _ := serve(t)
	prompts := []string{"Once upon a time", "The little dog", "Lily and Tom went to the park", "One day, a bird",
		"The sun was", "Mom said", "There was a big red ball", "Tim was sad because"}
	opts := map[string]any{"num_predict": 16, "temperature": 0}
	alone := make([]string, len(prompts))
	for i, p := range prompts {
		alone[i] = generate(t, c, p, opts).Response
	}
	got := make([]string, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = generate(t, c, p, opts).Response }()
	}
	wg.Wait()
	for i := range prompts {
		if got[i] != alone[i] {
			t.Errorf("prompt %d: concurrent %q, alone %q", i, got[i], alone[i])
		}
	}
}

// TestEmbedAndErrors: embeddings work; a prompt longer than num_ctx is a
// 400; chat runs through the fallback template.
func TestEmbedAndErrors(t *testing.T) {
	c, oc, _ := serve(t)
	ctx := context.Background()
	er, err := c.Embed(ctx, &api.EmbedRequest{Model: "stories", Input: []string{"a cat", "a dog"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(er.Embeddings) != 2 || len(er.Embeddings[0]) != 64 || er.PromptEvalCount == 0 {
		t.Errorf("embed: %d vectors of %d, %d tokens", len(er.Embeddings), len(er.Embeddings[0]), er.PromptEvalCount)
	}
	var se api.StatusError
	err = c.Generate(ctx, &api.GenerateRequest{Model: "stories", Prompt: strings.Repeat("Once upon a time ", 20),
		Options: map[string]any{"num_ctx": 16}}, func(api.GenerateResponse) error { return nil })
	if !errors.As(err, &se) || se.StatusCode != 400 {
		t.Errorf("long prompt: %v", err)
	}
	resp, err := oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "stories",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")}, MaxTokens: openai.Int(4)})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Usage.CompletionTokens == 0 {
		t.Errorf("chat usage %+v", resp.Usage)
	}
}

// scrape reads the unlabelled samples of the server's /metrics.
func scrape(t *testing.T, base string) map[string]float64 {
	t.Helper()
	resp, err := http.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]float64{}
	for _, line := range strings.Split(string(body), "\n") {
		name, val, ok := strings.Cut(line, " ")
		if !ok || strings.HasPrefix(name, "#") || strings.Contains(name, "{") {
			continue
		}
		if v, err := strconv.ParseFloat(val, 64); err == nil {
			m[name] = v
		}
	}
	return m
}

// TestCancel: a client that hangs up after two pieces stops its sequence
// (the server generates far fewer than the 400 tokens asked for: what the
// client had not read yet is not a measure of that, so /metrics is); the
// next request runs.
func TestCancel(t *testing.T) {
	c, _, base := serve(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	n := 0
	errStop := errors.New("stop")
	err := c.Generate(ctx, &api.GenerateRequest{Model: "stories", Prompt: "Once", Options: map[string]any{"num_predict": 400}},
		func(api.GenerateResponse) error {
			if n++; n == 2 {
				cancel()
				return errStop
			}
			return nil
		})
	if !errors.Is(err, errStop) && !errors.Is(err, context.Canceled) {
		t.Fatalf("generate: %v", err)
	}
	var generated, running float64
	deadline := time.Now().Add(10 * time.Second)
	for {
		m := scrape(t, base)
		generated, running = m["hearth_generated_tokens_total"], m["hearth_running_sequences"]
		if running == 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if running != 0 || generated >= 400 {
		t.Errorf("after the hang-up: %g sequences running, %g tokens generated", running, generated)
	}
	r := generate(t, c, "Once upon a time", map[string]any{"num_predict": 8, "temperature": 0})
	if r.Response != ", there was a little girl" {
		t.Errorf("after cancel: %q", r.Response)
	}
}

// TestStructuredOutputs: format and response_format constrain what the
// continuous-batching runner generates.
func TestStructuredOutputs(t *testing.T) {
	servertest.StructuredOutputs(t, batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 16 << 20}))
}

// TestEmbeddings: the bert and nomic-bert test models through the
// embedding endpoints, and generation refused for them.
func TestEmbeddings(t *testing.T) {
	servertest.Embeddings(t, batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 16 << 20}))
}

// TestLogprobs: logprobs through this runner on a real model.
func TestLogprobs(t *testing.T) {
	servertest.Logprobs(t, batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 16 << 20}))
}

// TestPreserve: preserved control tokens through this runner.
func TestPreserve(t *testing.T) {
	servertest.Preserve(t, batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 16 << 20}))
}

func TestForcedToolCalls(t *testing.T) {
	n := 200
	if testing.Short() {
		n = 24
	}
	servertest.ForcedToolCalls(t, batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 64 << 20}), n)
}

func BenchmarkToolCallOverhead(b *testing.B) {
	servertest.ToolCallOverhead(b, batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 64 << 20}))
}
