package soak

import (
	"context"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/loadgen"
)

// Tolerances of the leak checks: what a settled process may hold beyond
// its idle level measured before the run (runtime caches, a connection
// the client keeps), far below what one leaked request per hundred would
// leave (each holds a handler, a stream and a connection goroutine).
const (
	goroutineSlack = 2
	heapSlack      = 8 << 20
)

// TestSoak: 1,000 streamed completion requests at concurrency 64, a fifth of
// the clients hanging up mid-stream, through a server whose queue (56)
// refuses some of the 64. Every request ends (completed, disconnected or
// refused with 503 and Retry-After); afterwards no sequence runs, no KV
// block is used, and goroutines and heap are back at their idle level.
func TestSoak(t *testing.T) {
	requests := 1000
	if testing.Short() || raceEnabled {
		requests = 200
	}
	if os.Getenv("HEARTH_SOAK") == "1" {
		requests = 1000
	}
	const conc, maxQueue = 64, 56
	h := start(t, engine.BatchConfig{KVBudget: 4 << 20}, maxQueue)
	ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
	defer cancel()
	// Completions of a shared prefix (prefix-cache blocks shared between
	// sequences that hang up) and a short prompt of their own.
	base := loadgen.Config{URL: h.url + "/v1", Model: model, Endpoint: loadgen.Completions, SharedPrefixTokens: 32,
		PromptTokens: 8, MaxTokens: 16, Seed: 1, RequestTimeout: time.Minute}

	// Warm up: the model loads, the calibration runs, every code path has
	// run once; then the idle level.
	warm := base
	warm.Concurrency, warm.Requests = maxQueue, maxQueue
	wrep, err := loadgen.Run(ctx, warm)
	if err != nil {
		t.Fatal(err)
	}
	if wrep.Completed != maxQueue {
		t.Fatalf("warm-up: %d of %d completed: %v", wrep.Completed, maxQueue, wrep.Errors)
	}
	before := h.measureIdle()
	m0 := h.metrics(t)

	cfg := base
	cfg.TokensPerWord = wrep.TokensPerWord
	cfg.Seed = 2
	cfg.Concurrency, cfg.Requests, cfg.DisconnectFraction, cfg.HonorRetryAfter = conc, requests, 0.2, true
	cfg.ScrapeURL, cfg.ScrapeEvery, cfg.KeepSamples = h.url+"/metrics", 20*time.Millisecond, true
	kv := watchKV(h)
	t0 := time.Now()
	rep, err := loadgen.Run(ctx, cfg)
	kv.end()
	if err != nil {
		t.Fatal(err)
	}
	elapsed := time.Since(t0)

	// Every request ended: completed, hung up, or refused with 503.
	refused := rep.Errors["http_503"]
	if rep.Requests != requests || rep.Completed+rep.Disconnected+refused != requests || rep.Failed != refused {
		t.Errorf("%d requests: %d completed, %d disconnected, %d failed %v", rep.Requests, rep.Completed, rep.Disconnected,
			rep.Failed, rep.Errors)
	}
	if rep.Disconnected == 0 || rep.Completed == 0 {
		t.Errorf("%d completed, %d disconnected", rep.Completed, rep.Disconnected)
	}
	if refused == 0 {
		t.Errorf("no request was refused with %d clients and a queue of %d", conc, maxQueue)
	}
	for _, s := range rep.Samples {
		if s.ErrKind == "http_503" && s.RetryAfter == "" {
			t.Errorf("request %d: 503 without Retry-After", s.Index)
			break
		}
	}
	if kv.overflow != "" || kv.broken != "" {
		t.Errorf("KV pool: %s %s", kv.overflow, kv.broken)
	}
	if g := rep.Gauges["hearth_kv_blocks_used"]; g.Max > float64(kv.pool) {
		t.Errorf("/metrics: %g KV blocks used of a pool of %d", g.Max, kv.pool)
	}

	// The server ended every request too: each handler returned (its
	// status is counted), nothing runs or waits, no KV block is used. A
	// client that hangs up before its first token may do so before its
	// request reached the server, which then never sees it.
	early := 0
	for _, s := range rep.Samples {
		if s.Disconnected && s.Chunks == 0 {
			early++
		}
	}
	const route = `route="POST /v1/completions"`
	var m1 map[string]float64
	var handled float64
	eventually(t, 10*time.Second, func() (bool, string) {
		m1 = h.metrics(t)
		handled = sum(m1, "hearth_http_requests_total", route) - sum(m0, "hearth_http_requests_total", route)
		msg := fmt.Sprintf("%g of %d requests handled; in flight %g, running %g, queued %g, KV blocks used %g", handled, requests,
			m1["hearth_requests_in_flight"], m1["hearth_running_sequences"], m1["hearth_queue_depth"], m1["hearth_kv_blocks_used"])
		st := h.runner.Load().Stats()
		return handled >= float64(requests-early) && handled <= float64(requests) && m1["hearth_requests_in_flight"] == 0 &&
			m1["hearth_running_sequences"] == 0 && m1["hearth_queue_depth"] == 0 && m1["hearth_kv_blocks_used"] == 0 &&
			st.KVBlocksUsed == 0 && st.Running == 0 && st.Waiting == 0, msg
	})
	codes := map[string]float64{}
	for _, c := range []string{"200", "499", "503"} {
		l := `code="` + c + `"`
		codes[c] = sum(m1, "hearth_http_requests_total", route, l) - sum(m0, "hearth_http_requests_total", route, l)
	}
	rejected := sum(m1, "hearth_rejected_requests_total") - sum(m0, "hearth_rejected_requests_total")
	served503 := sum(m1, "hearth_http_requests_total", route, `code="503"`) - sum(m0, "hearth_http_requests_total", route, `code="503"`)
	// A client that disconnects early may go before it reads the 503 the
	// server sent it: the server's count may exceed the clients' by those.
	if rejected != served503 || rejected < float64(refused) || rejected > float64(refused+early) {
		t.Errorf("client saw %d refusals (%d early disconnects); the server counted %g rejected, %g 503s", refused, early, rejected, served503)
	}

	// Goroutines and heap return to their idle level.
	var after idle
	eventually(t, 10*time.Second, func() (bool, string) {
		after = h.measureIdle()
		return after.goroutines <= before.goroutines+goroutineSlack && after.heap <= before.heap+heapSlack,
			fmt.Sprintf("idle before: %v; after: %v", before, after)
	})

	var b strings.Builder
	rep.WriteText(&b)
	t.Logf("soak: %d requests at concurrency %d in %.1f s, queue %d: %d completed, %d disconnected, %d refused (503), errors %v\n"+
		"KV blocks: pool %d, most used %d (runner, %d samples), %g (/metrics); after: %g used\n"+
		"server: %g requests handled, by code %v\n"+
		"idle before: %v; after: %v\n%s",
		requests, conc, elapsed.Seconds(), maxQueue, rep.Completed, rep.Disconnected, refused, rep.Errors,
		kv.pool, kv.maxUsed, kv.samples, rep.Gauges["hearth_kv_blocks_used"].Max, m1["hearth_kv_blocks_used"],
		handled, codes, before, after, b.String())
}
