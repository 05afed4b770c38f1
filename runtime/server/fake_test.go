package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go"
	"github.com/openai/openai-go/option"

	"github.com/hearth-llm/hearth/loader/chat"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/models"
)

// fakeRunner is a deterministic Runner: Tokenize gives one id per byte
// (plus BOS = 1 with addSpecial), Generate emits its pieces, one token
// each, then ends with an end-of-generation token (id 2).
type fakeRunner struct {
	info   Info
	pieces []string
	delay  time.Duration   // before each piece
	gate   chan struct{}   // when set, Generate waits for it (or ctx) first
	embed  [][]float32     // returned by Embed, cycled per input
	hold   *sync.WaitGroup // Done when Generate starts, when set

	mu        sync.Mutex
	reqs      []Request
	cancelled chan struct{} // closed when a Generate saw its ctx end
	closed    atomic.Int32
}

func newFake(pieces ...string) *fakeRunner {
	return &fakeRunner{
		info: Info{Arch: "llama", ContextLength: 2048, DefaultNumCtx: 1024, VocabSize: 300,
			BOS: "<s>", EOS: "</s>", Size: 1000},
		pieces: pieces, cancelled: make(chan struct{}),
	}
}

func (f *fakeRunner) Info() Info { return f.info }

func (f *fakeRunner) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	var ids []int32
	if addSpecial {
		ids = append(ids, 1)
	}
	for i := 0; i < len(text); i++ {
		ids = append(ids, int32(text[i])+3)
	}
	return ids, nil
}

// detok undoes Tokenize, for checking the prompts a fake received.
func detok(ids []int32) string {
	var b strings.Builder
	for _, id := range ids {
		switch {
		case id == 1:
			b.WriteString("<BOS>")
		case id >= 3 && id < 259:
			b.WriteByte(byte(id - 3))
		}
	}
	return b.String()
}

func (f *fakeRunner) Generate(ctx context.Context, req *Request, emit func(Piece) error) (Result, error) {
	f.mu.Lock()
	f.reqs = append(f.reqs, *req)
	f.mu.Unlock()
	if f.hold != nil {
		f.hold.Done()
	}
	res := Result{PromptTokens: len(req.Prompt), PromptDuration: time.Millisecond, GenDuration: 2 * time.Millisecond, DoneReason: "stop"}
	wait := func(c <-chan time.Time) error {
		select {
		case <-c:
			return nil
		case <-ctx.Done():
			f.sawCancel()
			return ctx.Err()
		}
	}
	if f.gate != nil {
		select {
		case <-f.gate:
		case <-ctx.Done():
			f.sawCancel()
			return res, ctx.Err()
		}
	}
	for i, p := range f.pieces {
		if req.NumPredict > 0 && i >= req.NumPredict {
			res.DoneReason = "length"
			return res, nil
		}
		if f.delay > 0 {
			if err := wait(time.After(f.delay)); err != nil {
				return res, err
			}
		}
		if err := ctx.Err(); err != nil {
			f.sawCancel()
			return res, err
		}
		res.Tokens = append(res.Tokens, int32(100+i))
		if err := emit(fakePiece(req, i, p)); err == ErrStop {
			return res, nil
		} else if err != nil {
			return res, err
		}
	}
	res.Tokens = append(res.Tokens, 2)
	return res, nil
}

// fakePiece is piece i with, when req asks, one token's logprobs:
// logprob -(i+1)/10, and TopLogprobs alternatives "alt0", "alt1", … at
// -(k+1)/100.
func fakePiece(req *Request, i int, text string) Piece {
	pc := Piece{Text: text}
	if !req.Logprobs {
		return pc
	}
	lp := TokenLogprob{TopLogprob: TopLogprob{ID: int32(100 + i), Token: text, Bytes: []byte(text), Logprob: -float64(i+1) / 10}}
	for k := range req.TopLogprobs {
		alt := fmt.Sprintf("alt%d", k)
		lp.Top = append(lp.Top, TopLogprob{ID: int32(k), Token: alt, Bytes: []byte(alt), Logprob: -float64(k+1) / 100})
	}
	pc.Logprobs = []TokenLogprob{lp}
	return pc
}

