// Package servertest starts a Hearth server over a real model for tests
// and returns Ollama's and OpenAI's clients pointed at it.
package servertest

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go"
	"github.com/openai/openai-go/option"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/runtime/models"
	"github.com/hearth-llm/hearth/runtime/server"
)

// Stories serves the shared stories260K-f32 model (linked into a temporary
// models folder, not copied) as "stories", loaded with load, on a loopback
// httptest server closed when t ends. It returns both clients and the
// base URL.
func Stories(t *testing.T, load server.Loader) (*api.Client, openai.Client, string) {
	t.Helper()
	return Serve(t, load, map[string]string{"stories": filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf")})
}

// Serve serves the GGUF files of models (by name: path), linked into a
// temporary models folder, loaded with load, on a loopback httptest
// server closed when t ends. It returns both clients and the base URL.
func Serve(t *testing.T, load server.Loader, files map[string]string) (*api.Client, openai.Client, string) {
	t.Helper()
	dir := t.TempDir()
	for name, src := range files {
		abs, err := filepath.Abs(src)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(abs, filepath.Join(dir, name+".gguf")); err != nil {
			t.Fatal(err)
		}
	}
	srv, err := server.New(server.Config{
		Store:        models.New(models.Options{Dir: dir}),
		Load:         load,
		MemoryBudget: -1,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })
	u, _ := url.Parse(hs.URL)
	return api.NewClient(u, http.DefaultClient),
		openai.NewClient(option.WithBaseURL(hs.URL+"/v1/"), option.WithAPIKey("x"), option.WithMaxRetries(0)), hs.URL
}
