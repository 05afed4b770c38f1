package servertest

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/ollama/ollama/types/model"
	"github.com/openai/openai-go"

	"github.com/hearth-llm/hearth/runtime/server"
)

// embedData is runtime/arch/bert/testdata: the bert and nomic-bert test
// models and llama.cpp's vectors for them (made by its gen.py).
func embedData(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("cannot locate the test data")
	}
	return filepath.Join(filepath.Dir(file), "..", "..", "arch", "bert", "testdata")
}

type embedCase struct {
	Text      string    `json:"text"`
	Tokens    []int32   `json:"tokens"`
	Embedding []float32 `json:"embedding"`
}

func cosine[T float32 | float64](a []T, b []float32) float64 {
	var ab, aa, bb float64
	for i := range b {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

// Embeddings serves the bert ("bert", mean pooling) and nomic-bert
// ("nomic", CLS pooling) test models with load and checks the embedding
// endpoints against llama-embedding's vectors (cosine similarity at least
// 0.999): /api/embed with several inputs at once, the legacy
// /api/embeddings and OpenAI's /v1/embeddings; /api/show lists the
// embedding capability; truncate false refuses a long input; generation
// requests get a 400 that says the model only makes embeddings.
func Embeddings(t *testing.T, load server.Loader) {
	dir := embedData(t)
	raw, err := os.ReadFile(filepath.Join(dir, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var ref struct {
		Models map[string]struct {
			Inputs []embedCase `json:"inputs"`
		} `json:"models"`
	}
	if err := json.Unmarshal(raw, &ref); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{"bert": "bert-tiny.gguf", "nomic": "nomic-bert-tiny.gguf"}
	paths := map[string]string{}
	for name, f := range files {
		paths[name] = filepath.Join(dir, f)
	}
	c, oc, _ := Serve(t, load, paths)
	ctx := context.Background()
	for name, file := range files {
		cases := ref.Models[file].Inputs
		var texts []string
		tokens := 0
		for _, in := range cases {
			texts = append(texts, in.Text)
			tokens += len(in.Tokens)
		}
		res, err := c.Embed(ctx, &api.EmbedRequest{Model: name, Input: texts})
		if err != nil {
			t.Fatalf("%s: /api/embed: %v", name, err)
		}
		if len(res.Embeddings) != len(cases) || res.PromptEvalCount != tokens {
			t.Fatalf("%s: /api/embed: %d vectors, %d tokens; want %d, %d", name, len(res.Embeddings), res.PromptEvalCount, len(cases), tokens)
		}
		for i, in := range cases {
			if cs := cosine(res.Embeddings[i], in.Embedding); cs < 0.999 {
				t.Errorf("%s: /api/embed %q: cosine %.6f", name, in.Text, cs)
			}
		}
		legacy, err := c.Embeddings(ctx, &api.EmbeddingRequest{Model: name, Prompt: cases[0].Text})
		if err != nil {
			t.Fatalf("%s: /api/embeddings: %v", name, err)
		}
		if cs := cosine(legacy.Embedding, cases[0].Embedding); cs < 0.999 {
			t.Errorf("%s: /api/embeddings: cosine %.6f", name, cs)
		}
		oe, err := oc.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: name,
			Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: texts}})
		if err != nil {
			t.Fatalf("%s: /v1/embeddings: %v", name, err)
		}
		if len(oe.Data) != len(cases) || oe.Usage.PromptTokens != int64(tokens) {
			t.Fatalf("%s: /v1/embeddings: %d vectors, usage %+v", name, len(oe.Data), oe.Usage)
		}
		for _, d := range oe.Data {
			if cs := cosine(d.Embedding, cases[d.Index].Embedding); cs < 0.999 {
				t.Errorf("%s: /v1/embeddings %q: cosine %.6f", name, cases[d.Index].Text, cs)
			}
		}
		show, err := c.Show(ctx, &api.ShowRequest{Model: name})
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(show.Capabilities, []model.Capability{model.CapabilityEmbedding}) {
			t.Errorf("%s: capabilities %v", name, show.Capabilities)
		}
	}

	long := strings.Repeat("word ", 200)
	var se api.StatusError
	_, err = c.Embed(ctx, &api.EmbedRequest{Model: "bert", Input: long, Truncate: ptr(false)})
	if !errors.As(err, &se) || se.StatusCode != 400 {
		t.Errorf("long input, truncate false: %v", err)
	}
	if res, err := c.Embed(ctx, &api.EmbedRequest{Model: "bert", Input: long}); err != nil || res.PromptEvalCount != 128 {
		t.Errorf("long input, truncated: %v (%d tokens)", err, res.PromptEvalCount)
	}

	refused := func(what string, err error) {
		t.Helper()
		if !errors.As(err, &se) || se.StatusCode != 400 || !strings.Contains(se.ErrorMessage, "embedding model") {
			t.Errorf("%s: %v, want a 400 saying it is an embedding model", what, err)
		}
	}
	refused("/api/generate", c.Generate(ctx, &api.GenerateRequest{Model: "bert", Prompt: "hello"},
		func(api.GenerateResponse) error { return nil }))
	refused("/api/chat", c.Chat(ctx, &api.ChatRequest{Model: "nomic", Messages: []api.Message{{Role: "user", Content: "hello"}}},
		func(api.ChatResponse) error { return nil }))
	_, err = oc.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{Model: "nomic",
		Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hello")}})
	var oe *openai.Error
	if !errors.As(err, &oe) || oe.StatusCode != 400 || !strings.Contains(oe.Message, "embedding model") {
		t.Errorf("/v1/chat/completions: %v, want a 400 saying it is an embedding model", err)
	}
}

func ptr[T any](v T) *T { return &v }
