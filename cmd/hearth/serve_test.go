package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/runtime/server"
)

func TestHostPort(t *testing.T) {
	for _, c := range []struct {
		in   string
		host string
		port int
	}{
		{"127.0.0.1", "127.0.0.1", 0}, {"0.0.0.0:8080", "0.0.0.0", 8080}, {"http://localhost:11434", "localhost", 11434},
		{"::1", "::1", 0}, {"[::1]:9000", "::1", 9000}, {"https://example.com/", "example.com", 0},
	} {
		h, p, err := hostPort(c.in)
		if err != nil || h != c.host || p != c.port {
			t.Errorf("hostPort(%q) = %q %d %v", c.in, h, p, err)
		}
	}
	if _, _, err := hostPort("x:99999"); err == nil {
		t.Error("port 99999 accepted")
	}
}

func TestServeFlags(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"serve", "--host", "0.0.0.0", "--models", dir}, 2, "api-key"},
		{[]string{"serve", "--host", "192.168.0.10:80", "--models", dir}, 2, "loopback"},
		{[]string{"serve", "--port", "70000", "--models", dir}, 2, "--port"},
		{[]string{"serve", "--log-format", "xml", "--models", dir}, 2, "log-format"},
		{[]string{"serve", "extra"}, 2, "unexpected argument"},
	} {
		_, errOut, code := hearth(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("hearth %v: exit %d, %q", c.args, code, errOut)
		}
	}
	o, err := parseServe([]string{"--host", "127.0.0.1:9999", "--models", dir, "--api-key", "k", "--origins", "https://a.example,https://b.example"}, io.Discard)
	if err != nil || o.addr != "127.0.0.1:9999" || o.cfg.APIKey != "k" || len(o.cfg.Origins) != 2 {
		t.Errorf("parseServe: %+v %v", o, err)
	}
	t.Setenv("HEARTH_HOST", "127.0.0.2:7777")
	t.Setenv("HEARTH_API_KEY", "from-env")
	if o, err := parseServe([]string{"--models", dir}, io.Discard); err != nil || o.addr != "127.0.0.2:7777" || o.cfg.APIKey != "from-env" {
		t.Errorf("env: %+v %v", o, err)
	}
}

// TestServeLoraFlags: --lora (repeatable, relative files made absolute)
// and --max-loras reach the server's config; bad ones are usage errors.
func TestServeLoraFlags(t *testing.T) {
	dir := t.TempDir()
	o, err := parseServe([]string{"--models", dir, "--lora", "sql=llama3:8b:adapters/sql.gguf:0.5", "--lora", "chat=stories:/x/chat.gguf",
		"--max-loras", "2"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	wd, _ := os.Getwd()
	want := []server.AdapterSpec{{Name: "sql", Base: "llama3:8b", Path: filepath.Join(wd, "adapters/sql.gguf"), Scale: 0.5},
		{Name: "chat", Base: "stories", Path: "/x/chat.gguf", Scale: 1}}
	if !reflect.DeepEqual(o.cfg.Adapters, want) || o.cfg.MaxLoras != 2 {
		t.Errorf("adapters %+v, max %d", o.cfg.Adapters, o.cfg.MaxLoras)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--lora", "sql"}, "NAME=BASE:FILE"},
		{[]string{"--lora", "sql=stories"}, "no ':'"},
		{[]string{"--lora", "sql=stories:a.gguf:0"}, "scale"},
		{[]string{"--max-loras", "0"}, "--max-loras"},
	} {
		_, err := parseServe(append([]string{"--models", dir}, c.args...), io.Discard)
		var ue usageError
		if !errors.As(err, &ue) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want a usage error about %q", c.args, err, c.want)
		}
	}
}

// startServer runs `hearth serve` on a free port until the test ends.
func startServer(t *testing.T, args []string, load server.Loader) (addr string, logs *lockedBuffer, stop func() error) {
	t.Helper()
	o, err := parseServe(append([]string{"--port", "0"}, args...), io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	o.cfg.Load = load
	ctx, cancel := context.WithCancel(context.Background())
	logs = &lockedBuffer{}
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- runServer(ctx, o, logs, ready) }()
	select {
	case addr = <-ready:
	case err := <-done:
		t.Fatal(err)
	}
	var once sync.Once
	var serr error
	stop = func() error {
		once.Do(func() { cancel(); serr = <-done })
		return serr
	}
	t.Cleanup(func() { stop() })
	return addr, logs, stop
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}
func (l *lockedBuffer) String() string { l.mu.Lock(); defer l.mu.Unlock(); return l.b.String() }

// TestServe: `hearth serve` on the real engine, driven by Ollama's client,
// then `hearth ps` against it, then a clean stop.
func TestServe(t *testing.T) {
	src := filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf")
	dir := t.TempDir()
	if err := os.Symlink(src, filepath.Join(dir, "stories.gguf")); err != nil {
		t.Fatal(err)
	}
	addr, logs, stop := startServer(t, []string{"--models", dir, "--ollama-models", "", "-t", "2"}, nil)
	u, _ := url.Parse("http://" + addr)
	c := api.NewClient(u, http.DefaultClient)
	var r api.GenerateResponse
	err := c.Generate(context.Background(), &api.GenerateRequest{Model: "stories", Prompt: "Once upon a time", Stream: new(bool),
		Options: map[string]any{"num_predict": 8, "temperature": 0}}, func(x api.GenerateResponse) error { r = x; return nil })
	if err != nil || r.Response != ", there was a little girl" {
		t.Fatalf("generate: %q %v", r.Response, err)
	}
	out, errOut, code := hearth(t, "ps", "--host", addr)
	if code != 0 || !strings.Contains(out, "stories:latest") || !strings.Contains(out, "100% CPU") {
		t.Errorf("ps: exit %d\n%s%s", code, out, errOut)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); !strings.Contains(l, "listening") || !strings.Contains(l, "stopped") || strings.Contains(l, "Once upon") {
		t.Errorf("logs:\n%s", l)
	}
	if _, _, code := hearth(t, "ps", "--host", addr); code != 1 {
		t.Errorf("ps with no server: exit %d", code)
	}
}

// endless streams until its context ends.
type endless struct{ cancelled chan struct{} }

func (e *endless) Info() server.Info {
	return server.Info{Arch: "llama", DefaultNumCtx: 64, ContextLength: 64}
}
func (e *endless) Tokenize(s string, _, _ bool) ([]int32, error) {
	return []int32{1, 2}, nil
}
func (e *endless) Generate(ctx context.Context, _ *server.Request, emit func(server.Piece) error) (server.Result, error) {
	for {
		select {
		case <-ctx.Done():
			close(e.cancelled)
			return server.Result{}, ctx.Err()
		case <-time.After(time.Millisecond):
			if err := emit(server.Piece{Text: "x"}); err != nil {
				return server.Result{}, err
			}
		}
	}
}
func (e *endless) Embed(context.Context, *server.EmbedRequest) (server.EmbedResult, error) {
	return server.EmbedResult{}, server.ErrUnsupported
}
func (e *endless) Close() error { return nil }

// TestGracefulShutdown: a stop lets requests run for the grace period, then
// cancels their generations and returns.
func TestGracefulShutdown(t *testing.T) {
	defer func(d time.Duration) { shutdownGrace = d }(shutdownGrace)
	shutdownGrace = 200 * time.Millisecond
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "m.gguf"), []byte("GGUF"), 0o644)
	r := &endless{cancelled: make(chan struct{})}
	addr, _, stop := startServer(t, []string{"--models", dir, "--ollama-models", ""},
		func(context.Context, string) (server.Runner, error) { return r, nil })
	u, _ := url.Parse("http://" + addr)
	first := make(chan struct{})
	go api.NewClient(u, http.DefaultClient).Generate(context.Background(), &api.GenerateRequest{Model: "m", Prompt: "x"},
		func(api.GenerateResponse) error {
			select {
			case <-first:
			default:
				close(first)
			}
			return nil
		})
	<-first
	start := time.Now()
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.cancelled:
	default:
		t.Error("the generation was not cancelled")
	}
	if d := time.Since(start); d < shutdownGrace || d > 10*time.Second {
		t.Errorf("shutdown took %v", d)
	}
}

