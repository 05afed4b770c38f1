package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/hearth-llm/hearth/runtime/device/hostmem"
	"github.com/hearth-llm/hearth/runtime/models"
)

// OllamaVersion is the Ollama API version this server speaks, reported by
// /api/version (clients gate features on it).
const OllamaVersion = "0.17.4"

// Defaults of Config.
const (
	DefaultKeepAlive    = 5 * time.Minute
	DefaultMaxQueue     = 512 // Ollama's OLLAMA_MAX_QUEUE
	DefaultMaxLoaded    = 3   // Ollama's OLLAMA_MAX_LOADED_MODELS
	DefaultMaxBodyBytes = 32 << 20
	// DefaultWatchInterval is Config.WatchInterval's default.
	DefaultWatchInterval = 2 * time.Second
)

// Config configures a Server. Store and Load are required.
type Config struct {
	Store *models.Store
	Load  Loader

	// KeepAlive is how long a model stays loaded after its last request
	// when the request names no keep_alive; 0: DefaultKeepAlive; < 0:
	// until evicted.
	KeepAlive time.Duration
	// MaxQueue bounds the generation and embedding requests admitted at
	// once, running or waiting; beyond it requests get 503 with
	// Retry-After. 0: DefaultMaxQueue.
	MaxQueue int
	// MaxLoaded bounds the models resident at once; 0: DefaultMaxLoaded.
	MaxLoaded int
	// MemoryBudget bounds the bytes of the models resident at once (each
	// one's file and KVBytes); the least recently used idle model is
	// unloaded to make room. 0: 90% of the memory available when the
	// server starts; < 0: no limit.
	MemoryBudget int64
	// KVBytes is the KV cache each loaded model allocates up front (the
	// batched engine's budget), counted with its file against
	// MemoryBudget; 0 when caches grow per request and are checked then.
	KVBytes int64

	// APIKey, when set, is required as "Authorization: Bearer KEY" (or
	// "x-api-key: KEY", as Anthropic's clients send it) on every request
	// but GET / (and HEAD), /health and /ready, and /metrics when
	// PublicMetrics.
	APIKey string
	// Origins are browser origins allowed besides DefaultOrigins ('*'
	// matches any run of characters; "*" alone allows every origin).
	Origins []string
	// MaxBodyBytes bounds request bodies; 0: DefaultMaxBodyBytes.
	MaxBodyBytes int64

	// Logger receives the access log and model events; nil: slog.Default().
	Logger *slog.Logger
	// LogPrompts adds each request's JSON body (prompt, messages, system,
	// tools: up to 64 KiB) to its access log line, at the line's level
	// (info for a success). Off by default: logs carry no prompt text.
	LogPrompts bool
	// WatchInterval is how often the loaded models' files are checked for
	// a new version (hot swap; a request that sees a changed file also
	// triggers a check at once). 0: DefaultWatchInterval; < 0: only the
	// requests' checks.
	WatchInterval time.Duration
	// Preload names models loaded when the server starts and kept loaded:
	// keep_alive is ignored for them and they are never unloaded to make
	// room for others. GET /ready answers 200 once all of them serve. One
	// that is missing or fails to load is tried again every PreloadRetry
	// (0: DefaultPreloadRetry).
	Preload      []string
	PreloadRetry time.Duration
	// PublicMetrics serves GET /metrics without the API key, for
	// Prometheus and a gateway's endpoint picker, which scrape without one.
	PublicMetrics bool

	// Pull configures /api/pull (registry URL, HTTP client).
	Pull models.PullOptions
	// Version is Hearth's version, reported beside OllamaVersion.
	Version string

	// Adapters are LoRA adapters served as models of their own (hearth
	// serve --lora); New fails when one does not fit its base. Adapter
	// models made by /api/create (NAME.lora.json in the models folder) are
	// registered too.
	Adapters []AdapterSpec
	// MaxLoras bounds the adapters resident on one base model's runner at
	// once; the least recently used idle one is evicted to load another.
	// 0: DefaultMaxLoras.
	MaxLoras int
	// LoraWait bounds how long a request waits for an adapter slot when
	// every resident adapter is held by running requests; then it gets
	// 503 with Retry-After. 0: DefaultLoraWait.
	LoraWait time.Duration
}

