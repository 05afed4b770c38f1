package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/loadgen"
	"github.com/hearth-llm/hearth/runtime/models"
	"github.com/hearth-llm/hearth/runtime/server"
	"github.com/hearth-llm/hearth/runtime/server/batched"
)

func benchServe(args ...string) (stdout, stderr string, err error) {
	var o, e bytes.Buffer
	err = benchServeCmd(args, &o, &e)
	return o.String(), e.String(), err
}

func TestBenchServeFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"-o", "xml"}, "text or json"},
		{[]string{"--concurrency", "0"}, "--concurrency"},
		{[]string{"--max-tokens", "0"}, "must be positive"},
		{[]string{"--endpoint", "embeddings"}, "--endpoint"},
		{[]string{"--disconnect", "2"}, "--disconnect"},
		{[]string{"--rate", "-1"}, "--rate"},
		{[]string{"--url", "127.0.0.1:11434"}, "--url"},
		{[]string{"--progress", "sometimes"}, "--progress"},
		{[]string{"extra"}, "unexpected argument"},
	} {
		_, _, err := benchServe(c.args...)
		if _, ok := err.(usageError); !ok || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v", c.args, err)
		}
	}
}

// TestBenchServeFake: the model comes from /v1/models, the JSON report
// holds the figures, --metrics auto finds /metrics beside the API.
func TestBenchServeFake(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/models", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"object":"list","data":[{"id":"fake-1"},{"id":"fake-2"}]}`)
	})
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hearth_kv_blocks_used 0\n")
	})
	mux.HandleFunc("POST /v1/completions", func(w http.ResponseWriter, r *http.Request) {
		var body struct {
			Model  string `json:"model"`
			Prompt string `json:"prompt"`
		}
		json.NewDecoder(r.Body).Decode(&body)
		if body.Model != "fake-1" || r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, "bad request", 400)
			return
		}
		w.Header().Set("Content-Type", "text/event-stream")
		for _, s := range []string{"a", "b", "c"} {
			fmt.Fprintf(w, "data: {\"choices\":[{\"text\":%q,\"index\":0}]}\n\n", s)
			w.(http.Flusher).Flush()
		}
		n := len(strings.Fields(body.Prompt))
		fmt.Fprintf(w, "data: {\"choices\":[{\"text\":\"\",\"finish_reason\":\"length\"}]}\n\n"+
			"data: {\"choices\":[],\"usage\":{\"prompt_tokens\":%d,\"completion_tokens\":3}}\n\ndata: [DONE]\n\n", n)
	})
	hs := httptest.NewServer(mux)
	defer hs.Close()
	t.Setenv("HEARTH_API_KEY", "k")
	out, _, err := benchServe("--url", hs.URL+"/v1", "--endpoint", "completions", "-c", "3", "-n", "9", "--max-tokens", "3",
		"--metrics", "auto", "-o", "json", "--samples")
	if err != nil {
		t.Fatal(err)
	}
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if rep.Model != "fake-1" || rep.Completed != 9 || rep.OutputTokens != 27 || rep.TokensPerWord != 1 ||
		len(rep.Samples) != 9 || rep.TTFT.N != 9 || rep.Gauges["hearth_kv_blocks_used"].Samples == 0 {
		t.Errorf("report %s", out)
	}
	out, _, err = benchServe("--url", hs.URL+"/v1", "--endpoint", "completions", "-n", "2", "--tokens-per-word", "1.5")
	if err != nil || !strings.Contains(out, "2 completed") || !strings.Contains(out, "TTFT") {
		t.Errorf("text report (%v):\n%s", err, out)
	}
	if _, _, err := benchServe("--url", hs.URL+"/v1", "--model", "nope", "-n", "2"); err == nil {
		t.Error("a failing warm-up did not fail the run")
	}
}

// TestBenchServeBatched: a real run against the continuous-batching
// server over stories260K, with a shared prefix and client disconnects;
// afterwards no KV block is in use.
func TestBenchServeBatched(t *testing.T) {
	src := filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf")
	dir := t.TempDir()
	if err := os.Symlink(src, filepath.Join(dir, "stories.gguf")); err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{
		Store:        models.New(models.Options{Dir: dir}),
		Load:         batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 4 << 20}),
		MemoryBudget: -1,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	defer func() { hs.Close(); srv.Close() }()
	out, _, err := benchServe("--url", hs.URL+"/v1", "-m", "stories", "-c", "8", "-n", "48", "--prompt-tokens", "24",
		"--shared-prefix-tokens", "64", "--max-tokens", "24", "--disconnect", "0.25", "--metrics", "auto", "-o", "json")
	if err != nil {
		t.Fatal(err)
	}
	var rep loadgen.Report
	if err := json.Unmarshal([]byte(out), &rep); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d completed, %d disconnected, %.0f output tok/s, TTFT p50 %.1f ms, prompt %.0f tokens (%.2f per word)",
		rep.Completed, rep.Disconnected, rep.OutputTokensPerSec, rep.TTFT.P50, rep.MeanPromptTokens, rep.TokensPerWord)
	if rep.Failed != 0 || rep.Completed+rep.Disconnected != 48 || rep.Disconnected == 0 || rep.OutputTokens == 0 {
		t.Errorf("report %s", out)
	}
	// The prompt is about 64 + 24 tokens plus the chat template's (ChatML,
	// spelled out in stories260K's 512-token vocabulary).
	if rep.MeanPromptTokens < 88 || rep.MeanPromptTokens > 200 || rep.TTFT.N != rep.Completed {
		t.Errorf("prompt %.1f tokens, %d TTFTs", rep.MeanPromptTokens, rep.TTFT.N)
	}
	if g := rep.Gauges["hearth_kv_blocks_used"]; g.Samples == 0 || g.Max == 0 {
		t.Errorf("hearth_kv_blocks_used %+v", g)
	}
	// A hung-up request's blocks are freed within a step of the server
	// noticing: soon after the run, not necessarily at its end.
	used := ""
	for range 100 {
		resp, err := http.Get(hs.URL + "/metrics")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		for line := range strings.Lines(string(b)) {
			if v, ok := strings.CutPrefix(line, "hearth_kv_blocks_used "); ok {
				used = strings.TrimSpace(v)
			}
		}
		if used == "0" {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Errorf("hearth_kv_blocks_used %s after the run", used)
}

// TestBenchServeArgs runs `hearth bench serve` with the arguments in
// $HEARTH_BENCH_SERVE_ARGS (space-separated), printing the report: the
// command line until the bench command wires it.
func TestBenchServeArgs(t *testing.T) {
	args := os.Getenv("HEARTH_BENCH_SERVE_ARGS")
	if args == "" {
		t.Skip("set HEARTH_BENCH_SERVE_ARGS to run hearth bench serve")
	}
	if err := benchServeCmd(strings.Fields(args), os.Stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
}
