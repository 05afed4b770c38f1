package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/hearth-llm/hearth/runtime/server"
)

func TestEnvName(t *testing.T) {
	for in, want := range map[string]string{"host": "HEARTH_HOST", "kv-budget": "HEARTH_KV_BUDGET",
		"api-key-file": "HEARTH_API_KEY_FILE", "ollama-models": "HEARTH_OLLAMA_MODELS"} {
		if got := envName(in); got != want {
			t.Errorf("envName(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestServeEnv: every serve flag is set by its HEARTH_ variable, the
// command line wins, and a bad value names its variable.
func TestServeEnv(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, []byte("s3cret\n"), 0o600)
	for k, v := range map[string]string{
		"HEARTH_HOST": "0.0.0.0", "HEARTH_PORT": "8000", "HEARTH_MODELS": dir, "HEARTH_OLLAMA_MODELS": "",
		"HEARTH_KV_BUDGET": "2GiB", "HEARTH_API_KEY_FILE": keyFile, "HEARTH_PRELOAD": "llama3.2:1b,qwen3",
		"HEARTH_PUBLIC_METRICS": "true", "HEARTH_SHUTDOWN_GRACE": "45s", "HEARTH_PARALLEL": "32", "HEARTH_MAX_QUEUE": "100",
		"HEARTH_DEVICE": "cpu", "HEARTH_LOG_FORMAT": "json",
	} {
		t.Setenv(k, v)
	}
	o, err := parseServe(nil, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.addr != "0.0.0.0:8000" || o.cfg.Store.Dir() != dir || o.batch.KVBudget != 2<<30 || o.cfg.APIKey != "s3cret" ||
		strings.Join(o.cfg.Preload, " ") != "llama3.2:1b qwen3" || !o.cfg.PublicMetrics || o.grace != 45*time.Second ||
		o.batch.MaxRunning != 32 || o.cfg.MaxQueue != 100 || o.device != "cpu" || o.logFormat != "json" {
		t.Errorf("from the environment: %+v", o)
	}
	// The command line wins.
	o, err = parseServe([]string{"--port", "9000", "--kv-budget", "512MiB", "--preload", "x"}, io.Discard)
	if err != nil || o.addr != "0.0.0.0:9000" || o.batch.KVBudget != 512<<20 || strings.Join(o.cfg.Preload, " ") != "x" {
		t.Errorf("command line over the environment: %+v %v", o, err)
	}
	t.Setenv("HEARTH_PARALLEL", "many")
	if _, err := parseServe(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "HEARTH_PARALLEL") {
		t.Errorf("bad HEARTH_PARALLEL: %v", err)
	}
	t.Setenv("HEARTH_PARALLEL", "")
	t.Setenv("HEARTH_API_KEY", "k")
	if _, err := parseServe(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "both") {
		t.Errorf("key and key file: %v", err)
	}
	t.Setenv("HEARTH_API_KEY", "")
	os.WriteFile(keyFile, []byte(" \n"), 0o600)
	if _, err := parseServe(nil, io.Discard); err == nil || !strings.Contains(err.Error(), "empty") {
		t.Errorf("empty key file: %v", err)
	}
}

// TestServeHelpNamesEnv: `hearth serve --help` names each flag's variable.
func TestServeHelpNamesEnv(t *testing.T) {
	_, help, _ := hearth(t, "serve", "--help")
	flag := regexp.MustCompile(`^\s+(?:-\w, )?--([a-z0-9-]+)`)
	n := 0
	for _, line := range strings.Split(help, "\n") {
		m := flag.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		n++
		if !strings.Contains(line, "(env "+envName(m[1])+")") && !strings.Contains(line, envName(m[1])) {
			t.Errorf("--%s: help does not name %s: %q", m[1], envName(m[1]), line)
		}
	}
	if n < 25 || !strings.Contains(help, "HEARTH_KV_BUDGET=4GiB") {
		t.Errorf("%d flags in help:\n%s", n, help)
	}
}

// gated streams "x" until release is closed, then ends normally.
type gated struct {
	endless
	release chan struct{}
}

func (g *gated) Generate(ctx context.Context, _ *server.Request, emit func(server.Piece) error) (server.Result, error) {
	for {
		select {
		case <-ctx.Done():
			return server.Result{}, ctx.Err()
		case <-g.release:
			return server.Result{DoneReason: "stop"}, nil
		case <-time.After(time.Millisecond):
			if err := emit(server.Piece{Text: "x"}); err != nil {
				return server.Result{}, err
			}
		}
	}
}

// TestDrain: /ready is 200 once the preloaded model serves; on stop
// (SIGTERM) the listener closes at once, and a request in flight that
// ends within --shutdown-grace finishes normally.
func TestDrain(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "m.gguf"), []byte("GGUF"), 0o644)
	g := &gated{release: make(chan struct{})}
	addr, logs, stop := startServer(t, []string{"--models", dir, "--ollama-models", "", "--preload", "m", "--shutdown-grace", "30s"},
		func(context.Context, string) (server.Runner, error) { return g, nil })
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := http.Get("http://" + addr + "/ready")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("never ready")
		}
		time.Sleep(5 * time.Millisecond)
	}
	u, _ := url.Parse("http://" + addr)
	first := make(chan struct{})
	result := make(chan error, 1)
	var done bool
	go func() {
		result <- api.NewClient(u, http.DefaultClient).Generate(context.Background(), &api.GenerateRequest{Model: "m", Prompt: "x"},
			func(r api.GenerateResponse) error {
				select {
				case <-first:
				default:
					close(first)
				}
				done = r.Done
				return nil
			})
	}()
	<-first
	stopped := make(chan error, 1)
	go func() { stopped <- stop() }()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			break // no longer accepting
		}
		c.Close()
		if time.Now().After(deadline) {
			t.Fatal("still accepting connections while draining")
		}
	}
	close(g.release)
	if err := <-result; err != nil || !done {
		t.Errorf("the request in flight: done %v, %v", done, err)
	}
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); strings.Contains(l, "cancelling") || !strings.Contains(l, "stopped") {
		t.Errorf("logs:\n%s", l)
	}
}
