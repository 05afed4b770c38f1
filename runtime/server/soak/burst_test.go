package soak

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/loadgen"
)

// TestBurst: 200 streamed requests at once against a KV pool of about 100
// blocks, which holds about a dozen of them: most wait, some are
// preempted, 30% of the clients hang up (some while waiting). The KV
// gauges are sampled all along (the runner's every millisecond, /metrics
// every 10 ms): blocks used never exceed the pool; afterwards every block
// is free and nothing runs.
//
// Under the race detector (ten times slower) the burst is 100 requests of
// a third of the tokens against half the pool.
func TestBurst(t *testing.T) {
	requests, tokens, budget := 200, 48, int64(1<<20)
	if raceEnabled {
		requests, tokens, budget = 100, 16, 512<<10
	}
	h := start(t, engine.BatchConfig{KVBudget: budget}, 0)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	cfg := loadgen.Config{URL: h.url + "/v1", Model: model, Endpoint: loadgen.Completions, PromptTokens: tokens,
		MaxTokens: tokens, Seed: 3, RequestTimeout: time.Minute}
	warm := cfg
	warm.Requests = 2
	wrep, err := loadgen.Run(ctx, warm)
	if err != nil || wrep.Completed != 2 {
		t.Fatalf("warm-up: %v %+v", err, wrep)
	}
	cfg.TokensPerWord = wrep.TokensPerWord
	cfg.Concurrency, cfg.Requests, cfg.DisconnectFraction = requests, requests, 0.3
	cfg.ScrapeURL, cfg.ScrapeEvery, cfg.KeepSamples = h.url+"/metrics", 10*time.Millisecond, true
	kv := watchKV(h)
	t0 := time.Now()
	rep, err := loadgen.Run(ctx, cfg)
	kv.end()
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(t0)

	if rep.Failed != 0 || rep.Completed+rep.Disconnected != requests || rep.Disconnected == 0 {
		t.Errorf("%d completed, %d disconnected, %d failed %v", rep.Completed, rep.Disconnected, rep.Failed, rep.Errors)
	}
	early := 0
	for _, s := range rep.Samples {
		if s.Disconnected && s.Chunks == 0 {
			early++
		}
	}
	g := rep.Gauges["hearth_kv_blocks_used"]
	free := rep.Gauges["hearth_kv_blocks_free"]
	if kv.overflow != "" || kv.broken != "" || kv.pool == 0 {
		t.Errorf("KV pool of %d: %s %s", kv.pool, kv.overflow, kv.broken)
	}
	if g.Samples < 10 || g.Max > float64(kv.pool) {
		t.Errorf("/metrics over %d samples: at most %g blocks used, at least %g free, of a pool of %d", g.Samples, g.Max, free.Min, kv.pool)
	}
	if kv.maxUsed < kv.pool/2 {
		t.Errorf("the burst used at most %d of %d blocks: the pool was not under pressure", kv.maxUsed, kv.pool)
	}
	var m map[string]float64
	eventually(t, 10*time.Second, func() (bool, string) {
		m = h.metrics(t)
		st := h.runner.Load().Stats()
		return m["hearth_kv_blocks_used"] == 0 && m["hearth_kv_blocks_free"] == float64(kv.pool) && st.KVBlocksUsed == 0 &&
				m["hearth_requests_in_flight"] == 0 && m["hearth_running_sequences"] == 0 && m["hearth_queue_depth"] == 0,
			fmt.Sprintf("after the burst: %g KV blocks used, %g free, %g in flight, %g running, %g queued",
				m["hearth_kv_blocks_used"], m["hearth_kv_blocks_free"], m["hearth_requests_in_flight"],
				m["hearth_running_sequences"], m["hearth_queue_depth"])
	})
	var b strings.Builder
	rep.WriteText(&b)
	t.Logf("burst: %d requests at once in %.1f s: %d completed, %d disconnected (%d before their first token), %d failed\n"+
		"KV blocks: pool %d, most used %d (runner, %d samples), %g (/metrics, %d samples); after: %g used, %g free\n%s",
		requests, elapsed.Seconds(), rep.Completed, rep.Disconnected, early, rep.Failed,
		kv.pool, kv.maxUsed, kv.samples, g.Max, g.Samples, m["hearth_kv_blocks_used"], m["hearth_kv_blocks_free"], b.String())
}
