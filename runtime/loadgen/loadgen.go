package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Endpoints.
const (
	Chat        = "chat"        // POST {URL}/chat/completions, messages
	Completions = "completions" // POST {URL}/completions, a prompt string
)

// Defaults of Config.
const (
	DefaultPromptTokens   = 128
	DefaultMaxTokens      = 128
	DefaultRequestTimeout = 10 * time.Minute
	DefaultScrapeEvery    = 250 * time.Millisecond
	// DefaultMaxInFlight bounds the requests in flight at a Rate when
	// Concurrency is 0.
	DefaultMaxInFlight = 1024
)

// disconnectWindow: a request that disconnects before its first token does
// so at a time drawn uniformly from [0, disconnectWindow).
const disconnectWindow = 200 * time.Millisecond

// Salts of the random streams, so that prompts, warm-up prompts,
// calibration prompts and arrivals never share numbers.
const (
	saltWarmup  = 0x5741524d
	saltCalib   = 0x43414c49
	saltArrival = 0x41525256
)

// Config describes a run. URL and one of Requests or Duration are
// required.
type Config struct {
	// URL is the API's base, ending in /v1
	// ("http://127.0.0.1:11434/v1"); the endpoint's path is appended.
	URL string
	// Model is sent as "model"; empty: not sent (servers of one model).
	Model string
	// APIKey, when set, goes as "Authorization: Bearer KEY".
	APIKey string
	// Endpoint is Chat (default) or Completions.
	Endpoint string

	// Concurrency is the number of workers, each sending its next request
	// when the last ended (closed loop); default 1. With Rate, it bounds
	// the requests in flight (default DefaultMaxInFlight).
	Concurrency int
	// Rate, when > 0, sends requests at this many per second on average,
	// with exponential gaps (a Poisson process; +Inf sends them all at
	// once), whether or not earlier ones have ended (open loop).
	Rate float64
	// Requests is the number of measured requests; 0: as many as
	// Duration allows.
	Requests int
	// Duration stops sending new requests this long after the first; the
	// ones in flight finish. 0: Requests alone bounds the run.
	Duration time.Duration

	// PromptTokens is the size of each request's own random prompt
	// (default DefaultPromptTokens); SharedPrefixTokens that of a prefix
	// sent before it by every measured request (the system message of a
	// chat; the head of a completion prompt).
	PromptTokens, SharedPrefixTokens int
	// MaxTokens is sent as max_tokens (default DefaultMaxTokens).
	MaxTokens int
	// IgnoreEOS sends "ignore_eos": true, which vLLM and llama-server
	// honour (generation runs to MaxTokens); others ignore it.
	IgnoreEOS bool
	// Temperature, when set, is sent as temperature.
	Temperature *float64
	// Extra fields merged into every request body (they override).
	Extra map[string]any

	// DisconnectFraction of the requests hang up before their end: a
	// quarter of those before the first token (at a random time within
	// 200 ms), the rest after a random number of text chunks in
	// [1, MaxTokens).
	DisconnectFraction float64
	// TokensPerWord turns token counts into words of the random prompts;
	// 0: measured by two calibration requests (of 24 and 88 words, one
	// output token each) from the prompt_tokens the server reports (1 when
	// it reports none).
	TokensPerWord float64
	// Warmup requests of the measured size run one at a time before the
	// measured ones, with prompts (and a shared prefix) of their own; they
	// are not reported, and one failing fails the run.
	Warmup int
	// HonorRetryAfter makes a closed-loop worker whose request was refused
	// with a Retry-After header (a 503 or 429) wait that long, at most a
	// minute, before its next request, as a well-behaved client does;
	// without it the worker sends its next request at once.
	HonorRetryAfter bool
	// Seed makes prompts, disconnects and arrivals reproducible.
	Seed uint64
	// RequestTimeout bounds each request (default DefaultRequestTimeout).
	RequestTimeout time.Duration

	// Client sends the requests; nil: a transport of Run's own, without
	// proxies, closed when Run returns.
	Client *http.Client

	// ScrapeURL, when set, is a Prometheus text endpoint
	// ("http://127.0.0.1:11434/metrics") sampled every ScrapeEvery
	// (default DefaultScrapeEvery) during the run, and once after it, for
	// the series named in ScrapeMetrics (default DefaultScrapeMetrics).
	ScrapeURL     string
	ScrapeMetrics []string
	ScrapeEvery   time.Duration

	// KeepSamples puts every request's Sample in the Report.
	KeepSamples bool
	// Progress, when set, is called after each measured request ends,
	// never concurrently, with the requests ended and Requests (0 when
	// Duration bounds the run).
	Progress func(done, total int)
}

