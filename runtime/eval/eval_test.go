package eval

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/runtime/engine"
)

// The figures of llama-perplexity (llama.cpp build of ../shared/tools, no
// AMX) on the same files, made by testdata/make_golden.sh; each testdata
// file starts with its command line.

func load(t *testing.T, name string) LM {
	t.Helper()
	m, err := engine.Load(filepath.Join(testdata.Dir(t, "models"), name), engine.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return Engine(m)
}

func corpus(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("testdata/stories.txt")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// golden reads the first number after the pattern in a testdata file.
func golden(t *testing.T, file, pattern string) float64 {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(pattern + `\s*:?\s*(-?[0-9.]+)`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s: no %q", file, pattern)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func near(t *testing.T, what string, got, want, rel float64) {
	t.Helper()
	d := math.Abs(got-want) / math.Abs(want)
	t.Logf("%s: hearth %.6g, llama-perplexity %.6g (%.3f%%)", what, got, want, 100*d)
	if d > rel {
		t.Errorf("%s: %.6g, llama-perplexity %.6g: off by %.3f%% > %.3f%%", what, got, want, 100*d, 100*rel)
	}
}

// TestEvalPerplexityGolden: the final estimate within 0.5% of
// llama-perplexity's, -c 128, on a trained model and a random one.
func TestEvalPerplexityGolden(t *testing.T) {
	for _, c := range []struct{ model, file string }{
		{"stories260K-f32.gguf", "ppl-stories260K-f32.txt"},
		{"tiny-llama-spm-Q8_0.gguf", "ppl-tiny-llama-spm-Q8_0.txt"},
	} {
		t.Run(c.model, func(t *testing.T) {
			var out bytes.Buffer
			r, err := Perplexity(load(t, c.model), corpus(t), Options{Ctx: 128, Out: &out})
			if err != nil {
				t.Fatal(err)
			}
			near(t, "PPL", r.PPL, golden(t, c.file, `Final estimate: PPL =`), 0.005)
			near(t, "uncertainty", r.Uncertainty, golden(t, c.file, `\+/-`), 0.05)
			near(t, "chunk 1", r.Running[0], golden(t, c.file, `\[1\]`), 0.005)
			if want := int(golden(t, c.file, `calculating perplexity over`)); r.Chunks != want {
				t.Errorf("%d chunks, llama-perplexity %d", r.Chunks, want)
			}
		})
	}
}
