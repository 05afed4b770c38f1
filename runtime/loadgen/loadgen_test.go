package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"net/http"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
)

const ms = time.Millisecond

func near(a, b float64) bool { return math.Abs(a-b) <= 1e-9*max(1, math.Abs(b)) }

func checkDist(t *testing.T, name string, got Dist, want Dist) {
	t.Helper()
	if got.N != want.N || !near(got.Mean, want.Mean) || !near(got.Min, want.Min) || !near(got.P50, want.P50) ||
		!near(got.P90, want.P90) || !near(got.P99, want.P99) || !near(got.Max, want.Max) {
		t.Errorf("%s = %+v, want %+v", name, got, want)
	}
}

// TestClosedLoopExact: one worker, ten requests; the fake server answers
// request j after (j+1)·10 ms, then 4 more tokens 5 ms apart. On the
// bubble's fake clock every figure is exact.
func TestClosedLoopExact(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int64
		var mu sync.Mutex
		var seen []fakeRequest
		client := fakeServer(t, func(w http.ResponseWriter, r *http.Request, req *fakeRequest) {
			j := n.Add(1) - 1
			mu.Lock()
			seen = append(seen, *req)
			mu.Unlock()
			s := newSSE(w)
			s.role() // a role-only chunk is not the first token
			time.Sleep(time.Duration(j+1) * 10 * ms)
			for k := range 5 {
				if k > 0 {
					time.Sleep(5 * ms)
				}
				s.content("tok ")
			}
			s.finish("length", req.words()+3, 5)
		})
		temp := 0.5
		var progress []int
		rep, err := Run(t.Context(), Config{URL: "http://fake/v1/", Model: "m", APIKey: "key", Requests: 10, MaxTokens: 5,
			TokensPerWord: 1, IgnoreEOS: true, Temperature: &temp, Client: client, KeepSamples: true,
			Progress: func(done, total int) { progress = append(progress, done*100+total) }})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Requests != 10 || rep.Completed != 10 || rep.Failed != 0 || rep.Disconnected != 0 || len(rep.Errors) != 0 {
			t.Fatalf("report %+v", rep)
		}
		// TTFT: 10, 20, …, 100 ms.
		checkDist(t, "TTFT", rep.TTFT, Dist{N: 10, Mean: 55, Min: 10, P50: 55, P90: 91, P99: 99.1, Max: 100})
		checkDist(t, "ITL", rep.ITL, Dist{N: 40, Mean: 5, Min: 5, P50: 5, P90: 5, P99: 5, Max: 5})
		checkDist(t, "TPOT", rep.TPOT, Dist{N: 10, Mean: 5, Min: 5, P50: 5, P90: 5, P99: 5, Max: 5})
		checkDist(t, "E2E", rep.E2E, Dist{N: 10, Mean: 75, Min: 30, P50: 75, P90: 111, P99: 119.1, Max: 120})
		if rep.Duration != 750*ms || rep.FirstTTFT != 10*ms {
			t.Errorf("duration %v, first TTFT %v", rep.Duration, rep.FirstTTFT)
		}
		if rep.OutputTokens != 50 || !near(rep.OutputTokensPerSec, 50/0.75) || !near(rep.RequestsPerSec, 10/0.75) ||
			rep.MeanPromptTokens != DefaultPromptTokens+3 || rep.MeanOutputTokens != 5 {
			t.Errorf("throughput %+v", rep)
		}
		if len(rep.Samples) != 10 || rep.Samples[3].Start != 120*ms {
			t.Errorf("samples %+v", rep.Samples)
		}
		if len(progress) != 10 || progress[9] != 1010 {
			t.Errorf("progress %v", progress)
		}
		for _, req := range seen {
			b := req.Body
			if req.Path != "/v1/chat/completions" || req.Auth != "Bearer key" || b.Model != "m" || !b.Stream ||
				!b.StreamOptions.IncludeUsage || b.MaxTokens != 5 || !b.IgnoreEOS || b.Temperature != 0.5 ||
				len(b.Messages) != 1 || b.Messages[0].Role != "user" || req.words() != DefaultPromptTokens {
				t.Fatalf("request %+v", req)
			}
		}
		if seen[0].Body.Messages[0].Content == seen[1].Body.Messages[0].Content {
			t.Error("two requests had the same prompt")
		}
		var text bytes.Buffer
		if err := rep.WriteText(&text); err != nil || !strings.Contains(text.String(), "10 completed") {
			t.Errorf("text report: %v\n%s", err, text.String())
		}
		if _, err := json.Marshal(rep); err != nil {
			t.Error(err)
		}
	})
}

