package server

import (
	"context"
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// reqInfo is what the access log says about a request; handlers add to it.
type reqInfo struct {
	id         string
	start      time.Time
	hdr        http.Header // the response's, for headers set once the model is known
	logPrompts bool        // Config.LogPrompts

	mu     sync.Mutex
	model  string // as the client named it
	route  string // the mux pattern
	errMsg string
	status int
	attrs  []slog.Attr
	// The model and version the request used, once it holds one, and
	// the LoRA adapter it ran with ("": none).
	usedModel, version string
	adapter            string
	body               []byte // the request body, kept only with logPrompts
}

type reqInfoKey struct{}

func infoOf(r *http.Request) *reqInfo { return infoFrom(r.Context()) }

func infoFrom(ctx context.Context) *reqInfo {
	ri, _ := ctx.Value(reqInfoKey{}).(*reqInfo)
	return ri
}

// VersionHeader names the version of the model that answered, on the
// responses of requests that used one ("sha256:<hex>", the sha256 of the
// model's GGUF file).
const VersionHeader = "X-Hearth-Model-Version"

// noteVersion records the model version a request holds, for the access
// log, the metrics and the response header (set here, before anything is
// written: a request takes its model before it answers).
func noteVersion(ctx context.Context, l *loaded) {
	ri := infoFrom(ctx)
	if ri == nil {
		return
	}
	ri.mu.Lock()
	ri.usedModel, ri.version = l.model.Name.Short(), l.version()
	ri.mu.Unlock()
	if ri.hdr != nil {
		ri.hdr.Set(VersionHeader, l.model.Version)
	}
}

// noteBody keeps a request's body for the access log when prompts are
// logged (--log-prompts), up to maxLoggedBody bytes.
func noteBody(r *http.Request, b []byte) {
	if ri := infoOf(r); ri != nil && ri.logPrompts {
		ri.mu.Lock()
		ri.body = b[:min(len(b), maxLoggedBody)]
		ri.mu.Unlock()
	}
}

const maxLoggedBody = 64 << 10

// noteModel records the model a request used, for the access log
// (truncated: it is the client's string, not yet validated).
func noteModel(r *http.Request, model string) {
	if len(model) > 128 {
		model = model[:128] + "..."
	}
	if ri := infoOf(r); ri != nil {
		ri.mu.Lock()
		ri.model = model
		ri.mu.Unlock()
	}
}

// noteAttrs adds attributes (counts and durations, never text) to the
// access log line.
func noteAttrs(r *http.Request, attrs ...slog.Attr) {
	if ri := infoOf(r); ri != nil {
		ri.mu.Lock()
		ri.attrs = append(ri.attrs, attrs...)
		ri.mu.Unlock()
	}
}

func noteError(r *http.Request, ae *apiError) {
	if ri := infoOf(r); ri != nil {
		ri.mu.Lock()
		ri.errMsg, ri.status = ae.msg, ae.status
		ri.mu.Unlock()
	}
}

// recorder remembers the status written. Unwrap lets
// http.NewResponseController reach the connection's Flush.
type recorder struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (rw *recorder) WriteHeader(code int) {
	if rw.status == 0 {
		rw.status = code
	}
	rw.ResponseWriter.WriteHeader(code)
}

func (rw *recorder) Write(b []byte) (int, error) {
	if rw.status == 0 {
		rw.status = http.StatusOK
	}
	n, err := rw.ResponseWriter.Write(b)
	rw.bytes += int64(n)
	return n, err
}

func (rw *recorder) Unwrap() http.ResponseWriter { return rw.ResponseWriter }

// maxRequestID bounds a client's X-Request-Id.
const maxRequestID = 128

// requestID takes a client's X-Request-Id when it is at most
// maxRequestID bytes of printable ASCII without spaces, quotes or
// backslashes (a UUID, a trace id, "svc:1234/5"), else makes one.
func requestID(r *http.Request) string {
	if id := r.Header.Get("X-Request-Id"); id != "" && len(id) <= maxRequestID && plainID(id) {
		return id
	}
	var b [8]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func plainID(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c > '~' || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// dialectOf picks the error shape by path.
func dialectOf(r *http.Request) dialect {
	if r.URL.Path == "/v1/messages" || strings.HasPrefix(r.URL.Path, "/v1/messages/") {
		return dialectAnthropic
	}
	if strings.HasPrefix(r.URL.Path, "/v1/") {
		return dialectOpenAI
	}
	return dialectOllama
}

// wrap adds, outermost first: panic recovery, the request id and the
// access log, CORS, the API key check and the body limit.
func (s *Server) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		rec := &recorder{ResponseWriter: w}
		ri := &reqInfo{id: requestID(r), start: start, hdr: rec.Header(), logPrompts: s.cfg.LogPrompts}
		r = r.WithContext(context.WithValue(r.Context(), reqInfoKey{}, ri))
		rec.Header().Set("X-Request-Id", ri.id)
		defer func() {
			if p := recover(); p != nil {
				if p == http.ErrAbortHandler {
					panic(p)
				}
				s.log.Error("handler panic", "req", ri.id, "panic", fmt.Sprint(p), "stack", string(debug.Stack()))
				if rec.status == 0 {
					writeError(rec, r, dialectOf(r), errorf(http.StatusInternalServerError, "internal error"))
				}
			}
			s.logRequest(r, ri, rec, time.Since(start))
		}()
		if !s.cors(rec, r) {
			return
		}
		if r.Method == http.MethodOptions {
			rec.WriteHeader(http.StatusNoContent)
			return
		}
		if !s.authorized(r) {
			writeError(rec, r, dialectOf(r), errorf(http.StatusUnauthorized, "missing or wrong API key (send Authorization: Bearer KEY or x-api-key: KEY)"))
			return
		}
		limit := s.cfg.MaxBodyBytes
		if strings.HasPrefix(r.URL.Path, "/api/blobs/") {
			limit = maxBlobBytes // an adapter file, checked against its digest
		}
		r.Body = http.MaxBytesReader(rec, r.Body, limit)
		h.ServeHTTP(rec, r)
	})
}

