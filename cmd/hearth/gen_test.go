package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/loader/gguf"
)

func TestGenList(t *testing.T) {
	out, errOut, code := hearth(t, "gen", "--list")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"llama-1b", "llama-8b", "llama3-8b", "2048", "14336", "128256", "separate", "q4_k_m", "iq4_xs",
		"qwen3-8b", "gemma3-4b", "qwen3-30b-a3b", "gpt-oss-20b", "moe-3b-a0.6b", "8 of 128 × 768", "30.53B", "3.35B", "gpt-oss", "mxfp4_moe"} {
		if !strings.Contains(out, want) {
			t.Errorf("gen --list lacks %q:\n%s", want, out)
		}
	}
}

func TestGenFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	out, errOut, code := hearth(t, "gen", "--shape", "tiny", "--quant", "Q4_K_M", "-o", path, "-t", "2", "--progress", "never")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if strings.TrimSpace(out) != path {
		t.Errorf("stdout %q, want the path", out)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if ft, _ := f.Uint("general.file_type"); ft != 15 {
		t.Errorf("file type %d, want 15 (Q4_K_M)", ft)
	}
	// The progress bar, forced on, goes to stderr only.
	path2 := filepath.Join(t.TempDir(), "m2.gguf")
	out, errOut, code = hearth(t, "gen", "--shape", "tiny", "--quant", "q4_0", "-o", path2, "--progress", "always")
	if code != 0 || strings.TrimSpace(out) != path2 || !strings.Contains(errOut, "gen tiny q4_0") {
		t.Errorf("--progress always: exit %d, stdout %q, stderr %q", code, out, errOut)
	}
	out, _, code = hearth(t, "show", path)
	if code != 0 || !strings.Contains(out, "Q4_K_M") || !strings.Contains(out, "synthetic tiny") {
		t.Errorf("show: exit %d\n%s", code, out)
	}
}

func TestGenCache(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("XDG_CACHE_HOME", cache)
	want := filepath.Join(cache, "hearth", "models")
	out, errOut, code := hearth(t, "gen", "--shape", "tiny", "--quant", "q4_0,q8_0")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	paths := strings.Fields(out)
	if len(paths) != 2 || paths[0] != filepath.Join(want, "tiny-q4_0.gguf") || paths[1] != filepath.Join(want, "tiny-q8_0.gguf") {
		t.Fatalf("paths %q", paths)
	}
	if !strings.Contains(errOut, "wrote") {
		t.Errorf("stderr %q: want a 'wrote' line", errOut)
	}
	st, _ := os.Stat(paths[0])
	// A second run reuses the cached file: nothing written.
	_, errOut, code = hearth(t, "gen", "--shape", "tiny", "--quant", "q4_0")
	st2, _ := os.Stat(paths[0])
	if code != 0 || strings.Contains(errOut, "wrote") || !st2.ModTime().Equal(st.ModTime()) {
		t.Errorf("second gen rewrote the cached file (exit %d, %q)", code, errOut)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("cached file mode %v, want 0644", st.Mode().Perm())
	}
}

func TestGenErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"gen"}, 2, "want --shape and --quant"},
		{[]string{"gen", "--shape", "tiny"}, 2, "want --shape and --quant"},
		{[]string{"gen", "--shape", "llama-9z", "--quant", "q4_0"}, 1, `unknown shape "llama-9z"`},
		{[]string{"gen", "--shape", "tiny", "--quant", "q4_9"}, 1, `unknown quantization "q4_9"`},
		{[]string{"gen", "--shape", "tiny", "--quant", "q4_0,q8_0", "-o", filepath.Join(dir, "x")}, 2, "one --quant"},
		{[]string{"gen", "--shape", "tiny", "--quant", "q4_0", "--progress", "sometimes"}, 2, "--progress"},
		{[]string{"gen", "--shape", "tiny", "--quant", "q4_0", "-o", filepath.Join(dir, "no", "x.gguf")}, 1, "no such file"},
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
