package server

import (
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ollama/ollama/api"
)

// loadRunner is a fake with a batch of slots and a paged KV cache: a
// Generate waits (counted as waiting) until it holds a slot, then runs
// (counted as running, holding blocksPerSeq blocks) until the fake's gate
// opens. Stats reports those counts, as the batched runner reports its
// scheduler's.
type loadRunner struct {
	*fakeRunner
	slots                              chan struct{}
	blockSize, blocksPerSeq, numBlocks int

	mu               sync.Mutex
	waiting, running int
}

func newLoadRunner(slots, blockSize, blocksPerSeq, numBlocks int) *loadRunner {
	f := newFake("a", "b")
	f.gate = make(chan struct{})
	return &loadRunner{fakeRunner: f, slots: make(chan struct{}, slots),
		blockSize: blockSize, blocksPerSeq: blocksPerSeq, numBlocks: numBlocks}
}

func (r *loadRunner) Generate(ctx context.Context, req *Request, emit func(Piece) error) (Result, error) {
	r.add(1, 0)
	select {
	case r.slots <- struct{}{}:
	case <-ctx.Done():
		r.add(-1, 0)
		return Result{}, ctx.Err()
	}
	r.add(-1, 1)
	defer func() { r.add(0, -1); <-r.slots }()
	return r.fakeRunner.Generate(ctx, req, emit)
}

func (r *loadRunner) add(w, run int) {
	r.mu.Lock()
	r.waiting += w
	r.running += run
	r.mu.Unlock()
}

func (r *loadRunner) Stats() Stats {
	r.mu.Lock()
	defer r.mu.Unlock()
	used := r.running * r.blocksPerSeq
	return Stats{Waiting: r.waiting, Running: r.running, KVBlocksUsed: used, KVBlocksFree: r.numBlocks - used,
		KVBlockSize: r.blockSize}
}

// series is one series of a scrape.
type series struct {
	labels map[string]string
	value  float64
}

var (
	seriesLine = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)$`)
	labelPair  = regexp.MustCompile(`([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"`)
)

// scrape reads /metrics in Prometheus' text format into series by name.
func scrape(t *testing.T, e *env) map[string][]series {
	t.Helper()
	code, hdr, body := e.do("GET", "/metrics", "")
	if code != http.StatusOK || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Fatalf("/metrics: %d %s", code, hdr.Get("Content-Type"))
	}
	out := map[string][]series{}
	for _, line := range strings.Split(body, "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := seriesLine.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("/metrics: unparsable line %q", line)
		}
		v, err := strconv.ParseFloat(m[3], 64)
		if err != nil {
			t.Fatalf("/metrics: %q: %v", line, err)
		}
		s := series{labels: map[string]string{}, value: v}
		for _, p := range labelPair.FindAllStringSubmatch(m[2], -1) {
			s.labels[p[1]] = p[2]
		}
		out[m[1]] = append(out[m[1]], s)
	}
	return out
}

// one returns the single series of name, failing when there is not
// exactly one (the endpoint picker reads one series per metric).
func one(t *testing.T, got map[string][]series, name string) series {
	t.Helper()
	if len(got[name]) != 1 {
		t.Fatalf("%s: %d series, want 1: %v", name, len(got[name]), got[name])
	}
	return got[name][0]
}