func (s *Server) logRequest(r *http.Request, ri *reqInfo, rec *recorder, d time.Duration) {
	ri.mu.Lock()
	defer ri.mu.Unlock()
	status := rec.status
	if ri.status == statusClientClosed {
		status = statusClientClosed
	}
	level := slog.LevelInfo
	switch {
	case status >= 500:
		level = slog.LevelError
	case status >= 400 && status != statusClientClosed:
		level = slog.LevelWarn
	}
	if r.URL.Path == "/" || r.URL.Path == "/health" || r.URL.Path == "/ready" || r.URL.Path == "/metrics" {
		level = min(level, slog.LevelDebug)
	}
	attrs := []slog.Attr{
		slog.String("req", ri.id), slog.String("method", r.Method), slog.String("path", r.URL.Path),
	}
	if ri.route != "" {
		attrs = append(attrs, slog.String("route", ri.route))
	}
	attrs = append(attrs, slog.Int("status", status), slog.Duration("dur", d), slog.Int64("bytes", rec.bytes))
	switch {
	case ri.usedModel != "":
		attrs = append(attrs, slog.String("model", ri.usedModel), slog.String("version", ri.version))
	case ri.model != "":
		attrs = append(attrs, slog.String("model", ri.model))
	}
	if ri.adapter != "" {
		attrs = append(attrs, slog.String("adapter", ri.adapter))
	}
	if ri.errMsg != "" {
		attrs = append(attrs, slog.String("error", ri.errMsg))
	}
	attrs = append(attrs, ri.attrs...)
	if ri.body != nil {
		attrs = append(attrs, slog.String("request_body", string(ri.body)))
	}
	s.log.LogAttrs(r.Context(), level, "request", attrs...)
}

func (s *Server) authorized(r *http.Request) bool {
	if s.cfg.APIKey == "" {
		return true
	}
	if r.Method == http.MethodGet || r.Method == http.MethodHead {
		switch r.URL.Path {
		case "/", "/health", "/ready":
			return true
		case "/metrics":
			if s.cfg.PublicMetrics {
				return true
			}
		}
	}
	// Anthropic's clients send the key as x-api-key.
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		got = r.Header.Get("X-Api-Key")
	}
	return got != "" && subtle.ConstantTimeCompare([]byte(strings.TrimSpace(got)), []byte(s.cfg.APIKey)) == 1
}

// DefaultOrigins are the browser origins allowed without configuration, as
// Ollama allows them: local pages on any port, and desktop and editor
// webviews.
var DefaultOrigins = func() []string {
	var o []string
	for _, h := range []string{"localhost", "127.0.0.1", "[::1]", "0.0.0.0"} {
		o = append(o, "http://"+h, "https://"+h, "http://"+h+":*", "https://"+h+":*")
	}
	return append(o, "app://*", "file://*", "tauri://*", "vscode-webview://*", "vscode-file://*")
}()

// cors answers for browsers: a request with an Origin header gets the
// CORS headers when the origin is allowed and a 403 when it is not.
// Requests without an Origin (every non-browser client) pass untouched.
func (s *Server) cors(w http.ResponseWriter, r *http.Request) bool {
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true
	}
	h := w.Header()
	h.Add("Vary", "Origin")
	if !s.originAllowed(origin) {
		writeError(w, r, dialectOf(r), errorf(http.StatusForbidden, "origin %q is not allowed (see --origins)", origin))
		return false
	}
	h.Set("Access-Control-Allow-Origin", origin)
	h.Set("Access-Control-Allow-Methods", "GET, POST, PUT, PATCH, DELETE, HEAD, OPTIONS")
	h.Set("Access-Control-Allow-Headers", "Authorization, Content-Type, User-Agent, Accept, X-Requested-With, X-Request-Id, "+
		"X-Api-Key, Anthropic-Version, Anthropic-Beta, Anthropic-Dangerous-Direct-Browser-Access, "+
		"X-Stainless-Lang, X-Stainless-Package-Version, X-Stainless-Os, X-Stainless-Arch, X-Stainless-Retry-Count, "+
		"X-Stainless-Runtime, X-Stainless-Runtime-Version, X-Stainless-Async, X-Stainless-Helper-Method, X-Stainless-Timeout")
	h.Set("Access-Control-Expose-Headers", "X-Request-Id, Retry-After, "+VersionHeader)
	h.Set("Access-Control-Max-Age", "600")
	return true
}

func (s *Server) originAllowed(origin string) bool {
	for _, p := range s.origins {
		if p == "*" || globMatch(p, origin) {
			return true
		}
	}
	return false
}

// globMatch matches s against pattern, where '*' matches any run of bytes.
func globMatch(pattern, s string) bool {
	parts := strings.Split(pattern, "*")
	if len(parts) == 1 {
		return pattern == s
	}
	if !strings.HasPrefix(s, parts[0]) {
		return false
	}
	s = s[len(parts[0]):]
	for i, p := range parts[1:] {
		if i == len(parts)-2 {
			return strings.HasSuffix(s, p)
		}
		j := strings.Index(s, p)
		if j < 0 {
			return false
		}
		s = s[j+len(p):]
	}
	return true
}

// errNotLoopback is returned by CheckBind.
var errNotLoopback = errors.New("refusing to listen beyond this machine without an API key")
