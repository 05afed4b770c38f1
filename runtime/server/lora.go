package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/lora"
	"github.com/hearth-llm/hearth/runtime/models"
)

// LoRA adapters served as models (lora.go, lora_http.go).
//
// An adapter is registered under a model name of its own, over a base
// model of the store: by `hearth serve --lora NAME=BASE:FILE[:SCALE]`
// (Config.Adapters), by POST /v1/load_lora_adapter (vLLM's), or by
// Ollama's POST /api/create with from and adapters (kept across restarts
// as NAME.lora.json in the models folder). A request naming the adapter
// runs on the base's runner (the base is loaded once, whatever the number
// of its adapters) with Request.Adapter set, so requests for different
// adapters and for the bare base share the same batched steps.
//
// Residency: at most Config.MaxLoras adapters are loaded on a base's
// runner at once. A request for one that is not loads it, evicting the
// least recently used adapter that no request holds. When every resident
// adapter is held by a running request, the request waits for one to be
// released, up to Config.LoraWait (and its own deadline); then it fails
// with 503 and Retry-After, as a full queue does: the client retries, and
// no running request is ever stalled or evicted.

// Defaults of Config's LoRA settings.
const (
	DefaultMaxLoras = 4
	DefaultLoraWait = 30 * time.Second
)

// AdapterSpec names a LoRA adapter served as a model of its own: requests
// for Name run on Base's runner (loaded once, shared by every adapter of
// it) with the llama.cpp GGUF LoRA file at Path, at user scale Scale
// (the file's alpha/rank times Scale).
type AdapterSpec struct {
	Name, Base, Path string
	Scale            float32 // 0: 1
}

// ParseAdapterSpec reads `hearth serve --lora`'s NAME=BASE:FILE[:SCALE].
// BASE is a model name, with a tag or without ("llama3:8b", "stories");
// FILE is the path of the adapter and holds no ':'; SCALE, a number
// (default 1), multiplies the file's alpha/rank. Only the syntax is
// checked here: the names, the file and its fit to the base are checked
// when the server registers it.
func ParseAdapterSpec(s string) (AdapterSpec, error) {
	bad := func(format string, args ...any) (AdapterSpec, error) {
		return AdapterSpec{}, fmt.Errorf("LoRA adapter %q: %s (want NAME=BASE:FILE[:SCALE], e.g. sql=llama3:8b:/data/sql-lora.gguf:0.8)",
			s, fmt.Sprintf(format, args...))
	}
	name, rest, ok := strings.Cut(s, "=")
	name = strings.TrimSpace(name)
	switch {
	case !ok:
		return bad("no '='")
	case name == "":
		return bad("the name is empty")
	}
	parts := strings.Split(rest, ":")
	var spec AdapterSpec
	spec.Name, spec.Scale = name, 1
	if len(parts) >= 3 {
		if v, err := strconv.ParseFloat(parts[len(parts)-1], 32); err == nil {
			if math.IsNaN(v) || math.IsInf(v, 0) || v == 0 {
				return bad("scale %s: want a finite number other than 0", parts[len(parts)-1])
			}
			spec.Scale = float32(v)
			parts = parts[:len(parts)-1]
		}
	}
	if len(parts) < 2 {
		return bad("no ':' between the base model and the file")
	}
	spec.Path = parts[len(parts)-1]
	spec.Base = strings.Join(parts[:len(parts)-1], ":")
	switch {
	case spec.Base == "":
		return bad("the base model is empty")
	case spec.Path == "":
		return bad("the file is empty")
	case len(parts) > 3:
		return bad("too many ':' (a model name has one tag; the file holds none)")
	}
	return spec, nil
}

// ErrUnknownAdapter is wrapped when an adapter name is not registered
// (/v1/unload_lora_adapter of a name never loaded): 404.
var ErrUnknownAdapter = errors.New("unknown LoRA adapter")