func (f *fakeRunner) sawCancel() {
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-f.cancelled:
	default:
		close(f.cancelled)
	}
}

func (f *fakeRunner) Embed(ctx context.Context, req *EmbedRequest) (EmbedResult, error) {
	if !f.info.Embeddings {
		return EmbedResult{}, ErrUnsupported
	}
	res := EmbedResult{}
	for i, in := range req.Inputs {
		res.Vectors = append(res.Vectors, f.embed[i%len(f.embed)])
		res.PromptTokens += len(in)
	}
	return res, nil
}

func (f *fakeRunner) Close() error { f.closed.Add(1); return nil }

func (f *fakeRunner) lastRequest(t testing.TB) Request {
	t.Helper()
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) == 0 {
		t.Fatal("the runner got no request")
	}
	return f.reqs[len(f.reqs)-1]
}

// writeModel writes a tiny valid GGUF file.
func writeModel(t testing.TB, path string) {
	t.Helper()
	w := gguf.NewWriter()
	w.Set("general.architecture", gguf.String("llama"))
	w.Set("general.file_type", gguf.Uint32(2))
	w.Set("llama.context_length", gguf.Uint32(2048))
	if err := w.AddTensor("output.weight", quant.F32, []uint64{4, 2}, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	os.MkdirAll(filepath.Dir(path), 0o755)
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	mt := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	os.Chtimes(path, mt, mt)
}

// env is a running test server with fakes behind it.
type env struct {
	t       testing.TB
	srv     *Server
	http    *httptest.Server
	ollama  *api.Client
	openai  openai.Client
	fakes   map[string]*fakeRunner // by file name without .gguf
	loads   atomic.Int32
	dir     string
	logs    *syncBuffer
	apiKey  string
	loadErr error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// bearer adds an API key to a client's requests.
type bearer struct {
	key string
	rt  http.RoundTripper
}

func (b bearer) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	r.Header.Set("Authorization", "Bearer "+b.key)
	return b.rt.RoundTrip(r)
}

// newEnv starts a server whose store holds one GGUF file per fake.
func newEnv(t testing.TB, fakes map[string]*fakeRunner, tweak func(*Config)) *env {
	t.Helper()
	e := &env{t: t, fakes: fakes, dir: t.TempDir(), logs: &syncBuffer{}}
	for name := range fakes {
		writeModel(t, filepath.Join(e.dir, name+".gguf"))
	}
	cfg := Config{
		Store: models.New(models.Options{Dir: e.dir}),
		Load: func(ctx context.Context, path string) (Runner, error) {
			e.loads.Add(1)
			if e.loadErr != nil {
				return nil, e.loadErr
			}
			f, ok := e.fakes[strings.TrimSuffix(filepath.Base(path), ".gguf")]
			if !ok {
				t.Errorf("load of unexpected %s", path)
			}
			return f, nil
		},
		MemoryBudget: -1,
		Logger:       slog.New(slog.NewTextHandler(e.logs, nil)),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	e.apiKey = cfg.APIKey
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.http = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		e.http.Close()
		srv.Close()
	})
	u, _ := url.Parse(e.http.URL)
	hc := &http.Client{Transport: http.DefaultTransport}
	if e.apiKey != "" {
		hc.Transport = bearer{e.apiKey, http.DefaultTransport}
	}
	e.ollama = api.NewClient(u, hc)
	e.openai = openai.NewClient(option.WithBaseURL(e.http.URL+"/v1/"), option.WithAPIKey(cmpOr(e.apiKey, "unused")),
		option.WithMaxRetries(0))
	return e
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// do sends a raw request and returns the status, headers and body.
func (e *env) do(method, path, body string, header ...string) (int, http.Header, string) {
	e.t.Helper()
	req, err := http.NewRequest(method, e.http.URL+path, strings.NewReader(body))
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp.StatusCode, resp.Header, b.String()
}

func ptr[T any](v T) *T { return &v }

var testTemplate = func() *chat.Template {
	t, err := chat.New("{{ bos_token }}{% for m in messages %}<{{ m.role }}>{{ m.content }}\n{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}")
	if err != nil {
		panic(err)
	}
	return t
}()