// Server serves the Ollama, OpenAI and Anthropic APIs over a model store. Create it
// with New; its Handler is safe for concurrent use.
type Server struct {
	cfg      Config
	log      *slog.Logger
	mgr      *manager
	metrics  *metrics
	mux      *http.ServeMux
	handler  http.Handler
	origins  []string
	inFlight atomic.Int64
	now      func() time.Time
	// responses keeps recent Responses API answers for
	// previous_response_id and GET /v1/responses/{id}.
	responses *respStore
	ready     readiness
	// loras are the LoRA adapters served as models (lora.go).
	loras *adapters
	// onSwap, when set (tests), follows each hot swap.
	onSwap atomic.Pointer[func(old, new *loaded, at time.Time)]
}

// New returns a server for cfg.
func New(cfg Config) (*Server, error) {
	if cfg.Store == nil || cfg.Load == nil {
		return nil, errors.New("server: Config.Store and Config.Load are required")
	}
	if cfg.KeepAlive == 0 {
		cfg.KeepAlive = DefaultKeepAlive
	}
	if cfg.MaxQueue <= 0 {
		cfg.MaxQueue = DefaultMaxQueue
	}
	if cfg.MaxLoaded <= 0 {
		cfg.MaxLoaded = DefaultMaxLoaded
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MemoryBudget == 0 {
		if avail, ok := hostmem.Available(); ok {
			cfg.MemoryBudget = int64(avail / 10 * 9)
		}
	}
	if cfg.Version == "" {
		cfg.Version = "dev"
	}
	if cfg.MaxLoras <= 0 {
		cfg.MaxLoras = DefaultMaxLoras
	}
	if cfg.LoraWait <= 0 {
		cfg.LoraWait = DefaultLoraWait
	}
	s := &Server{cfg: cfg, log: cfg.Logger, now: time.Now}
	if s.log == nil {
		s.log = slog.Default()
	}
	s.origins = append(append([]string(nil), DefaultOrigins...), cfg.Origins...)
	s.mgr = newManager(cfg.Store, cfg.Load, cfg.MemoryBudget, cfg.MaxLoaded, cfg.KeepAlive, s.log, s.now)
	s.mgr.kvBytes = max(cfg.KVBytes, 0)
	s.metrics = newMetrics(s)
	s.loras = newAdapters(cfg.Store, cfg.MaxLoras, cfg.LoraWait, s.log)
	s.loras.onLoad = func(adapter, base string) { s.metrics.adapterLoads.WithLabelValues(adapter, base).Inc() }
	s.loras.onEvict = func(adapter, base string) { s.metrics.adapterEvictions.WithLabelValues(adapter, base).Inc() }
	for _, spec := range cfg.Adapters {
		if _, err := s.registerAdapter(context.Background(), spec, "flag", false, false); err != nil {
			return nil, fmt.Errorf("LoRA adapter %s: %w", spec.Name, err)
		}
	}
	s.loadManifests()
	s.mgr.hooks.loadDone = s.metrics.loadDone
	s.mgr.hooks.swapped = func(old, nl *loaded, at time.Time) {
		s.metrics.swaps.WithLabelValues(nl.model.Name.Short(), nl.version()).Inc()
		if f := s.onSwap.Load(); f != nil {
			(*f)(old, nl, at)
		}
	}
	if cfg.WatchInterval == 0 {
		cfg.WatchInterval = DefaultWatchInterval
		s.cfg.WatchInterval = cfg.WatchInterval
	}
	if cfg.WatchInterval > 0 {
		s.mgr.watch(cfg.WatchInterval)
	}
	s.responses = newRespStore(respStoreCount, respStoreBytes)
	s.routes()
	if s.cfg.PreloadRetry <= 0 {
		s.cfg.PreloadRetry = DefaultPreloadRetry
	}
	if len(s.cfg.Preload) > 0 {
		s.mgr.wg.Add(1)
		go s.preload()
	}
	return s, nil
}

func (s *Server) routes() {
	mux := http.NewServeMux()
	s.mux = mux
	h := func(pattern string, f http.HandlerFunc) { mux.Handle(pattern, f) }

	h("GET /{$}", s.handleRoot)
	h("HEAD /{$}", s.handleRoot)
	h("GET /health", s.handleHealth)
	h("HEAD /health", s.handleHealth)
	h("GET /ready", s.handleReady)
	h("HEAD /ready", s.handleReady)
	h("GET /metrics", s.metrics.handler().ServeHTTP)

	h("GET /api/version", s.handleVersion)
	h("HEAD /api/version", s.handleVersion)
	h("POST /api/generate", s.handleGenerate)
	h("POST /api/chat", s.handleChat)
	h("POST /api/embed", s.handleEmbed)
	h("POST /api/embeddings", s.handleEmbeddings)
	h("GET /api/tags", s.handleTags)
	h("HEAD /api/tags", s.handleTags)
	h("POST /api/show", s.handleShow)
	h("GET /api/ps", s.handlePs)
	h("POST /api/pull", s.handlePull)
	h("DELETE /api/delete", s.handleDelete)
	h("POST /api/copy", s.handleCopy)
	h("POST /api/create", s.handleCreate)
	h("POST /api/blobs/{digest}", s.handleBlobUpload)
	h("HEAD /api/blobs/{digest}", s.handleBlobHead)
	h("POST /api/push", s.handleNotImplemented)

	h("POST /v1/chat/completions", s.handleOAIChat)
	h("POST /v1/completions", s.handleOAICompletions)
	h("POST /v1/embeddings", s.handleOAIEmbeddings)
	h("GET /v1/models", s.handleOAIModels)
	h("GET /v1/models/{model...}", s.handleOAIModel)
	h("POST /v1/responses", s.handleResponses)
	h("GET /v1/responses/{id}", s.handleGetResponse)
	h("DELETE /v1/responses/{id}", s.handleDeleteResponse)
	h("POST /v1/messages", s.handleAnthropicMessages)
	h("POST /v1/messages/count_tokens", s.handleAnthropicCountTokens)
	h("POST /v1/load_lora_adapter", s.handleLoadLora)
	h("POST /v1/unload_lora_adapter", s.handleUnloadLora)

	s.handler = s.wrap(http.HandlerFunc(s.dispatch))
}

// dispatch routes through the mux, answering unknown paths and wrong
// methods with JSON errors instead of the mux's plain text.
func (s *Server) dispatch(w http.ResponseWriter, r *http.Request) {
	_, pattern := s.mux.Handler(r)
	if pattern == "" {
		var allow []string
		for _, m := range []string{http.MethodGet, http.MethodHead, http.MethodPost, http.MethodDelete} {
			r2 := r.Clone(r.Context())
			r2.Method = m
			if _, p := s.mux.Handler(r2); p != "" {
				allow = append(allow, m)
			}
		}
		if len(allow) > 0 {
			w.Header().Set("Allow", strings.Join(allow, ", "))
			writeError(w, r, dialectOf(r), errorf(http.StatusMethodNotAllowed, "method %s not allowed on %s", r.Method, r.URL.Path))
		} else {
			writeError(w, r, dialectOf(r), errorf(http.StatusNotFound, "no route %s %s", r.Method, r.URL.Path))
		}
		s.metrics.observeRequest("", statusOf(w, r), "", "")
		return
	}
	ri := infoOf(r)
	if ri != nil {
		ri.mu.Lock()
		ri.route = pattern
		ri.mu.Unlock()
	}
	s.mux.ServeHTTP(w, r) // routes again, setting the path values
	var model, version, adapter string
	if ri != nil {
		ri.mu.Lock()
		model, version, adapter = ri.usedModel, ri.version, ri.adapter
		ri.mu.Unlock()
		if version != "" {
			s.metrics.duration.WithLabelValues(pattern, model, version).Observe(time.Since(ri.start).Seconds())
		}
	}
	s.metrics.observeRequest(pattern, statusOf(w, r), model, version)
	if adapter != "" {
		s.metrics.adapterRequests.WithLabelValues(pattern, strconv.Itoa(statusOf(w, r)), adapter, model).Inc()
	}
}

// statusOf is the status to count: what was written, or 499 when the
// client went away first (as the access log says).
func statusOf(w http.ResponseWriter, r *http.Request) int {
	if ri := infoOf(r); ri != nil {
		ri.mu.Lock()
		closed := ri.status == statusClientClosed
		ri.mu.Unlock()
		if closed {
			return statusClientClosed
		}
	}
	if rec, ok := w.(*recorder); ok && rec.status != 0 {
		return rec.status
	}
	return http.StatusOK
}

// Handler returns the server's HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// HTTPServer returns an http.Server for addr with the timeouts a public
// endpoint needs: headers must arrive within 10 s and bodies within 2
// minutes, idle connections close after 2 minutes; responses have no write
// timeout, since a generation streams for as long as it takes. base, when
// not nil, is the parent of every request's context: cancelling it stops
// every generation (the second stage of a graceful shutdown).
func (s *Server) HTTPServer(addr string, base context.Context) *http.Server {
	hs := &http.Server{
		Addr:              addr,
		Handler:           s.handler,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       2 * time.Minute,
		IdleTimeout:       2 * time.Minute,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
	}
	if base != nil {
		hs.BaseContext = func(net.Listener) context.Context { return base }
	}
	return hs
}

// Close unloads every model. Call it after the HTTP server has shut down.
func (s *Server) Close() error {
	s.mgr.close()
	return nil
}

// CheckBind refuses to listen on an address other than loopback unless
// an API key is set or insecure is true: a model server open to the
// network without authentication lets anyone use the machine.
func CheckBind(host, apiKey string, insecure bool) error {
	if apiKey != "" || insecure {
		return nil
	}
	h := strings.Trim(host, "[]")
	if h == "localhost" {
		return nil
	}
	if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
		return nil
	}
	return fmt.Errorf("%w: %q is not a loopback address; set --api-key (or HEARTH_API_KEY), or pass --insecure to serve without one",
		errNotLoopback, host)
}

