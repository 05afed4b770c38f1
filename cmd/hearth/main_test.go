package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
)

func hearth(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var o, e bytes.Buffer
	code = Main(args, &o, &e)
	return o.String(), e.String(), code
}

func goldenCase(t *testing.T, model, slug string) (prompt string, ids []int, text string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata.Dir(t, "golden"), model, slug+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var c struct {
		Prompt     string `json:"prompt"`
		PromptIDs  []int  `json:"prompt_ids"`
		GreedyText string `json:"greedy_text"`
	}
	if err := json.Unmarshal(b, &c); err != nil {
		t.Fatal(err)
	}
	return c.Prompt, c.PromptIDs, c.GreedyText
}

// TestRunGolden is the user-level check: greedy `hearth run` prints
// llama.cpp's continuation.
func TestRunGolden(t *testing.T) {
	model := filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf")
	prompt, _, want := goldenCase(t, "stories260K-f32", "once-upon-a-time")
	out, errOut, code := hearth(t, "run", model, prompt, "-n", "32", "--temperature", "0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out != want+"\n" {
		t.Errorf("run printed %q\nwant %q", out, want)
	}
}

// TestRunFormat: --format makes run's output a document of the schema
// (or any JSON object for "json"); a bad schema is a usage error.
func TestRunFormat(t *testing.T) {
	model := filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf")
	schema := `{"type":"object","properties":{"name":{"type":"string","maxLength":12},"kind":{"enum":["cat","dog"]}},"required":["name","kind"]}`
	path := filepath.Join(t.TempDir(), "schema.json")
	if err := os.WriteFile(path, []byte(schema), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{schema, "@" + path} {
		out, errOut, code := hearth(t, "run", model, "Once upon a time", "-n", "100", "--temperature", "0", "--format", f)
		var v struct {
			Name *string `json:"name"`
			Kind string  `json:"kind"`
		}
		if code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Name == nil || len(*v.Name) > 12 || (v.Kind != "cat" && v.Kind != "dog") {
			t.Errorf("--format %.20s: exit %d, printed %q (%s)", f, code, out, errOut)
		}
	}
	out, errOut, code := hearth(t, "run", model, "Once upon a time", "-n", "60", "--seed", "3", "--format", "json")
	if code != 0 || !strings.HasPrefix(out, "{") {
		t.Errorf("--format json: exit %d, printed %q (%s)", code, out, errOut)
	}
	if _, errOut, code := hearth(t, "run", model, "x", "--format", `{"type":"nope"}`); code != 2 || !strings.Contains(errOut, "nope") {
		t.Errorf("bad schema: exit %d, %q", code, errOut)
	}
}

// TestRunShape: run --shape generates the synthetic model into the cache
// on first use and runs it (the README's first command, on the tiny
// shape); a bad shape or type is a usage error.
func TestRunShape(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	for i := range 2 { // generated, then cached
		out, errOut, code := hearth(t, "run", "--shape", "tiny", "--quant", "q8_0", "Hello", "-n", "8", "-v")
		if code != 0 || strings.TrimSpace(out) == "" || !strings.Contains(errOut, "generated: 8 tokens") {
			t.Fatalf("run %d: exit %d, printed %q, stderr %q", i, code, out, errOut)
		}
		if wrote := strings.Contains(errOut, "wrote "); wrote != (i == 0) {
			t.Errorf("run %d: generated again: %v (%q)", i, wrote, errOut)
		}
	}
	for _, args := range [][]string{{"--shape", "nope"}, {"--shape", "tiny", "--quant", "q9_9"}} {
		if _, errOut, code := hearth(t, append([]string{"run"}, append(args, "x")...)...); code != 2 {
			t.Errorf("%v: exit %d, %q", args, code, errOut)
		}
	}
}

func TestTokenizeGolden(t *testing.T) {
	models := testdata.Dir(t, "models")
	for _, m := range []string{"stories260K-f32", "tiny-llama-bpe-Q4_0", "tiny-llama-spm-Q4_0"} {
		prompt, ids, _ := goldenCase(t, m, "multilingual")
		out, errOut, code := hearth(t, "tokenize", filepath.Join(models, m+".gguf"), prompt)
		if code != 0 {
			t.Fatalf("%s: exit %d: %s", m, code, errOut)
		}
		var want []string
		for _, id := range ids {
			want = append(want, strconv.Itoa(id))
		}
		if got := strings.TrimSpace(out); got != strings.Join(want, " ") {
			t.Errorf("%s: tokenize printed %q, want %q", m, got, strings.Join(want, " "))
		}
	}
}

func TestTokenizeVocabOnly(t *testing.T) {
	vocab := filepath.Join(testdata.Dir(t, "vocab"), "ggml-vocab-llama-spm.gguf")
	out, errOut, code := hearth(t, "tokenize", "--no-special", vocab, "Hello world")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.TrimSpace(out) != "15043 3186" {
		t.Errorf("got %q, want \"15043 3186\"", out)
	}
	out, _, _ = hearth(t, "tokenize", "--verbose", vocab, "Hello")
	if !strings.HasPrefix(out, "1 15043\n") || !strings.Contains(out, `" Hello"`) {
		t.Errorf("verbose output %q", out)
	}
}

func TestShow(t *testing.T) {
	model := filepath.Join(testdata.Dir(t, "models"), "tiny-llama-bpe-Q4_0.gguf")
	out, errOut, code := hearth(t, "show", model)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"architecture", "llama", "parameters", "Q4_0", "context_length", "2048", "gpt2", "llama-bpe", "<|start_header_id|>"} {
		if !strings.Contains(out, want) {
			t.Errorf("show output lacks %q:\n%s", want, out)
		}
	}
	out, _, _ = hearth(t, "show", "--verbose", model)
	if !strings.Contains(out, "blk.0.attn_q.weight") {
		t.Error("show --verbose lacks the tensor table")
	}
}