// TestPackedChunks: a server that sends two tokens per chunk has its
// gaps spread over them; one token more than the chunks (an end of
// sequence counted, not sent) is not packing.
func TestPackedChunks(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int64
		client := fakeServer(t, func(w http.ResponseWriter, r *http.Request, req *fakeRequest) {
			s := newSSE(w)
			for k := range 3 {
				if k > 0 {
					time.Sleep(10 * ms)
				}
				s.content("ab")
			}
			if n.Add(1) == 1 {
				s.finish("length", 1, 6)
			} else {
				s.finish("stop", 1, 4)
			}
		})
		rep, err := Run(t.Context(), Config{URL: "http://fake/v1", Requests: 2, TokensPerWord: 1, Client: client})
		if err != nil {
			t.Fatal(err)
		}
		// Gaps of 10 ms: 5 ms per token for the packed stream, 10 for the other.
		checkDist(t, "ITL", rep.ITL, Dist{N: 4, Mean: 7.5, Min: 5, P50: 7.5, P90: 10, P99: 10, Max: 10})
		if rep.OutputTokens != 10 {
			t.Errorf("%d output tokens", rep.OutputTokens)
		}
	})
}

// TestPoissonArrivals: requests go out at the exponential gaps of the
// seeded stream, and no more than Concurrency are in flight.
func TestPoissonArrivals(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := fakeServer(t, func(w http.ResponseWriter, r *http.Request, req *fakeRequest) {
			s := newSSE(w)
			time.Sleep(700 * ms)
			s.content("x")
			s.finish("stop", 1, 1)
		})
		const rate, seed = 4.0, 7
		rep, err := Run(t.Context(), Config{URL: "http://fake/v1", Rate: rate, Concurrency: 3, Requests: 30, MaxTokens: 1,
			TokensPerWord: 1, Seed: seed, Client: client, KeepSamples: true, Endpoint: Completions})
		if err != nil {
			t.Fatal(err)
		}
		// In flight when each request left (the client's view: the server
		// may see the next request before its last handler returned).
		most := 0
		for _, a := range rep.Samples {
			n := 0
			for _, b := range rep.Samples {
				if b.Start <= a.Start && a.Start < b.Start+b.E2E {
					n++
				}
			}
			most = max(most, n)
		}
		if rep.Completed != 30 || most != 3 {
			t.Fatalf("%d completed, %d most in flight", rep.Completed, most)
		}
		// Arrival i is due at the sum of the first i gaps; it leaves then,
		// or when a slot frees if three are in flight.
		rng := rand.New(rand.NewPCG(seed, saltArrival))
		var due time.Duration
		var ends []time.Duration
		for i, s := range rep.Samples {
			if i > 0 {
				due += time.Duration(rng.ExpFloat64() / rate * float64(time.Second))
			}
			want := due
			if i >= 3 {
				slots := slices.Clone(ends)
				slices.Sort(slots)
				want = max(due, slots[len(slots)-3])
			}
			if s.Start != want {
				t.Fatalf("request %d sent at %v, want %v", i, s.Start, want)
			}
			ends = append(ends, s.Start+s.E2E)
		}
	})
}

// TestAllAtOnce: an infinite rate sends every request at time 0, up to
// the bound in flight, and the report still encodes as JSON.
func TestAllAtOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := fakeServer(t, func(w http.ResponseWriter, r *http.Request, req *fakeRequest) {
			s := newSSE(w)
			time.Sleep(time.Second)
			s.content("a")
			s.finish("stop", 1, 1)
		})
		rep, err := Run(t.Context(), Config{URL: "http://fake/v1", Rate: math.Inf(1), Concurrency: 20, Requests: 40,
			TokensPerWord: 1, Client: client, KeepSamples: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Completed != 40 || rep.Samples[19].Start != 0 || rep.Samples[20].Start != time.Second || !rep.AllAtOnce {
			t.Errorf("%d completed; request 19 at %v, 20 at %v", rep.Completed, rep.Samples[19].Start, rep.Samples[20].Start)
		}
		if _, err := json.Marshal(rep); err != nil {
			t.Error(err)
		}
	})
}