func (c *Config) check() error {
	switch {
	case c.URL == "":
		return errors.New("loadgen: no URL")
	case c.Endpoint != "" && c.Endpoint != Chat && c.Endpoint != Completions:
		return fmt.Errorf("loadgen: endpoint %q: want %q or %q", c.Endpoint, Chat, Completions)
	case c.Requests < 0, c.Duration < 0, c.Concurrency < 0, c.PromptTokens < 0, c.SharedPrefixTokens < 0,
		c.MaxTokens < 0, c.Warmup < 0, c.RequestTimeout < 0, c.ScrapeEvery < 0:
		return errors.New("loadgen: negative count or duration")
	case c.Requests == 0 && c.Duration == 0:
		return errors.New("loadgen: set Requests or Duration (or both)")
	case math.IsNaN(c.Rate) || c.Rate < 0:
		return fmt.Errorf("loadgen: rate %g: want >= 0", c.Rate)
	case math.IsNaN(c.TokensPerWord) || math.IsInf(c.TokensPerWord, 0) || c.TokensPerWord < 0:
		return fmt.Errorf("loadgen: tokens per word %g: want >= 0", c.TokensPerWord)
	case !(c.DisconnectFraction >= 0 && c.DisconnectFraction <= 1):
		return fmt.Errorf("loadgen: disconnect fraction %g: want 0..1", c.DisconnectFraction)
	}
	u, err := url.Parse(c.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("loadgen: URL %q: want http(s)://host[:port]/v1", c.URL)
	}
	if c.Endpoint == "" {
		c.Endpoint = Chat
	}
	if c.Concurrency == 0 {
		c.Concurrency = 1
		if c.Rate > 0 {
			c.Concurrency = DefaultMaxInFlight
		}
	}
	if c.PromptTokens == 0 {
		c.PromptTokens = DefaultPromptTokens
	}
	if c.MaxTokens == 0 {
		c.MaxTokens = DefaultMaxTokens
	}
	if c.RequestTimeout == 0 {
		c.RequestTimeout = DefaultRequestTimeout
	}
	if c.ScrapeEvery == 0 {
		c.ScrapeEvery = DefaultScrapeEvery
	}
	c.URL = strings.TrimSuffix(c.URL, "/")
	return nil
}

// NewTransport returns the transport Run uses when Config.Client is nil:
// keep-alive connections for n requests at once, no proxy, no
// compression.
func NewTransport(n int) *http.Transport {
	return &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        n + 8,
		MaxIdleConnsPerHost: n + 8,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: 10 * time.Second,
		DisableCompression:  true,
	}
}

// plan is one request, drawn before it is sent.
type plan struct {
	index          int
	prefix, suffix string
	maxTokens      int
	disconnect     bool
	after          int           // hang up after this many text chunks; 0: after wait
	wait           time.Duration // when after is 0
}

// gen sends the requests of one run.
type gen struct {
	cfg                      Config
	client                   *http.Client
	endpoint                 string
	prefix, warmPrefix       string
	prefixWords, suffixWords int
}

