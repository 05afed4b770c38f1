package server

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
)

// writeVersion writes version v of a tiny model to path atomically (a
// temporary file in the same folder, renamed over path), as a deployment
// replaces a model, and returns its version ("sha256:<hex>").
func writeVersion(t testing.TB, path string, v int) string {
	t.Helper()
	w := gguf.NewWriter()
	w.Set("general.architecture", gguf.String("llama"))
	w.Set("general.file_type", gguf.Uint32(2))
	w.Set("llama.context_length", gguf.Uint32(2048))
	w.Set("test.version", gguf.Uint32(uint32(v)))
	if err := w.AddTensor("output.weight", quant.F32, []uint64{4, 2}, make([]byte, 32)); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".tmp")
	if err := w.WriteFile(tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// versionLoader loads a new fake per load and tracks which are open;
// versions in fail fail to load.
type versionLoader struct {
	pieces []string
	delay  time.Duration // per piece
	load   time.Duration // per load
	gate   chan struct{} // when set, the next runner made waits for it

	mu      sync.Mutex
	runners []*fakeRunner
	fail    map[string]error
}

func (vl *versionLoader) loader(ctx context.Context, path string) (Runner, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(b)
	v := "sha256:" + hex.EncodeToString(sum[:])
	time.Sleep(vl.load)
	vl.mu.Lock()
	defer vl.mu.Unlock()
	if err := vl.fail[v]; err != nil {
		return nil, err
	}
	f := newFake(vl.pieces...)
	f.delay, f.gate = vl.delay, vl.gate
	vl.gate = nil
	vl.runners = append(vl.runners, f)
	return f, nil
}

// open counts the runners loaded and not closed.
func (vl *versionLoader) open() int {
	vl.mu.Lock()
	defer vl.mu.Unlock()
	n := 0
	for _, f := range vl.runners {
		n += 1 - int(f.closed.Load())
	}
	return n
}

// newSwapEnv starts a server over a folder for model m, whose versions
// are each vsize bytes counted (file and KV cache); budget, when > 0, is
// the memory budget in versions.
func newSwapEnv(t *testing.T, vl *versionLoader, budget int64) (e *env, path string, vsize int64) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.gguf")
	writeVersion(t, p, 0)
	st, _ := os.Stat(p)
	vsize = st.Size() + 1<<20
	e = newEnv(t, nil, func(c *Config) {
		c.Load = vl.loader
		c.WatchInterval = 5 * time.Millisecond
		c.KVBytes = 1 << 20
		if budget > 0 {
			c.MemoryBudget = budget*vsize + 100
		}
	})
	return e, filepath.Join(e.dir, "m.gguf"), vsize
}

// psOf reads /api/ps.
func psOf(t testing.TB, e *env) []psModel {
	t.Helper()
	code, _, body := e.do("GET", "/api/ps", "")
	var ps struct{ Models []psModel }
	if code != 200 || json.Unmarshal([]byte(body), &ps) != nil {
		t.Fatalf("/api/ps: %d %s", code, body)
	}
	return ps.Models
}

