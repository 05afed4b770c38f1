package engine

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/hearth-llm/hearth/runtime/arch"
)

// The bert and nomic-bert test models and llama.cpp's vectors for them
// live beside the architecture (runtime/arch/bert/testdata, made by its
// gen.py).
var embedData = filepath.Join("..", "arch", "bert", "testdata")

type embedReference struct {
	Models map[string]struct {
		Pooling int `json:"pooling"`
		Inputs  []struct {
			Text      string      `json:"text"`
			Tokens    []int32     `json:"tokens"`
			Embedding []float32   `json:"embedding"`
			Hidden    [][]float32 `json:"hidden"`
		} `json:"inputs"`
	} `json:"models"`
}

func readEmbedReference(t *testing.T) *embedReference {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(embedData, "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r embedReference
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func loadEmbedModel(t *testing.T, name string) *Model {
	t.Helper()
	m, err := Load(filepath.Join(embedData, name), Options{Threads: 2, Device: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func cosine(a, b []float32) float64 {
	var ab, aa, bb float64
	for i := range a {
		ab += float64(a[i]) * float64(b[i])
		aa += float64(a[i]) * float64(a[i])
		bb += float64(b[i]) * float64(b[i])
	}
	return ab / math.Sqrt(aa*bb)
}

func maxAbsDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// TestEmbedParity holds the embeddings of the bert (mean pooling) and
// nomic-bert (CLS pooling) test models to llama-embedding's on the same
// files (--embd-normalize 2): the same tokens, cosine similarity at least
// 0.999, unit length. The worst cosine and the max |Δ| are reported.
func TestEmbedParity(t *testing.T) {
	ref := readEmbedReference(t)
	for name, rm := range ref.Models {
		t.Run(name, func(t *testing.T) {
			m := loadEmbedModel(t, name)
			if got := m.Arch.Info().Pooling; int(got) != rm.Pooling {
				t.Errorf("pooling %v, want %d", got, rm.Pooling)
			}
			worst, maxDiff := 1.0, 0.0
			for _, in := range rm.Inputs {
				if ids := m.Tok.Encode(in.Text, true, true); !slices.Equal(ids, in.Tokens) {
					t.Errorf("%q: tokens %v, llama.cpp %v", in.Text, ids, in.Tokens)
				}
				v, n, err := m.Embed(in.Text, 0, false)
				if err != nil {
					t.Fatal(err)
				}
				if n != len(in.Tokens) || len(v) != len(in.Embedding) {
					t.Fatalf("%q: %d tokens, %d values; want %d, %d", in.Text, n, len(v), len(in.Tokens), len(in.Embedding))
				}
				cs := cosine(v, in.Embedding)
				worst, maxDiff = min(worst, cs), max(maxDiff, maxAbsDiff(v, in.Embedding))
				if cs < 0.999 {
					t.Errorf("%q: cosine %.6f < 0.999", in.Text, cs)
				}
				if math.Abs(norm(v)-1) > 1e-5 {
					t.Errorf("%q: |v| = %v", in.Text, norm(v))
				}
			}
			t.Logf("%s (%v pooling): worst cosine %.7f, max |Δ| %.2e over %d inputs", name, m.Arch.Info().Pooling, worst, maxDiff, len(rm.Inputs))
		})
	}
}

func norm(v []float32) float64 {
	var s float64
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s)
}

// pooling overrides a model's pooling type.
type pooling struct {
	arch.Model
	p arch.Pooling
}

func (p pooling) Info() arch.Info {
	i := p.Model.Info()
	i.Pooling = p.p
	return i
}

// TestEmbedPooling runs every pooling type on both models and holds the
// result to the same pooling of llama-embedding's per-token hidden states
// (--pooling none): the mean of all tokens, the first, the last.
func TestEmbedPooling(t *testing.T) {
	ref := readEmbedReference(t)
	for name, rm := range ref.Models {
		m := loadEmbedModel(t, name)
		orig := m.Arch
		for _, p := range []arch.Pooling{arch.PoolingMean, arch.PoolingCLS, arch.PoolingLast} {
			m.Arch = pooling{orig, p}
			for _, in := range rm.Inputs {
				want := make([]float64, len(in.Hidden[0]))
				switch p {
				case arch.PoolingMean:
					for _, h := range in.Hidden {
						for j, x := range h {
							want[j] += float64(x) / float64(len(in.Hidden))
						}
					}
				case arch.PoolingCLS:
					for j, x := range in.Hidden[0] {
						want[j] = float64(x)
					}
				case arch.PoolingLast:
					for j, x := range in.Hidden[len(in.Hidden)-1] {
						want[j] = float64(x)
					}
				}
				got, _, err := m.Embed(in.Text, 0, false)
				if err != nil {
					t.Fatal(err)
				}
				if cs := cosine(got, unit(want)); cs < 0.999 {
					t.Errorf("%s %v pooling %q: cosine %.6f < 0.999", name, p, in.Text, cs)
				}
			}
		}
		for _, p := range []arch.Pooling{arch.PoolingNone, arch.PoolingRank} {
			m.Arch = pooling{orig, p}
			if _, _, err := m.Embed("hello", 0, false); !errors.Is(err, ErrUnsupported) {
				t.Errorf("%s %v pooling: %v, want ErrUnsupported", name, p, err)
			}
		}
		m.Arch = orig
	}
}

// TestEmbedBatch: inputs of different lengths embedded together give the
// same vectors as each alone, whether they share one forward pass or,
// past BatchSize tokens, several.
func TestEmbedBatch(t *testing.T) {
	ref := readEmbedReference(t)
	for name, rm := range ref.Models {
		m := loadEmbedModel(t, name)
		var texts []string
		for _, in := range rm.Inputs {
			texts = append(texts, in.Text)
		}
		// Enough copies to fill more than one forward pass.
		for len(texts) < 2*BatchSize/20 {
			texts = append(texts, texts[:len(rm.Inputs)]...)
		}
		all, total, err := m.Embeddings(context.Background(), texts, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		for i, text := range texts {
			alone, n, err := m.Embed(text, 0, false)
			if err != nil {
				t.Fatal(err)
			}
			want += n
			if d := maxAbsDiff(alone, all[i]); d > 1e-5 {
				t.Errorf("%s: input %d (%q) batched differs from alone by %.2e", name, i, text, d)
			}
		}
		if total != want || total <= BatchSize {
			t.Errorf("%s: %d tokens in all, %d alone (want more than %d)", name, total, want, BatchSize)
		}
	}
}

// TestEmbedTruncate: a text longer than the context is refused, or cut
// with its [SEP] kept last; the context never exceeds an encoder's
// trained one.
func TestEmbedTruncate(t *testing.T) {
	m := loadEmbedModel(t, "bert-tiny.gguf")
	text := "The quick brown fox jumps over the lazy dog."
	if _, _, err := m.Embed(text, 5, false); !errors.Is(err, ErrPromptTooLong) {
		t.Errorf("too long without truncate: %v", err)
	}
	got, n, err := m.Embed(text, 5, true)
	if err != nil || n != 5 {
		t.Fatalf("truncate: %v, %d tokens", err, n)
	}
	ids := m.Tok.Encode(text, true, true)
	want, err := m.embedSeqs(context.Background(), [][]int32{append(ids[:4:4], ids[len(ids)-1])})
	if err != nil {
		t.Fatal(err)
	}
	if d := maxAbsDiff(got, want[0]); d > 1e-6 {
		t.Errorf("truncated embedding differs from [CLS] the quick brown [SEP]'s by %.2e", d)
	}
	ctx := m.Arch.Info().ContextLength
	long := ""
	for range ctx {
		long += "word "
	}
	if _, n, err := m.Embed(long, 1<<20, true); err != nil || n != ctx {
		t.Errorf("past the trained context: %v, %d tokens, want %d", err, n, ctx)
	}
}

// TestEmbeddingOnly: an embedding model refuses to generate.
func TestEmbeddingOnly(t *testing.T) {
	m := loadEmbedModel(t, "nomic-bert-tiny.gguf")
	if _, err := m.NewSequence(16); !errors.Is(err, ErrEmbeddingOnly) {
		t.Errorf("NewSequence: %v, want ErrEmbeddingOnly", err)
	}
	if _, err := m.NewBatched(BatchConfig{}); !errors.Is(err, ErrEmbeddingOnly) {
		t.Errorf("NewBatched: %v, want ErrEmbeddingOnly", err)
	}
}

// TestEmbedBatchDecoder: a causal model's inputs may be split across
// forward passes (its cache carries a sequence from one to the next); the
// vectors are still those of each input alone.
func TestEmbedBatchDecoder(t *testing.T) {
	m := loadModel(t, "stories260K-f32.gguf")
	long := ""
	for range 60 {
		long += "Once upon a time "
	}
	texts := []string{"The cat sat on the mat.", long, "Rockets fly to the moon and back!", long + "the end", "Hi"}
	all, total, err := m.Embeddings(context.Background(), texts, 0, false)
	if err != nil {
		t.Fatal(err)
	}
	if total <= BatchSize {
		t.Fatalf("%d tokens: want more than one forward pass", total)
	}
	for i, text := range texts {
		alone, _, err := m.Embed(text, 0, false)
		if err != nil {
			t.Fatal(err)
		}
		if d := maxAbsDiff(alone, all[i]); d > 1e-5 {
			t.Errorf("input %d batched differs from alone by %.2e", i, d)
		}
	}
}
