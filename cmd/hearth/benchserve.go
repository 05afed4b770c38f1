package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/hearth-llm/hearth/runtime/loadgen"
)

// benchServeCmd is `hearth bench serve`: load against an OpenAI-compatible
// server (Hearth, llama-server, vLLM, Ollama), with latency percentiles
// and throughput.
func benchServeCmd(args []string, stdout, stderr io.Writer) error {
	fs := pflag.NewFlagSet("bench serve", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	base := fs.String("url", "http://127.0.0.1:11434/v1", "the server's OpenAI API base URL")
	model := fs.StringP("model", "m", "", "model to request (default: the first of GET /v1/models)")
	endpoint := fs.String("endpoint", loadgen.Chat, "chat (/v1/chat/completions) or completions (/v1/completions)")
	conc := fs.IntP("concurrency", "c", 1, "clients, each sending its next request when its last ends; with --rate, the most requests in flight (1024 unless set)")
	rate := fs.Float64("rate", 0, "requests per second, Poisson arrivals (0: closed loop at --concurrency; inf: all at once)")
	requests := fs.IntP("requests", "n", 0, "measured requests (0: 4 × concurrency, at least 8, unless --duration is set)")
	duration := fs.Duration("duration", 0, "stop sending requests after this long (0: --requests only)")
	promptTok := fs.Int("prompt-tokens", loadgen.DefaultPromptTokens, "tokens of each request's own random prompt")
	prefixTok := fs.Int("shared-prefix-tokens", 0, "tokens of a prefix every request shares (the system message; the head of a completion prompt), to measure prefix caching")
	maxTok := fs.Int("max-tokens", loadgen.DefaultMaxTokens, "max_tokens of each request (servers may stop earlier at end of sequence; the report counts what came)")
	ignoreEOS := fs.Bool("ignore-eos", true, `send "ignore_eos": true (vLLM and llama-server generate max-tokens; others ignore it)`)
	temp := fs.Float64("temperature", 0, "sampling temperature (negative: the server's default)")
	apiKey := fs.String("api-key", "", "Authorization: Bearer KEY (env HEARTH_API_KEY, OPENAI_API_KEY)")
	disconnect := fs.Float64("disconnect", 0, "fraction of clients that hang up mid-request (0..1), for soak tests")
	honorRetry := fs.Bool("honor-retry-after", false, "after a 503/429 with Retry-After, a client waits that long before its next request")
	warmup := fs.Int("warmup", 1, "unmeasured requests sent first, one at a time (they load the model)")
	tpw := fs.Float64("tokens-per-word", 0, "prompt tokens per random word (0: calibrate with two requests)")
	seed := fs.Uint64("seed", 0, "seed of the prompts, disconnects and arrivals")
	timeout := fs.Duration("timeout", loadgen.DefaultRequestTimeout, "limit of each request")
	metrics := fs.String("metrics", "", `Prometheus endpoint sampled during the run ("auto": /metrics beside --url), for hearth_kv_blocks_used and the other load gauges`)
	metricsEvery := fs.Duration("metrics-every", loadgen.DefaultScrapeEvery, "how often --metrics is sampled")
	format := fs.StringP("output", "o", "text", "report format: text or json")
	samples := fs.Bool("samples", false, "add every request's figures to the json report")
	progress := progressFlag(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth bench serve [--url URL] [flags]\n\n"+
			"Streams chat or completion requests to an OpenAI-compatible server (Hearth,\n"+
			"llama-server, vLLM, Ollama) and reports time to first token, inter-token\n"+
			"latency, time per output token and end-to-end latency (mean, p50, p90, p99),\n"+
			"output tokens/s, requests/s and errors by kind.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if *format != "text" && *format != "json" {
		return usageError{fmt.Sprintf("-o %q: want text or json", *format)}
	}
	if err := checkProgress(*progress); err != nil {
		return err
	}
	if *conc < 1 {
		return usageError{"--concurrency must be at least 1"}
	}
	if *requests < 0 || *duration < 0 || *promptTok < 1 || *prefixTok < 0 || *maxTok < 1 || *warmup < 0 || *timeout <= 0 {
		return usageError{"--requests, --duration, --shared-prefix-tokens and --warmup must not be negative; --prompt-tokens, --max-tokens and --timeout must be positive"}
	}
	if *endpoint != loadgen.Chat && *endpoint != loadgen.Completions {
		return usageError{fmt.Sprintf("--endpoint %q: want chat or completions", *endpoint)}
	}
	if !(*disconnect >= 0 && *disconnect <= 1) {
		return usageError{fmt.Sprintf("--disconnect %g: want 0..1", *disconnect)}
	}
	if !(*rate >= 0) {
		return usageError{fmt.Sprintf("--rate %g: want >= 0", *rate)}
	}
	u, err := url.Parse(*base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Sprintf("--url %q: want http://host:port/v1", *base)}
	}
	if *apiKey == "" {
		*apiKey = envOr("", "HEARTH_API_KEY", "OPENAI_API_KEY")
	}
	cfg := loadgen.Config{
		URL: *base, Model: *model, APIKey: *apiKey, Endpoint: *endpoint,
		Concurrency: *conc, Rate: *rate, Requests: *requests, Duration: *duration,
		PromptTokens: *promptTok, SharedPrefixTokens: *prefixTok, MaxTokens: *maxTok, IgnoreEOS: *ignoreEOS,
		DisconnectFraction: *disconnect, HonorRetryAfter: *honorRetry, TokensPerWord: *tpw, Warmup: *warmup, Seed: *seed, RequestTimeout: *timeout,
		KeepSamples: *samples && *format == "json",
	}
	if *rate > 0 && !fs.Changed("concurrency") {
		cfg.Concurrency = 0 // loadgen's bound on requests in flight
	}
	if cfg.Requests == 0 && cfg.Duration == 0 {
		cfg.Requests = max(8, 4**conc)
	}
	if *temp >= 0 {
		cfg.Temperature = temp
	}
	if *metricsEvery <= 0 {
		return usageError{"--metrics-every must be positive"}
	}
	cfg.ScrapeEvery = *metricsEvery
	switch *metrics {
	case "":
	case "auto":
		m := *u
		m.Path = strings.TrimSuffix(strings.TrimSuffix(m.Path, "/"), "/v1") + "/metrics"
		cfg.ScrapeURL = m.String()
	default:
		cfg.ScrapeURL = *metrics
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if cfg.Model == "" {
		ids, err := loadgen.Models(ctx, nil, cfg.URL, cfg.APIKey)
		if err != nil {
			return fmt.Errorf("no --model given, and listing the server's models failed: %w", err)
		}
		if len(ids) == 0 {
			return fmt.Errorf("no --model given, and %s/models lists none", cfg.URL)
		}
		cfg.Model = ids[0]
	}
	total := int64(cfg.Requests)
	if cfg.Duration > 0 {
		total = -1
	}
	bar := newBar(stderr, *progress, total, "bench serve "+cfg.Model, false)
	if bar != nil {
		cfg.Progress = func(done, _ int) { bar.Set(done) }
	}
	start := time.Now()
	rep, err := loadgen.Run(ctx, cfg)
	if bar != nil {
		bar.Finish()
		bar.Exit()
	}
	if err != nil {
		return err
	}
	if *format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(rep); err != nil {
			return err
		}
	} else if err := rep.WriteText(stdout); err != nil {
		return err
	}
	if rep.Interrupted {
		return fmt.Errorf("interrupted after %.1f s", time.Since(start).Seconds())
	}
	if rep.Completed == 0 {
		return fmt.Errorf("no request completed (%d failed, %d disconnected)", rep.Failed, rep.Disconnected)
	}
	return nil
}
