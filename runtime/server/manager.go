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

// loaded is one version of a model in memory (or being loaded).
type loaded struct {
	key      string       // lower-case full name
	model    models.Model // model.Version is the version loaded
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
	// stamp is the state of the file last seen to hold this version
	// (model.Stamp, then updated when a changed stamp hashed the same).
	stamp string
	// retired: a newer version replaced this one; it is unloaded when its
	// last use ends.
	retired bool

	// The LoRA adapters resident on runner, by name (lora.go); loraChanged
	// is closed and replaced whenever one is released or dropped.
	loraMu      sync.Mutex
	loras       map[string]*residentAdapter
	loraChanged chan struct{}
}

// version is l's version as logs and metric labels show it.
func (l *loaded) version() string { return shortVersion(l.model.Version) }

// shortVersion is a version's first 12 hex digits, as `hearth ls` and
// `ollama ls` show IDs.
func shortVersion(v string) string {
	v = strings.TrimPrefix(v, "sha256:")
	if len(v) > 12 {
		v = v[:12]
	}
	return v
}

// swapFailure is why the newest version of a model is not serving.
type swapFailure struct {
	stamp, version string
	err            error
	at             time.Time
	// retry: the failure is for now (memory held by the old version's
	// requests), so the watcher tries again; else only a new change of
	// the file is tried.
	retry bool
}

// managerHooks observe loads and swaps (metrics, tests). Called without
// the manager's lock held.
type managerHooks struct {
	// loadDone follows every load: err is nil when it succeeded.
	loadDone func(l *loaded, err error)
	// swapped says new serves old's requests since at (read under the
	// lock, when the swap took effect).
	swapped func(old, new *loaded, at time.Time)
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
//
// Hot swap: a watcher (every watch interval, and at once when a request
// sees that a loaded model's file changed: Store.Locate's stamp, a few
// stats) resolves each loaded model again; when its version (the file's
// sha256) differs from the one loaded, the new version loads in the
// background while the old one keeps serving. Once it is ready, new
// requests get it; requests holding the old one finish on it, and the old
// one is unloaded when the last of them releases it. Both count against
// the memory budget while both are resident. A version that fails to load
// is not tried again until the file changes again; the old one serves on.
type manager struct {
	store     *models.Store
	load      Loader
	budget    int64 // bytes of models (files and KV caches) resident at once; <= 0: no limit
	kvBytes   int64 // the KV cache each model allocates when loaded
	maxLoaded int
	keepAlive time.Duration // the default
	log       *slog.Logger
	now       func() time.Time
	hooks     managerHooks

	mu      sync.Mutex
	byKey   map[string]*loaded // the version serving each name
	retired map[*loaded]bool   // replaced versions still in use
	pending map[string]*loaded // by key: a new version loading
	failed  map[string]*swapFailure
	// pinned are the keys of the models named by Config.Preload: kept
	// loaded whatever keep_alive says, never unloaded to make room.
	pinned  map[string]bool
	changed chan struct{} // closed and replaced whenever a model is released or unloaded
	closed  bool

	kick chan struct{} // wakes the watcher
	done chan struct{} // closed by close: stops the watcher
	wg   sync.WaitGroup
}

func newManager(store *models.Store, load Loader, budget int64, maxLoaded int, keepAlive time.Duration, log *slog.Logger, now func() time.Time) *manager {
	return &manager{store: store, load: load, budget: budget, maxLoaded: maxLoaded, keepAlive: keepAlive, log: log, now: now,
		byKey: map[string]*loaded{}, retired: map[*loaded]bool{}, pending: map[string]*loaded{}, failed: map[string]*swapFailure{}, pinned: map[string]bool{},
		changed: make(chan struct{}), kick: make(chan struct{}, 1), done: make(chan struct{})}
}

// watch starts the watcher, checking the loaded models' files every
// interval (and when poked).
func (m *manager) watch(interval time.Duration) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-m.done:
				return
			case <-t.C:
			case <-m.kick:
			}
			m.check()
		}
	}()
}

// poke asks the watcher to check now.
func (m *manager) poke() {
	select {
	case m.kick <- struct{}{}:
	default:
	}
}

func (m *manager) signal() {
	close(m.changed)
	m.changed = make(chan struct{})
}