// Run measures cfg's requests against the server and returns the report;
// the error is for a bad Config, a failed calibration or warm-up. When ctx
// ends, no new request is sent, those in flight are cancelled (counted as
// ErrCancelled), and the partial report comes back with Interrupted set.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.check(); err != nil {
		return nil, err
	}
	g := &gen{cfg: cfg, client: cfg.Client}
	if g.client == nil {
		n := cfg.Concurrency
		tr := NewTransport(n)
		defer tr.CloseIdleConnections()
		g.client = &http.Client{Transport: tr}
	}
	g.endpoint = cfg.URL + "/chat/completions"
	if cfg.Endpoint == Completions {
		g.endpoint = cfg.URL + "/completions"
	}
	tpw := cfg.TokensPerWord
	if tpw == 0 {
		var err error
		if tpw, err = g.calibrate(ctx); err != nil {
			return nil, err
		}
	}
	g.prefixWords, g.suffixWords = wordsFor(cfg.SharedPrefixTokens, tpw), wordsFor(cfg.PromptTokens, tpw)
	g.prefix = promptWords(rand.New(rand.NewPCG(cfg.Seed, 0)), g.prefixWords)
	g.warmPrefix = promptWords(rand.New(rand.NewPCG(cfg.Seed^saltWarmup, 0)), g.prefixWords)
	for i := range cfg.Warmup {
		if s := g.do(ctx, g.warmupPlan(i), time.Now()); s.ErrKind != "" {
			return nil, fmt.Errorf("loadgen: warm-up request: %s: %s", s.ErrKind, s.Err)
		}
	}

	rep := &Report{URL: cfg.URL, Model: cfg.Model, Endpoint: cfg.Endpoint, Concurrency: cfg.Concurrency, Rate: cfg.Rate,
		PromptTokens: cfg.PromptTokens, SharedPrefixTokens: cfg.SharedPrefixTokens, MaxTokens: cfg.MaxTokens,
		DisconnectFraction: cfg.DisconnectFraction, TokensPerWord: tpw}
	if math.IsInf(cfg.Rate, 1) {
		rep.Rate, rep.AllAtOnce = 0, true
	}
	var sc *scraper
	var scWG sync.WaitGroup
	scCtx, scStop := context.WithCancel(ctx)
	defer scStop()
	if cfg.ScrapeURL != "" {
		sc = newScraper(cfg.ScrapeURL, cfg.ScrapeMetrics, g.client, g.auth())
		scWG.Go(func() { sc.run(scCtx, cfg.ScrapeEvery) })
	}

	var (
		mu      sync.Mutex
		samples []Sample
	)
	start := time.Now()
	record := func(s Sample) {
		mu.Lock()
		defer mu.Unlock()
		samples = append(samples, s)
		if cfg.Progress != nil {
			cfg.Progress(len(samples), cfg.Requests)
		}
	}
	sendUntil := start.Add(cfg.Duration)
	more := func(i int) bool {
		return ctx.Err() == nil && (cfg.Requests == 0 || i < cfg.Requests) &&
			(cfg.Duration == 0 || time.Now().Before(sendUntil))
	}
	var wg sync.WaitGroup
	if cfg.Rate == 0 {
		var next atomic.Int64
		for range cfg.Concurrency {
			wg.Go(func() {
				for {
					i := int(next.Add(1) - 1)
					if !more(i) {
						return
					}
					s := g.do(ctx, g.plan(i), start)
					record(s)
					if d := retryAfter(s.RetryAfter, time.Now()); cfg.HonorRetryAfter && d > 0 {
						t := time.NewTimer(d)
						select {
						case <-t.C:
						case <-ctx.Done():
							t.Stop()
						}
					}
				}
			})
		}
	} else {
		rng := rand.New(rand.NewPCG(cfg.Seed, saltArrival))
		sem := make(chan struct{}, cfg.Concurrency)
		at := start
	arrivals:
		for i := 0; ; i++ {
			if i > 0 {
				at = at.Add(time.Duration(rng.ExpFloat64() / cfg.Rate * float64(time.Second)))
			}
			if d := time.Until(at); d > 0 {
				t := time.NewTimer(d)
				select {
				case <-t.C:
				case <-ctx.Done():
					t.Stop()
				}
			}
			if !more(i) {
				break
			}
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				break arrivals
			}
			wg.Go(func() {
				defer func() { <-sem }()
				record(g.do(ctx, g.plan(i), start))
			})
		}
	}
	wg.Wait()
	rep.Duration = time.Since(start)
	rep.Interrupted = ctx.Err() != nil
	if sc != nil {
		scStop()
		scWG.Wait()
		sc.sample(ctx, true)
		rep.Gauges = sc.gauges
	}
	slices.SortFunc(samples, func(a, b Sample) int { return a.Index - b.Index })
	rep.summarize(samples)
	if cfg.KeepSamples {
		rep.Samples = samples
	}
	return rep, nil
}