func (s *Server) handleRoot(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	io.WriteString(w, "Ollama is running")
}

func (s *Server) handleHealth(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "models_loaded": len(s.mgr.snapshot())})
}

func (s *Server) handleVersion(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"version": OllamaVersion, "hearth": s.cfg.Version})
}

func (s *Server) handleNotImplemented(w http.ResponseWriter, r *http.Request) {
	writeError(w, r, dialectOllama, errorf(http.StatusNotImplemented,
		"%s is not supported by Hearth: models are GGUF files (put NAME.gguf in the models folder, or use /api/pull)", r.URL.Path))
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// decodeJSON reads a request body into v: present, within the size
// limit, valid UTF-8, one JSON value and nothing after it.
func decodeJSON(r *http.Request, v any) error {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return err
		}
		return errorf(http.StatusBadRequest, "reading the request body: %v", err)
	}
	if len(bytes.TrimSpace(b)) == 0 {
		return errorf(http.StatusBadRequest, "missing request body")
	}
	if !utf8.Valid(b) {
		return errorf(http.StatusBadRequest, "request body is not valid UTF-8")
	}
	noteBody(r, b)
	dec := json.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(v); err != nil {
		return errorf(http.StatusBadRequest, "invalid JSON body: %v", err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return errorf(http.StatusBadRequest, "invalid JSON body: unexpected data after the object")
	}
	return nil
}

// admit counts a generation or embedding request in, or refuses it when
// MaxQueue are already in.
func (s *Server) admit() (done func(), err error) {
	if n := s.inFlight.Add(1); n > int64(s.cfg.MaxQueue) {
		s.inFlight.Add(-1)
		s.metrics.rejected.Inc()
		return nil, fmt.Errorf("%w: %d requests are queued (the limit, --max-queue); retry shortly", ErrBusy, s.cfg.MaxQueue)
	}
	return func() { s.inFlight.Add(-1) }, nil
}