// TestGatewayMetricsConformance checks the model-server protocol series
// that the Gateway API Inference Extension's endpoint picker reads under
// vLLM's names, under a 64-way load: 64 streamed requests against a
// runner with 16 slots, a 256-block KV cache and 4 blocks per sequence,
// scraped while all are in (48 waiting, 16 running, 64/256 blocks), and
// again after they end. Each value is checked against the runner's own
// Stats and the hearth_* series of the same scrape.
func TestGatewayMetricsConformance(t *testing.T) {
	const (
		load, slots                                = 64, 16
		blockSize, blocksPerSeq, numBlocks         = 16, 4, 256
		wantWaiting, wantRunning                   = load - slots, slots
		wantUsed                                   = slots * blocksPerSeq
		wantKV                             float64 = float64(wantUsed) / numBlocks
	)
	lr := newLoadRunner(slots, blockSize, blocksPerSeq, numBlocks)
	now := time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)
	e := newEnv(t, map[string]*fakeRunner{"tiny": lr.fakeRunner}, func(c *Config) {
		inner := c.Load
		c.Load = func(ctx context.Context, path string) (Runner, error) {
			if _, err := inner(ctx, path); err != nil {
				return nil, err
			}
			return lr, nil
		}
		c.Preload = []string{"tiny"}
	})
	e.srv.now = func() time.Time { return now }

	waitFor(t, func() bool { ok, _, _ := e.srv.Ready(); return ok })
	var wg sync.WaitGroup
	errs := make(chan error, load)
	for i := range load {
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := e.ollama.Generate(context.Background(), &api.GenerateRequest{Model: "tiny", Prompt: fmt.Sprint("p", i)},
				func(api.GenerateResponse) error { return nil })
			if err != nil {
				errs <- err
			}
		}()
	}
	waitFor(t, func() bool {
		st := lr.Stats()
		return st.Waiting == wantWaiting && st.Running == wantRunning
	})

	type row struct {
		series      string
		got, want   float64
		runnerCheck string
	}
	var rows []row
	check := func(phase string, got map[string][]series, waiting, running, used int) {
		st := lr.Stats()
		kv := float64(used) / numBlocks
		w, r, u := one(t, got, "vllm:num_requests_waiting"), one(t, got, "vllm:num_requests_running"), one(t, got, "vllm:kv_cache_usage_perc")
		for _, s := range []series{w, r, u} {
			if s.labels["model_name"] != "tiny:latest" {
				t.Errorf("%s: model_name %q, want tiny:latest", phase, s.labels["model_name"])
			}
		}
		cc := one(t, got, "vllm:cache_config_info")
		lora := one(t, got, "vllm:lora_requests_info")
		add := func(series string, got, want float64, runner string) {
			rows = append(rows, row{phase + " " + series, got, want, runner})
			if got != want {
				t.Errorf("%s %s = %v, want %v", phase, series, got, want)
			}
		}
		add("vllm:num_requests_waiting", w.value, float64(waiting), fmt.Sprintf("runner Waiting %d", st.Waiting))
		add("vllm:num_requests_running", r.value, float64(running), fmt.Sprintf("runner Running %d", st.Running))
		add("vllm:kv_cache_usage_perc", u.value, kv, fmt.Sprintf("runner %d/(%d+%d)", st.KVBlocksUsed, st.KVBlocksUsed, st.KVBlocksFree))
		add(`vllm:cache_config_info{block_size="`+cc.labels["block_size"]+`",num_gpu_blocks="`+cc.labels["num_gpu_blocks"]+`"}`,
			cc.value, 1, fmt.Sprintf("runner block size %d, %d blocks", st.KVBlockSize, st.KVBlocksUsed+st.KVBlocksFree))
		if cc.labels["block_size"] != strconv.Itoa(blockSize) || cc.labels["num_gpu_blocks"] != strconv.Itoa(numBlocks) {
			t.Errorf("%s cache_config_info labels %v", phase, cc.labels)
		}
		add(fmt.Sprintf(`vllm:lora_requests_info{max_lora=%q,running_lora_adapters=%q,waiting_lora_adapters=%q}`,
			lora.labels["max_lora"], lora.labels["running_lora_adapters"], lora.labels["waiting_lora_adapters"]),
			lora.value, float64(now.Unix()), "scrape time (Unix s)")
		// No adapter in use; max_lora is the configured most per base
		// (--max-loras, 4 by default), as vLLM reports its --max-loras.
		if lora.labels["max_lora"] != strconv.Itoa(DefaultMaxLoras) || lora.labels["running_lora_adapters"] != "" || lora.labels["waiting_lora_adapters"] != "" {
			t.Errorf("%s lora_requests_info labels %v", phase, lora.labels)
		}
		// The same scrape's hearth_* series agree.
		hq, hr := one(t, got, "hearth_queue_depth").value, one(t, got, "hearth_running_sequences").value
		hu, hf := one(t, got, "hearth_kv_blocks_used").value, one(t, got, "hearth_kv_blocks_free").value
		if hq != w.value || hr != r.value || hu != float64(used) || hf != float64(numBlocks-used) || hu/(hu+hf) != u.value {
			t.Errorf("%s: hearth_* disagree: queue %v running %v kv %v/%v", phase, hq, hr, hu, hf)
		}
	}
	check("loaded", scrape(t, e), wantWaiting, wantRunning, wantUsed)
	if wantKV != 0.25 {
		t.Fatal("test arithmetic")
	}

	close(lr.gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	check("idle", scrape(t, e), 0, 0, 0)

	var tb strings.Builder
	fmt.Fprintf(&tb, "\n%-112s %11s %11s  %s\n", "phase series", "scraped", "want", "runner")
	for _, r := range rows {
		fmt.Fprintf(&tb, "%-112s %11v %11v  %s\n", r.series, r.got, r.want, r.runnerCheck)
	}
	t.Log(tb.String())
}