// TestPullLsRm drives the model commands against a local registry.
func TestPullLsRm(t *testing.T) {
	blob := bytes.Repeat([]byte("gguf"), 5000)
	sum := sha256.Sum256(blob)
	digest := "sha256:" + hex.EncodeToString(sum[:])
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/library/tiny/manifests/latest", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, `{"schemaVersion":2,"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":%q,"size":%d}]}`, digest, len(blob))
	})
	mux.HandleFunc("GET /v2/library/tiny/blobs/{d}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(blob))
	})
	reg := httptest.NewServer(mux)
	defer reg.Close()
	dir := t.TempDir()
	flags := []string{"--models", dir, "--ollama-models", ""}

	out, errOut, code := hearth(t, append([]string{"pull", "tiny", "--registry", reg.URL, "--progress", "never"}, flags...)...)
	if code != 0 || !strings.Contains(out, "pulled tiny:latest") || !strings.Contains(errOut, "verifying sha256 digest") {
		t.Fatalf("pull: exit %d\n%s%s", code, out, errOut)
	}
	out, _, code = hearth(t, append([]string{"ls"}, flags...)...)
	if code != 0 || !strings.Contains(out, "tiny:latest") || !strings.Contains(out, "20 kB") {
		t.Errorf("ls:\n%s", out)
	}
	if _, errOut, code := hearth(t, append([]string{"pull", "nope", "--registry", reg.URL, "--progress", "never"}, flags...)...); code != 1 || !strings.Contains(errOut, "not in the registry") {
		t.Errorf("pull nope: %d %s", code, errOut)
	}
	if _, errOut, code := hearth(t, append([]string{"rm", "../etc/passwd"}, flags...)...); code != 1 || !strings.Contains(errOut, "invalid model name") {
		t.Errorf("rm traversal: %d %s", code, errOut)
	}
	if out, _, code := hearth(t, append([]string{"rm", "tiny"}, flags...)...); code != 0 || !strings.Contains(out, "deleted 'tiny'") {
		t.Errorf("rm: %d %s", code, out)
	}
	if _, errOut, code := hearth(t, append([]string{"rm", "tiny"}, flags...)...); code != 1 || !strings.Contains(errOut, "not found") {
		t.Errorf("rm again: %d %s", code, errOut)
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1GiB": 1 << 30, "512MiB": 512 << 20, "1.5G": 3 << 29, "1000": 1000, "2MB": 2e6, " 4 GiB ": 4 << 30} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "x", "-1G", "0", "NaN", "1e40GiB"} {
		if _, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) succeeded", in)
		}
	}
}