// retryAfter reads a Retry-After header (seconds or an HTTP date) as a
// wait of at most a minute; 0 when absent or unreadable.
func retryAfter(h string, now time.Time) time.Duration {
	if h == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.Atoi(strings.TrimSpace(h)); err == nil {
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(h); err == nil {
		d = t.Sub(now)
	}
	return min(max(d, 0), time.Minute)
}

func (g *gen) auth() string {
	if g.cfg.APIKey == "" {
		return ""
	}
	return "Bearer " + g.cfg.APIKey
}

// plan draws measured request i from its own random stream, so that a
// run's requests do not depend on the concurrency or the timing.
func (g *gen) plan(i int) plan {
	rng := rand.New(rand.NewPCG(g.cfg.Seed, uint64(i)+1))
	p := plan{index: i, prefix: g.prefix, suffix: promptWords(rng, g.suffixWords), maxTokens: g.cfg.MaxTokens}
	if f := g.cfg.DisconnectFraction; f > 0 && rng.Float64() < f {
		p.disconnect = true
		if g.cfg.MaxTokens < 2 || rng.IntN(4) == 0 {
			p.wait = time.Duration(rng.Int64N(int64(disconnectWindow)))
		} else {
			p.after = 1 + rng.IntN(g.cfg.MaxTokens-1)
		}
	}
	return p
}

func (g *gen) warmupPlan(i int) plan {
	rng := rand.New(rand.NewPCG(g.cfg.Seed^saltWarmup, uint64(i)+1))
	return plan{index: -1, prefix: g.warmPrefix, suffix: promptWords(rng, g.suffixWords), maxTokens: g.cfg.MaxTokens}
}

// calibrate measures the server's prompt tokens per word of random
// prompts from two requests whose prompts differ by 64 words (the chat
// template's tokens cancel out).
func (g *gen) calibrate(ctx context.Context) (float64, error) {
	const a, b = 24, 88
	var toks [2]int
	for i, n := range []int{a, b} {
		rng := rand.New(rand.NewPCG(g.cfg.Seed^saltCalib, uint64(i)))
		s := g.do(ctx, plan{index: -1, suffix: promptWords(rng, n), maxTokens: 1}, time.Now())
		if s.ErrKind != "" {
			return 0, fmt.Errorf("loadgen: calibration request: %s: %s", s.ErrKind, s.Err)
		}
		if s.PromptTokens == 0 {
			return 1, nil // no usage reported: count words
		}
		toks[i] = s.PromptTokens
	}
	if tpw := float64(toks[1]-toks[0]) / (b - a); tpw > 0 {
		return tpw, nil
	}
	return 1, nil
}

// body is p's request.
func (g *gen) body(p plan) ([]byte, error) {
	m := map[string]any{
		"stream":         true,
		"stream_options": map[string]any{"include_usage": true},
		"max_tokens":     p.maxTokens,
	}
	if g.cfg.Model != "" {
		m["model"] = g.cfg.Model
	}
	if g.cfg.Temperature != nil {
		m["temperature"] = *g.cfg.Temperature
	}
	if g.cfg.IgnoreEOS {
		m["ignore_eos"] = true
	}
	if g.cfg.Endpoint == Completions {
		m["prompt"] = strings.TrimSpace(p.prefix + " " + p.suffix)
	} else {
		var msgs []map[string]string
		if p.prefix != "" {
			msgs = append(msgs, map[string]string{"role": "system", "content": p.prefix})
		}
		m["messages"] = append(msgs, map[string]string{"role": "user", "content": p.suffix})
	}
	for k, v := range g.cfg.Extra {
		m[k] = v
	}
	return json.Marshal(m)
}

// do sends p and reads its stream to the end.
func (g *gen) do(ctx context.Context, p plan, runStart time.Time) Sample {
	s := Sample{Index: p.index}
	body, err := g.body(p)
	if err != nil {
		s.ErrKind, s.Err = ErrConnect, err.Error()
		return s
	}
	rctx, cancel := context.WithTimeout(ctx, g.cfg.RequestTimeout)
	defer cancel()
	hctx, hangUp := context.WithCancel(rctx)
	defer hangUp()
	var hungUp atomic.Bool
	disconnect := func() { hungUp.Store(true); hangUp() }
	req, err := http.NewRequestWithContext(hctx, http.MethodPost, g.endpoint, bytes.NewReader(body))
	if err != nil {
		s.ErrKind, s.Err = ErrConnect, err.Error()
		return s
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "text/event-stream")
	if a := g.auth(); a != "" {
		req.Header.Set("Authorization", a)
	}

	t0 := time.Now()
	s.Start = t0.Sub(runStart)
	if p.disconnect && p.after == 0 {
		t := time.AfterFunc(p.wait, disconnect)
		defer t.Stop()
	}
	// end finishes s as failed with kind, unless the request was hung up
	// on purpose, timed out, or interrupted.
	end := func(kind string, err error) Sample {
		s.E2E = time.Since(t0)
		s.OutputTokens = s.Chunks
		switch {
		case hungUp.Load():
			s.Disconnected = true
			return s
		case ctx.Err() != nil:
			kind = ErrCancelled
		case errors.Is(rctx.Err(), context.DeadlineExceeded):
			kind = ErrTimeout
		}
		s.ErrKind, s.Err = kind, err.Error()
		return s
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return end(ErrConnect, err)
	}
	defer resp.Body.Close()
	s.Status = resp.StatusCode
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		s.RetryAfter = resp.Header.Get("Retry-After")
		return end(fmt.Sprintf("http_%d", resp.StatusCode), fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg)))
	}
	rd := newSSEReader(resp.Body)
	var (
		last  time.Time
		gaps  []time.Duration
		usage = -1
		done  bool
	)
	for !done {
		data, err := rd.next()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return end(ErrRead, err)
		}
		if string(bytes.TrimSpace(data)) == "[DONE]" {
			done = true
			break
		}
		var c chunk
		if err := json.Unmarshal(data, &c); err != nil {
			return end(ErrBadChunk, fmt.Errorf("%v in %.200q", err, data))
		}
		if m := c.errorMessage(); m != "" {
			return end(ErrStream, errors.New(m))
		}
		if c.Usage != nil {
			s.PromptTokens, usage = c.Usage.PromptTokens, c.Usage.CompletionTokens
		}
		if len(c.Choices) > 0 && c.Choices[0].FinishReason != nil && *c.Choices[0].FinishReason != "" {
			s.FinishReason = *c.Choices[0].FinishReason
		}
		if c.text() == "" {
			continue
		}
		now := time.Now()
		if s.Chunks == 0 {
			s.TTFT = now.Sub(t0)
		} else {
			gaps = append(gaps, now.Sub(last))
		}
		last = now
		s.Chunks++
		if p.disconnect && p.after > 0 && s.Chunks >= p.after {
			disconnect()
			return end("", nil)
		}
	}
	if !done && s.FinishReason == "" {
		return end(ErrIncomplete, errors.New("the stream ended without [DONE] or a finish_reason"))
	}
	s.E2E = time.Since(t0)
	s.OutputTokens = s.Chunks
	if usage >= 0 {
		s.OutputTokens = usage
	}
	// Chunks of several tokens: spread each gap over its tokens. One token
	// more than the chunks is an end-of-sequence token counted but not
	// sent (Hearth counts it), not packing.
	per := 1.0
	if s.Chunks > 0 && s.OutputTokens > s.Chunks+1 {
		per = float64(s.OutputTokens) / float64(s.Chunks)
	}
	for i := range gaps {
		gaps[i] = time.Duration(float64(gaps[i]) / per)
	}
	s.Gaps = gaps
	return s
}

// Models lists the model ids of the server at baseURL (GET /models).
func Models(ctx context.Context, client *http.Client, baseURL, apiKey string) ([]string, error) {
	if client == nil {
		tr := NewTransport(1)
		defer tr.CloseIdleConnections()
		client = &http.Client{Transport: tr}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(baseURL, "/")+"/models", nil)
	if err != nil {
		return nil, err
	}
	if apiKey != "" {
		req.Header.Set("Authorization", "Bearer "+apiKey)
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", req.URL, resp.Status)
	}
	var list struct {
		Data []struct {
			ID string `json:"id"`
		} `json:"data"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&list); err != nil {
		return nil, fmt.Errorf("GET %s: %w", req.URL, err)
	}
	ids := make([]string, len(list.Data))
	for i, d := range list.Data {
		ids[i] = d.ID
	}
	return ids, nil
}
