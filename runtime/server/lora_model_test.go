package server_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/ollama/ollama/api"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/lora"
	"github.com/hearth-llm/hearth/runtime/models"
	"github.com/hearth-llm/hearth/runtime/server"
	"github.com/hearth-llm/hearth/runtime/server/batched"
	"github.com/hearth-llm/hearth/runtime/server/serial"
)

// loraServer serves the shared stories260K-f32 model as "stories" with
// the random adapters a0..a3 (rank 4, 8, 16, 4 on attention and FFN) as
// models over it (Config.Adapters, as `hearth serve --lora` makes them),
// and a4 and "tiny" (made for another model) in the models folder, not
// registered. It returns the Ollama client, the base URL, the folder and
// the adapters' files by name.
func loraServer(t *testing.T, load server.Loader, maxLoras int) (*api.Client, string, string, map[string]string) {
	t.Helper()
	src := testdata.Dir(t, "models")
	dir := t.TempDir()
	if err := os.Symlink(filepath.Join(src, "stories260K-f32.gguf"), filepath.Join(dir, "stories.gguf")); err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	write := func(name, base string, seed uint64, rank int) {
		f, err := gguf.Open(base)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		w, err := lora.Random(f, lora.RandomOptions{Seed: seed, Rank: rank, Alpha: float32(2 * rank), Parts: lora.AttnFFN, StdB: 0.03})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, "adapters", name+".gguf")
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := w.WriteFile(p); err != nil {
			t.Fatal(err)
		}
		files[name] = p
	}
	for i := range 5 {
		write(fmt.Sprintf("a%d", i), filepath.Join(src, "stories260K-f32.gguf"), uint64(100+i), 4<<(i%3))
	}
	write("tiny", filepath.Join(src, "tiny-llama-spm-Q4_0.gguf"), 1, 4)
	cfg := server.Config{Store: models.New(models.Options{Dir: dir}), Load: load, MemoryBudget: -1, MaxLoras: maxLoras,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for i := range 4 {
		name := fmt.Sprintf("a%d", i)
		cfg.Adapters = append(cfg.Adapters, server.AdapterSpec{Name: name, Base: "stories", Path: files[name]})
	}
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	u, _ := url.Parse(hs.URL)
	return api.NewClient(u, http.DefaultClient), hs.URL, dir, files
}

// greedyServed runs prompt raw and greedily for n tokens on model and
// returns the tokens generated (no repeat penalty: pure argmax).
func greedyServed(t *testing.T, c *api.Client, model, prompt string, n int) []int32 {
	t.Helper()
	var r api.GenerateResponse
	err := c.Generate(context.Background(), &api.GenerateRequest{Model: model, Prompt: prompt, Raw: true, Stream: new(bool),
		Options: map[string]any{"num_predict": n, "temperature": 0, "repeat_penalty": 1}}, func(x api.GenerateResponse) error { r = x; return nil })
	if err != nil {
		t.Fatalf("%s: %v", model, err)
	}
	out := make([]int32, 0, n)
	for _, id := range r.Context[r.PromptEvalCount:] {
		out = append(out, int32(id))
	}
	return out
}

