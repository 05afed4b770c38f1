package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/hearth-llm/hearth/internal/testdata"
)

// TestServeHotSwapReal: `hearth serve` on the real engine (the batched
// runner) with JSON logs, while `hearth cp` re-points app between
// stories260K-f32 and stories260K-q8_0 ten times under 300 streamed
// requests, 16 at a time. No request fails; each one's
// X-Hearth-Model-Version names a version that was serving while it ran
// (from the log's "model swapped" records); the access log carries the
// request id, route, model, version, tokens, queue, TTFT and finish
// reason; memory after the swaps is back to its level before them.
func TestServeHotSwapReal(t *testing.T) {
	if testing.Short() {
		t.Skip("-short")
	}
	src := testdata.Dir(t, "models")
	dir := t.TempDir()
	for tag, f := range map[string]string{"f32": "stories260K-f32.gguf", "q8": "stories260K-q8_0.gguf"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "app:"+tag+".gguf"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	flags := []string{"--models", dir, "--ollama-models", ""}
	cp := func(from string) string {
		t.Helper()
		out, errOut, code := hearth(t, append([]string{"cp", "app:" + from, "app"}, flags...)...)
		if code != 0 {
			t.Fatalf("cp: %d %s%s", code, out, errOut)
		}
		i := strings.Index(out, "(version ")
		return out[i+9 : i+21]
	}
	short := map[string]string{"f32": cp("f32")}
	short["q8"] = cp("q8")
	cp("f32")
	addr, logs, stop := startServer(t, append(flags, "-t", "2", "--log-format", "json", "--watch-interval", "20ms", "--kv-budget", "64MiB"), nil)
	base := "http://" + addr

	type rec struct {
		start, end time.Time
		version    string
	}
	generate := func(id string) (rec, error) {
		r := rec{start: time.Now()}
		req, _ := http.NewRequest("POST", base+"/api/generate",
			strings.NewReader(`{"model":"app","prompt":"Once upon a time","options":{"num_predict":8,"temperature":0}}`))
		req.Header.Set("X-Request-Id", id)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return r, err
		}
		defer resp.Body.Close()
		if resp.StatusCode != 200 || resp.Header.Get("X-Request-Id") != id {
			return r, fmt.Errorf("status %d, id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
		}
		r.version = strings.TrimPrefix(resp.Header.Get("X-Hearth-Model-Version"), "sha256:")
		sc := bufio.NewScanner(resp.Body)
		done := false
		for sc.Scan() {
			var c struct {
				Done  bool   `json:"done"`
				Error string `json:"error"`
			}
			if err := json.Unmarshal(sc.Bytes(), &c); err != nil || c.Error != "" {
				return r, fmt.Errorf("%s %v", sc.Text(), err)
			}
			done = done || c.Done
		}
		r.end = time.Now()
		if !done {
			return r, fmt.Errorf("no done")
		}
		return r, nil
	}
	first, err := generate("warm-up")
	if err != nil || !strings.HasPrefix(first.version, short["f32"]) {
		t.Fatalf("first: %+v %v; want %s", first, err, short["f32"])
	}
	// Warm the KV cache's pages with the same concurrency, so that the
	// baseline holds what one version holds under this load.
	var warm sync.WaitGroup
	for i := range 32 {
		warm.Go(func() { generate("warm-" + strconv.Itoa(i)) })
		if i%16 == 15 {
			warm.Wait()
		}
	}
	http.DefaultClient.CloseIdleConnections()
	debug.FreeOSMemory()
	rssBefore, heapBefore := rss(), heapAlloc()
	var msBefore, msAfter runtime.MemStats
	runtime.ReadMemStats(&msBefore)
	fdsBefore := countFDs()

	const total, conc, swaps = 300, 16, 10
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
				r, err := generate("load-" + strconv.Itoa(i))
				recs[i] = r
				if err != nil {
					failed.Add(1)
					t.Errorf("request %d: %v", i, err)
				}
			}
		})
	}
	for i := range swaps {
		tag := []string{"q8", "f32"}[i%2]
		cp(tag)
		deadline := time.Now().Add(30 * time.Second)
		for !servingVersion(t, base, short[tag]) {
			if time.Now().After(deadline) {
				t.Fatalf("swap %d to %s never happened", i, tag)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	swappedBy := next.Load()
	wg.Wait()

	// Intervals from the log: the first version from the start, then each
	// "model swapped" record.
	type interval struct {
		version    string
		start, end time.Time
	}
	ivs := []interval{{version: short["f32"], start: first.start}}
	var access map[string]any
	for _, line := range strings.Split(logs.String(), "\n") {
		var l map[string]any
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		if l["msg"] == "model swapped" {
			at, _ := time.Parse(time.RFC3339Nano, l["time"].(string))
			ivs[len(ivs)-1].end = at
			ivs = append(ivs, interval{version: l["version"].(string), start: at})
		}
		if l["msg"] == "request" && l["req"] == "load-7" {
			access = l
		}
	}
	ivs[len(ivs)-1].end = time.Now()
	if len(ivs) != swaps+1 {
		t.Errorf("%d swaps in the log, want %d", len(ivs)-1, swaps)
	}
	// A log record's time is taken just after the swap; allow for it.
	const slack = 5 * time.Millisecond
	per := map[string]int{}
	for i, r := range recs {
		per[r.version[:12]]++
		ok := false
		for _, iv := range ivs {
			if strings.HasPrefix(r.version, iv.version) && !r.start.After(iv.end.Add(slack)) && !r.end.Before(iv.start.Add(-slack)) {
				ok = true
			}
		}
		if !ok {
			t.Errorf("request %d (%v..%v) got %s, not serving then", i, r.start, r.end, r.version)
		}
	}
	for _, k := range []string{"req", "route", "model", "version", "prompt_tokens", "gen_tokens", "queue", "ttft", "finish", "dur", "status"} {
		if access[k] == nil {
			t.Errorf("the access log lacks %q: %v", k, access)
		}
	}
	if strings.Contains(logs.String(), "Once upon") {
		t.Errorf("prompt text in the logs without --log-prompts")
	}

	time.Sleep(100 * time.Millisecond) // the last retired version's release
	http.DefaultClient.CloseIdleConnections()
	debug.FreeOSMemory()
	rssAfter, heapAfter := rss(), heapAlloc()
	runtime.ReadMemStats(&msAfter)
	fdsAfter := countFDs()
	_, _, ps := get(t, base+"/api/ps")
	t.Logf("%d requests (%d started before the last of %d swaps), %d failed; by version %v", total, swappedBy, swaps, failed.Load(), per)
	t.Logf("anonymous RSS %d MiB before the swaps, %d MiB after; Go heap %d KiB before, %d KiB after; Go runtime's memory from the OS %d MiB, %d MiB (stacks %d KiB, %d KiB); open fds %d, %d",
		rssBefore>>20, rssAfter>>20, heapBefore>>10, heapAfter>>10, (msBefore.Sys-msBefore.HeapReleased)>>20, (msAfter.Sys-msAfter.HeapReleased)>>20,
		msBefore.StackSys>>10, msAfter.StackSys>>10, fdsBefore, fdsAfter)
	if fdsAfter > fdsBefore {
		t.Errorf("open file descriptors: %d before the swaps, %d after", fdsBefore, fdsAfter)
	}
	if strings.Count(ps, `"version"`) != 1 {
		t.Errorf("/api/ps after: %s", ps)
	}
	if heapAfter > heapBefore+16<<20 {
		t.Errorf("Go heap grew from %d to %d bytes over the swaps", heapBefore, heapAfter)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
}

// servingVersion says whether /api/ps shows the version short serving
// (a retired version also lists while its requests finish).
func servingVersion(t *testing.T, base, short string) bool {
	_, _, body := get(t, base+"/api/ps")
	var ps struct {
		Models []struct{ Version, State string }
	}
	json.Unmarshal([]byte(body), &ps)
	for _, m := range ps.Models {
		if m.State == "serving" && strings.HasPrefix(m.Version, "sha256:"+short) {
			return true
		}
	}
	return false
}

func get(t *testing.T, u string) (int, http.Header, string) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

// rss is this process's anonymous resident memory (Linux; 0 elsewhere):
// VmRSS also counts the pages of the test binary's code that the swaps run
// for the first time (10-20 MiB of text and rodata), which is not memory
// the swaps keep. Anonymous RSS still rises over the run (6 -> 29 MiB) with
// the Go heap flat (23 MiB before and after): the live version's KV pool
// is allocated whole but its pages become resident as requests first use
// them, and 300 requests touch more of it than the warm-up did. What the
// swaps must give back is the heap and the runtime's memory from the OS,
// which the test holds.
func rss() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		if f := strings.Fields(string(l)); len(f) >= 2 && f[0] == "RssAnon:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func countFDs() int {
	ents, _ := os.ReadDir("/proc/self/fd")
	return len(ents)
}

func heapAlloc() uint64 {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
