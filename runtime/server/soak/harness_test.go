package soak

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/models"
	"github.com/hearth-llm/hearth/runtime/server"
	"github.com/hearth-llm/hearth/runtime/server/batched"
)

// model is the name the shared stories260K model is served as.
const model = "stories"

// harness is a batched server over stories260K on a loopback port.
type harness struct {
	url    string // http://127.0.0.1:PORT
	runner atomic.Pointer[batched.Runner]
	client *http.Client // for /metrics; its connections close before idle levels are measured
}

// start serves stories260K through the batched runner sized by bc, with
// the server's queue bounded by maxQueue (0: the default), until the test
// ends.
func start(t *testing.T, bc engine.BatchConfig, maxQueue int) *harness {
	t.Helper()
	src := filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf")
	dir := t.TempDir()
	if err := os.Symlink(src, filepath.Join(dir, model+".gguf")); err != nil {
		t.Fatal(err)
	}
	h := &harness{client: &http.Client{Transport: &http.Transport{}}}
	load := batched.Loader(engine.Options{Threads: 2}, bc)
	srv, err := server.New(server.Config{
		Store: models.New(models.Options{Dir: dir}),
		Load: func(ctx context.Context, path string) (server.Runner, error) {
			r, err := load(ctx, path)
			if err == nil {
				h.runner.Store(r.(*batched.Runner))
			}
			return r, err
		},
		KeepAlive:    -1, // loaded for the whole test
		MaxQueue:     maxQueue,
		MemoryBudget: -1,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { h.closeIdle(); hs.Close(); srv.Close() })
	h.url = hs.URL
	return h
}

func (h *harness) closeIdle() { h.client.Transport.(*http.Transport).CloseIdleConnections() }

// metrics scrapes /metrics: every series (name and labels) to its value.
func (h *harness) metrics(t *testing.T) map[string]float64 {
	t.Helper()
	resp, err := h.client.Get(h.url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("metrics line %q", line)
		}
		out[line[:i]] = v
	}
	return out
}

// sum adds the series of metric name whose labels contain every one of
// labels (`route="POST /v1/chat/completions"`).
func sum(m map[string]float64, name string, labels ...string) float64 {
	total := 0.0
	for k, v := range m {
		if k != name && !strings.HasPrefix(k, name+"{") {
			continue
		}
		ok := true
		for _, l := range labels {
			ok = ok && strings.Contains(k, l)
		}
		if ok {
			total += v
		}
	}
	return total
}

// eventually polls cond every 20 ms for up to limit, failing the test
// with cond's last message when it never holds.
func eventually(t *testing.T, limit time.Duration, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for {
		ok, msg := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", limit, msg)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// idle is the process's level at rest: goroutines and live heap after a
// full collection.
type idle struct {
	goroutines int
	heap       uint64
}

func (l idle) String() string {
	return fmt.Sprintf("%d goroutines, %.1f MiB heap", l.goroutines, float64(l.heap)/(1<<20))
}

// measureIdle closes the harness's idle connections, waits for the
// goroutine count to stop falling (connections closing after a run), then
// measures.
func (h *harness) measureIdle() idle {
	h.closeIdle()
	n, same := runtime.NumGoroutine(), 0
	for i := 0; i < 100 && same < 5; i++ { // at most 2 s
		time.Sleep(20 * time.Millisecond)
		if m := runtime.NumGoroutine(); m == n {
			same++
		} else {
			n, same = m, 0
		}
	}
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return idle{goroutines: runtime.NumGoroutine(), heap: ms.HeapAlloc}
}

// kvWatch polls the runner's KV gauges every millisecond while a run goes
// on: the most blocks used, and whether used ever exceeded the pool.
type kvWatch struct {
	stop             chan struct{}
	done             sync.WaitGroup
	samples          int
	maxUsed, pool    int
	overflow, broken string
}

func watchKV(h *harness) *kvWatch {
	w := &kvWatch{stop: make(chan struct{})}
	w.done.Go(func() {
		tick := time.NewTicker(time.Millisecond)
		defer tick.Stop()
		for {
			if r := h.runner.Load(); r != nil {
				st := r.Stats()
				total := st.KVBlocksUsed + st.KVBlocksFree
				if w.pool == 0 {
					w.pool = total
				}
				w.samples++
				w.maxUsed = max(w.maxUsed, st.KVBlocksUsed)
				if st.KVBlocksUsed > w.pool && w.overflow == "" {
					w.overflow = fmt.Sprintf("%d blocks used of a pool of %d", st.KVBlocksUsed, w.pool)
				}
				if total != w.pool && w.broken == "" {
					w.broken = fmt.Sprintf("used %d + free %d != pool %d", st.KVBlocksUsed, st.KVBlocksFree, w.pool)
				}
			}
			select {
			case <-w.stop:
				return
			case <-tick.C:
			}
		}
	})
	return w
}

func (w *kvWatch) end() { close(w.stop); w.done.Wait() }
