package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/pflag"

	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/models"
	"github.com/hearth-llm/hearth/runtime/server"
	"github.com/hearth-llm/hearth/runtime/server/batched"
	"github.com/hearth-llm/hearth/runtime/server/serial"
)

// defaultPort is Ollama's.
const defaultPort = 11434

// shutdownGrace is --shutdown-grace's default: how long in-flight
// requests may finish after SIGTERM before their generations are
// cancelled (a variable for tests).
var shutdownGrace = 10 * time.Second

// envOr returns the first environment variable of names that is set, or def.
func envOr(def string, names ...string) string {
	for _, n := range names {
		if v := os.Getenv(n); v != "" {
			return v
		}
	}
	return def
}

// hostPort splits a --host value the way OLLAMA_HOST is written: "host",
// "host:port", "[v6]:port", "::1", with an optional http:// or https://
// prefix. port is 0 when the value names none.
func hostPort(s string) (host string, port int, err error) {
	s = strings.TrimSpace(s)
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	s = strings.TrimSuffix(s, "/")
	if h, p, err := net.SplitHostPort(s); err == nil {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 65535 {
			return "", 0, fmt.Errorf("--host %q: bad port %q", s, p)
		}
		return h, n, nil
	}
	return strings.Trim(s, "[]"), 0, nil
}

// modelsFlags registers the models-folder flags shared by serve, ls, rm
// and pull.
func modelsFlags(fs *pflag.FlagSet) (dir, ollamaDir *string) {
	def, _ := models.DefaultDir()
	dir = fs.String("models", def, "models folder: NAME.gguf is served as NAME (env HEARTH_MODELS)")
	ollamaDir = fs.String("ollama-models", models.DefaultOllamaDir(),
		"Ollama's model store, read only (env OLLAMA_MODELS; empty: none)")
	return dir, ollamaDir
}

func openStore(dir, ollamaDir string) (*models.Store, error) {
	if dir == "" {
		return nil, usageError{"no models folder: set --models or HEARTH_MODELS"}
	}
	return models.New(models.Options{Dir: dir, OllamaDir: ollamaDir}), nil
}

// serveOptions is what serveCmd parsed.
type serveOptions struct {
	addr      string
	cfg       server.Config
	threads   int
	device    string
	gpuLayers int // engine.Options.GPULayers
	batch     engine.BatchConfig
	serial    bool
	logLevel  slog.Level
	logFormat string
	grace     time.Duration // --shutdown-grace
}

func serveCmd(args []string, stdout, stderr io.Writer) error {
	o, err := parseServe(args, stderr)
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return runServer(ctx, o, stderr, nil)
}

