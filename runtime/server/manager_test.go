package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/ollama/ollama/api"

	"github.com/hearth-llm/hearth/runtime/models"
)

// testManager builds a manager over a folder with one model per name,
// loading fakes that count their closes.
func testManager(t *testing.T, names []string, budget int64, maxLoaded int) (*manager, map[string]*fakeRunner, int64) {
	t.Helper()
	dir := t.TempDir()
	fakes := map[string]*fakeRunner{}
	var size int64
	for _, n := range names {
		p := filepath.Join(dir, n+".gguf")
		writeModel(t, p)
		st, _ := os.Stat(p)
		size = st.Size()
		fakes[n] = newFake()
	}
	load := func(ctx context.Context, path string) (Runner, error) {
		return fakes[strings.TrimSuffix(filepath.Base(path), ".gguf")], nil
	}
	if budget < 0 {
		budget = -budget * size // in models
	}
	m := newManager(models.New(models.Options{Dir: dir}), load, budget, maxLoaded, DefaultKeepAlive,
		slog.New(slog.NewTextHandler(io.Discard, nil)), time.Now)
	return m, fakes, size
}

func loadedNames(m *manager) string {
	var s []string
	for _, r := range m.snapshot() {
		s = append(s, r.l.model.Name.Model)
	}
	return strings.Join(s, ",")
}

// TestKeepAlive: an idle model unloads when its keep_alive passes, not
// before; a new request in between keeps it.
func TestKeepAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, fakes, _ := testManager(t, []string{"a"}, 0, 3)
		ctx := context.Background()
		l, fresh, err := m.acquire(ctx, "a")
		if err != nil || !fresh {
			t.Fatal(err, fresh)
		}
		m.release(l, 5*time.Minute)
		time.Sleep(4 * time.Minute)
		l, fresh, _ = m.acquire(ctx, "a") // renews
		if fresh {
			t.Error("reloaded a loaded model")
		}
		m.release(l, 5*time.Minute)
		time.Sleep(4 * time.Minute)
		synctest.Wait()
		if fakes["a"].closed.Load() != 0 || loadedNames(m) != "a" {
			t.Fatal("unloaded before its keep_alive")
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if fakes["a"].closed.Load() != 1 || loadedNames(m) != "" {
			t.Fatalf("still loaded after its keep_alive: %q", loadedNames(m))
		}
		// keep_alive < 0: never.
		l, _, _ = m.acquire(ctx, "a")
		m.release(l, -1)
		time.Sleep(1000 * time.Hour)
		synctest.Wait()
		if loadedNames(m) != "a" || m.snapshot()[0].expires != forever {
			t.Error("a forever model was unloaded")
		}
		m.close()
	})
}

// TestLRUEviction: when the count or the memory budget runs out, the
// least recently used idle model goes; busy models stay, and a request
// waits for one to become idle.
func TestLRUEviction(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, fakes, _ := testManager(t, []string{"a", "b", "c"}, -2, 3) // room for two
		ctx := context.Background()
		use := func(name string) {
			l, _, err := m.acquire(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			time.Sleep(time.Second)
			m.release(l, time.Hour)
		}
		use("a")
		use("b")
		use("a") // b is now the least recently used
		use("c")
		if got := loadedNames(m); got != "a,c" || fakes["b"].closed.Load() != 1 {
			t.Fatalf("after c: %q, b closed %d", got, fakes["b"].closed.Load())
		}
		// Both busy: a third waits until one is released.
		la, _, _ := m.acquire(ctx, "a")
		lc, _, _ := m.acquire(ctx, "c")
		got := make(chan *loaded)
		go func() {
			l, _, err := m.acquire(ctx, "b")
			if err != nil {
				t.Error(err)
			}
			got <- l
		}()
		synctest.Wait()
		select {
		case <-got:
			t.Fatal("b loaded while a and c were busy and memory was full")
		default:
		}
		// A waiting request can give up.
		cctx, cancel := context.WithCancel(ctx)
		gaveUp := make(chan error)
		go func() { _, _, err := m.acquire(cctx, "b"); gaveUp <- err }()
		synctest.Wait()
		cancel()
		if err := <-gaveUp; !errors.Is(err, context.Canceled) {
			t.Errorf("cancelled wait: %v", err)
		}
		m.release(la, time.Hour)
		lb := <-got
		if names := loadedNames(m); names != "b,c" || fakes["a"].closed.Load() != 1 {
			t.Errorf("after releasing a: %q", names)
		}
		m.release(lb, time.Hour)
		m.release(lc, time.Hour)
		m.close()
		if fakes["b"].closed.Load() != 2 || fakes["c"].closed.Load() != 1 {
			t.Error("close did not unload everything")
		}
		if _, _, err := m.acquire(ctx, "a"); !errors.Is(err, ErrBusy) {
			t.Errorf("acquire after close: %v", err)
		}
	})
}

// TestMaxLoaded: the count bounds resident models too.
func TestMaxLoaded(t *testing.T) {
	m, fakes, _ := testManager(t, []string{"a", "b"}, 0, 1)
	l, _, _ := m.acquire(context.Background(), "a")
	m.release(l, time.Hour)
	l, _, _ = m.acquire(context.Background(), "b")
	m.release(l, time.Hour)
	if loadedNames(m) != "b" || fakes["a"].closed.Load() != 1 {
		t.Errorf("loaded %q", loadedNames(m))
	}
	m.close()
}

