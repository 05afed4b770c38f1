package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/eval"
	"github.com/hearth-llm/hearth/runtime/lora"
)

const evalText = "../../runtime/eval/testdata/stories.txt"

// TestEvalPerplexityCLI: `hearth eval perplexity` prints llama-perplexity's
// lines, its final estimate within 0.5% of llama-perplexity's (4.6827,
// runtime/eval/testdata/ppl-stories260K-f32.txt), and the same in JSON.
func TestEvalPerplexityCLI(t *testing.T) {
	model := filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf")
	out, errOut, code := hearth(t, "eval", "perplexity", model, "-f", evalText, "-c", "128", "-t", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	m := regexp.MustCompile(`(?m)^\[1\][0-9.]+,.*\[25\][0-9.]+,\nFinal estimate: PPL = ([0-9.]+) \+/- ([0-9.]+)\n$`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("printed:\n%s", out)
	}
	if ppl, _ := strconv.ParseFloat(m[1], 64); math.Abs(ppl-4.6827)/4.6827 > 0.005 {
		t.Errorf("PPL %v, llama-perplexity 4.6827", ppl)
	}
	out, errOut, code = hearth(t, "eval", "perplexity", model, "-f", evalText, "-c", "128", "--chunks", "2", "--output", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var r struct {
		PPL, Uncertainty float64
		Chunks, Tokens   int
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || r.Chunks != 2 || r.Tokens != 2*63 || r.PPL < 3 || r.PPL > 4.5 || r.Uncertainty <= 0 {
		t.Errorf("json %+v (%v):\n%s", r, err, out)
	}
}

// TestEvalGateExitCodes: 0 when every gate passes, 1 with one line naming
// the gate, the figure and the limit when one fails (a Q2_K file against
// its Q8_0 reference: mean KLD about 0.037), 2 for usage and input errors.
func TestEvalGateExitCodes(t *testing.T) {
	dir := testdata.Dir(t, "models")
	q8, q2 := filepath.Join(dir, "tiny-llama-spm-Q8_0.gguf"), filepath.Join(dir, "tiny-llama-spm-Q2_K.gguf")
	base := filepath.Join(t.TempDir(), "q8.kld")
	if _, errOut, code := hearth(t, "eval", "perplexity", q8, "-f", evalText, "-c", "128", "--chunks", "4", "--save-logits", base); code != 0 {
		t.Fatalf("saving the base: exit %d: %s", code, errOut)
	}
	_, errOut, code := hearth(t, "eval", "perplexity", q2, "--kl-divergence", base, "--max-kld", "0.01", "--max-ppl-ratio", "2")
	if code != 1 || !regexp.MustCompile(`(?m)^hearth eval: gate failed: mean KLD 0\.0[34]\d* > --max-kld 0\.01\n$`).MatchString(errOut) {
		t.Errorf("Q2_K against Q8_0, --max-kld 0.01: exit %d, stderr %q", code, errOut)
	}
	out, errOut, code := hearth(t, "eval", "perplexity", q2, "--kl-divergence", base, "--max-kld", "0.1", "--max-ppl-ratio", "1.1", "--output", "json")
	if code != 0 {
		t.Errorf("--max-kld 0.1: exit %d: %s", code, errOut)
	}
	var s struct {
		KLD     struct{ Value float64 }
		SameTop struct{ Value float64 } `json:"same_top"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil || s.KLD.Value < 0.02 || s.KLD.Value > 0.06 {
		t.Errorf("json %+v (%v)", s, err)
	}

	suite := filepath.Join("testdata", "eval-suite.jsonl")
	stories := filepath.Join(dir, "stories260K-f32.gguf")
	bad := filepath.Join(t.TempDir(), "bad.kld")
	os.WriteFile(bad, []byte("not logits"), 0o644)
	for _, c := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"eval"}, 2, "missing"},
		{[]string{"eval", "frobnicate"}, 2, "unknown eval command"},
		{[]string{"eval", "perplexity", q8, "--no-such-flag"}, 2, "unknown flag"},
		{[]string{"eval", "perplexity", q8}, 2, "-f TEXT"},
		{[]string{"eval", "perplexity", q8, "-f", "no-such.txt"}, 2, "no-such.txt"},
		{[]string{"eval", "perplexity", "no-such.gguf", "-f", evalText}, 2, "no-such.gguf"},
		{[]string{"eval", "perplexity", q8, "-f", evalText, "--max-kld", "0.1"}, 2, "need --kl-divergence"},
		{[]string{"eval", "perplexity", q8, "--kl-divergence", bad}, 2, "log-probabilities"},
		{[]string{"eval", "perplexity", stories, "--kl-divergence", base}, 2, "vocabulary"},
		{[]string{"eval", "perplexity", q8, "-f", evalText, "-c", "4096"}, 2, "too short"},
		{[]string{"eval", "perplexity", q8, "-f", evalText, "--output", "xml"}, 2, "--output"},
		{[]string{"eval", "suite", stories, "no-such.jsonl"}, 2, "no-such.jsonl"},
		{[]string{"eval", "suite", "--url", "http://127.0.0.1:1", suite}, 2, "--model"},
		{[]string{"eval", "suite", "--url", "http://127.0.0.1:1", "--model", "m", suite}, 2, "every request failed"},
		{[]string{"eval", "suite", stories, "testdata/eval-suite.jsonl", "--min-pass", "80", "-t", "2"}, 0, ""},
		{[]string{"eval", "suite", stories, "testdata/eval-suite.jsonl", "--min-pass", "90", "-t", "2"}, 1, "gate failed: pass rate % 83.33 < --min-pass 90"},
	} {
		_, errOut, code := hearth(t, c.args...)
		if code != c.code || !strings.Contains(errOut, c.msg) {
			t.Errorf("%v: exit %d, stderr %q; want %d and %q", c.args, code, errOut, c.code, c.msg)
		}
	}
}

// TestEvalSuiteCLI: a suite against the stories model served in process:
// per-case verdicts (the tool call forced by tool_choice, the JSON by
// response_format) and the pass rate; one case fails on purpose.
func TestEvalSuiteCLI(t *testing.T) {
	model := filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf")
	out, errOut, code := hearth(t, "eval", "suite", model, "testdata/eval-suite.jsonl", "-t", "2")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "PASS  lily\nPASS  exact\nPASS  regex\nPASS  json\nPASS  tool\nFAIL  tim: answer \", there was a little girl named Lily. She\" does not contain \"Tim\"\npassed 5/6 (83.3%)\n"
	if out != want {
		t.Errorf("printed:\n%s\nwant:\n%s", out, want)
	}
}

// writeTestAdapter writes a random LoRA adapter (rank 8 on attention and
// FFN) for the model at path and returns its file.
func writeTestAdapter(t *testing.T, path string, seed uint64) string {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w, err := lora.Random(f, lora.RandomOptions{Seed: seed, Rank: 8, Alpha: 16, Parts: lora.AttnFFN, StdB: 0.01})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "adapter.gguf")
	if err := w.WriteFile(out); err != nil {
		t.Fatal(err)
	}
	return out
}

// TestEvalLoRA: `hearth eval perplexity --lora` scores the model with the
// adapter applied: the PPL differs from the bare model's and equals the
// engine's with the adapter (eval.EngineAdapter); the KL-divergence of
// the adapted model from the bare one's saved logits is above zero, and
// the bare model's own is zero. A bad --lora is a usage error (exit 2).
func TestEvalLoRA(t *testing.T) {
	model := filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf")
	ad := writeTestAdapter(t, model, 7)
	base := filepath.Join(t.TempDir(), "base.kld")
	ppl := func(args ...string) float64 {
		t.Helper()
		out, errOut, code := hearth(t, append([]string{"eval", "perplexity", model, "-f", evalText, "-c", "128", "--chunks", "2", "-t", "2", "--output", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		var r struct{ PPL float64 }
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r.PPL
	}
	bare, adapted := ppl("--save-logits", base), ppl("--lora", ad+":1.5")

	m, err := engine.Load(model, engine.Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if err := m.LoadAdapter("x", ad, 1.5); err != nil {
		t.Fatal(err)
	}
	text, _ := os.ReadFile(evalText)
	want, err := eval.Perplexity(eval.EngineAdapter(m, "x"), string(text), eval.Options{Ctx: 128, Chunks: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("PPL bare %.4f, with the adapter %.4f", bare, adapted)
	if adapted == bare || math.Abs(adapted-want.PPL) > 1e-9*want.PPL {
		t.Errorf("PPL with the adapter %v, without %v, the engine's with it %v", adapted, bare, want.PPL)
	}
	kld := func(args ...string) float64 {
		t.Helper()
		out, errOut, code := hearth(t, append([]string{"eval", "perplexity", model, "--kl-divergence", base, "-t", "2", "--output", "json"}, args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		var r struct{ KLD struct{ Value float64 } }
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatal(err)
		}
		return r.KLD.Value
	}
	k0, k1 := kld(), kld("--lora", ad)
	t.Logf("mean KLD bare %.6f, with the adapter %.6f", k0, k1)
	if k0 > 1e-4 || k1 <= 10*k0 || k1 < 1e-3 {
		t.Errorf("mean KLD from the bare model's logits: bare %v, with the adapter %v", k0, k1)
	}
	other := writeTestAdapter(t, filepath.Join(testdata.Dir(t, "models"), "tiny-llama-spm-Q4_0.gguf"), 1)
	for _, c := range []struct{ lora, want string }{
		{other, "--lora"}, {ad + ":0", "scale"}, {"/nonexistent.gguf", "--lora"},
	} {
		_, errOut, code := hearth(t, "eval", "perplexity", model, "-f", evalText, "--lora", c.lora)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("--lora %s: exit %d, %q", c.lora, code, errOut)
		}
	}
}
