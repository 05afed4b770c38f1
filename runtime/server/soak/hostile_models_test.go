package soak

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/models"
	"github.com/hearth-llm/hearth/runtime/server"
	"github.com/hearth-llm/hearth/runtime/server/batched"
)

// TestHostileModels serves a folder of broken GGUF files next to a good
// model through the batched runner. Each broken one gets a JSON error
// naming its problem (at load, or for the request that meets it); none
// crashes the process, and the good model answers before, between and
// after them.
func TestHostileModels(t *testing.T) {
	src := testdata.Dir(t, "models")
	f32 := filepath.Join(src, "stories260K-f32.gguf")
	q8 := filepath.Join(src, "stories260K-q8_0.gguf")
	dir := t.TempDir()
	if err := os.Symlink(f32, filepath.Join(dir, "good.gguf")); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(q8)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name string, b []byte) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(dir, name+".gguf"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write("truncated", raw[:len(raw)*3/5])
	write("hugetensor", patchDim(t, raw, "token_embd.weight", 1, 1<<40))
	rawF32, err := os.ReadFile(f32)
	if err != nil {
		t.Fatal(err)
	}
	write("nan", nanWeights(t, rawF32, "blk.0.attn_q.weight"))
	write("shape", rewrite(t, q8, map[string]gguf.Value{"llama.embedding_length": gguf.Uint32(128)}))
	write("hugectx", rewrite(t, q8, map[string]gguf.Value{"llama.context_length": gguf.Uint64(1 << 40)}))
	write("bigctx", rewrite(t, q8, map[string]gguf.Value{"llama.context_length": gguf.Uint32(1 << 24)}))
	write("hugelayers", rewrite(t, q8, map[string]gguf.Value{"llama.block_count": gguf.Uint32(1 << 30)}))
	write("victim", raw)
	write("notgguf", []byte("this is not a model"))

	srv, err := server.New(server.Config{
		Store:        models.New(models.Options{Dir: dir}),
		Load:         batched.Loader(engine.Options{Threads: 2}, engine.BatchConfig{KVBudget: 4 << 20}),
		KeepAlive:    -1,
		MemoryBudget: -1,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(srv.Handler())
	t.Cleanup(func() { hs.Close(); srv.Close() })

	generate := func(model string, opts map[string]any) (int, string) {
		t.Helper()
		body, _ := json.Marshal(map[string]any{"model": model, "prompt": "Once upon a time", "stream": false,
			"options": mergeOpts(map[string]any{"num_predict": 8, "temperature": 0}, opts)})
		resp, err := http.Post(hs.URL+"/api/generate", "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatalf("%s: %v", model, err)
		}
		defer resp.Body.Close()
		var out struct {
			Error    string `json:"error"`
			Response string `json:"response"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&out); err != nil {
			t.Fatalf("%s: status %d, body not JSON: %v", model, resp.StatusCode, err)
		}
		if resp.StatusCode != http.StatusOK {
			return resp.StatusCode, out.Error
		}
		return resp.StatusCode, out.Response
	}
	good := func(when string) {
		t.Helper()
		if code, text := generate("good", nil); code != http.StatusOK || text == "" {
			t.Fatalf("good model %s: %d %q", when, code, text)
		}
	}
	good("first")
	// A model whose file is cut short while it is loaded and mapped: the
	// next request that reads past the new end faults (SIGBUS), which
	// must fail that request only.
	if code, text := generate("victim", nil); code != http.StatusOK || text == "" {
		t.Fatalf("victim before truncation: %d %q", code, text)
	}
	if err := os.Truncate(filepath.Join(dir, "victim.gguf"), 4096); err != nil {
		t.Fatal(err)
	}
	if code, msg := generate("victim", map[string]any{"seed": 2}); code != http.StatusInternalServerError || !strings.Contains(msg, "fault") {
		t.Errorf("victim after truncation: %d %q, want 500 and a model fault", code, msg)
	}
	good("after the victim's fault")

	for _, c := range []struct {
		model string
		opts  map[string]any
		code  int
		want  string // in the error message
	}{
		{"truncated", nil, http.StatusInternalServerError, "past the end"},
		{"hugetensor", nil, http.StatusInternalServerError, "token_embd.weight"},
		{"nan", nil, http.StatusInternalServerError, "non-finite"},
		{"shape", nil, http.StatusInternalServerError, "shape"},
		{"hugectx", nil, http.StatusInternalServerError, "context_length"},
		{"bigctx", map[string]any{"num_ctx": 1 << 24}, http.StatusBadRequest, "num_ctx"},
		{"bigctx", map[string]any{"num_ctx": 1 << 30}, http.StatusBadRequest, "num_ctx"},
		{"hugelayers", nil, http.StatusInternalServerError, "block_count"},
		{"notgguf", nil, http.StatusInternalServerError, "GGUF"},
		{"missing", nil, http.StatusNotFound, "not found"},
	} {
		code, msg := generate(c.model, c.opts)
		t.Logf("%-10s %d %s", c.model, code, msg)
		if code != c.code || !strings.Contains(strings.ToLower(msg), strings.ToLower(c.want)) {
			t.Errorf("%s: %d %q, want %d and an error mentioning %q", c.model, code, msg, c.code, c.want)
		}
		good("after " + c.model)
	}
	// A model with a 16M-token trained context still serves an ordinary
	// request: nothing is sized by the trained context up front.
	if code, text := generate("bigctx", nil); code != http.StatusOK || text == "" {
		t.Errorf("bigctx with the default context: %d %q", code, text)
	}
}

func mergeOpts(a, b map[string]any) map[string]any {
	for k, v := range b {
		a[k] = v
	}
	return a
}

// patchDim overwrites dimension i of tensor name in the file's directory.
func patchDim(t *testing.T, b []byte, name string, i int, v uint64) []byte {
	t.Helper()
	b = bytes.Clone(b)
	// The directory entry: name (u64 length, bytes), n_dims u32, dims u64...
	key := binary.LittleEndian.AppendUint64(nil, uint64(len(name)))
	key = append(key, name...)
	at := bytes.Index(b, key)
	if at < 0 {
		t.Fatalf("tensor %q not in the directory", name)
	}
	binary.LittleEndian.PutUint64(b[at+len(key)+4+8*i:], v)
	return b
}

// nanWeights sets the first 16 values of F32 tensor name to NaN. (In a
// quantized model NaN weights do not reach the logits: quantizing the
// activations that follow turns them into finite garbage, as in ggml.)
func nanWeights(t *testing.T, b []byte, name string) []byte {
	t.Helper()
	b = bytes.Clone(b)
	f, err := gguf.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	ti, ok := f.Tensor(name)
	if !ok {
		t.Fatalf("no tensor %q", name)
	}
	off := int(f.DataOffset + ti.Offset)
	for i := 0; i < 64; i += 4 {
		copy(b[off+i:], []byte{0, 0, 0xc0, 0x7f})
	}
	return b
}

// rewrite copies the model at path with metadata entries replaced.
func rewrite(t *testing.T, path string, set map[string]gguf.Value) []byte {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := gguf.NewWriter()
	w.CopyMetadata(f)
	for k, v := range set {
		w.Set(k, v)
	}
	if err := w.CopyTensors(f); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