func parseServe(args []string, stderr io.Writer) (*serveOptions, error) {
	fs := pflag.NewFlagSet("serve", pflag.ContinueOnError)
	fs.SetOutput(stderr)
	host := fs.String("host", "127.0.0.1", `address to listen on, "host" or "host:port"`)
	port := fs.Int("port", defaultPort, "port to listen on (Ollama's by default)")
	dir, ollamaDir := modelsFlags(fs)
	apiKey := fs.String("api-key", "", "require Authorization: Bearer KEY on every request; needed to listen beyond loopback")
	apiKeyFile := fs.String("api-key-file", "", "read --api-key from this file (a mounted secret; surrounding white space is dropped)")
	publicMetrics := fs.Bool("public-metrics", false, "serve GET /metrics without the API key (for Prometheus and a gateway's endpoint picker)")
	insecure := fs.Bool("insecure", false, "allow listening beyond loopback without an API key")
	origins := fs.StringSlice("origins", nil, "browser origins allowed besides local ones, '*' as wildcard (env HEARTH_ORIGINS, or OLLAMA_ORIGINS)")
	keepAlive := fs.Duration("keep-alive", server.DefaultKeepAlive, "how long an idle model stays loaded (negative: forever)")
	maxQueue := fs.Int("max-queue", server.DefaultMaxQueue, "generation requests admitted at once; beyond, 503 with Retry-After")
	maxLoaded := fs.Int("max-loaded", server.DefaultMaxLoaded, "models resident at once")
	threads := fs.IntP("threads", "t", 0, "CPU threads per model (0: all)")
	device := fs.String("device", "auto", "where models run: auto (the GPU when one is usable), cpu or cuda")
	gpuLayers := gpuLayersFlag(fs)
	kvBudget := fs.String("kv-budget", "1GiB", "KV cache memory per model, shared by all its requests; e.g. 512MiB, 4GiB")
	parallel := fs.Int("parallel", 64, "sequences decoding together per model")
	batchTokens := fs.Int("batch", 512, "tokens per engine step (decodes plus prompt chunks)")
	prefillChunk := fs.Int("prefill-chunk", 0, "prompt tokens per step while other requests generate (bounds their stall); 0: 64 on the CPU, --batch on a GPU")
	numCtx := fs.Int("num-ctx", 0, "a request's context when it names no num_ctx (0: the model's, at most 4096)")
	kvType := fs.String("kv-type", "f16", "KV cache storage: f16, or q8_0 (about twice the tokens per budget)")
	queueTimeout := fs.Duration("queue-timeout", 0, "fail a request not started within this wait (0: no limit)")
	serialRunner := fs.Bool("serial", false, "run one request at a time per model (no batching)")
	registry := fs.String("registry", models.DefaultRegistry, "Ollama registry for /api/pull")
	preload := fs.StringSlice("preload", nil, "models to load at start and keep loaded (keep_alive is ignored for them; never unloaded for others); GET /ready is 200 once all serve")
	grace := fs.Duration("shutdown-grace", shutdownGrace, "on SIGTERM or interrupt, how long requests in flight may finish before their generations are cancelled")
	verbose := fs.BoolP("verbose", "v", false, "debug logs")
	logFormat := fs.String("log-format", "text", "log format on stderr: text or json (one JSON object per line)")
	logPrompts := fs.Bool("log-prompts", false, "add each request's JSON body (prompt, messages; up to 64 KiB) to its access log line, at info level")
	loras := fs.StringArray("lora", nil, "serve a LoRA adapter as model NAME over model BASE: NAME=BASE:FILE[:SCALE], FILE a llama.cpp GGUF LoRA, SCALE a number (default 1); repeatable")
	maxLoras := fs.Int("max-loras", server.DefaultMaxLoras, "LoRA adapters loaded at once per model; the least recently used idle one is evicted for another")
	watch := fs.Duration("watch-interval", server.DefaultWatchInterval, "how often loaded models' files are checked for a new version to swap in (negative: only when a request sees the file changed)")
	documentEnv(fs)
	fs.Usage = func() {
		fmt.Fprintln(stderr, "Usage: hearth serve [flags]\n\n"+
			"Serves the Ollama API (/api/...) and the OpenAI API (/v1/...) for the models in\n"+
			"the models folder and Ollama's store, loading each on first use.\n\n"+
			"Every flag can be set by the environment variable named after it: HEARTH_, then\n"+
			"the name in capitals with '-' as '_' (--kv-budget 4GiB: HEARTH_KV_BUDGET=4GiB;\n"+
			"lists take commas, booleans true or false). The command line wins over the\n"+
			"environment. GET /health answers while the process serves (liveness); GET /ready\n"+
			"is 200 once every --preload model serves and 503 while loading or draining.\n\nFlags:")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	if err := applyEnv(fs, os.Getenv); err != nil {
		return nil, err
	}
	if *apiKeyFile != "" {
		if *apiKey != "" {
			return nil, usageError{"--api-key and --api-key-file both set: give one"}
		}
		b, err := os.ReadFile(*apiKeyFile)
		if err != nil {
			return nil, usageError{fmt.Sprintf("--api-key-file: %v", err)}
		}
		if *apiKey = strings.TrimSpace(string(b)); *apiKey == "" {
			return nil, usageError{fmt.Sprintf("--api-key-file %s is empty", *apiKeyFile)}
		}
	}
	if len(*origins) == 0 {
		if v := os.Getenv("OLLAMA_ORIGINS"); v != "" {
			*origins = strings.Split(v, ",")
		}
	}
	if *grace < 0 {
		return nil, usageError{fmt.Sprintf("--shutdown-grace %v: want 0 or more", *grace)}
	}
	h, p, err := hostPort(*host)
	if err != nil {
		return nil, usageError{err.Error()}
	}
	if p == 0 || fs.Changed("port") {
		p = *port
	}
	if p < 0 || p > 65535 {
		return nil, usageError{fmt.Sprintf("--port %d: want 0..65535", p)}
	}
	if err := server.CheckBind(h, *apiKey, *insecure); err != nil {
		return nil, usageError{err.Error()}
	}
	if *logFormat != "text" && *logFormat != "json" {
		return nil, usageError{fmt.Sprintf("--log-format %q: want text or json", *logFormat)}
	}
	store, err := openStore(*dir, *ollamaDir)
	if err != nil {
		return nil, err
	}
	dev, ngl, err := placement(*device, *gpuLayers)
	if err != nil {
		return nil, err
	}
	budget, err := parseBytes(*kvBudget)
	if err != nil {
		return nil, usageError{fmt.Sprintf("--kv-budget: %v", err)}
	}
	if *parallel < 1 || *batchTokens < 1 || *numCtx < 0 || *prefillChunk < 0 {
		return nil, usageError{"--parallel and --batch must be positive, --num-ctx and --prefill-chunk not negative"}
	}
	if *maxLoras < 1 {
		return nil, usageError{fmt.Sprintf("--max-loras %d: want at least 1", *maxLoras)}
	}
	var adapters []server.AdapterSpec
	for _, v := range *loras {
		spec, err := server.ParseAdapterSpec(v)
		if err != nil {
			return nil, usageError{"--lora: " + err.Error()}
		}
		if spec.Path, err = filepath.Abs(spec.Path); err != nil {
			return nil, usageError{"--lora: " + err.Error()}
		}
		adapters = append(adapters, spec)
	}
	o := &serveOptions{
		addr:    net.JoinHostPort(h, strconv.Itoa(p)),
		threads: *threads, device: dev, grace: *grace, gpuLayers: ngl, logLevel: slog.LevelInfo, logFormat: *logFormat, serial: *serialRunner,
		batch: engine.BatchConfig{KVBudget: budget, MaxRunning: *parallel, MaxBatchTokens: *batchTokens, PrefillChunk: *prefillChunk,
			MaxQueue: *maxQueue, DefaultNumCtx: *numCtx, QueueTimeout: *queueTimeout, KVType: *kvType},
		cfg: server.Config{
			Store: store, KeepAlive: *keepAlive, MaxQueue: *maxQueue, MaxLoaded: *maxLoaded,
			APIKey: *apiKey, Origins: *origins, Pull: models.PullOptions{Registry: *registry},
			LogPrompts: *logPrompts, WatchInterval: *watch, Preload: *preload, PublicMetrics: *publicMetrics,
			Adapters: adapters, MaxLoras: *maxLoras,
		},
	}
	if *keepAlive == 0 {
		o.cfg.KeepAlive = time.Nanosecond // 0 means "the default" to server.Config
	}
	if *verbose {
		o.logLevel = slog.LevelDebug
	}
	return o, nil
}

// runServer serves until ctx ends, then shuts down gracefully: /ready
// turns 503, new connections are refused, requests in flight get
// o.grace (--shutdown-grace) to finish, then their generations are
// cancelled, and the models are unloaded. Under Kubernetes,
// terminationGracePeriodSeconds must cover the preStop delay, the grace,
// and the cancel and unload that follow (deploy/helm/hearth adds 15 s). ready, when set, receives the address listened on.
func runServer(ctx context.Context, o *serveOptions, stderr io.Writer, ready chan<- string) error {
	hopts := &slog.HandlerOptions{Level: o.logLevel}
	var log *slog.Logger
	if o.logFormat == "json" {
		log = slog.New(slog.NewJSONHandler(stderr, hopts))
	} else {
		log = slog.New(slog.NewTextHandler(stderr, hopts))
	}
	o.cfg.Logger = log
	if o.cfg.Load == nil {
		eo := engine.Options{Threads: o.threads, Device: o.device, GPULayers: o.gpuLayers, Log: log}
		o.cfg.Load = serial.Loader(eo)
		if !o.serial {
			eo.KVBytes = o.batch.KVBudget
			o.cfg.Load = batched.Loader(eo, o.batch)
			o.cfg.KVBytes = o.batch.KVBudget // allocated at load: counted in the memory budget
		}
	}
	srv, err := server.New(o.cfg)
	if err != nil {
		return err
	}
	defer srv.Close()
	ln, err := net.Listen("tcp", o.addr)
	if err != nil {
		return err
	}
	base, cancelBase := context.WithCancel(context.Background())
	defer cancelBase()
	hs := srv.HTTPServer(o.addr, base)
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()
	log.Info("listening", "addr", ln.Addr().String(), "models", o.cfg.Store.Dir(), "ollama_models", o.cfg.Store.OllamaDir(),
		"api_key", o.cfg.APIKey != "")
	if ready != nil {
		ready <- ln.Addr().String()
	}
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "grace", o.grace)
	srv.Drain()
	sctx, cancel := context.WithTimeout(context.Background(), o.grace)
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil {
		log.Warn("requests still running after the grace period: cancelling them", "error", err)
		cancelBase()
		// Cancelled generations end within a token; wait for their
		// handlers, so no model is unloaded under a request.
		cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := hs.Shutdown(cctx); err != nil {
			hs.Close()
		}
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	log.Info("stopped")
	return nil
}

// parseBytes reads a size such as "512MiB", "4GiB", "1G" or "1048576".
func parseBytes(s string) (int64, error) {
	t := strings.TrimSpace(s)
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40},
		{"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"TB", 1e12}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(strings.ToUpper(t), strings.ToUpper(u.suffix)) {
			t, mult = strings.TrimSpace(t[:len(t)-len(u.suffix)]), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || !(v > 0) || math.IsInf(v, 0) || v*float64(mult) > 1<<50 {
		return 0, fmt.Errorf("%q is not a size (e.g. 512MiB, 4GiB)", s)
	}
	return int64(v * float64(mult)), nil
}