// greedyEngine is the same on the engine directly, with the adapter at
// path ("": none).
func greedyEngine(t *testing.T, m *engine.Model, path, prompt string, n int) []int32 {
	t.Helper()
	name := ""
	if path != "" {
		name = filepath.Base(path)
		if err := m.LoadAdapter(name, path, 1); err != nil {
			t.Fatal(err)
		}
	}
	seq, err := m.NewSequence(256)
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Close()
	if err := seq.UseAdapter(name); err != nil {
		t.Fatal(err)
	}
	logits, err := seq.Eval(m.Tok.Encode(prompt, true, true))
	if err != nil {
		t.Fatal(err)
	}
	var out []int32
	for range n {
		tok := int32(0)
		for i, v := range logits {
			if v > logits[tok] {
				tok = int32(i)
			}
		}
		out = append(out, tok)
		if logits, err = seq.Eval([]int32{tok}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestLoraServedEqualsEngine: on both runners, a greedy generation with
// an adapter differs from the base's and equals, token for token, the
// engine's with the same adapter; the base's equals the engine's bare.
func TestLoraServedEqualsEngine(t *testing.T) {
	const prompt, n = "Once upon a time", 16
	model := filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf")
	m, err := engine.Load(model, engine.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for _, c := range []struct {
		name string
		load server.Loader
	}{
		{"batched", batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 16 << 20})},
		{"serial", serial.Loader(engine.Options{Threads: 2})},
	} {
		t.Run(c.name, func(t *testing.T) {
			cl, _, _, files := loraServer(t, c.load, 4)
			base := greedyServed(t, cl, "stories", prompt, n)
			if want := greedyEngine(t, m, "", prompt, n); !slices.Equal(base, want) {
				t.Errorf("base: served %v, engine %v", base, want)
			}
			for _, ad := range []string{"a0", "a2"} {
				got := greedyServed(t, cl, ad, prompt, n)
				if slices.Equal(got, base) {
					t.Errorf("%s: the same tokens as the base %v", ad, got)
				}
				if want := greedyEngine(t, m, files[ad], prompt, n); !slices.Equal(got, want) {
					t.Errorf("%s: served %v, engine %v", ad, got, want)
				}
			}
		})
	}
}

// TestLoraBatchInvariance: 8 concurrent greedy requests over the 4
// adapters and the base (the same prompt under different adapters in two
// pairs), through the batched runner and every API's chat or completion
// route, give exactly the tokens each gives alone.
func TestLoraBatchInvariance(t *testing.T) {
	cl, _, _, _ := loraServer(t, batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 16 << 20, MaxBatchTokens: 64}), 4)
	names := []string{"stories", "a0", "a1", "a2", "a3"}
	prompts := []string{"Once upon a time", "Once upon a time", "Lily and Tom went to the park",
		"One day, a bird", "One day, a bird", "Mom said", "There was a big red ball", "Tim was sad because"}
	const n = 16
	alone := make([][]int32, len(prompts))
	for i, p := range prompts {
		alone[i] = greedyServed(t, cl, names[i%len(names)], p, n)
	}
	if slices.Equal(alone[0], alone[1]) || slices.Equal(alone[3], alone[4]) {
		t.Fatalf("the adapters do not change the output: %v %v, %v %v", alone[0], alone[1], alone[3], alone[4])
	}
	got := make([][]int32, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = greedyServed(t, cl, names[i%len(names)], p, n) }()
	}
	wg.Wait()
	for i := range prompts {
		if !slices.Equal(got[i], alone[i]) {
			t.Errorf("prompt %d (%s): concurrent %v, alone %v", i, names[i%len(names)], got[i], alone[i])
		}
	}
}