// adapterEntry is a registered adapter. Immutable once registered, but for
// manifest (set by /api/create before it is published).
type adapterEntry struct {
	AdapterSpec
	key      string      // lower-case full name, as the manager keys models
	name     models.Name // Name parsed: Short() is how it is listed and run
	base     models.Name
	source   string // "flag", "api" (/v1/load_lora_adapter) or "create" (/api/create)
	manifest string // the NAME.lora.json persisting it ("" unless created)
	gen      uint64 // distinct per registration: a resident copy of an older one is reloaded
	size     int64
	modified time.Time
	digest   string // sha256 of the file ("sha256:<hex>")
}

// run is the adapter's name as it was registered (what clients send as
// the model): its name on the runner, its id in /v1/models, in LoraState,
// logs and metric labels. Ollama's listings show its full name with the
// tag (name.Short()), as they show models.
func (e *adapterEntry) run() string { return e.Name }

// residentAdapter is an adapter loaded (or loading) on a base runner.
// Guarded by the base's loaded.loraMu.
type residentAdapter struct {
	gen     uint64        // the registration loaded
	refs    int           // requests holding it (and the one loading it)
	last    uint64        // tick of its last use, for LRU eviction
	loading chan struct{} // non-nil while the runner loads it; closed then
}

// adapters is the server's registry of named adapters, and the
// accounting of which are resident on which base runner.
type adapters struct {
	store *models.Store
	max   int           // resident per base
	wait  time.Duration // for a slot when every resident adapter is in use
	log   interface {
		Info(msg string, args ...any)
	}
	// onLoad and onEvict observe loads onto a runner and evictions (metrics).
	onLoad, onEvict func(adapter, base string)

	mu      sync.Mutex
	byKey   map[string]*adapterEntry
	gen     uint64
	tick    uint64
	running map[string]int // by run name: requests holding it
	waiting map[string]int // by run name: requests waiting for a slot
}

func newAdapters(store *models.Store, max int, wait time.Duration, log interface{ Info(string, ...any) }) *adapters {
	return &adapters{store: store, max: max, wait: wait, log: log, byKey: map[string]*adapterEntry{},
		running: map[string]int{}, waiting: map[string]int{},
		onLoad: func(string, string) {}, onEvict: func(string, string) {}}
}

// lookup returns the adapter registered as name, or nil.
func (a *adapters) lookup(name string) *adapterEntry {
	n, err := models.ParseName(name)
	if err != nil {
		return nil
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byKey[strings.ToLower(n.String())]
}

// current says whether e is still the registration of its name.
func (a *adapters) current(e *adapterEntry) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.byKey[e.key] == e
}

// list returns the registered adapters, sorted by name.
func (a *adapters) list() []*adapterEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	out := make([]*adapterEntry, 0, len(a.byKey))
	for _, e := range a.byKey {
		out = append(out, e)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].run() < out[j].run() })
	return out
}

// prepare checks spec (a valid name not taken by a model of the store, a
// base the store has, a LoRA file made for that base) and returns its
// entry, not yet registered. Errors are 4xx in each API's shape: an
// invalid name or file 400, an unknown base 404, a taken name 409.
func (a *adapters) prepare(spec AdapterSpec) (*adapterEntry, error) {
	n, err := models.ParseName(spec.Name)
	if err != nil {
		return nil, fmt.Errorf("adapter name: %w", err)
	}
	if spec.Scale == 0 {
		spec.Scale = 1
	}
	if math.IsNaN(float64(spec.Scale)) || math.IsInf(float64(spec.Scale), 0) {
		return nil, errorf(http.StatusBadRequest, "adapter scale %v is not a number", spec.Scale)
	}
	if spec.Base == "" {
		return nil, errorf(http.StatusBadRequest, "adapter %q names no base model", spec.Name)
	}
	if m, err := a.store.Locate(spec.Name); err == nil {
		return nil, errorf(http.StatusConflict, "%q is a model of the store (%s): an adapter needs a name of its own", m.Name.Short(), m.Path)
	}
	if a.lookup(spec.Base) != nil {
		return nil, errorf(http.StatusBadRequest, "base %q is itself an adapter: adapters apply to a GGUF model", spec.Base)
	}
	base, err := a.store.Locate(spec.Base)
	if err != nil {
		return nil, fmt.Errorf("base model of adapter %q: %w", spec.Name, err)
	}
	st, err := os.Stat(spec.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: adapter file: %w", ErrInvalid, err)
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("%w: adapter file %s is not a regular file", ErrInvalid, spec.Path)
	}
	if err := checkAdapterFile(spec.Path, base.Path); err != nil {
		// Whatever is wrong, it is with the file the client named: 400.
		return nil, fmt.Errorf("%w: LoRA adapter %s does not fit %s: %w", ErrInvalid, spec.Name, base.Name.Short(), err)
	}
	digest, err := fileDigest(spec.Path)
	if err != nil {
		return nil, fmt.Errorf("%w: adapter file: %w", ErrInvalid, err)
	}
	return &adapterEntry{AdapterSpec: spec, key: strings.ToLower(n.String()), name: n, base: base.Name,
		size: st.Size(), modified: st.ModTime(), digest: digest}, nil
}