// waitServing waits until /api/ps shows version v serving model m.
func waitServing(t testing.TB, e *env, v string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		for _, pm := range psOf(t, e) {
			if pm.State == "serving" && pm.Version == v {
				return
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("version %s never served; /api/ps: %+v", v, psOf(t, e))
}

// stream sends a streamed /api/generate and reads it to its end: the
// version header, the text, and an error for any failure.
func stream(e *env, ctx context.Context) (version, text string, err error) {
	req, _ := http.NewRequestWithContext(ctx, "POST", e.http.URL+"/api/generate", strings.NewReader(`{"model":"m","prompt":"hi"}`))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", "", err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return "", "", fmt.Errorf("status %d", resp.StatusCode)
	}
	var sb strings.Builder
	sc := bufio.NewScanner(resp.Body)
	done := false
	for sc.Scan() {
		var c struct {
			Response string `json:"response"`
			Done     bool   `json:"done"`
			Error    string `json:"error"`
		}
		if err := json.Unmarshal(sc.Bytes(), &c); err != nil {
			return "", "", err
		}
		if c.Error != "" {
			return "", "", errors.New(c.Error)
		}
		sb.WriteString(c.Response)
		done = done || c.Done
	}
	if !done {
		return "", "", errors.New("stream ended without done")
	}
	return resp.Header.Get(VersionHeader), sb.String(), sc.Err()
}

// TestHotSwap: replacing the file loads the new version in the
// background; a request in flight finishes on the old one, new requests
// get the new one once it is ready, both count in memory meanwhile, and
// the old one is closed when its last request ends.
func TestHotSwap(t *testing.T) {
	gate := make(chan struct{})
	// The first runner (v1's) holds its requests until the gate opens.
	vl := &versionLoader{pieces: []string{"a", "b", "c"}, gate: gate}
	e, path, one := newSwapEnv(t, vl, 0)
	v1 := writeVersion(t, path, 1)
	type result struct {
		v, text string
		err     error
	}
	held := make(chan result, 1)
	go func() {
		v, text, err := stream(e, context.Background())
		held <- result{v, text, err}
	}()
	waitRefs(t, e, v1, 1)

	v2 := writeVersion(t, path, 2)
	waitServing(t, e, v2)
	if v, _, err := stream(e, context.Background()); err != nil || v != v2 {
		t.Fatalf("after the swap: %q %v; want %s", v, err, v2)
	}
	ps := psOf(t, e)
	if len(ps) != 2 || ps[0].Version != v2 || ps[1].Version != v1 || ps[1].State != "retired" || ps[1].Requests != 1 {
		t.Fatalf("/api/ps during the swap: %+v", ps)
	}
	if got := e.srv.mgr.resident(); got != 2*one || vl.open() != 2 {
		t.Fatalf("during the swap: %d bytes counted (want %d), %d runners open", got, 2*one, vl.open())
	}

	close(gate)
	if r := <-held; r.err != nil || r.v != v1 || r.text != "abc" {
		t.Fatalf("held request: %+v; want it finished on %s", r, v1)
	}
	waitFor(t, func() bool { return vl.open() == 1 && e.srv.mgr.resident() == one })
	if ps := psOf(t, e); len(ps) != 1 || ps[0].Version != v2 {
		t.Fatalf("/api/ps after: %+v", ps)
	}
	if !strings.Contains(e.logs.String(), "model swapped") {
		t.Errorf("no swap in the log:\n%s", e.logs)
	}
}

// TestHotSwapFailure: a version that fails to load leaves the old one
// serving and says why (/api/ps, a metric, the log); a good version after
// it swaps in, and `cp` back (Store.Copy) rolls back.
func TestHotSwapFailure(t *testing.T) {
	vl := &versionLoader{pieces: []string{"x"}, fail: map[string]error{}}
	e, path, _ := newSwapEnv(t, vl, 0)
	v1 := writeVersion(t, path, 1)
	// Keep v1 under another name too, for the rollback.
	if _, err := e.srv.cfg.Store.Copy("m", "m-v1"); err != nil {
		t.Fatal(err)
	}
	if v, _, err := stream(e, context.Background()); err != nil || v != v1 {
		t.Fatalf("%q %v", v, err)
	}

	bad := filepath.Join(t.TempDir(), "bad.gguf")
	v2 := writeVersion(t, bad, 2)
	vl.mu.Lock()
	vl.fail[v2] = errors.New("corrupt tensor data")
	vl.mu.Unlock()
	writeVersion(t, path, 2)
	waitFor(t, func() bool { ps := psOf(t, e); return len(ps) == 1 && ps[0].FailedVersion == v2 })
	ps := psOf(t, e)
	if ps[0].Version != v1 || ps[0].State != "serving" || !strings.Contains(ps[0].Error, "corrupt tensor data") {
		t.Fatalf("/api/ps after a failed swap: %+v", ps)
	}
	if v, _, err := stream(e, context.Background()); err != nil || v != v1 {
		t.Fatalf("after a failed swap: %q %v; want %s still", v, err, v1)
	}
	_, _, metrics := e.do("GET", "/metrics", "")
	want := fmt.Sprintf(`hearth_model_load_failures_total{model="m:latest",version=%q} 1`, shortVersion(v2))
	if !strings.Contains(metrics, want) {
		t.Errorf("metrics lack %s", want)
	}
	if !strings.Contains(e.logs.String(), "new model version failed to load") {
		t.Errorf("no failure in the log")
	}
	time.Sleep(30 * time.Millisecond) // several watcher ticks: the failed version is not retried
	if n := len(vl.runners); n != 1 {
		t.Errorf("%d loads; the failed version was retried", n)
	}

	v3 := writeVersion(t, path, 3)
	waitServing(t, e, v3)
	if ps := psOf(t, e); len(ps) != 1 || ps[0].Error != "" {
		t.Fatalf("/api/ps after a good version: %+v", ps)
	}

	// Rollback: cp m-v1 m.
	if _, err := e.srv.cfg.Store.Copy("m-v1", "m"); err != nil {
		t.Fatal(err)
	}
	waitServing(t, e, v1)
	if v, _, err := stream(e, context.Background()); err != nil || v != v1 {
		t.Fatalf("after the rollback: %q %v", v, err)
	}
	waitFor(t, func() bool { return vl.open() == 1 })
}

// TestHotSwapNoRoom: when the budget holds one version only, a swap waits
// while the old version is busy and happens once it is idle (the old one
// unloaded first, the next request loading the new one).
func TestHotSwapNoRoom(t *testing.T) {
	gate := make(chan struct{})
	vl := &versionLoader{pieces: []string{"x"}, gate: gate}
	e, path, _ := newSwapEnv(t, vl, 1)
	v1 := writeVersion(t, path, 1)
	held := make(chan error, 1)
	go func() { _, _, err := stream(e, context.Background()); held <- err }()
	waitRefs(t, e, v1, 1)
	v2 := writeVersion(t, path, 2)
	waitFor(t, func() bool { ps := psOf(t, e); return len(ps) == 1 && ps[0].FailedVersion == v2 })
	if ps := psOf(t, e); ps[0].Version != v1 || !strings.Contains(ps[0].Error, "not enough memory") || e.srv.mgr.resident() > e.srv.mgr.budget {
		t.Fatalf("%+v", ps)
	}
	close(gate)
	if err := <-held; err != nil {
		t.Fatal(err)
	}
	waitFor(t, func() bool { return len(psOf(t, e)) == 0 })
	if v, _, err := stream(e, context.Background()); err != nil || v != v2 {
		t.Fatalf("after: %q %v; want %s", v, err, v2)
	}
}

func waitRefs(t testing.TB, e *env, v string, n int) {
	t.Helper()
	waitFor(t, func() bool {
		for _, pm := range psOf(t, e) {
			if pm.Version == v && pm.Requests == n {
				return true
			}
		}
		return false
	})
}

func waitFor(t testing.TB, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("timed out")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// interval is a time a version served new requests.
type interval struct {
	version    string
	start, end time.Time // end zero: still serving
}

// TestHotSwapUnderLoad: 300 streamed requests, 16 at a time, while the
// model's file is replaced 10 times (two versions in turn): no request
// fails, each one's version header names a version that was serving
// while it ran, and afterwards one runner is open and the memory counted
// is what it was before the swaps.
func TestHotSwapUnderLoad(t *testing.T) {
	vl := &versionLoader{pieces: strings.Split("once upon a time there was a tiny model", " "), delay: 3 * time.Millisecond,
		load: 10 * time.Millisecond}
	e, path, _ := newSwapEnv(t, vl, 0)
	versions := []string{writeVersion(t, path, 1)}
	var mu sync.Mutex
	intervals := []interval{{version: versions[0], start: time.Now()}}
	f := func(old, nl *loaded, at time.Time) {
		mu.Lock()
		defer mu.Unlock()
		intervals[len(intervals)-1].end = at
		intervals = append(intervals, interval{version: nl.model.Version, start: at})
	}
	e.srv.onSwap.Store(&f)
	if _, _, err := stream(e, context.Background()); err != nil {
		t.Fatal(err)
	}
	http.DefaultClient.CloseIdleConnections()
	runtime.GC()
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	fdsBefore := openFDs()
	resBefore := e.srv.mgr.resident()

	const total, conc, swaps = 300, 16, 10
	type rec struct {
		start, end time.Time
		version    string
	}
	recs := make([]rec, total)
	var next, failed atomic.Int32
	var wg sync.WaitGroup
	for range conc {
		wg.Go(func() {
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				start := time.Now()
				v, text, err := stream(e, context.Background())
				recs[i] = rec{start, time.Now(), v}
				if err != nil || text != "onceuponatimetherewasatinymodel" {
					failed.Add(1)
					t.Errorf("request %d: %q %v", i, text, err)
				}
			}
		})
	}
	if v := writeVersion(t, filepath.Join(t.TempDir(), "m.gguf"), 2); v == versions[0] {
		t.Fatal("the two versions are the same file")
	}
	for i := range swaps {
		v := writeVersion(t, path, 2-i%2) // 2, 1, 2, 1, …
		waitServing(t, e, v)
		versions = append(versions, v)
		time.Sleep(20 * time.Millisecond)
	}
	swappedBy := int(next.Load())
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	if len(intervals) != swaps+1 {
		t.Errorf("%d intervals, want %d", len(intervals), swaps+1)
	}
	for i, r := range recs {
		ok := false
		for _, iv := range intervals {
			if iv.version == r.version && !r.start.After(orFar(iv.end)) && !r.end.Before(iv.start) {
				ok = true
				break
			}
		}
		if !ok {
			t.Errorf("request %d (%v..%v) got version %s, not serving then", i, r.start, r.end, r.version)
		}
	}
	perVersion := map[string]int{}
	for _, r := range recs {
		perVersion[shortVersion(r.version)]++
	}

	waitFor(t, func() bool { return vl.open() == 1 })
	http.DefaultClient.CloseIdleConnections()
	runtime.GC()
	runtime.ReadMemStats(&after)
	resAfter, fdsAfter := e.srv.mgr.resident(), openFDs()
	t.Logf("%d requests (%d started during the %d swaps), %d failed; by version: %v; runners loaded %d, open %d",
		total, swappedBy, swaps, failed.Load(), perVersion, len(vl.runners), vl.open())
	t.Logf("memory counted by the manager: %d bytes before the swaps, %d after; Go heap %d KiB before, %d KiB after; open fds %d before, %d after",
		resBefore, resAfter, before.HeapAlloc>>10, after.HeapAlloc>>10, fdsBefore, fdsAfter)
	if resAfter != resBefore || len(vl.runners) != swaps+1 {
		t.Errorf("after the swaps: %d bytes counted (before %d), %d loads", resAfter, resBefore, len(vl.runners))
	}
	if ps := psOf(t, e); len(ps) != 1 || ps[0].Version != versions[len(versions)-1] {
		t.Errorf("/api/ps after: %+v", ps)
	}
}

func orFar(t time.Time) time.Time {
	if t.IsZero() {
		return time.Now().Add(time.Hour)
	}
	return t
}

// openFDs counts this process's open file descriptors (Linux; -1
// elsewhere).
func openFDs() int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return -1
	}
	return len(ents)
}