// TestErrorsAndDisconnects: each failure is counted under its kind, a
// refused request keeps its Retry-After, and hung-up requests are
// disconnected (the server sees its request's context end), not failed.
func TestErrorsAndDisconnects(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n, cancelled atomic.Int64
		client := fakeServer(t, func(w http.ResponseWriter, r *http.Request, req *fakeRequest) {
			j := n.Add(1) - 1
			switch j % 6 {
			case 0:
				w.Header().Set("Retry-After", "1")
				http.Error(w, `{"error":{"message":"busy"}}`, http.StatusServiceUnavailable)
				return
			case 1:
				s := newSSE(w)
				s.content("a")
				s.data(map[string]any{"error": map[string]any{"message": "engine failed"}})
				return
			case 2:
				s := newSSE(w)
				s.content("a")
				return // no [DONE]
			case 3:
				s := newSSE(w)
				s.raw("data: {not json\n\n")
				return
			case 4:
				time.Sleep(DefaultRequestTimeout + time.Second)
				return
			}
			s := newSSE(w)
			s.raw(": keep-alive comment\n\n")
			s.content("a")
			s.finish("stop", 2, 1)
		})
		rep, err := Run(t.Context(), Config{URL: "http://fake/v1", Concurrency: 6, Requests: 12, MaxTokens: 1,
			TokensPerWord: 1, Client: client, KeepSamples: true})
		if err != nil {
			t.Fatal(err)
		}
		want := map[string]int{"http_503": 2, ErrStream: 2, ErrIncomplete: 2, ErrBadChunk: 2, ErrTimeout: 2}
		if rep.Completed != 2 || rep.Failed != 10 || !mapsEqual(rep.Errors, want) {
			t.Errorf("completed %d, failed %d, errors %v", rep.Completed, rep.Failed, rep.Errors)
		}
		for _, s := range rep.Samples {
			if s.ErrKind == "http_503" && (s.RetryAfter != "1" || s.Status != 503 || !strings.Contains(s.Err, "busy")) {
				t.Errorf("503 sample %+v", s)
			}
		}

		// Every request hangs up: before its first token (which comes after
		// 300 ms) or after 1..9 of its 10 chunks.
		n.Store(0)
		client = fakeServer(t, func(w http.ResponseWriter, r *http.Request, req *fakeRequest) {
			failed := false
			defer func() {
				if failed || r.Context().Err() != nil {
					cancelled.Add(1)
				}
			}()
			time.Sleep(300 * ms)
			s := newSSE(w)
			for range req.Body.MaxTokens {
				if s.content("a") != nil {
					failed = true
					return
				}
				time.Sleep(10 * ms)
			}
			s.finish("length", 1, req.Body.MaxTokens)
		})
		rep, err = Run(t.Context(), Config{URL: "http://fake/v1", Concurrency: 8, Requests: 40, MaxTokens: 10,
			TokensPerWord: 1, DisconnectFraction: 1, Client: client, KeepSamples: true})
		if err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Second) // the handlers notice
		synctest.Wait()
		if rep.Disconnected != 40 || rep.Completed != 0 || rep.Failed != 0 || cancelled.Load() != 40 {
			t.Errorf("disconnected %d, completed %d, failed %d (%v); the server saw %d cancelled",
				rep.Disconnected, rep.Completed, rep.Failed, rep.Errors, cancelled.Load())
		}
		early := 0
		for _, s := range rep.Samples {
			if s.Chunks == 0 {
				early++
			} else if s.Chunks >= 10 {
				t.Errorf("request %d hung up after all %d chunks", s.Index, s.Chunks)
			}
		}
		if early == 0 || early == 40 {
			t.Errorf("%d of 40 hung up before the first token", early)
		}
	})
}