// TestErrors: bad input gives one clear line on stderr and a non-zero exit.
func TestErrors(t *testing.T) {
	vocabDir := testdata.Dir(t, "vocab")
	dir := t.TempDir()
	garbage := filepath.Join(dir, "garbage.gguf")
	os.WriteFile(garbage, []byte("not a gguf file at all"), 0o644)
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"run", filepath.Join(dir, "missing.gguf"), "hi"}, 1, "no such file"},
		{[]string{"run", garbage, "hi"}, 1, "magic"},
		{[]string{"run", filepath.Join(vocabDir, "ggml-vocab-gpt-2.gguf"), "hi"}, 1, `unsupported architecture "gpt2"`},
		{[]string{"run", filepath.Join(vocabDir, "ggml-vocab-llama-spm.gguf"), "hi"}, 1, "missing"},
		{[]string{"run"}, 2, "missing MODEL"},
		{[]string{"run", garbage, "hi", "--temperature", "-1"}, 2, "temperature"},
		{[]string{"frobnicate"}, 2, "unknown command"},
		{[]string{"show", filepath.Join(dir, "missing.gguf")}, 1, "no such file"},
	}
	for _, c := range cases {
		_, errOut, code := hearth(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.want) {
			t.Errorf("hearth %v: exit %d, stderr %q; want exit %d mentioning %q", c.args, code, errOut, c.code, c.want)
		}
		if c.code == 1 && strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("hearth %v: want one line on stderr, got %q", c.args, errOut)
		}
	}
}

// TestShowGPU: show --gpu lists the GPUs NVML sees, or says why there are
// none (this machine has none, or the build has no cgo), and exits 0.
func TestShowGPU(t *testing.T) {
	out, errOut, code := hearth(t, "show", "--gpu")
	if code != 0 || !strings.HasPrefix(out, "GPU\n  ") {
		t.Fatalf("exit %d, printed %q (%s)", code, out, errOut)
	}
	if strings.Contains(out, "none") && !strings.Contains(out, "no CUDA device") {
		t.Errorf("no reason given: %q", out)
	}
}