// TestGatewayMetricsNoModel: with nothing loaded every protocol gauge is
// there (0, model_name empty) but the cache info, which would be made up.
func TestGatewayMetricsNoModel(t *testing.T) {
	e := newEnv(t, map[string]*fakeRunner{"tiny": newFake("a")}, nil)
	got := scrape(t, e)
	for _, name := range []string{"vllm:num_requests_waiting", "vllm:num_requests_running", "vllm:kv_cache_usage_perc"} {
		if s := one(t, got, name); s.value != 0 || s.labels["model_name"] != "" {
			t.Errorf("%s = %v %v", name, s.value, s.labels)
		}
	}
	if len(got["vllm:cache_config_info"]) != 0 {
		t.Errorf("cache_config_info without a cache: %v", got["vllm:cache_config_info"])
	}
	if s := one(t, got, "vllm:lora_requests_info"); s.value < float64(time.Now().Add(-time.Minute).Unix()) {
		t.Errorf("lora_requests_info = %v, want the time now", s.value)
	}
}

// loraRunner is a fake reporting LoRA adapters in its Stats, as a runner
// serving adapters would.
type loraRunner struct {
	*fakeRunner
	st Stats
}

func (r *loraRunner) Stats() Stats { return r.st }

// TestGatewayMetricsLoRA: vllm:lora_requests_info lists the adapters in
// use over every model in memory (sorted, each once, in the order the
// picker parses: comma-separated) and sums the most each holds.
func TestGatewayMetricsLoRA(t *testing.T) {
	runners := map[string]*loraRunner{
		"a": {fakeRunner: newFake("x"), st: Stats{MaxLoRA: 4, RunningLoRA: []string{"sql-lora", "chat-lora"}, WaitingLoRA: []string{"tweet-lora"}}},
		"b": {fakeRunner: newFake("x"), st: Stats{MaxLoRA: 2, RunningLoRA: []string{"sql-lora"}, WaitingLoRA: []string{"code-lora"}}},
	}
	e := newEnv(t, map[string]*fakeRunner{"a": runners["a"].fakeRunner, "b": runners["b"].fakeRunner}, func(c *Config) {
		c.Load = func(ctx context.Context, path string) (Runner, error) {
			return runners[strings.TrimSuffix(filepath.Base(path), ".gguf")], nil
		}
		c.Preload = []string{"a", "b"}
	})
	waitFor(t, func() bool { ok, _, _ := e.srv.Ready(); return ok })
	lora := one(t, scrape(t, e), "vllm:lora_requests_info")
	want := map[string]string{"max_lora": "6", "running_lora_adapters": "chat-lora,sql-lora", "waiting_lora_adapters": "code-lora,tweet-lora"}
	for k, v := range want {
		if lora.labels[k] != v {
			t.Errorf("%s = %q, want %q", k, lora.labels[k], v)
		}
	}
	t.Logf("vllm:lora_requests_info%v %v", lora.labels, lora.value)
}
