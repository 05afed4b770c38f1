package models

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// fakeRegistry imitates registry.ollama.ai (manifests and blobs, blobs
// behind a redirect as the real one does) and a Hugging Face file URL.
type fakeRegistry struct {
	*httptest.Server
	blob     []byte
	digest   string // announced for the blob
	mu       sync.Mutex
	ranges   []string
	cutAfter int // when > 0, the first blob GET sends only this many bytes
}

func newFakeRegistry(t *testing.T, blob []byte) *fakeRegistry {
	sum := sha256.Sum256(blob)
	r := &fakeRegistry{blob: blob, digest: "sha256:" + hex.EncodeToString(sum[:])}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v2/library/tiny/manifests/{tag}", func(w http.ResponseWriter, req *http.Request) {
		if req.PathValue("tag") != "latest" || req.Header.Get("Accept") != manifestV2 {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		json.NewEncoder(w).Encode(manifest{SchemaVersion: 2, MediaType: manifestV2,
			Config: layer{MediaType: "application/vnd.docker.container.image.v1+json", Digest: r.digest, Size: 2},
			Layers: []layer{
				{MediaType: mediaModel, Digest: r.digest, Size: int64(len(r.blob))},
				{MediaType: mediaParams, Digest: r.digest, Size: 2},
			}})
	})
	mux.HandleFunc("GET /v2/library/tiny/blobs/{digest}", func(w http.ResponseWriter, req *http.Request) {
		http.Redirect(w, req, "/cdn/"+req.PathValue("digest"), http.StatusTemporaryRedirect)
	})
	serve := func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		r.ranges = append(r.ranges, req.Header.Get("Range"))
		cut := r.cutAfter
		r.cutAfter = 0
		r.mu.Unlock()
		if cut > 0 {
			w.Header().Set("Content-Length", itoa(len(r.blob)))
			w.WriteHeader(http.StatusOK)
			w.Write(r.blob[:cut])
			panic(http.ErrAbortHandler) // drop the connection mid-body
		}
		http.ServeContent(w, req, "", time.Time{}, bytes.NewReader(r.blob))
	}
	mux.HandleFunc("GET /cdn/{digest}", serve)
	mux.HandleFunc("/org/repo/resolve/main/{file}", func(w http.ResponseWriter, req *http.Request) {
		w.Header().Set("X-Linked-Etag", `"`+strings.TrimPrefix(r.digest, "sha256:")+`"`)
		w.Header().Set("X-Linked-Size", itoa(len(r.blob)))
		http.Redirect(w, req, "/cdn/file", http.StatusFound)
	})
	r.Server = httptest.NewServer(mux)
	t.Cleanup(r.Close)
	return r
}

func itoa(n int) string { return strconv.Itoa(n) }

func (r *fakeRegistry) sawRanges() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ranges...)
}

func testBlob() []byte {
	b := make([]byte, 300_000)
	for i := range b {
		b[i] = byte(i * 7)
	}
	return b
}