// TestVersionEverywhere: the version shows in /api/tags, /api/show,
// /v1/models and the response header of chat and embed requests.
func TestVersionEverywhere(t *testing.T) {
	vl := &versionLoader{pieces: []string{"x"}}
	e, path, _ := newSwapEnv(t, vl, 0)
	v := writeVersion(t, path, 7)
	_, _, tags := e.do("GET", "/api/tags", "")
	_, _, show := e.do("POST", "/api/show", `{"model":"m"}`)
	_, _, oai := e.do("GET", "/v1/models", "")
	_, h, _ := e.do("POST", "/api/chat", `{"model":"m","messages":[{"role":"user","content":"hi"}],"stream":false}`)
	_, h2, _ := e.do("POST", "/v1/completions", `{"model":"m","prompt":"hi"}`)
	hex := strings.TrimPrefix(v, "sha256:")
	if !strings.Contains(tags, `"digest":"`+hex+`"`) || !strings.Contains(show, `"hearth.version":"`+v+`"`) ||
		!strings.Contains(oai, `"version":"`+v+`"`) || h.Get(VersionHeader) != v || h2.Get(VersionHeader) != v {
		t.Errorf("version %s missing:\ntags %s\nshow %.300s\nv1/models %s\nchat header %q, completions header %q", v, tags, show, oai,
			h.Get(VersionHeader), h2.Get(VersionHeader))
	}
}