// TestHonorRetryAfter: a refused worker waits out Retry-After.
func TestHonorRetryAfter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int64
		client := fakeServer(t, func(w http.ResponseWriter, r *http.Request, req *fakeRequest) {
			if n.Add(1)%2 == 1 {
				w.Header().Set("Retry-After", "2")
				w.WriteHeader(http.StatusServiceUnavailable)
				return
			}
			s := newSSE(w)
			s.content("a")
			s.finish("stop", 1, 1)
		})
		rep, err := Run(t.Context(), Config{URL: "http://fake/v1", Requests: 6, TokensPerWord: 1, Client: client,
			HonorRetryAfter: true, KeepSamples: true})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Errors["http_503"] != 3 || rep.Completed != 3 || rep.Samples[5].Start != 6*time.Second {
			t.Errorf("errors %v, request 5 at %v", rep.Errors, rep.Samples[5].Start)
		}
	})
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for h, want := range map[string]time.Duration{"": 0, "3": 3 * time.Second, "x": 0, "-4": 0, "99999": time.Minute,
		now.Add(10 * time.Second).Format(http.TimeFormat): 10 * time.Second} {
		if got := retryAfter(h, now); got != want {
			t.Errorf("retryAfter(%q) = %v, want %v", h, got, want)
		}
	}
}

func mapsEqual(a, b map[string]int) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// TestCalibrationPrefixWarmup: the calibration measures tokens per word
// from the prompt_tokens reported; prompts and the shared prefix are sized
// with it; warm-up requests use a prefix of their own and are not
// reported; a run bounded by Duration stops sending on time.
func TestCalibrationPrefixWarmup(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var mu sync.Mutex
		var seen []fakeRequest
		client := fakeServer(t, func(w http.ResponseWriter, r *http.Request, req *fakeRequest) {
			mu.Lock()
			seen = append(seen, *req)
			mu.Unlock()
			words := req.words() + len(strings.Fields(req.system()))
			s := newSSE(w)
			time.Sleep(100 * ms)
			s.content("a")
			s.finish("stop", 2*words+7, 1)
		})
		rep, err := Run(t.Context(), Config{URL: "http://fake/v1", Duration: time.Second, Concurrency: 1, PromptTokens: 100,
			SharedPrefixTokens: 40, MaxTokens: 1, Warmup: 2, Client: client})
		if err != nil {
			t.Fatal(err)
		}
		if rep.TokensPerWord != 2 || rep.Requests != 10 || rep.Completed != 10 || rep.MeanPromptTokens != 2*70+7 {
			t.Errorf("report %+v", rep)
		}
		if len(seen) != 2+2+10 {
			t.Fatalf("%d requests", len(seen))
		}
		if seen[0].words() != 24 || seen[1].words() != 88 || seen[0].system() != "" {
			t.Errorf("calibration prompts of %d and %d words", seen[0].words(), seen[1].words())
		}
		warm, prefix := seen[2].system(), seen[4].system()
		if len(strings.Fields(prefix)) != 20 || len(strings.Fields(warm)) != 20 || warm == prefix || seen[3].system() != warm {
			t.Errorf("prefixes: warm-up %q, measured %q", warm, prefix)
		}
		for _, r := range seen[4:] {
			if r.system() != prefix || r.words() != 50 {
				t.Errorf("measured request: %q, %d words", r.system(), r.words())
			}
		}
	})
}

// TestInterrupt: cancelling the run's context ends it at once, with the
// requests in flight counted as cancelled.
func TestInterrupt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		client := fakeServer(t, func(w http.ResponseWriter, r *http.Request, req *fakeRequest) {
			select {
			case <-time.After(time.Hour):
			case <-r.Context().Done():
			}
		})
		ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
		defer cancel()
		start := time.Now()
		rep, err := Run(ctx, Config{URL: "http://fake/v1", Concurrency: 4, Requests: 100, TokensPerWord: 1, Client: client})
		if err != nil {
			t.Fatal(err)
		}
		if time.Since(start) != 5*time.Second || !rep.Interrupted || rep.Requests != 4 || rep.Errors[ErrCancelled] != 4 {
			t.Errorf("after %v: %+v", time.Since(start), rep)
		}
	})
}

