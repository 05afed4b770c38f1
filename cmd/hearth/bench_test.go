package main

import (
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"
)

func TestBenchShapeJSON(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	out, errOut, code := hearth(t, "bench", "--shape", "tiny", "--quant", "q4_0,q4_k_m", "-p", "8", "-n", "3",
		"-r", "2", "-t", "2", "--parallel", "2", "-o", "json", "--bandwidth-mib", "8")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var rs []map[string]any
	if err := json.Unmarshal([]byte(out), &rs); err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if len(rs) != 6 {
		t.Fatalf("%d results, want 2 models × (pp8, tg3, tg3 x2)", len(rs))
	}
	for _, r := range rs {
		for _, f := range []string{"model_filename", "model_type", "model_size", "model_n_params", "n_threads",
			"n_prompt", "n_gen", "avg_ts", "stddev_ts", "samples_ts"} {
			if _, ok := r[f]; !ok {
				t.Errorf("result lacks %q: %v", f, r)
			}
		}
		if r["n_threads"].(float64) != 2 || len(r["samples_ts"].([]any)) != 2 {
			t.Errorf("threads %v, samples %v", r["n_threads"], r["samples_ts"])
		}
	}
	if rs[0]["model_type"] != "llama 3M Q4_0" || rs[3]["model_type"] != "llama 3M Q4_K - Medium" {
		t.Errorf("model types %v, %v", rs[0]["model_type"], rs[3]["model_type"])
	}
	if !strings.HasSuffix(rs[0]["model_filename"].(string), filepath.Join("hearth", "models", "tiny-q4_0.gguf")) {
		t.Errorf("model file %v", rs[0]["model_filename"])
	}
}

func TestBenchMarkdown(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	if _, e, code := hearth(t, "gen", "--shape", "tiny", "--quant", "q8_0", "-o", path); code != 0 {
		t.Fatal(e)
	}
	out, errOut, code := hearth(t, "bench", "-m", path, "-p", "4", "-n", "2", "-r", "1", "-t", "1", "--bandwidth-mib", "8")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{"CPU: ", "cores", "SIMD", "memory bandwidth: read", "| model", "llama 3M Q8_0", "pp4", "tg2", "% of"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	out, _, code = hearth(t, "bench", "-m", path, "-p", "0", "-n", "2", "-r", "1", "-o", "csv", "--bandwidth-mib", "0")
	if code != 0 || !strings.HasPrefix(out, "build_commit,") || strings.Count(out, "\n") != 2 {
		t.Errorf("csv (exit %d):\n%s", code, out)
	}
}

func TestBenchErrors(t *testing.T) {
	dir := t.TempDir()
	cases := []struct {
		args []string
		code int
		want string
	}{
		{[]string{"bench"}, 2, "want -m FILE or --shape NAME"},
		{[]string{"bench", "-m", "x.gguf", "-o", "xml"}, 2, `-o "xml"`},
		{[]string{"bench", "-m", "x.gguf", "-r", "0"}, 2, "-r and -b"},
		{[]string{"bench", "-m", "x.gguf", "-p", "-3"}, 2, "negative"},
		{[]string{"bench", "--shape", "llama-9z"}, 1, `unknown shape "llama-9z"`},
		{[]string{"bench", "--shape", "tiny", "--quant", "q4_9"}, 1, `unknown quantization "q4_9"`},
		{[]string{"bench", "-m", filepath.Join(dir, "missing.gguf"), "--bandwidth-mib", "0"}, 1, "no such file"},
		{[]string{"bench", "extra"}, 2, "unexpected argument"},
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
