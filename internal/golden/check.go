package golden

import (
	"fmt"
	"math"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// Result is how one model × prompt compared with llama.cpp.
type Result struct {
	WorstLast, WorstTop float32 // max |Δ| over last_logits, over every top-10 entry
	Same, Total         int     // greedy tokens matched before the first near tie, of
	Outliers, Rows      int     // rows (positions and steps) past twice the tolerance, of
}

// IsMoE says whether a golden model is a mixture of experts, whose router
// flips at near-tied positions (llama.cpp's own batch and one-token paths
// differ there: shared/arch/README.md).
func IsMoE(model string) bool {
	return strings.Contains(model, "moe") || strings.Contains(model, "MOE") || strings.HasPrefix(model, "gpt-oss")
}

// RunModels runs every model × prompt golden case under casesDir (models
// in modelsDir) on the backend be, holding each model to Check, and logs
// a line per model.
func RunModels(t *testing.T, casesDir, modelsDir string, be backend.Backend) {
	RunModelsWith(t, casesDir, modelsDir, be, Tolerance)
}

// RunModelsScaled is RunModels with every tolerance multiplied by scale:
// for backends whose arithmetic departs further from llama.cpp's CPU than
// Hearth's CPU does (CUDA's tensor-core prefill rounds its inputs to f16),
// so that their checks stay meaningful rather than skipped.
func RunModelsScaled(t *testing.T, casesDir, modelsDir string, be backend.Backend, scale float32) {
	RunModelsWith(t, casesDir, modelsDir, be, func(m string) float32 { return scale * Tolerance(m) })
}

// RunModelsWith is RunModels with the tolerances of tol (ToleranceCUDA
// for the CUDA backend).
func RunModelsWith(t *testing.T, casesDir, modelsDir string, be backend.Backend, tol func(model string) float32) {
	cases, err := Load(casesDir)
	if err != nil {
		t.Fatal(err)
	}
	byModel := map[string][]*Case{}
	for _, c := range cases {
		byModel[c.Model] = append(byModel[c.Model], c)
	}
	names := make([]string, 0, len(byModel))
	for n := range byModel {
		names = append(names, n)
	}
	sort.Strings(names)
	if len(names) == 0 {
		t.Fatal("no golden cases found in " + casesDir)
	}
	var report []string
	for _, name := range names {
		t.Run(name, func(t *testing.T) {
			f, err := gguf.Open(filepath.Join(modelsDir, name+".gguf"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := arch.Load(f, be)
			if err != nil {
				t.Fatal(err)
			}
			tol := tol(name)
			var sum Result
			for _, c := range byModel[name] {
				r := Check(t, m, c, tol, IsMoE(name))
				sum.WorstLast, sum.WorstTop = max(sum.WorstLast, r.WorstLast), max(sum.WorstTop, r.WorstTop)
				sum.Same, sum.Total = sum.Same+r.Same, sum.Total+r.Total
				sum.Outliers, sum.Rows = sum.Outliers+r.Outliers, sum.Rows+r.Rows
			}
			// llama.cpp's own batch and one-token paths disagree on 0.9% of
			// gpt-oss's paragraph rows (shared/arch/README.md): allow 1.5%.
			if moe := IsMoE(name); moe && sum.Outliers > sum.Rows*3/200 {
				t.Errorf("%d of %d rows past twice the tolerance: more than the 1.5%% a mixture's router near-ties explain", sum.Outliers, sum.Rows)
			}
			line := fmt.Sprintf("%-26s tol %.2f  max|Δ| last_logits %.4f  top-10 %.4f  rows past 2×tol %d/%d  greedy matched %d/%d",
				name, tol, sum.WorstLast, sum.WorstTop, sum.Outliers, sum.Rows, sum.Same, sum.Total)
			report = append(report, line)
			t.Log(line)
		})
	}
	t.Log("summary:\n" + strings.Join(report, "\n"))
}

func argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}

func margin(top []Pair) float32 { return top[0].Logit - top[1].Logit }

// Check runs c's prompt through m in one batch and its greedy
// continuation one token at a time, and holds the logits to llama.cpp's:
// last_logits within tol, every row's top-10 within twice tol, top-1s
// equal where llama.cpp's margin exceeds tol, greedy tokens equal up to
// the first near tie. A mixture of experts (moe) may have a few rows past
// twice the tolerance, where a near-tied router picks other experts than
// llama.cpp did (RunModels allows 1.5% of a model's rows).
func Check(t testing.TB, m arch.Model, c *Case, tol float32, moe bool) (r Result) {
	t.Helper()
	vocab := m.Info().VocabSize
	if vocab != c.NVocab {
		t.Fatalf("%s: vocab %d, golden %d", c.Slug, vocab, c.NVocab)
	}
	kv, err := m.NewKV(2048)
	if err != nil {
		t.Fatal(err)
	}
	n := len(c.PromptIDs)
	logits, err := m.Forward(arch.Single(c.PromptIDs, 0, kv, true))
	if err != nil {
		t.Fatal(err)
	}
	var firstOutlier string
	checkTop := func(where string, row []float32, top []Pair) {
		r.Rows++
		bad := false
		for _, p := range top {
			d := float32(math.Abs(float64(row[p.ID] - p.Logit)))
			r.WorstTop = max(r.WorstTop, d)
			if d > 2*tol && !bad {
				bad = true
				r.Outliers++
				if firstOutlier == "" {
					firstOutlier = fmt.Sprintf("%s %s: logit of token %d is %.5f, llama.cpp %.5f (|Δ| %.4f > 2×%.2f)", c.Slug, where, p.ID, row[p.ID], p.Logit, d, tol)
				}
			}
		}
		if got := argmax(row); got != top[0].ID && margin(top) > tol && !bad {
			t.Errorf("%s %s: top-1 %d, llama.cpp %d with margin %.4f", c.Slug, where, got, top[0].ID, margin(top))
		}
	}
	for i := 0; i < n; i++ {
		checkTop(fmt.Sprintf("prompt position %d", i), logits[i*vocab:(i+1)*vocab], c.PromptTop10[i])
	}
	lastRow := logits[(n-1)*vocab : n*vocab]
	for i, want := range c.LastLogits {
		r.WorstLast = max(r.WorstLast, float32(math.Abs(float64(lastRow[i]-want))))
	}
	if r.WorstLast > tol && !(moe && r.Outliers > 0) {
		t.Errorf("%s: last_logits max|Δ| %.4f > %.2f", c.Slug, r.WorstLast, tol)
	}

	// Greedy continuation, one token per step, compared until the first
	// step whose llama.cpp top-1/top-2 margin is within the tolerance.
	row := append([]float32(nil), lastRow...)
	tops := append([][]Pair{c.PromptTop10[n-1]}, c.GreedyStepTop10...)
	r.Total = len(c.GreedyIDs)
	for k, want := range c.GreedyIDs {
		if k > 0 {
			checkTop(fmt.Sprintf("greedy step %d", k), row, tops[k])
		}
		got := argmax(row)
		if got != want {
			if margin(tops[k]) > tol && !moe {
				t.Errorf("%s: greedy token %d is %d, llama.cpp %d (margin %.4f)", c.Slug, k, got, want, margin(tops[k]))
			}
			break
		}
		r.Same++
		if k == len(c.GreedyIDs)-1 {
			break
		}
		out, err := m.Forward(arch.Single([]int32{got}, n+k, kv, false))
		if err != nil {
			t.Fatal(err)
		}
		copy(row, out)
	}
	if r.Outliers > 0 && !moe {
		t.Errorf("%s: %d of %d rows past twice the tolerance; the first: %s", c.Slug, r.Outliers, r.Rows, firstOutlier)
	} else if r.Outliers > 0 {
		t.Logf("%s: %d of %d rows past twice the tolerance (router near-ties?); the first: %s", c.Slug, r.Outliers, r.Rows, firstOutlier)
	}
	return r
}