// TestLoraServedAPIs: an adapter answers on the OpenAI (chat,
// completions, Responses) and Anthropic routes too, with the base's
// template, differently from the base; vLLM's load and unload work on the
// real runner (a fifth adapter evicts one at --max-loras 4), and an
// adapter made for another model is refused with a 400 saying why.
func TestLoraServedAPIs(t *testing.T) {
	cl, base, _, _ := loraServer(t, batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 16 << 20}), 4)
	post := func(path, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(base+path, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	text := func(path, model string) string {
		t.Helper()
		var body string
		switch path {
		case "/v1/chat/completions":
			body = fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Tell me a story"}],"max_tokens":12,"temperature":0}`, model)
		case "/v1/completions":
			body = fmt.Sprintf(`{"model":%q,"prompt":"Once upon a time","max_tokens":12,"temperature":0}`, model)
		case "/v1/responses":
			body = fmt.Sprintf(`{"model":%q,"input":"Tell me a story","max_output_tokens":12,"temperature":0}`, model)
		case "/v1/messages":
			body = fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Tell me a story"}],"max_tokens":12,"temperature":0}`, model)
		case "/api/chat":
			body = fmt.Sprintf(`{"model":%q,"messages":[{"role":"user","content":"Tell me a story"}],"stream":false,"options":{"num_predict":12,"temperature":0}}`, model)
		}
		code, b := post(path, body)
		if code != 200 {
			t.Fatalf("%s %s: %d %s", path, model, code, b)
		}
		return b
	}
	for _, path := range []string{"/v1/chat/completions", "/v1/completions", "/v1/responses", "/v1/messages", "/api/chat"} {
		a, b := text(path, "a1"), text(path, "stories")
		if contentOf(a) == contentOf(b) || contentOf(a) == "" {
			t.Errorf("%s: the adapter's answer %q, the base's %q", path, contentOf(a), contentOf(b))
		}
	}

	for _, ad := range []string{"a0", "a1", "a2", "a3"} { // a0 least recently used
		greedyServed(t, cl, ad, "Once", 1)
	}
	code, body := post("/v1/load_lora_adapter", `{"lora_name":"a4","lora_path":"adapters/a4.gguf"}`)
	if code != 200 {
		t.Fatalf("load: %d %s", code, body)
	}
	before := greedyServed(t, cl, "a4", "Once upon a time", 8)
	var ps struct {
		Models []struct{ Adapters []string }
	}
	resp, err := http.Get(base + "/api/ps")
	if err != nil {
		t.Fatal(err)
	}
	json.NewDecoder(resp.Body).Decode(&ps)
	resp.Body.Close()
	if len(ps.Models) != 1 || len(ps.Models[0].Adapters) != 4 || !slices.Contains(ps.Models[0].Adapters, "a4") || slices.Contains(ps.Models[0].Adapters, "a0") {
		t.Errorf("resident at --max-loras 4 after a4: %+v (a0, the least recently used, evicted)", ps)
	}
	if code, body := post("/v1/unload_lora_adapter", `{"lora_name":"a4"}`); code != 200 {
		t.Fatalf("unload: %d %s", code, body)
	}
	if code, _ := post("/api/generate", `{"model":"a4","prompt":"x"}`); code != 404 {
		t.Errorf("generate after unload: %d", code)
	}
	// Loaded again (same file), it gives the same tokens.
	if code, body := post("/v1/load_lora_adapter", `{"lora_name":"a4","lora_path":"adapters/a4.gguf"}`); code != 200 {
		t.Fatalf("load again: %d %s", code, body)
	}
	if again := greedyServed(t, cl, "a4", "Once upon a time", 8); !slices.Equal(again, before) {
		t.Errorf("a4 loaded again: %v, first %v", again, before)
	}

	code, body = post("/v1/load_lora_adapter", `{"lora_name":"tiny","lora_path":"adapters/tiny.gguf"}`)
	if code != 400 || !strings.Contains(body, "LoRA adapter tiny does not fit stories:latest") || !strings.Contains(body, "do not fit the base weight") {
		t.Errorf("an adapter for another model: %d %s", code, body)
	}
}

// contentOf digs the generated text out of any route's JSON answer.
func contentOf(body string) string {
	var v map[string]any
	if json.Unmarshal([]byte(body), &v) != nil {
		return ""
	}
	var walk func(x any) string
	walk = func(x any) string {
		switch x := x.(type) {
		case map[string]any:
			for _, k := range []string{"content", "text", "output_text"} {
				if s, ok := x[k].(string); ok && s != "" {
					return s
				}
			}
			for _, k := range []string{"choices", "message", "output", "content"} {
				if s := walk(x[k]); s != "" {
					return s
				}
			}
		case []any:
			for _, y := range x {
				if s := walk(y); s != "" {
					return s
				}
			}
		}
		return ""
	}
	return walk(v)
}