// acquire returns the loaded model named name, loading it first when
// needed (fresh says this call loaded it), and holds it until release. It
// waits (bounded by ctx) while memory is held by models in use.
func (m *manager) acquire(ctx context.Context, name string) (l *loaded, fresh bool, err error) {
	loc, err := m.store.Locate(name)
	if err != nil {
		return nil, false, err
	}
	key := strings.ToLower(loc.Name.String())
	var mod models.Model
	for {
		m.mu.Lock()
		if m.closed {
			m.mu.Unlock()
			return nil, false, fmt.Errorf("%w: shutting down", ErrBusy)
		}
		if l, ok := m.byKey[key]; ok {
			if loc.Stamp != l.stamp && m.pending[key] == nil {
				if f := m.failed[key]; f == nil || f.stamp != loc.Stamp || f.retry {
					m.poke() // the file changed: check it now, not at the next tick
				}
			}
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
		if mod.Path == "" {
			// Not loaded: read the version (hashing the file when it is
			// new), then look again.
			m.mu.Unlock()
			if mod, err = m.store.Resolve(name); err != nil {
				return nil, false, err
			}
			continue
		}
		victims, fits := m.makeRoom(mod.Size+m.kvBytes, nil, true)
		if !fits && m.onlyPinnedLocked() {
			m.mu.Unlock()
			return nil, false, fmt.Errorf("%w: %s does not fit beside the preloaded models (--preload), which stay loaded",
				ErrBusy, loc.Name.Short())
		}
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
		l = &loaded{key: key, model: mod, stamp: mod.Stamp, ready: make(chan struct{}), refs: 1}
		m.byKey[key] = l
		delete(m.failed, key)
		m.mu.Unlock()
		m.unload(victims)

		// The load outlives the request that started it: others may wait
		// for the same model.
		if m.loadInto(context.WithoutCancel(ctx), l) != nil {
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

// loadInto loads l's file into l (runner, info, chat format) or sets
// l.loadErr, and reports the load to the log and the hooks. The caller
// closes l.ready.
func (m *manager) loadInto(ctx context.Context, l *loaded) error {
	mod := l.model
	start := time.Now()
	r, err := m.safeLoad(ctx, mod.Path)
	l.loadDur = time.Since(start)
	if err == nil {
		l.runner, l.info = r, r.Info()
		if t := l.info.Template; t != nil {
			l.emitsBOS = t.EmitsBOS(l.info.BOS)
			l.format = chatfmt.Detect(t.Source())
		}
		l.preserve = preservedTokens(r, l.format.Preserved)
		m.log.Info("model loaded", "model", mod.Name.Short(), "version", l.version(), "path", mod.Path, "dur", l.loadDur)
	} else {
		l.loadErr = fmt.Errorf("loading %s (version %s): %w", mod.Name.Short(), l.version(), err)
		m.log.Error("model load failed", "model", mod.Name.Short(), "version", l.version(), "error", err)
	}
	if m.hooks.loadDone != nil {
		m.hooks.loadDone(l, l.loadErr)
	}
	return l.loadErr
}

// check compares each loaded model's file with the version loaded, and
// starts loading a new version where it changed.
func (m *manager) check() {
	m.mu.Lock()
	var cur []*loaded
	for key, l := range m.byKey {
		select {
		case <-l.ready:
		default:
			continue
		}
		if l.loadErr == nil && m.pending[key] == nil {
			cur = append(cur, l)
		}
	}
	m.mu.Unlock()
	for _, l := range cur {
		name := l.model.Name.String()
		loc, err := m.store.Locate(name)
		if err != nil {
			continue // removed or unreadable: what is loaded serves on
		}
		m.mu.Lock()
		f, stamp := m.failed[l.key], l.stamp
		m.mu.Unlock()
		if loc.Stamp == stamp || (f != nil && !f.retry && f.stamp == loc.Stamp) {
			continue
		}
		mod, err := m.store.Resolve(name)
		if err != nil {
			m.log.Warn("model changed but cannot be read", "model", l.model.Name.Short(), "error", err)
			continue
		}
		if mod.Version == l.model.Version {
			m.mu.Lock()
			l.stamp = mod.Stamp // touched, or linked: the same bytes
			m.mu.Unlock()
			continue
		}
		m.startSwap(l, mod)
	}
}

// startSwap loads mod, a new version of cur's model, in the background.
func (m *manager) startSwap(cur *loaded, mod models.Model) {
	m.mu.Lock()
	if m.closed || m.byKey[cur.key] != cur || m.pending[cur.key] != nil {
		m.mu.Unlock()
		return
	}
	victims, fits := m.makeRoom(mod.Size+m.kvBytes, cur, false)
	if !fits {
		if cur.refs == 0 {
			// Nothing uses the old version: unload it, and the next
			// request loads the new one.
			delete(m.byKey, cur.key)
			cur.gen++
			if cur.timer != nil {
				cur.timer.Stop()
			}
			m.signal()
			m.mu.Unlock()
			m.log.Info("model changed; both versions do not fit: unloading the idle old one", "model", cur.model.Name.Short(),
				"version", cur.version(), "new_version", shortVersion(mod.Version))
			m.unload(append(victims, cur))
			return
		}
		prev := m.failed[cur.key]
		err := fmt.Errorf("not enough memory for version %s beside %s while requests use it; retrying", shortVersion(mod.Version), cur.version())
		m.failed[cur.key] = &swapFailure{stamp: mod.Stamp, version: mod.Version, err: err, at: m.now(), retry: true}
		m.mu.Unlock()
		if prev == nil || prev.version != mod.Version || !prev.retry {
			m.log.Warn("model swap waits for memory", "model", cur.model.Name.Short(), "error", err)
		}
		m.unload(victims)
		return
	}
	nl := &loaded{key: cur.key, model: mod, stamp: mod.Stamp, ready: make(chan struct{})}
	m.pending[cur.key] = nl
	m.wg.Add(1)
	m.mu.Unlock()
	m.unload(victims)
	m.log.Info("model changed: loading the new version", "model", mod.Name.Short(), "version", shortVersion(mod.Version),
		"serving", cur.version())
	go m.finishSwap(cur, nl)
}

// finishSwap loads nl and, when it loads, puts it in cur's place.
func (m *manager) finishSwap(cur, nl *loaded) {
	defer m.wg.Done()
	err := m.loadInto(context.Background(), nl)
	close(nl.ready)
	m.mu.Lock()
	delete(m.pending, nl.key)
	if err != nil {
		m.failed[nl.key] = &swapFailure{stamp: nl.stamp, version: nl.model.Version, err: nl.loadErr, at: m.now()}
		m.signal()
		m.mu.Unlock()
		m.log.Error("new model version failed to load; the old one serves on", "model", nl.model.Name.Short(),
			"version", nl.version(), "serving", cur.version(), "error", err)
		return
	}
	if m.closed || m.byKey[nl.key] != cur {
		// Unloaded, evicted or replaced meanwhile.
		m.signal()
		m.mu.Unlock()
		m.unload([]*loaded{nl})
		return
	}
	delete(m.failed, nl.key)
	m.byKey[nl.key] = nl
	at := time.Now()
	nl.lastUsed = m.now()
	nl.keepAlive = cur.keepAlive
	switch {
	case cur.keepAlive < 0:
		nl.expires = forever
	default:
		ka := cur.keepAlive
		if ka == 0 {
			ka = m.keepAlive
		}
		nl.expires = nl.lastUsed.Add(ka)
		gen := nl.gen
		nl.timer = time.AfterFunc(ka, func() { m.expire(nl, gen) })
	}
	cur.retired = true
	cur.gen++
	if cur.timer != nil {
		cur.timer.Stop()
		cur.timer = nil
	}
	idle := cur.refs == 0
	if !idle {
		m.retired[cur] = true
	}
	m.signal()
	m.mu.Unlock()
	m.log.Info("model swapped", "model", nl.model.Name.Short(), "version", nl.version(), "previous", cur.version(),
		"previous_in_use", !idle)
	if m.hooks.swapped != nil {
		m.hooks.swapped(cur, nl, at)
	}
	if idle {
		m.unload([]*loaded{cur})
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
// budget and, when it adds a name (newName; a new version does not), the
// count. keep is never picked.
// It removes them from the table (the caller unloads them outside the
// lock) and says whether the new model now fits. A model alone always
// fits: when nothing else is loaded the load is tried.
func (m *manager) makeRoom(size int64, keep *loaded, newName bool) (victims []*loaded, fits bool) {
	var idle []*loaded
	used, count := m.residentLocked(), 0
	for _, l := range m.byKey {
		count++
		if l.refs == 0 && l != keep && !m.pinned[l.key] {
			idle = append(idle, l)
		}
	}
	sort.Slice(idle, func(i, j int) bool { return idle[i].lastUsed.Before(idle[j].lastUsed) })
	ok := func() bool {
		if count == 0 {
			return true
		}
		return (m.budget <= 0 || used+size <= m.budget) && (!newName || m.maxLoaded <= 0 || count < m.maxLoaded)
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

// residentLocked is the memory the manager counts as held: every
// version loaded or loading (files and KV caches), retired ones included.
func (m *manager) residentLocked() int64 {
	var used int64
	for _, l := range m.byKey {
		used += l.model.Size + m.kvBytes
	}
	for l := range m.retired {
		used += l.model.Size + m.kvBytes
	}
	for _, l := range m.pending {
		used += l.model.Size + m.kvBytes
	}
	return used
}

// resident is residentLocked under the lock.
func (m *manager) resident() int64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.residentLocked()
}

func (m *manager) unload(ls []*loaded) {
	for _, l := range ls {
		if l.runner != nil {
			if err := l.runner.Close(); err != nil {
				m.log.Warn("model close", "model", l.model.Name.Short(), "error", err)
			}
			m.log.Info("model unloaded", "model", l.model.Name.Short(), "version", l.version())
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
	if m.pinned[l.key] {
		keepAlive, l.dropIdle = -1, false
	}
	l.keepAlive = keepAlive
	m.signal()
	if l.refs == 0 && m.retired[l] {
		// The last use of a replaced version.
		delete(m.retired, l)
		m.mu.Unlock()
		m.unload([]*loaded{l})
		return
	}
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
	mod, err := m.store.Locate(name)
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
	if m.pinned[key] {
		m.mu.Unlock()
		m.log.Info("model is preloaded: stays loaded", "model", l.model.Name.Short())
		return true
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
	retired   bool         // replaced by a newer version; finishing its requests
	loading   string       // a newer version loading, "" when none
	failed    *swapFailure // why the newest version is not serving, nil when it is
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
		rm := running{l: l, refs: l.refs, expires: l.expires, keepAlive: l.keepAlive, failed: m.failed[l.key]}
		if p := m.pending[l.key]; p != nil {
			rm.loading = p.model.Version
		}
		out = append(out, rm)
	}
	for l := range m.retired {
		out = append(out, running{l: l, refs: l.refs, expires: l.expires, keepAlive: l.keepAlive, retired: true})
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.l.model.Name.Short() != b.l.model.Name.Short() {
			return a.l.model.Name.Short() < b.l.model.Name.Short()
		}
		return !a.retired && b.retired
	})
	return out
}

// close waits until no request holds a model, then unloads every model;
// later acquires fail with ErrBusy.
func (m *manager) close() {
	m.mu.Lock()
	if !m.closed {
		close(m.done)
	}
	m.closed = true
	for {
		busy := len(m.retired) > 0
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
	m.wg.Wait() // the watcher, and loads of new versions (which unload themselves)
	for _, l := range all {
		<-l.ready
	}
	m.unload(all)
}

// pin marks the model named name as preloaded (see manager.pinned) and
// returns its key.
func (m *manager) pin(name string) (string, error) {
	loc, err := m.store.Locate(name)
	if err != nil {
		return "", err
	}
	key := strings.ToLower(loc.Name.String())
	m.mu.Lock()
	m.pinned[key] = true
	m.mu.Unlock()
	return key, nil
}

// serving says whether the model named name has a version loaded and
// serving requests.
func (m *manager) serving(name string) bool {
	loc, err := m.store.Locate(name)
	if err != nil {
		return false
	}
	key := strings.ToLower(loc.Name.String())
	m.mu.Lock()
	l := m.byKey[key]
	m.mu.Unlock()
	if l == nil {
		return false
	}
	select {
	case <-l.ready:
		return l.loadErr == nil
	default:
		return false
	}
}

// onlyPinnedLocked says every model resident is preloaded: none will ever
// make room.
func (m *manager) onlyPinnedLocked() bool {
	if len(m.retired) > 0 || len(m.pending) > 0 {
		return false
	}
	for k := range m.byKey {
		if !m.pinned[k] {
			return false
		}
	}
	return true
}
