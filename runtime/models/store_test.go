package models

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
)

// writeGGUF writes a tiny valid GGUF file (metadata and one F32 tensor).
func writeGGUF(t *testing.T, path string) []byte {
	t.Helper()
	w := gguf.NewWriter()
	w.Set("general.architecture", gguf.String("llama"))
	w.Set("general.file_type", gguf.Uint32(0))
	w.Set("llama.context_length", gguf.Uint32(512))
	w.Set("tokenizer.chat_template", gguf.String("{{ messages }}"))
	w.Set("tokenizer.ggml.tokens", gguf.ArrayValue(make([]string, 100)))
	w.Set("tokenizer.ggml.scores", gguf.ArrayValue([]float32{0, 1}))
	data := make([]byte, 4*8*4)
	if err := w.AddTensor("token_embd.weight", quant.F32, []uint64{8, 4}, data); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// ollamaStore lays out an Ollama store with one model, as Ollama writes it.
func ollamaStore(t *testing.T, root, host, ns, model, tag string, gguf []byte, params string) string {
	t.Helper()
	blob := func(b []byte) layer {
		sum := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(sum[:])
		p := filepath.Join(root, "blobs", "sha256-"+hex.EncodeToString(sum[:]))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		return layer{Digest: d, Size: int64(len(b))}
	}
	ml := blob(gguf)
	ml.MediaType = mediaModel
	pl := blob([]byte(params))
	pl.MediaType = mediaParams
	sl := blob([]byte("You are terse."))
	sl.MediaType = mediaSystem
	cfg := blob([]byte("{}"))
	cfg.MediaType = "application/vnd.docker.container.image.v1+json"
	mf := manifest{SchemaVersion: 2, MediaType: manifestV2, Config: cfg, Layers: []layer{ml, pl, sl}}
	b, _ := json.Marshal(mf)
	p := filepath.Join(root, "manifests", host, ns, model, tag)
	os.MkdirAll(filepath.Dir(p), 0o755)
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func names(ms []Model) []string {
	var out []string
	for _, m := range ms {
		out = append(out, m.Name.Short()+"@"+string(m.Source))
	}
	return out
}

func TestStoreListResolve(t *testing.T) {
	dir, odir := t.TempDir(), t.TempDir()
	g := writeGGUF(t, filepath.Join(dir, "tiny.gguf"))
	writeGGUF(t, filepath.Join(dir, "tiny:q8.gguf"))
	writeGGUF(t, filepath.Join(dir, "alice", "story.gguf"))
	os.WriteFile(filepath.Join(dir, "not a name.gguf"), g, 0o644)
	os.WriteFile(filepath.Join(dir, "notes.txt"), []byte("x"), 0o644)
	os.WriteFile(filepath.Join(dir, "half.gguf.partial"), []byte("x"), 0o644)
	ollamaStore(t, odir, DefaultHost, DefaultNamespace, "llama3.2", "1b", g, `{"stop":["<|eot_id|>"],"temperature":0.6}`)
	ollamaStore(t, odir, DefaultHost, DefaultNamespace, "tiny", "latest", g, `{}`) // hidden by Hearth's tiny
	ollamaStore(t, odir, "example.com", "bob", "m", "v1", g, `{}`)
	s := New(Options{Dir: dir, OllamaDir: odir})

	all, err := s.List()
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"alice/story:latest@hearth", "example.com/bob/m:v1@ollama", "llama3.2:1b@ollama", "tiny:latest@hearth", "tiny:q8@hearth"}
	if got := names(all); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("List: %v\nwant %v", got, want)
	}

	for _, c := range []struct{ name, source, file string }{
		{"tiny", "hearth", "tiny.gguf"},
		{"tiny:latest", "hearth", "tiny.gguf"},
		{"TINY:Latest", "hearth", "tiny.gguf"},
		{"registry.ollama.ai/library/tiny:latest", "hearth", "tiny.gguf"},
		{"tiny:q8", "hearth", "tiny:q8.gguf"},
		{"alice/story", "hearth", "story.gguf"},
		{"llama3.2:1b", "ollama", ""},
		{"example.com/bob/m:v1", "ollama", ""},
	} {
		m, err := s.Resolve(c.name)
		if err != nil {
			t.Errorf("Resolve(%q): %v", c.name, err)
			continue
		}
		if string(m.Source) != c.source || (c.file != "" && filepath.Base(m.Path) != c.file) {
			t.Errorf("Resolve(%q) = %s %s", c.name, m.Source, m.Path)
		}
	}
	m, err := s.Resolve("llama3.2:1b")
	if err != nil {
		t.Fatal(err)
	}
	if m.System != "You are terse." || m.Params["temperature"] != 0.6 || !strings.HasPrefix(m.Digest, "sha256:") || m.Size != int64(len(g)) {
		t.Errorf("Ollama model: %+v", m)
	}
	if _, err := s.Resolve("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown model: %v", err)
	}

	info, err := s.Describe(m)
	if err != nil {
		t.Fatal(err)
	}
	if info.Arch != "llama" || info.QuantizationLevel != "F32" || info.ContextLength != 512 || info.Params != 32 || info.ParameterSize != "32" {
		t.Errorf("Describe: %+v", info)
	}
	meta, tensors, err := s.Metadata(m, false)
	if err != nil {
		t.Fatal(err)
	}
	if meta["tokenizer.ggml.tokens"] != nil || meta["llama.context_length"] != uint32(512) || len(tensors) != 0 {
		t.Errorf("Metadata: %v %v", meta, tensors)
	}
	if _, err := json.Marshal(meta); err != nil {
		t.Error(err)
	}
	meta, tensors, _ = s.Metadata(m, true)
	if len(meta["tokenizer.ggml.tokens"].([]string)) != 100 || len(tensors) != 1 || tensors[0].Type != "F32" {
		t.Errorf("verbose Metadata: tensors %v", tensors)
	}
}