// TestScrape: gauges are sampled during the run and once after it.
func TestScrape(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var used atomic.Int64
		client := fakeServer(t, func(w http.ResponseWriter, r *http.Request, req *fakeRequest) {
			if r.URL.Path == "/metrics" {
				fmtMetrics(w, used.Load())
				return
			}
			used.Add(10)
			defer used.Add(-10)
			s := newSSE(w)
			time.Sleep(time.Second)
			s.content("a")
			s.finish("stop", 1, 1)
		})
		rep, err := Run(t.Context(), Config{URL: "http://fake/v1", Concurrency: 3, Requests: 6, TokensPerWord: 1,
			Client: client, ScrapeURL: "http://fake/metrics", ScrapeEvery: 100 * ms})
		if err != nil {
			t.Fatal(err)
		}
		g := rep.Gauges["hearth_kv_blocks_used"]
		if g.Max != 30 || g.Min > 30 || g.After != 0 || g.Samples < 15 {
			t.Errorf("gauges %+v", rep.Gauges)
		}
		if _, ok := rep.Gauges[`other{x="1"}`]; ok {
			t.Error("scraped a series that was not asked for")
		}
	})
}

func fmtMetrics(w http.ResponseWriter, used int64) {
	w.Header().Set("Content-Type", "text/plain; version=0.0.4")
	b, _ := json.Marshal(used)
	w.Write([]byte("# HELP hearth_kv_blocks_used KV blocks.\n# TYPE hearth_kv_blocks_used gauge\nhearth_kv_blocks_used " +
		string(b) + "\nother{x=\"1\"} 3\n"))
}

func TestParseMetrics(t *testing.T) {
	in := `# HELP a x
a 1
a_total 9
b{route="POST /v1/x",code="200"} 2.5 1700000000
b{route="GET /"} 1e3
c NaN
`
	got, err := parseMetrics(strings.NewReader(in), map[string]bool{"a": true, "b": true, "c": true})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 4 || got["a"] != 1 || got[`b{route="POST /v1/x",code="200"}`] != 2.5 || got[`b{route="GET /"}`] != 1000 || !math.IsNaN(got["c"]) {
		t.Errorf("parseMetrics = %v", got)
	}
	if _, err := parseMetrics(strings.NewReader("a{x=\"1\"\n"), map[string]bool{"a": true}); err == nil {
		t.Error("a line without its closing brace parsed")
	}
}

func TestPercentile(t *testing.T) {
	v := []float64{1, 2, 3, 4}
	for _, c := range []struct{ p, want float64 }{{0, 1}, {50, 2.5}, {90, 3.7}, {99, 3.97}, {100, 4}} {
		if got := percentile(v, c.p); !near(got, c.want) {
			t.Errorf("p%g = %g, want %g", c.p, got, c.want)
		}
	}
	if got := percentile([]float64{7}, 99); got != 7 {
		t.Errorf("p99 of one = %g", got)
	}
	if d := distOf(nil); d != (Dist{}) {
		t.Errorf("empty dist %+v", d)
	}
}

func TestSSEReader(t *testing.T) {
	long := strings.Repeat("x", 100<<10)
	in := ": comment\r\n\r\ndata: one\r\n\r\nevent: message\ndata:two\ndata: lines\nid: 3\n\n\n\ndata: " + long + "\n\ndata: [DONE]"
	r := newSSEReader(strings.NewReader(in))
	var got []string
	for {
		d, err := r.next()
		if err != nil {
			break
		}
		got = append(got, string(d))
	}
	want := []string{"one", "two\nlines", long, "[DONE]"}
	if !slices.Equal(got, want) {
		t.Errorf("events %.60q, want %.60q", got, want)
	}
	r = newSSEReader(strings.NewReader("data: " + strings.Repeat("y", maxEventBytes+1) + "\n\n"))
	if _, err := r.next(); err == nil {
		t.Error("an event over the limit was read")
	}
}

func TestConfigErrors(t *testing.T) {
	for _, c := range []Config{
		{Requests: 1},
		{URL: "ftp://x/v1", Requests: 1},
		{URL: "http://x/v1"},
		{URL: "http://x/v1", Requests: 1, Endpoint: "embeddings"},
		{URL: "http://x/v1", Requests: 1, Rate: -1},
		{URL: "http://x/v1", Requests: 1, Rate: math.NaN()},
		{URL: "http://x/v1", Requests: 1, DisconnectFraction: 1.5},
		{URL: "http://x/v1", Requests: -1},
		{URL: "http://x/v1", Requests: 1, TokensPerWord: math.Inf(1)},
	} {
		if _, err := Run(context.Background(), c); err == nil {
			t.Errorf("%+v: no error", c)
		}
	}
}
