package server

import (
	"context"
	"fmt"
	"github.com/hearth-llm/hearth/runtime/chatfmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/hearth-llm/hearth/runtime/models"
)

// forever is the expiry shown for a model kept loaded without limit
// (keep_alive < 0), as Ollama shows it: far in the future.
var forever = time.Date(2318, 1, 1, 0, 0, 0, 0, time.UTC)

// loaded is one model in memory (or being loaded).
type loaded struct {
	key      string // lower-case full name
	model    models.Model
	runner   Runner
	info     Info
	emitsBOS bool // the chat template writes BOS itself
	// format is how the model writes tool calls and reasoning, detected
	// from its chat template; preserve the control tokens among its
	// markers (their text must reach the parser).
	format   chatfmt.Format
	preserve []int32

	ready   chan struct{} // closed when the load ends; then err or runner is set
	loadErr error
	loadDur time.Duration

	// Guarded by manager.mu.
	refs      int
	lastUsed  time.Time
	keepAlive time.Duration // the latest request's; < 0: forever
	expires   time.Time     // when idle: the unload time (forever for keepAlive < 0)
	gen       int           // bumped on every acquire/release, so stale timers do nothing
	timer     *time.Timer
	dropIdle  bool // unload when the last use ends (keep_alive 0 while busy)
}

// preservedTokens are the ids of the markers that are single tokens in
// the model's vocabulary (a marker spelt in several ordinary tokens prints
// anyway).
func preservedTokens(r Runner, markers []string) []int32 {
	var ids []int32
	for _, m := range markers {
		if t, err := r.Tokenize(m, false, true); err == nil && len(t) == 1 {
			ids = append(ids, t[0])
		}
	}
	return ids
}

// manager loads models on first use, keeps them for their keep_alive,
// and unloads the least recently used idle ones when memory or the count
// of loaded models runs out. Several models are resident when they fit.
type manager struct {
	store     *models.Store
	load      Loader
	budget    int64 // bytes of models (files and KV caches) resident at once; <= 0: no limit
	kvBytes   int64 // the KV cache each model allocates when loaded
	maxLoaded int
	keepAlive time.Duration // the default
	log       *slog.Logger
	now       func() time.Time

	mu      sync.Mutex
	byKey   map[string]*loaded
	changed chan struct{} // closed and replaced whenever a model is released or unloaded
	closed  bool
}

func newManager(store *models.Store, load Loader, budget int64, maxLoaded int, keepAlive time.Duration, log *slog.Logger, now func() time.Time) *manager {
	return &manager{store: store, load: load, budget: budget, maxLoaded: maxLoaded, keepAlive: keepAlive, log: log, now: now,
		byKey: map[string]*loaded{}, changed: make(chan struct{})}
}

func (m *manager) signal() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// acquire returns the loaded model named name, loading it first when
// needed (fresh says this call loaded it), and holds it until release. It
// waits (bounded by ctx) while memory is held by models in use.
func (m *manager) acquire(ctx context.Context, name string) (l *loaded, fresh bool, err error) {
	mod, err := m.store.Resolve(name)
	if err != nil {
		return nil, false, err
	}
	key := strings.ToLower(mod.Name.String())
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, false, fmt.Errorf("%w: shutting down", ErrBusy)
		}
		if l, ok := m.byKey[key]; ok {
			l.refs++
			l.gen++
			m.mu.Unlock()
			select {
			case <-l.ready:
			case <-ctx.Done():
				m.release(l, m.keepAlive)
				return nil, false, ctx.Err()
			}
			if l.loadErr != nil {
				m.release(l, 0)
				return nil, false, l.loadErr
			}
			return l, false, nil
		}
		victims, fits := m.makeRoom(mod.Size + m.kvBytes)
		if !fits {
			wait := m.changed
			m.mu.Unlock()
			m.unload(victims)
			select {
			case <-wait:
				continue
			case <-ctx.Done():
				return nil, false, ctx.Err()
			}
		}
		l = &loaded{key: key, model: mod, ready: make(chan struct{}), refs: 1}
		m.byKey[key] = l
		m.mu.Unlock()
		m.unload(victims)

		start := time.Now()
		// The load outlives the request that started it: others may wait
		// for the same model.
		r, err := m.safeLoad(context.WithoutCancel(ctx), mod.Path)
		l.loadDur = time.Since(start)
		if err == nil {
			l.runner, l.info = r, r.Info()
			if t := l.info.Template; t != nil {
				l.emitsBOS = t.EmitsBOS(l.info.BOS)
				l.format = chatfmt.Detect(t.Source())
			}
			l.preserve = preservedTokens(r, l.format.Preserved)
			m.log.Info("model loaded", "model", mod.Name.Short(), "path", mod.Path, "dur", l.loadDur)
		} else {
			l.loadErr = fmt.Errorf("loading %s: %w", mod.Name.Short(), err)
			m.log.Error("model load failed", "model", mod.Name.Short(), "error", err)
			m.mu.Lock()
			delete(m.byKey, key)
			m.signal()
			m.mu.Unlock()
		}
		close(l.ready)
		if l.loadErr != nil {
			return nil, false, l.loadErr
		}
		return l, true, nil
	}
}

// safeLoad calls the Loader, turning a panic into an error so that the
// requests waiting for this load are answered.
func (m *manager) safeLoad(ctx context.Context, path string) (r Runner, err error) {
	defer func() {
		if p := recover(); p != nil {
			r, err = nil, fmt.Errorf("loader panicked: %v", p)
		}
	}()
	return m.load(ctx, path)
}