func TestStoreDeleteCopy(t *testing.T) {
	dir, odir := t.TempDir(), t.TempDir()
	g := writeGGUF(t, filepath.Join(dir, "a.gguf"))
	ollamaStore(t, odir, DefaultHost, DefaultNamespace, "o", "latest", g, `{}`)
	s := New(Options{Dir: dir, OllamaDir: odir})

	if _, err := s.Copy("a", "b:v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Copy("o", "ns/c"); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"b:v2.gguf", "ns/c.gguf"} {
		if b, err := os.ReadFile(filepath.Join(dir, f)); err != nil || len(b) != len(g) {
			t.Errorf("copy %s: %v", f, err)
		}
	}
	if err := s.Delete("o"); !errors.Is(err, ErrReadOnly) {
		t.Errorf("delete from the Ollama store: %v", err)
	}
	if err := s.Delete("b:v2"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Resolve("b:v2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted model resolves: %v", err)
	}
	if err := s.Delete("b:v2"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
}

// TestPathTraversal: no name reaches a file outside the folders.
func TestPathTraversal(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "models")
	writeGGUF(t, filepath.Join(root, "secret.gguf"))
	writeGGUF(t, filepath.Join(root, "models", "ok.gguf"))
	os.MkdirAll(filepath.Join(root, "ollama", "manifests"), 0o755)
	s := New(Options{Dir: dir, OllamaDir: filepath.Join(root, "ollama")})
	for _, name := range []string{
		"../secret", "..", "../../etc/passwd", "/etc/passwd", "a/../../secret", "./secret",
		`..\secret`, "C:/secret", "ok\x00", "ok/..", ".hidden", "-rf", "a//b",
		"a/b/c/d", "ok:../x", "ok:..", "%2e%2e/secret", "ok\nx", "ok x", "..:latest",
		strings.Repeat("a", 600), "",
	} {
		if _, err := s.Resolve(name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Resolve(%q): %v, want ErrInvalidName", name, err)
		}
		if err := s.Delete(name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Delete(%q): %v", name, err)
		}
		if _, err := s.Copy("ok", name); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Copy(ok, %q): %v", name, err)
		}
	}
	if _, err := os.Stat(filepath.Join(root, "secret.gguf")); err != nil {
		t.Fatal("the file outside was touched")
	}
	if _, err := pathIn(dir, "../x"); err == nil {
		t.Error("pathIn accepted ../x")
	}
}

func TestParseName(t *testing.T) {
	for _, c := range []struct{ in, full, short string }{
		{"llama3.2", "registry.ollama.ai/library/llama3.2:latest", "llama3.2:latest"},
		{"llama3.2:1b", "registry.ollama.ai/library/llama3.2:1b", "llama3.2:1b"},
		{"user/m:q4_K_M", "registry.ollama.ai/user/m:q4_K_M", "user/m:q4_K_M"},
		{"localhost:5000/user/m", "localhost:5000/user/m:latest", "localhost:5000/user/m:latest"},
		{"Stories260K-f32", "registry.ollama.ai/library/Stories260K-f32:latest", "Stories260K-f32:latest"},
	} {
		n, err := ParseName(c.in)
		if err != nil {
			t.Errorf("%q: %v", c.in, err)
			continue
		}
		if n.String() != c.full || n.Short() != c.short {
			t.Errorf("%q: %s, %s", c.in, n, n.Short())
		}
	}
}

func TestHumanNumber(t *testing.T) {
	for n, want := range map[uint64]string{292800: "293K", 8e9: "8B", 8.03e9: "8.0B", 1236000: "1.24M", 135e6: "135M", 12: "12"} {
		if got := HumanNumber(n); got != want {
			t.Errorf("%d: %q, want %q", n, got, want)
		}
	}
}
