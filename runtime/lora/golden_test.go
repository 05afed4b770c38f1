package lora_test

import (
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hearth-llm/hearth/internal/golden"
	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/cpu"
	"github.com/hearth-llm/hearth/runtime/lora"
)

// goldenAdapter is the adapter of testdata/golden: rank 8, alpha 16, on
// attention, FFN, the untied output and the token embedding of
// stories260K-f32 (testdata/make_golden.sh writes it with
// HEARTH_LORA_OUT set and runs llama.cpp on it).
var goldenAdapter = lora.RandomOptions{Seed: 2026, Rank: 8, Alpha: 16, StdB: 0.02,
	Parts: append([]string{"token_embd.weight", "output.weight"}, lora.AttnFFN...)}

// TestWriteGoldenAdapter writes the golden adapter to $HEARTH_LORA_OUT
// (skipped without it).
func TestWriteGoldenAdapter(t *testing.T) {
	out := os.Getenv("HEARTH_LORA_OUT")
	if out == "" {
		t.Skip("HEARTH_LORA_OUT not set")
	}
	w, err := lora.Random(openModel(t, "stories260K-f32.gguf"), goldenAdapter)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.WriteFile(out); err != nil {
		t.Fatal(err)
	}
}

// adapted runs a model with one adapter on every sequence.
type adapted struct {
	arch.Model
	ad arch.Adapter
}

func (m adapted) Forward(b *arch.Batch) ([]float32, error) {
	b.Adapters = make([]arch.Adapter, len(b.KVs))
	for i := range b.Adapters {
		b.Adapters[i] = m.ad
	}
	return m.Model.Forward(b)
}

// TestGoldenLoRA holds stories260K-f32 with the golden adapter to
// llama.cpp's golden run with it (LORA=… golden.cpp): logits at every
// prompt position and greedy step within the stories260K-f32 tolerance,
// and the greedy continuation.
func TestGoldenLoRA(t *testing.T) {
	base := openModel(t, "stories260K-f32.gguf")
	w, err := lora.Random(base, goldenAdapter)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "a.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	be := cpu.New(2)
	defer be.Close()
	m, err := arch.Load(base, be)
	if err != nil {
		t.Fatal(err)
	}
	ad, err := lora.Load("golden", path, base, m, be, 1)
	if err != nil {
		t.Fatal(err)
	}
	cases, err := golden.Load("testdata/golden")
	if err != nil || len(cases) == 0 {
		t.Fatalf("golden cases: %d, %v", len(cases), err)
	}
	plain, err := golden.Load(testdata.Dir(t, "golden"))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cases {
		for _, p := range plain {
			if p.Model == c.Model && p.Slug == c.Slug && slices.Equal(p.GreedyIDs, c.GreedyIDs) {
				t.Errorf("%s/%s: llama.cpp's greedy run with the adapter equals the base's: the adapter proves nothing", c.Model, c.Slug)
			}
		}
		r := golden.Check(t, adapted{m, ad}, c, golden.Tolerance(c.Model), false)
		t.Logf("%s/%s: greedy %d/%d equal, worst last-logit |Δ| %.2g, worst top-10 |Δ| %.2g", c.Model, c.Slug, r.Same, r.Total, r.WorstLast, r.WorstTop)
	}
}