// makeRoom picks idle models to unload, least recently used first, so
// that a model of size bytes (its file and KV cache) fits both the memory
// budget and the count.
// It removes them from the table (the caller unloads them outside the
// lock) and says whether the new model now fits. A model alone always
// fits: when nothing else is loaded the load is tried.
func (m *manager) makeRoom(size int64) (victims []*loaded, fits bool) {
	var idle []*loaded
	used, count := int64(0), 0
	for _, l := range m.byKey {
		used += l.model.Size + m.kvBytes
		count++
		if l.refs == 0 {
			idle = append(idle, l)
		}
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].lastUsed.Before(idle[j].lastUsed) })
	ok := func() bool {
		if count == 0 {
			return true
		}
		return (m.budget <= 0 || used+size <= m.budget) && (m.maxLoaded <= 0 || count < m.maxLoaded)
	}
	for !ok() && len(idle) > 0 {
		v := idle[0]
		idle = idle[1:]
		delete(m.byKey, v.key)
		v.gen++
		if v.timer != nil {
			v.timer.Stop()
		}
		used -= v.model.Size + m.kvBytes
		count--
		victims = append(victims, v)
	}
	if len(victims) > 0 {
		m.signal()
	}
	return victims, ok()
}

func (m *manager) unload(ls []*loaded) {
	for _, l := range ls {
		if l.runner != nil {
			if err := l.runner.Close(); err != nil {
				m.log.Warn("model close", "model", l.model.Name.Short(), "error", err)
			}
			m.log.Info("model unloaded", "model", l.model.Name.Short())
		}
	}
}

// release ends a use of l. keepAlive is how long the model stays loaded
// once idle: 0 unloads it at once, < 0 keeps it until it is evicted.
func (m *manager) release(l *loaded, keepAlive time.Duration) {
	m.mu.Lock()
	l.refs--
	l.gen++
	l.lastUsed = m.now()
	if l.dropIdle {
		keepAlive = 0
	}
	l.keepAlive = keepAlive
	m.signal()
	if l.refs > 0 || m.byKey[l.key] != l {
		m.mu.Unlock()
		return
	}
	if l.timer != nil {
		l.timer.Stop()
		l.timer = nil
	}
	switch {
	case keepAlive == 0 && !m.closed:
		delete(m.byKey, l.key)
		m.mu.Unlock()
		m.unload([]*loaded{l})
		m.mu.Lock()
		m.signal()
	case keepAlive < 0:
		l.expires = forever
	default:
		l.expires = l.lastUsed.Add(keepAlive)
		gen := l.gen
		l.timer = time.AfterFunc(keepAlive, func() { m.expire(l, gen) })
	}
	m.mu.Unlock()
}

// expire unloads l if nothing used it since the timer was set.
func (m *manager) expire(l *loaded, gen int) {
	m.mu.Lock()
	if m.byKey[l.key] != l || l.gen != gen || l.refs > 0 {
		m.mu.Unlock()
		return
	}
	delete(m.byKey, l.key)
	m.signal()
	m.mu.Unlock()
	m.unload([]*loaded{l})
}

// unloadNow unloads the model named name if it is loaded and idle; a busy
// model is unloaded when its last use ends. It reports whether the model
// was loaded.
func (m *manager) unloadNow(name string) bool {
	mod, err := m.store.Resolve(name)
	if err != nil {
		return false
	}
	key := strings.ToLower(mod.Name.String())
	m.mu.Lock()
	l, ok := m.byKey[key]
	if !ok {
		m.mu.Unlock()
		return false
	}
	if l.refs > 0 {
		l.dropIdle = true
		m.mu.Unlock()
		return true
	}
	delete(m.byKey, key)
	l.gen++
	if l.timer != nil {
		l.timer.Stop()
	}
	m.signal()
	m.mu.Unlock()
	<-l.ready
	m.unload([]*loaded{l})
	return true
}

// running is a snapshot of the loaded models, for /api/ps and /metrics.
type running struct {
	l         *loaded
	refs      int
	expires   time.Time
	keepAlive time.Duration
}

func (m *manager) snapshot() []running {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []running
	for _, l := range m.byKey {
		select {
		case <-l.ready:
		default:
			continue // still loading
		}
		if l.loadErr != nil {
			continue
		}
		out = append(out, running{l: l, refs: l.refs, expires: l.expires, keepAlive: l.keepAlive})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].l.model.Name.Short() < out[j].l.model.Name.Short() })
	return out
}

// close waits until no request holds a model, then unloads every model;
// later acquires fail with ErrBusy.
func (m *manager) close() {
	m.mu.Lock()
	m.closed = true
	for {
		busy := false
		for _, l := range m.byKey {
			busy = busy || l.refs > 0
		}
		if !busy {
			break
		}
		wait := m.changed
		m.mu.Unlock()
		<-wait
		m.mu.Lock()
	}
	var all []*loaded
	for k, l := range m.byKey {
		delete(m.byKey, k)
		l.gen++
		if l.timer != nil {
			l.timer.Stop()
		}
		all = append(all, l)
	}
	m.signal()
	m.mu.Unlock()
	for _, l := range all {
		<-l.ready
	}
	m.unload(all)
}
