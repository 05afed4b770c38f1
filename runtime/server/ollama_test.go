package server

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/hearth-llm/hearth/runtime/models"
)

func TestOllamaGenerate(t *testing.T) {
	f := newFake("Hello", ",", " world")
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	ctx := context.Background()

	// Streaming (the client's default): one response per piece, then the end.
	var got []api.GenerateResponse
	err := e.ollama.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "Hi", Options: map[string]any{"temperature": 0, "num_ctx": 512}},
		func(r api.GenerateResponse) error { got = append(got, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got[0].Response != "Hello" || got[2].Response != " world" || got[0].Done {
		t.Fatalf("stream: %+v", got)
	}
	last := got[3]
	if !last.Done || last.DoneReason != "stop" || last.Response != "" || last.EvalCount != 4 || last.PromptEvalCount != 3 ||
		last.Model != "tiny" || last.TotalDuration <= 0 || last.CreatedAt.IsZero() {
		t.Errorf("final: %+v", last)
	}
	// No template: the prompt as it is, with BOS; context = prompt + generated.
	req := f.lastRequest(t)
	if detok(req.Prompt) != "<BOS>Hi" || req.NumCtx != 512 || req.Sampling.Temperature != 0 || req.Sampling.TopK != 40 {
		t.Errorf("runner got %q, %+v", detok(req.Prompt), req)
	}
	if want := []int{1, 'H' + 3, 'i' + 3, 100, 101, 102, 2}; !equalInts(last.Context, want) {
		t.Errorf("context %v, want %v", last.Context, want)
	}

	// stream:false gives one response; context continues the conversation.
	var one []api.GenerateResponse
	err = e.ollama.Generate(ctx, &api.GenerateRequest{Model: "tiny:latest", Prompt: "Go", Stream: ptr(false), Context: last.Context,
		Options: map[string]any{"num_predict": 2}},
		func(r api.GenerateResponse) error { one = append(one, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if len(one) != 1 || one[0].Response != "Hello," || one[0].DoneReason != "length" || !one[0].Done {
		t.Fatalf("non-stream: %+v", one)
	}
	if got := detok(f.lastRequest(t).Prompt); got != "<BOS>Hi\x00Go" && !strings.HasSuffix(got, "Go") {
		t.Errorf("continued prompt %q", got)
	}
	if p := f.lastRequest(t).Prompt; len(p) != len(last.Context)+2 || p[len(last.Context)] != 'G'+3 {
		t.Errorf("continued prompt ids %v: want the context, then Go without BOS", p)
	}

	// A template and a system message; raw skips the template.
	f.info.Template = testTemplate
	e2 := newEnv(t, map[string]*fakeRunner{"chatty": f}, nil)
	e2.ollama.Generate(ctx, &api.GenerateRequest{Model: "chatty", Prompt: "Hi", System: "Be brief."}, func(api.GenerateResponse) error { return nil })
	if got := detok(f.lastRequest(t).Prompt); got != "<s><system>Be brief.\n<user>Hi\n<assistant>" {
		t.Errorf("templated prompt %q", got)
	}
	e2.ollama.Generate(ctx, &api.GenerateRequest{Model: "chatty", Prompt: "[INST]Hi", Raw: true}, func(api.GenerateResponse) error { return nil })
	if got := detok(f.lastRequest(t).Prompt); got != "<BOS>[INST]Hi" {
		t.Errorf("raw prompt %q", got)
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestOllamaChat(t *testing.T) {
	f := newFake("I", " am", " fine")
	f.info.Template = testTemplate
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	msgs := []api.Message{{Role: "system", Content: "S"}, {Role: "user", Content: "How are you?"}}
	var got []api.ChatResponse
	err := e.ollama.Chat(context.Background(), &api.ChatRequest{Model: "tiny", Messages: msgs},
		func(r api.ChatResponse) error { got = append(got, r); return nil })
	if err != nil {
		t.Fatal(err)
	}
	var text strings.Builder
	for _, r := range got[:len(got)-1] {
		if r.Message.Role != "assistant" || r.Done {
			t.Errorf("chunk %+v", r)
		}
		text.WriteString(r.Message.Content)
	}
	final := got[len(got)-1]
	if text.String() != "I am fine" || !final.Done || final.DoneReason != "stop" || final.EvalCount != 4 {
		t.Errorf("chat: %q, final %+v", text.String(), final)
	}
	if p := detok(f.lastRequest(t).Prompt); p != "<s><system>S\n<user>How are you?\n<assistant>" {
		t.Errorf("prompt %q", p)
	}
	// Without a template: ChatML, with BOS from the tokenizer.
	f2 := newFake("ok")
	e2 := newEnv(t, map[string]*fakeRunner{"plain": f2}, nil)
	var resp api.ChatResponse
	if err := e2.ollama.Chat(context.Background(), &api.ChatRequest{Model: "plain", Messages: msgs[1:], Stream: ptr(false)},
		func(r api.ChatResponse) error { resp = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if resp.Message.Content != "ok" || resp.Message.Role != "assistant" {
		t.Errorf("non-stream chat %+v", resp)
	}
	if p := detok(f2.lastRequest(t).Prompt); p != "<BOS><|im_start|>user\nHow are you?<|im_end|>\n<|im_start|>assistant\n" {
		t.Errorf("fallback prompt %q", p)
	}
}

func TestOllamaStopStrings(t *testing.T) {
	f := newFake("Hel", "lo <", "|e", "nd|>", " never")
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	var pieces []string
	var final api.GenerateResponse
	err := e.ollama.Generate(context.Background(), &api.GenerateRequest{Model: "tiny", Prompt: "x",
		Options: map[string]any{"stop": []string{"<|end|>", "zzz"}}},
		func(r api.GenerateResponse) error {
			if r.Done {
				final = r
			} else {
				pieces = append(pieces, r.Response)
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(pieces, "") != "Hello " || final.DoneReason != "stop" {
		t.Errorf("pieces %q, final %+v", pieces, final)
	}
	for _, p := range pieces {
		if strings.Contains(p, "<") {
			t.Errorf("part of the stop string was sent: %q", pieces)
		}
	}
	// A held-back prefix that turns out not to be a stop is sent.
	f2 := newFake("a <", "|x", "y")
	e2 := newEnv(t, map[string]*fakeRunner{"tiny": f2}, nil)
	var all strings.Builder
	e2.ollama.Generate(context.Background(), &api.GenerateRequest{Model: "tiny", Prompt: "x", Options: map[string]any{"stop": []string{"<|end|>"}}},
		func(r api.GenerateResponse) error { all.WriteString(r.Response); return nil })
	if all.String() != "a <|xy" {
		t.Errorf("got %q", all.String())
	}
}

func TestStopFilter(t *testing.T) {
	for _, c := range []struct {
		stops  []string
		pieces []string
		want   string
	}{
		{nil, []string{"a", "b"}, "a|b"},
		{[]string{"STOP"}, []string{"xST", "OPy"}, "x"},
		{[]string{"STOP"}, []string{"xS", "T", "x"}, "x|||STx"},
		{[]string{"ab", "b"}, []string{"xab"}, "x"},
		{[]string{"é!"}, []string{"café", "!"}, "caf"},
		{[]string{"\n\n"}, []string{"a\n", "b\n", "\n"}, "a|\nb"},
	} {
		f := &stopFilter{stops: c.stops}
		var out []string
		for _, p := range c.pieces {
			s, stop := f.push(p)
			out = append(out, s)
			if stop {
				break
			}
		}
		if tail := f.flush(); tail != "" {
			out = append(out, tail)
		}
		got := strings.Join(out, "|")
		if strings.ReplaceAll(got, "|", "") != strings.ReplaceAll(c.want, "|", "") {
			t.Errorf("%q %q: %q, want %q", c.stops, c.pieces, got, c.want)
		}
	}
}

// TestCancelOnDisconnect: a client that goes away mid-stream cancels the
// runner's context.
func TestCancelOnDisconnect(t *testing.T) {
	f := newFake(strings.Split(strings.Repeat("x", 200), "")...)
	f.delay = 5 * time.Millisecond
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	err := e.ollama.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "x"}, func(api.GenerateResponse) error {
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	// Ollama's client ends a cancelled stream quietly (it does not look at
	// its scanner's error), so err may be nil.
	if err != nil && !errors.Is(err, context.Canceled) {
		t.Errorf("client: %v", err)
	}
	select {
	case <-f.cancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("the runner never saw the request cancelled")
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) != 1 {
		t.Errorf("%d requests", len(f.reqs))
	}
}

// TestQueueFull: beyond MaxQueue, 503 with Retry-After and a JSON error,
// through both clients.
func TestQueueFull(t *testing.T) {
	f := newFake("a")
	f.gate = make(chan struct{})
	var started sync.WaitGroup
	started.Add(1)
	f.hold = &started
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, func(c *Config) { c.MaxQueue = 1 })
	done := make(chan error)
	go func() {
		done <- e.ollama.Generate(context.Background(), &api.GenerateRequest{Model: "tiny", Prompt: "x"}, func(api.GenerateResponse) error { return nil })
	}()
	started.Wait()
	err := e.ollama.Generate(context.Background(), &api.GenerateRequest{Model: "tiny", Prompt: "y"}, func(api.GenerateResponse) error { return nil })
	var se api.StatusError
	if !errors.As(err, &se) || se.StatusCode != http.StatusServiceUnavailable || !strings.Contains(se.ErrorMessage, "queue") {
		t.Errorf("second request: %v", err)
	}
	code, h, body := e.do("POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"x"}]}`)
	if code != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, `"type":"api_error"`) {
		t.Errorf("openai 503: %d %v %s", code, h, body)
	}
	close(f.gate)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}

func TestListShowPsVersion(t *testing.T) {
	e := newEnv(t, map[string]*fakeRunner{"tiny": newFake("a"), "other": newFake("b")}, nil)
	ctx := context.Background()
	if err := e.ollama.Heartbeat(ctx); err != nil {
		t.Fatal(err)
	}
	if v, err := e.ollama.Version(ctx); err != nil || v != OllamaVersion {
		t.Errorf("version %q %v", v, err)
	}
	list, err := e.ollama.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Models) != 2 || list.Models[1].Name != "tiny:latest" || list.Models[1].Details.Family != "llama" ||
		list.Models[1].Details.QuantizationLevel != "Q4_0" || len(list.Models[1].Digest) != 64 || list.Models[1].Size == 0 {
		t.Errorf("list %+v", list.Models)
	}
	show, err := e.ollama.Show(ctx, &api.ShowRequest{Model: "tiny"})
	if err != nil {
		t.Fatal(err)
	}
	if show.Details.Format != "gguf" || show.ModelInfo["general.architecture"] != "llama" || len(show.Capabilities) != 1 ||
		!strings.Contains(show.Modelfile, "FROM ") {
		t.Errorf("show %+v", show)
	}
	if _, err := e.ollama.Show(ctx, &api.ShowRequest{Model: "nope"}); !isStatus(err, 404) {
		t.Errorf("show unknown: %v", err)
	}

	ps, _ := e.ollama.ListRunning(ctx)
	if len(ps.Models) != 0 {
		t.Errorf("ps before any request: %+v", ps)
	}
	e.ollama.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "x", KeepAlive: &api.Duration{Duration: time.Hour}},
		func(api.GenerateResponse) error { return nil })
	ps, err = e.ollama.ListRunning(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Models) != 1 || ps.Models[0].Name != "tiny:latest" || ps.Models[0].ContextLength != 1024 ||
		time.Until(ps.Models[0].ExpiresAt) < 50*time.Minute || ps.Models[0].Size != 1000 {
		t.Errorf("ps %+v", ps.Models)
	}
}

func isStatus(err error, code int) bool {
	var se api.StatusError
	return errors.As(err, &se) && se.StatusCode == code
}

// TestLoadUnload: Ollama's empty-prompt requests load and unload; keep_alive
// 0 unloads after the request.
func TestLoadUnload(t *testing.T) {
	f := newFake("a")
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	ctx := context.Background()
	var r api.GenerateResponse
	e.ollama.Generate(ctx, &api.GenerateRequest{Model: "tiny"}, func(x api.GenerateResponse) error { r = x; return nil })
	if r.DoneReason != "load" || !r.Done || e.loads.Load() != 1 {
		t.Errorf("load: %+v, %d loads", r, e.loads.Load())
	}
	var c api.ChatResponse
	e.ollama.Chat(ctx, &api.ChatRequest{Model: "tiny", KeepAlive: &api.Duration{}}, func(x api.ChatResponse) error { c = x; return nil })
	if c.DoneReason != "unload" || f.closed.Load() != 1 {
		t.Errorf("unload: %+v, closed %d", c, f.closed.Load())
	}
	e.ollama.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "x", KeepAlive: &api.Duration{}}, func(api.GenerateResponse) error { return nil })
	if e.loads.Load() != 2 || f.closed.Load() != 2 {
		t.Errorf("keep_alive 0: %d loads, %d closes", e.loads.Load(), f.closed.Load())
	}
	if err := e.ollama.Generate(ctx, &api.GenerateRequest{Model: "nope"}, func(api.GenerateResponse) error { return nil }); !isStatus(err, 404) {
		t.Errorf("load unknown: %v", err)
	}
}

func TestDeleteCopy(t *testing.T) {
	e := newEnv(t, map[string]*fakeRunner{"tiny": newFake("a")}, nil)
	ctx := context.Background()
	if err := e.ollama.Copy(ctx, &api.CopyRequest{Source: "tiny", Destination: "tiny2:v1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.ollama.Show(ctx, &api.ShowRequest{Model: "tiny2:v1"}); err != nil {
		t.Error(err)
	}
	if err := e.ollama.Delete(ctx, &api.DeleteRequest{Model: "tiny2:v1"}); err != nil {
		t.Fatal(err)
	}
	if err := e.ollama.Delete(ctx, &api.DeleteRequest{Model: "tiny2:v1"}); !isStatus(err, 404) {
		t.Errorf("second delete: %v", err)
	}
	if err := e.ollama.Copy(ctx, &api.CopyRequest{Source: "tiny", Destination: "../escape"}); !isStatus(err, 400) {
		t.Errorf("copy out of the folder: %v", err)
	}
	if err := e.ollama.Delete(ctx, &api.DeleteRequest{Model: "../tiny"}); !isStatus(err, 400) {
		t.Errorf("delete ../tiny: %v", err)
	}
	if err := e.ollama.Create(ctx, &api.CreateRequest{Model: "x"}, func(api.ProgressResponse) error { return nil }); !isStatus(err, 501) {
		t.Errorf("create: %v", err)
	}
}

func TestEmbeddings(t *testing.T) {
	f := newFake()
	f.info.Embeddings = true
	f.embed = [][]float32{{3, 4}, {0, 2}}
	e := newEnv(t, map[string]*fakeRunner{"emb": f, "text": newFake()}, nil)
	ctx := context.Background()
	res, err := e.ollama.Embed(ctx, &api.EmbedRequest{Model: "emb", Input: []string{"ab", "cde"}})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Embeddings) != 2 || res.Embeddings[0][0] != 0.6 || res.Embeddings[0][1] != 0.8 || res.Embeddings[1][1] != 1 || res.PromptEvalCount != 5 {
		t.Errorf("embed %+v", res)
	}
	res, err = e.ollama.Embed(ctx, &api.EmbedRequest{Model: "emb", Input: "ab", Dimensions: 1})
	if err != nil || len(res.Embeddings) != 1 || len(res.Embeddings[0]) != 1 || res.Embeddings[0][0] != 1 {
		t.Errorf("embed with dimensions: %+v %v", res, err)
	}
	old, err := e.ollama.Embeddings(ctx, &api.EmbeddingRequest{Model: "emb", Prompt: "ab"})
	if err != nil || len(old.Embedding) != 2 || old.Embedding[0] != 3 {
		t.Errorf("embeddings %+v %v", old, err)
	}
	if _, err := e.ollama.Embed(ctx, &api.EmbedRequest{Model: "text", Input: "ab"}); !isStatus(err, 501) {
		t.Errorf("text model: %v", err)
	}
	if _, err := e.ollama.Embed(ctx, &api.EmbedRequest{Model: "emb", Input: 3}); !isStatus(err, 400) {
		t.Errorf("numeric input: %v", err)
	}
}

// TestRefusals: what Hearth cannot do is refused clearly, not ignored.
func TestRefusals(t *testing.T) {
	e := newEnv(t, map[string]*fakeRunner{"tiny": newFake("a")}, nil)
	ctx := context.Background()
	gen := func(r *api.GenerateRequest) error {
		return e.ollama.Generate(ctx, r, func(api.GenerateResponse) error { return nil })
	}
	for _, c := range []struct {
		name string
		req  *api.GenerateRequest
		code int
		msg  string
	}{
		{"images", &api.GenerateRequest{Model: "tiny", Prompt: "x", Images: []api.ImageData{{1}}}, 400, "images"},
		{"images unknown model", &api.GenerateRequest{Model: "nope", Prompt: "x", Images: []api.ImageData{{1}}}, 404, "not found"},
		{"format bad type", &api.GenerateRequest{Model: "tiny", Prompt: "x", Format: []byte(`{"type":"strange"}`)}, 400, "strange"},
		{"format not a schema", &api.GenerateRequest{Model: "tiny", Prompt: "x", Format: []byte(`{"type":"object","required":[1]}`)}, 400, "invalid format"},
		{"format junk", &api.GenerateRequest{Model: "tiny", Prompt: "x", Format: []byte(`"yaml"`)}, 400, "format"},
		{"suffix", &api.GenerateRequest{Model: "tiny", Prompt: "x", Suffix: "y"}, 400, "insert"},
		{"think", &api.GenerateRequest{Model: "tiny", Prompt: "x", Think: &api.ThinkValue{Value: true}}, 400, "thinking"},
		{"num_ctx beyond the model", &api.GenerateRequest{Model: "tiny", Prompt: "x", Options: map[string]any{"num_ctx": 4096}}, 400, "context length"},
		{"prompt beyond num_ctx", &api.GenerateRequest{Model: "tiny", Prompt: strings.Repeat("x", 40), Options: map[string]any{"num_ctx": 16}}, 400, "longer than the context"},
		{"context ids", &api.GenerateRequest{Model: "tiny", Prompt: "x", Context: []int{5, 9999}}, 400, "vocabulary"},
	} {
		err := gen(c.req)
		var se api.StatusError
		if !errors.As(err, &se) || se.StatusCode != c.code || !strings.Contains(se.ErrorMessage, c.msg) {
			t.Errorf("%s: %v, want %d %q", c.name, err, c.code, c.msg)
		}
	}
	err := e.ollama.Chat(ctx, &api.ChatRequest{Model: "tiny", Messages: []api.Message{{Role: "user", Content: "x"}},
		Tools: api.Tools{{Type: "function", Function: api.ToolFunction{Name: "f"}}}}, func(api.ChatResponse) error { return nil })
	if !isStatus(err, 400) {
		t.Errorf("tools: %v", err)
	}
}

// TestLoadFailure: a model that fails to load (or whose loader panics)
// answers every waiting request with a JSON error; the server goes on.
func TestLoadFailure(t *testing.T) {
	e := newEnv(t, map[string]*fakeRunner{"tiny": newFake("a")}, nil)
	e.loadErr = errors.New("gguf: bad magic")
	code, _, body := e.do("POST", "/api/generate", `{"model":"tiny","prompt":"x"}`)
	if code != 500 || !strings.Contains(body, "bad magic") {
		t.Errorf("failed load: %d %s", code, body)
	}
	e.srv.mgr.load = func(context.Context, string) (Runner, error) { panic("boom") }
	code, _, body = e.do("POST", "/api/chat", `{"model":"tiny","messages":[{"role":"user","content":"x"}]}`)
	if code != 500 || !strings.Contains(body, "panicked") {
		t.Errorf("panicking loader: %d %s", code, body)
	}
	e.srv.mgr.load = func(context.Context, string) (Runner, error) { return newFake("ok"), nil }
	code, _, body = e.do("POST", "/api/generate", `{"model":"tiny","prompt":"x","stream":false}`)
	if code != 200 || !strings.Contains(body, `"response":"ok"`) {
		t.Errorf("after failures: %d %s", code, body)
	}
}

// TestOllamaStoreModel: a model of a user's Ollama store is listed, shown
// and served in place, with its manifest's default options and system
// message, and never deleted.
func TestOllamaStoreModel(t *testing.T) {
	odir := t.TempDir()
	src := filepath.Join(t.TempDir(), "m.gguf")
	writeModel(t, src)
	g, _ := os.ReadFile(src)
	blob := func(b []byte, media string) string {
		sum := sha256Hex(b)
		os.MkdirAll(filepath.Join(odir, "blobs"), 0o755)
		os.WriteFile(filepath.Join(odir, "blobs", "sha256-"+sum), b, 0o644)
		return `{"mediaType":"` + media + `","digest":"sha256:` + sum + `","size":` + itoa(len(b)) + `}`
	}
	mf := `{"schemaVersion":2,"layers":[` + blob(g, "application/vnd.ollama.image.model") + "," +
		blob([]byte(`{"stop":["END"],"temperature":0.25,"num_ctx":100000}`), "application/vnd.ollama.image.params") + "," +
		blob([]byte("Answer in French."), "application/vnd.ollama.image.system") + `]}`
	mp := filepath.Join(odir, "manifests", "registry.ollama.ai", "library", "llama3.2", "1b")
	os.MkdirAll(filepath.Dir(mp), 0o755)
	os.WriteFile(mp, []byte(mf), 0o644)

	f := newFake("Bon", "jour", "END", "x")
	e := newEnv(t, map[string]*fakeRunner{}, func(c *Config) {
		c.Store = models.New(models.Options{Dir: t.TempDir(), OllamaDir: odir})
		c.Load = func(context.Context, string) (Runner, error) { return f, nil }
	})
	ctx := context.Background()
	list, err := e.ollama.List(ctx)
	if err != nil || len(list.Models) != 1 || list.Models[0].Name != "llama3.2:1b" {
		t.Fatalf("list %+v %v", list, err)
	}
	show, err := e.ollama.Show(ctx, &api.ShowRequest{Model: "llama3.2:1b"})
	if err != nil || show.System != "Answer in French." || !strings.Contains(show.Parameters, `"END"`) {
		t.Errorf("show %+v %v", show, err)
	}
	var r api.GenerateResponse
	if err := e.ollama.Generate(ctx, &api.GenerateRequest{Model: "llama3.2:1b", Prompt: "Hi", Stream: ptr(false)},
		func(x api.GenerateResponse) error { r = x; return nil }); err != nil {
		t.Fatal(err)
	}
	req := f.lastRequest(t)
	if r.Response != "Bonjour" || req.Sampling.Temperature != 0.25 || req.NumCtx != 2048 || detok(req.Prompt) != "<BOS>Answer in French.\n\nHi" {
		t.Errorf("generate %q, request %+v, prompt %q", r.Response, req, detok(req.Prompt))
	}
	if err := e.ollama.Delete(ctx, &api.DeleteRequest{Model: "llama3.2:1b"}); !isStatus(err, 403) {
		t.Errorf("delete from the Ollama store: %v", err)
	}
}
