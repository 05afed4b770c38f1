package server

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
)

// TestReady: /ready is 503 until every preloaded model serves (a missing
// file is tried again until it appears), 200 then, and 503 once draining;
// a preloaded model stays loaded through keep_alive 0 and an unload
// request, and is not evicted to make room for another.
func TestReady(t *testing.T) {
	fakes := map[string]*fakeRunner{"tiny": newFake("a"), "other": newFake("b"), "late": newFake("c")}
	e := newEnv(t, fakes, func(c *Config) {
		os.Remove(filepath.Join(c.Store.Dir(), "late.gguf")) // pulled later
		c.Preload = []string{"tiny", "late"}
		c.PreloadRetry = 10 * time.Millisecond
		c.MaxLoaded = 2
		c.APIKey = "k"
	})
	code, _, body := e.do("GET", "/ready", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"loading"`) {
		t.Fatalf("/ready before late exists: %d %s", code, body)
	}
	waitFor(t, func() bool {
		_, _, m := e.srv.Ready()
		return m["tiny"] == "serving" && strings.Contains(m["late"], "not found")
	})
	writeModel(t, filepath.Join(e.dir, "late.gguf"))
	waitFor(t, func() bool { ok, _, _ := e.srv.Ready(); return ok })
	code, _, body = e.do("GET", "/ready", "") // no key needed
	if code != http.StatusOK || body != `{"models":{"late":"serving","tiny":"serving"},"status":"ready"}`+"\n" {
		t.Fatalf("/ready: %d %s", code, body)
	}
	if code, _, _ := e.do("HEAD", "/ready", ""); code != http.StatusOK {
		t.Errorf("HEAD /ready: %d", code)
	}

	ctx := context.Background()
	keep0 := &api.Duration{Duration: 0}
	if err := e.ollama.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "x", KeepAlive: keep0}, func(api.GenerateResponse) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if err := e.ollama.Generate(ctx, &api.GenerateRequest{Model: "tiny", KeepAlive: keep0}, func(api.GenerateResponse) error { return nil }); err != nil {
		t.Fatal(err)
	}
	// A third model with MaxLoaded 2: both resident ones are pinned, so it
	// is refused at once (503) rather than evicting one or waiting forever.
	code, _, body = e.do("POST", "/api/generate", `{"model":"other","prompt":"x"}`, "Authorization", "Bearer k")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "preloaded") {
		t.Errorf("a model beside the pinned ones: %d %s", code, body)
	}
	if ok, _, m := e.srv.Ready(); !ok || fakes["tiny"].closed.Load() != 0 || fakes["late"].closed.Load() != 0 {
		t.Errorf("a preloaded model was unloaded: %v (closed %d %d)", m, fakes["tiny"].closed.Load(), fakes["late"].closed.Load())
	}

	e.srv.Drain()
	code, _, body = e.do("GET", "/ready", "")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, `"status":"draining"`) {
		t.Errorf("/ready draining: %d %s", code, body)
	}
	if code, _, _ := e.do("GET", "/health", ""); code != http.StatusOK {
		t.Errorf("/health while draining: %d", code)
	}
}

// TestReadyNoPreload: without --preload a listening server is ready.
func TestReadyNoPreload(t *testing.T) {
	e := newEnv(t, map[string]*fakeRunner{"tiny": newFake("a")}, nil)
	if code, _, body := e.do("GET", "/ready", ""); code != http.StatusOK || !strings.Contains(body, `"status":"ready"`) {
		t.Errorf("/ready: %d %s", code, body)
	}
}

// TestPublicMetrics: /metrics needs the key unless PublicMetrics.
func TestPublicMetrics(t *testing.T) {
	for _, public := range []bool{false, true} {
		e := newEnv(t, map[string]*fakeRunner{"tiny": newFake("a")}, func(c *Config) { c.APIKey, c.PublicMetrics = "k", public })
		want := http.StatusUnauthorized
		if public {
			want = http.StatusOK
		}
		if code, _, _ := e.do("GET", "/metrics", ""); code != want {
			t.Errorf("public %v: /metrics without the key: %d, want %d", public, code, want)
		}
		if code, _, _ := e.do("POST", "/api/generate", `{"model":"tiny"}`); code != http.StatusUnauthorized {
			t.Errorf("public %v: /api/generate without the key: %d", public, code)
		}
	}
}