func TestPullRegistry(t *testing.T) {
	reg := newFakeRegistry(t, testBlob())
	s := New(Options{Dir: t.TempDir()})
	var statuses []string
	m, err := s.Pull(context.Background(), "tiny", PullOptions{Registry: reg.URL, Progress: func(p Progress) {
		if len(statuses) == 0 || statuses[len(statuses)-1] != p.Status {
			statuses = append(statuses, p.Status)
		}
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pulling manifest", "pulling " + reg.digest[7:19], "verifying sha256 digest", "writing manifest", "success"}
	if strings.Join(statuses, "|") != strings.Join(want, "|") {
		t.Errorf("progress %q\nwant %q", statuses, want)
	}
	if got, _ := os.ReadFile(filepath.Join(s.Dir(), "tiny.gguf")); !bytes.Equal(got, reg.blob) || m.Name.Short() != "tiny:latest" {
		t.Errorf("pulled %d bytes as %s", len(got), m.Name.Short())
	}
	if _, err := s.Resolve("tiny:latest"); err != nil {
		t.Error(err)
	}
	if _, err := s.Pull(context.Background(), "tiny:nope", PullOptions{Registry: reg.URL}); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown tag: %v", err)
	}
	if _, err := s.Pull(context.Background(), "../tiny", PullOptions{Registry: reg.URL}); !errors.Is(err, ErrInvalidName) {
		t.Errorf("bad name: %v", err)
	}
}

func TestPullResume(t *testing.T) {
	reg := newFakeRegistry(t, testBlob())
	s := New(Options{Dir: t.TempDir()})
	// A partial file from an earlier try.
	dest := filepath.Join(s.Dir(), "tiny.gguf")
	if err := os.WriteFile(dest+".partial", reg.blob[:100_000], 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Pull(context.Background(), "tiny", PullOptions{Registry: reg.URL}); err != nil {
		t.Fatal(err)
	}
	if r := reg.sawRanges(); len(r) != 1 || r[0] != "bytes=100000-" {
		t.Errorf("ranges %q, want one bytes=100000-", r)
	}
	if got, _ := os.ReadFile(dest); !bytes.Equal(got, reg.blob) {
		t.Error("resumed file differs")
	}
	if _, err := os.Stat(dest + ".partial"); !errors.Is(err, os.ErrNotExist) {
		t.Error("partial file left behind")
	}
}

// TestPullInterrupted: a connection dropped mid-body leaves a partial file;
// the next pull resumes it.
func TestPullInterrupted(t *testing.T) {
	reg := newFakeRegistry(t, testBlob())
	reg.cutAfter = 120_000
	s := New(Options{Dir: t.TempDir()})
	_, err := s.Pull(context.Background(), "tiny", PullOptions{Registry: reg.URL})
	if err == nil || !strings.Contains(err.Error(), "resume") {
		t.Fatalf("interrupted pull: %v", err)
	}
	st, err := os.Stat(filepath.Join(s.Dir(), "tiny.gguf.partial"))
	if err != nil || st.Size() == 0 {
		t.Fatalf("partial: %v", err)
	}
	if _, err := s.Pull(context.Background(), "tiny", PullOptions{Registry: reg.URL}); err != nil {
		t.Fatal(err)
	}
	r := reg.sawRanges()
	if len(r) != 2 || r[1] != "bytes="+itoa(int(st.Size()))+"-" {
		t.Errorf("ranges %q", r)
	}
	if got, _ := os.ReadFile(filepath.Join(s.Dir(), "tiny.gguf")); !bytes.Equal(got, reg.blob) {
		t.Error("resumed file differs")
	}
}

func TestPullDigestMismatch(t *testing.T) {
	reg := newFakeRegistry(t, testBlob())
	reg.digest = "sha256:" + strings.Repeat("ab", 32)
	s := New(Options{Dir: t.TempDir()})
	if _, err := s.Pull(context.Background(), "tiny", PullOptions{Registry: reg.URL}); !errors.Is(err, ErrDigestMismatch) {
		t.Fatalf("pull: %v, want ErrDigestMismatch", err)
	}
	for _, f := range []string{"tiny.gguf", "tiny.gguf.partial"} {
		if _, err := os.Stat(filepath.Join(s.Dir(), f)); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists after a failed digest check", f)
		}
	}
}

func TestPullURL(t *testing.T) {
	reg := newFakeRegistry(t, testBlob())
	s := New(Options{Dir: t.TempDir()})
	m, err := s.Pull(context.Background(), reg.URL+"/org/repo/resolve/main/Tiny-Q8_0.gguf", PullOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if m.Name.Short() != "Tiny-Q8_0:latest" {
		t.Errorf("name %s", m.Name.Short())
	}
	if got, _ := os.ReadFile(m.Path); !bytes.Equal(got, reg.blob) {
		t.Error("content differs")
	}
	// A named pull, and a wrong X-Linked-Etag.
	reg.digest = "sha256:" + strings.Repeat("0", 64)
	if _, err := s.Pull(context.Background(), reg.URL+"/org/repo/resolve/main/x.gguf", PullOptions{Name: "mine"}); !errors.Is(err, ErrDigestMismatch) {
		t.Errorf("bad etag: %v", err)
	}
	for _, ref := range []string{reg.URL + "/org/repo/resolve/main/README.md", "ftp://x/y.gguf", "hf.co/org/repo:Q4_K_M"} {
		if _, err := s.Pull(context.Background(), ref, PullOptions{}); !errors.Is(err, ErrUnsupportedRef) {
			t.Errorf("%s: %v", ref, err)
		}
	}
}