// checkAdapterFile reads the headers of the adapter and of its base and
// checks that the one fits the other (lora.Check: type, architecture,
// tensor names and shapes) without loading either.
func checkAdapterFile(path, basePath string) error {
	f, err := gguf.Open(path)
	if err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	defer f.Close()
	b, err := gguf.Open(basePath)
	if err != nil {
		return fmt.Errorf("base model: %w", err)
	}
	defer b.Close()
	if _, err := lora.Check(f, b); err != nil {
		return fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return nil
}

func fileDigest(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// add registers e. replace allows replacing an adapter of the same name
// (/api/create, as Ollama overwrites); else a taken name is 400, as vLLM
// answers a second load_lora_adapter of a name.
func (a *adapters) add(e *adapterEntry, source string, replace bool) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if old := a.byKey[e.key]; old != nil && !replace {
		return &apiError{status: http.StatusBadRequest, typ: "InvalidUserInput",
			msg: fmt.Sprintf("The lora adapter '%s' has already been loaded.", old.run())}
	}
	a.gen++
	e.gen, e.source = a.gen, source
	a.byKey[e.key] = e
	return nil
}

// remove unregisters name and returns its entry.
func (a *adapters) remove(name string) (*adapterEntry, error) {
	notFound := &apiError{status: http.StatusNotFound, typ: "NotFoundError", code: "model_not_found",
		msg: fmt.Sprintf("The lora adapter '%s' cannot be found.", name), wrapped: ErrUnknownAdapter}
	n, err := models.ParseName(name)
	if err != nil {
		return nil, notFound
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	e := a.byKey[strings.ToLower(n.String())]
	if e == nil {
		return nil, notFound
	}
	delete(a.byKey, e.key)
	return e, nil
}

// count adds d to the request count of name in m.
func (a *adapters) count(m map[string]int, name string, d int) {
	a.mu.Lock()
	m[name] += d
	if m[name] <= 0 {
		delete(m, name)
	}
	a.mu.Unlock()
}

// use makes e resident on l's runner (loading it there when it is not, or
// when what is there is an older registration of the name), evicting the
// least recently used idle adapter of l when l already holds max, and
// waiting (bounded by ctx and a.wait) while all of them are in use. The
// request holds it until done is called.
func (a *adapters) use(ctx context.Context, l *loaded, e *adapterEntry) (done func(), err error) {
	ar, ok := l.runner.(AdapterRunner)
	if !ok {
		return nil, fmt.Errorf("%w: the runner of %s serves no LoRA adapters", ErrUnsupported, l.model.Name.Short())
	}
	name, base := e.run(), l.model.Name.Short()
	var deadline <-chan time.Time
	waited := false
	defer func() {
		if waited {
			a.count(a.waiting, name, -1)
		}
	}()
	for {
		l.loraMu.Lock()
		if l.loras == nil {
			l.loras = map[string]*residentAdapter{}
			l.loraChanged = make(chan struct{})
		}
		r := l.loras[name]
		if r != nil && r.loading != nil { // another request is loading it: wait for that
			wait := r.loading
			l.loraMu.Unlock()
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, ctx.Err()
			}
		}
		if r != nil && r.gen == e.gen {
			r.refs++
			r.last = a.next()
			l.loraMu.Unlock()
			return a.holding(l, r, name), nil
		}
		if r == nil && len(l.loras) >= a.max {
			victim := ""
			var best *residentAdapter
			for n, c := range l.loras {
				if c.refs == 0 && c.loading == nil && (best == nil || c.last < best.last) {
					best, victim = c, n
				}
			}
			if best == nil { // every resident adapter is in use: wait for one
				wait := l.loraChanged
				l.loraMu.Unlock()
				if !waited {
					waited = true
					a.count(a.waiting, name, 1)
					t := time.NewTimer(a.wait)
					defer t.Stop()
					deadline = t.C
				}
				select {
				case <-wait:
					continue
				case <-ctx.Done():
					return nil, ctx.Err()
				case <-deadline:
					return nil, fmt.Errorf("%w: all %d LoRA adapter slots of %s are held by running requests (--max-loras %d); waited %v for one to free: retry shortly",
						ErrBusy, a.max, base, a.max, a.wait)
				}
			}
			ar.RemoveAdapter(victim)
			delete(l.loras, victim)
			a.onEvict(victim, base)
			a.log.Info("LoRA adapter evicted", "adapter", victim, "model", base, "max_loras", a.max)
		}
		if !a.current(e) {
			l.loraMu.Unlock()
			return nil, &apiError{status: http.StatusNotFound, code: "model_not_found", wrapped: ErrUnknownAdapter,
				msg: fmt.Sprintf("the LoRA adapter %q was unloaded", name)}
		}
		// Load it (or its newer registration) outside the lock: other
		// adapters of l stay usable meanwhile; requests for this one wait.
		if r == nil {
			r = &residentAdapter{}
			l.loras[name] = r
		}
		r.gen, r.loading = e.gen, make(chan struct{})
		r.refs++
		l.loraMu.Unlock()

		start := time.Now()
		err := ar.LoadAdapter(name, e.Path, e.Scale)

		l.loraMu.Lock()
		close(r.loading)
		r.loading = nil
		if err != nil {
			r.refs--
			if r.refs == 0 && l.loras[name] == r {
				delete(l.loras, name)
			}
			l.signalLoras()
			l.loraMu.Unlock()
			return nil, fmt.Errorf("loading LoRA adapter %s on %s: %w", name, base, err)
		}
		r.last = a.next()
		l.loraMu.Unlock()
		a.onLoad(name, base)
		a.log.Info("LoRA adapter loaded", "adapter", name, "model", base, "path", e.Path, "scale", fmt.Sprint(e.Scale), "dur", time.Since(start))
		return a.holding(l, r, name), nil
	}
}

// next is the next LRU tick.
func (a *adapters) next() uint64 {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.tick++
	return a.tick
}

// holding counts a request holding r and returns its release.
func (a *adapters) holding(l *loaded, r *residentAdapter, name string) func() {
	a.count(a.running, name, 1)
	var once sync.Once
	return func() {
		once.Do(func() {
			a.count(a.running, name, -1)
			l.loraMu.Lock()
			r.refs--
			l.signalLoras()
			l.loraMu.Unlock()
		})
	}
}

// signalLoras wakes the requests waiting for an adapter slot of l. Call
// with l.loraMu held.
func (l *loaded) signalLoras() {
	if l.loraChanged != nil {
		close(l.loraChanged)
	}
	l.loraChanged = make(chan struct{})
}

// drop removes the adapter named name (its run name) from l's runner.
// Requests running with it finish with it (the runner keeps what they
// started with).
func (a *adapters) drop(l *loaded, name string) {
	l.loraMu.Lock()
	defer l.loraMu.Unlock()
	r, ok := l.loras[name]
	if !ok {
		return
	}
	if r.loading != nil {
		// Its load finishes first; the request that loads it holds it
		// and the next use of the name sees the registration gone.
		return
	}
	if ar, ok := l.runner.(AdapterRunner); ok {
		ar.RemoveAdapter(name)
	}
	delete(l.loras, name)
	l.signalLoras()
}

// resident lists the adapters loaded on l, sorted.
func (l *loaded) resident() []string {
	l.loraMu.Lock()
	defer l.loraMu.Unlock()
	out := make([]string, 0, len(l.loras))
	for n, r := range l.loras {
		if r.loading == nil {
			out = append(out, n)
		}
	}
	sort.Strings(out)
	return out
}

// LoraState is what the server says about its LoRA adapters for a
// gateway (vLLM's vllm:lora_requests_info gauge): the adapters requests
// are generating with now, those requests are waiting for (a slot among
// MaxLoras), and MaxLoras. Names are the adapters' model names, sorted.
type LoraState struct {
	Running, Waiting []string
	MaxLoras         int
}

// LoraState returns the adapters in use now; see LoraState. Safe for
// concurrent use; cheap (no model is touched).
func (s *Server) LoraState() LoraState {
	a := s.loras
	a.mu.Lock()
	defer a.mu.Unlock()
	st := LoraState{Running: []string{}, Waiting: []string{}, MaxLoras: a.max}
	for n := range a.running {
		st.Running = append(st.Running, n)
	}
	for n := range a.waiting {
		st.Waiting = append(st.Waiting, n)
	}
	sort.Strings(st.Running)
	sort.Strings(st.Waiting)
	return st
}

// acquireFor holds the model a request names: for an adapter, its base
// (loaded when it is not) with the adapter resident on it. e is the
// adapter (nil for a plain model). release releases both; call it once.
func (s *Server) acquireFor(ctx context.Context, r *http.Request, name string, keep time.Duration) (l *loaded, e *adapterEntry, release func(), loadDur time.Duration, err error) {
	e = s.loras.lookup(name)
	if e == nil {
		l, loadDur, err = s.acquire(ctx, name)
		if err != nil {
			return nil, nil, nil, 0, err
		}
		return l, nil, func() { s.mgr.release(l, keep) }, loadDur, nil
	}
	if r != nil {
		noteAdapter(r, e.run())
	}
	l, loadDur, err = s.acquireBase(ctx, e)
	if err != nil {
		return nil, nil, nil, 0, err
	}
	done, err := s.loras.use(ctx, l, e)
	if err != nil {
		s.mgr.release(l, keep)
		return nil, nil, nil, 0, err
	}
	return l, e, func() { done(); s.mgr.release(l, keep) }, loadDur, nil
}

// acquireBase holds e's base model, noting it for the access log.
func (s *Server) acquireBase(ctx context.Context, e *adapterEntry) (*loaded, time.Duration, error) {
	l, loadDur, err := s.acquire(ctx, e.base.String())
	if err != nil {
		return nil, 0, fmt.Errorf("base model %s of adapter %s: %w", e.base.Short(), e.run(), err)
	}
	return l, loadDur, nil
}

// baseName is the model to load for name: its base when name is an
// adapter, else name itself.
func (s *Server) baseName(name string) string {
	if e := s.loras.lookup(name); e != nil {
		return e.base.String()
	}
	return name
}

// registerAdapter checks spec, registers it and, with load, loads its base
// and makes it resident there at once (so that a file the base's runner
// refuses is refused now, not at the first request).
func (s *Server) registerAdapter(ctx context.Context, spec AdapterSpec, source string, replace, load bool) (*adapterEntry, error) {
	e, err := s.loras.prepare(spec)
	if err != nil {
		return nil, err
	}
	if err := s.loras.add(e, source, replace); err != nil {
		return nil, err
	}
	if load {
		l, _, err := s.acquireBase(ctx, e)
		if err == nil {
			var done func()
			if done, err = s.loras.use(ctx, l, e); err == nil {
				done()
			}
			s.mgr.release(l, s.cfg.KeepAlive)
		}
		if err != nil {
			if s.loras.current(e) {
				s.loras.remove(spec.Name)
			}
			return nil, err
		}
	}
	s.log.Info("LoRA adapter registered", "adapter", e.run(), "base", e.base.Short(), "path", e.Path, "scale", fmt.Sprint(e.Scale), "source", source)
	return e, nil
}

// unregisterAdapter removes the adapter name and unloads it from every
// loaded base; requests running with it finish with it.
func (s *Server) unregisterAdapter(name string) (*adapterEntry, error) {
	e, err := s.loras.remove(name)
	if err != nil {
		return nil, err
	}
	for _, rm := range s.mgr.snapshot() {
		s.loras.drop(rm.l, e.run())
	}
	s.log.Info("LoRA adapter unregistered", "adapter", e.run(), "base", e.base.Short())
	return e, nil
}

// adapterPath resolves a path a client sent: relative to the models
// folder, or absolute inside it; anything leaving the folder is refused
// (a client may name files the server's operator put there, nothing
// else).
func (s *Server) adapterPath(p string) (string, error) {
	dir := s.cfg.Store.Dir()
	if dir == "" {
		return "", errorf(http.StatusBadRequest, "the server has no models folder to read adapters from")
	}
	if p == "" {
		return "", errorf(http.StatusBadRequest, "adapter path is required")
	}
	if strings.ContainsRune(p, 0) {
		return "", errorf(http.StatusBadRequest, "adapter path holds a NUL byte")
	}
	abs := p
	if !filepath.IsAbs(p) {
		if !filepath.IsLocal(p) {
			return "", errorf(http.StatusBadRequest, "adapter path %q leaves the models folder %s", p, dir)
		}
		abs = filepath.Join(dir, p)
	}
	abs = filepath.Clean(abs)
	rel, err := filepath.Rel(dir, abs)
	if err != nil || !filepath.IsLocal(rel) {
		return "", errorf(http.StatusBadRequest, "adapter path %q is outside the models folder %s", p, dir)
	}
	return abs, nil
}

// loraManifest is NAME.lora.json in the models folder: an adapter model
// made by /api/create, registered again when a server starts.
type loraManifest struct {
	Base    string  `json:"base"`
	Adapter string  `json:"adapter"` // relative to the models folder
	Scale   float32 `json:"scale,omitempty"`
}

const manifestSuffix = ".lora.json"

// manifestPath is where the adapter model n's manifest lives.
func (s *Server) manifestPath(n models.Name) (string, error) {
	p, err := s.cfg.Store.Path(n)
	if err != nil {
		return "", err
	}
	return strings.TrimSuffix(p, ".gguf") + manifestSuffix, nil
}

// loadManifests registers the adapter models of the models folder
// (NAME.lora.json, and namespace/NAME.lora.json); one that no longer fits
// (its base or file gone) is logged and skipped.
func (s *Server) loadManifests() {
	dir := s.cfg.Store.Dir()
	if dir == "" {
		return
	}
	var files []string
	for _, pat := range []string{"*" + manifestSuffix, "*/*" + manifestSuffix, "*/*/*" + manifestSuffix} {
		m, _ := filepath.Glob(filepath.Join(dir, pat))
		files = append(files, m...)
	}
	for _, f := range files {
		rel, _ := filepath.Rel(dir, f)
		name := strings.TrimSuffix(filepath.ToSlash(rel), manifestSuffix)
		b, err := os.ReadFile(f)
		var mf loraManifest
		if err == nil {
			err = json.Unmarshal(b, &mf)
		}
		var path string
		if err == nil {
			path, err = s.adapterPath(mf.Adapter)
		}
		if err == nil {
			var e *adapterEntry
			if e, err = s.loras.prepare(AdapterSpec{Name: name, Base: mf.Base, Path: path, Scale: mf.Scale}); err == nil {
				e.manifest = f
				err = s.loras.add(e, "create", false)
			}
		}
		if err != nil {
			s.log.Warn("skipping an adapter model", "manifest", f, "error", err)
			continue
		}
		s.log.Info("LoRA adapter registered", "adapter", name, "base", mf.Base, "path", path, "source", "create")
	}
}