// TestConcurrentLoad: requests racing for a model that is not loaded load
// it once.
func TestConcurrentLoad(t *testing.T) {
	m, _, _ := testManager(t, []string{"a"}, 0, 3)
	loads := 0
	var mu sync.Mutex
	inner := m.load
	m.load = func(ctx context.Context, p string) (Runner, error) {
		mu.Lock()
		loads++
		mu.Unlock()
		time.Sleep(10 * time.Millisecond)
		return inner(ctx, p)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			l, _, err := m.acquire(context.Background(), "a")
			if err != nil {
				t.Error(err)
				return
			}
			m.release(l, time.Hour)
		})
	}
	wg.Wait()
	if loads != 1 {
		t.Errorf("%d loads", loads)
	}
	m.close()
}

func TestMetricsEndpoint(t *testing.T) {
	e := newEnv(t, map[string]*fakeRunner{"tiny": newFake("a", "b", "c")}, nil)
	e.ollama.Generate(context.Background(), &api.GenerateRequest{Model: "tiny", Prompt: "x"}, func(api.GenerateResponse) error { return nil })
	code, _, body := e.do("GET", "/metrics", "")
	if code != 200 {
		t.Fatal(code)
	}
	b, _ := os.ReadFile(filepath.Join(e.dir, "tiny.gguf"))
	sum := sha256.Sum256(b)
	lv := `{model="tiny:latest",version="` + hex.EncodeToString(sum[:])[:12] + `"}`
	for _, want := range []string{
		"hearth_time_to_first_token_seconds_count" + lv + " 1",
		"hearth_inter_token_seconds_count" + lv + " 2",
		"hearth_generated_tokens_total" + lv + " 4",
		"hearth_prompt_tokens_total" + lv + " 2",
		"hearth_queue_seconds_count" + lv + " 1",
		"hearth_model_load_seconds_count" + lv + " 1",
		`hearth_model_loaded{model="tiny:latest",state="serving",version="` + hex.EncodeToString(sum[:])[:12] + `"} 1`,
		"hearth_models_loaded 1",
		"hearth_queue_depth 0",
		"hearth_running_sequences 0",
		"hearth_kv_blocks_used 0",
		"hearth_kv_blocks_free 0",
		"hearth_prefix_cache_hit_ratio 0",
		"hearth_generation_tokens_per_second_count" + lv + " 1",
		`hearth_http_requests_total{code="200",model="tiny:latest",route="POST /api/generate",version="` + hex.EncodeToString(sum[:])[:12] + `"} 1`,
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("metrics lack %q", want)
		}
	}
	code, _, body = e.do("GET", "/health", "")
	if code != 200 || !strings.Contains(body, `"status":"ok"`) {
		t.Errorf("health: %d %s", code, body)
	}
}

// TestPullEndpoint: /api/pull through Ollama's client, against a local
// imitation of the registry.
func TestPullEndpoint(t *testing.T) {
	src := filepath.Join(t.TempDir(), "m.gguf")
	writeModel(t, src)
	blob, _ := os.ReadFile(src)
	reg := httptest.NewServer(fakeRegistryHandler(t, blob))
	defer reg.Close()
	e := newEnv(t, map[string]*fakeRunner{}, func(c *Config) { c.Pull.Registry = reg.URL })
	var statuses []string
	err := e.ollama.Pull(context.Background(), &api.PullRequest{Model: "pulled"}, func(p api.ProgressResponse) error {
		if len(statuses) == 0 || statuses[len(statuses)-1] != p.Status {
			statuses = append(statuses, p.Status)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if statuses[0] != "pulling manifest" || statuses[len(statuses)-1] != "success" {
		t.Errorf("statuses %q", statuses)
	}
	list, _ := e.ollama.List(context.Background())
	if len(list.Models) != 1 || list.Models[0].Name != "pulled:latest" {
		t.Errorf("list after pull: %+v", list.Models)
	}
	err = e.ollama.Pull(context.Background(), &api.PullRequest{Model: "missing"}, func(api.ProgressResponse) error { return nil })
	if err == nil || !strings.Contains(err.Error(), "not in the registry") {
		t.Errorf("missing model: %v", err)
	}
}

// fakeRegistryHandler serves one model, "pulled:latest", as the Ollama
// registry does.
func fakeRegistryHandler(t *testing.T, blob []byte) http.Handler {
	sum := sha256Hex(blob)
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/library/pulled/manifests/latest", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"schemaVersion":2,"mediaType":"application/vnd.docker.distribution.manifest.v2+json",`+
			`"config":{"mediaType":"application/vnd.docker.container.image.v1+json","digest":"sha256:`+sum+`","size":1},`+
			`"layers":[{"mediaType":"application/vnd.ollama.image.model","digest":"sha256:`+sum+`","size":`+itoa(len(blob))+`}]}`)
	})
	mux.HandleFunc("GET /v2/library/pulled/blobs/{d}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeContent(w, r, "", time.Time{}, strings.NewReader(string(blob)))
	})
	return mux
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// TestBudgetCountsKV: each model's KV cache counts against the memory
// budget beside its file: a budget of two files holds one model whose
// cache is as big as a file.
func TestBudgetCountsKV(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		m, fakes, size := testManager(t, []string{"a", "b"}, -2, 3)
		m.kvBytes = size
		ctx := context.Background()
		for _, name := range []string{"a", "b"} {
			l, _, err := m.acquire(ctx, name)
			if err != nil {
				t.Fatal(err)
			}
			m.release(l, time.Hour)
		}
		if got := loadedNames(m); got != "b" || fakes["a"].closed.Load() != 1 {
			t.Fatalf("loaded %q, a closed %d: want a unloaded for b", got, fakes["a"].closed.Load())
		}
		m.close()
	})
}
