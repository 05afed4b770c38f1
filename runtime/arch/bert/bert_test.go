package bert_test

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	_ "github.com/hearth-llm/hearth/runtime/arch/bert"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// reference is testdata/reference.json (written by testdata/gen.py from
// llama.cpp's llama-tokenize and llama-embedding).
type reference struct {
	LlamaCpp string `json:"llama.cpp"`
	Models   map[string]struct {
		Pooling int `json:"pooling"`
		Inputs  []struct {
			Text      string      `json:"text"`
			Tokens    []int32     `json:"tokens"`
			Embedding []float32   `json:"embedding"` // the file's pooling, L2-normalised
			Hidden    [][]float32 `json:"hidden"`    // per token, not normalised
		} `json:"inputs"`
	} `json:"models"`
}

func readReference(t *testing.T) *reference {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "reference.json"))
	if err != nil {
		t.Fatal(err)
	}
	var r reference
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatal(err)
	}
	return &r
}

func loadModel(t *testing.T, be backend.Backend, name string) arch.Model {
	t.Helper()
	f, err := gguf.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	m, err := arch.Load(f, be)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// cosine is the cosine similarity of a and b, in float64.
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

// forward runs the sequences of seqs in one batch and returns every
// token's hidden state, per sequence.
func forward(t *testing.T, m arch.Model, seqs [][]int32) [][][]float32 {
	t.Helper()
	b := &arch.Batch{Hidden: true}
	for s, ids := range seqs {
		kv, err := m.NewKV(len(ids))
		if err != nil {
			t.Fatal(err)
		}
		b.KVs = append(b.KVs, kv)
		for p, id := range ids {
			b.Outputs = append(b.Outputs, len(b.IDs))
			b.IDs = append(b.IDs, id)
			b.Pos = append(b.Pos, int32(p))
			b.Seq = append(b.Seq, int32(s))
		}
	}
	out, err := m.Forward(b)
	if err != nil {
		t.Fatal(err)
	}
	d := m.Info().Embedding
	if len(out) != len(b.IDs)*d {
		t.Fatalf("%d values for %d tokens of %d", len(out), len(b.IDs), d)
	}
	res := make([][][]float32, len(seqs))
	row := 0
	for s, ids := range seqs {
		for range ids {
			res[s] = append(res[s], append([]float32(nil), out[row*d:(row+1)*d]...))
			row++
		}
	}
	return res
}

// TestHiddenParity holds every token's final hidden state to
// llama-embedding's (--pooling none): cosine similarity at least 0.999.
// The max |Δ| is reported (the states are LayerNorm outputs, of order 1).
func TestHiddenParity(t *testing.T) {
	ref := readReference(t)
	be := cpu.New(2)
	defer be.Close()
	for name, rm := range ref.Models {
		t.Run(name, func(t *testing.T) {
			m := loadModel(t, be, name)
			info := m.Info()
			if !info.EmbeddingOnly || !info.NonCausal || int(info.Pooling) != rm.Pooling {
				t.Errorf("info %+v: want an embedding-only, non-causal model pooling %d", info, rm.Pooling)
			}
			worst, maxDiff := 1.0, 0.0
			for _, in := range rm.Inputs {
				got := forward(t, m, [][]int32{in.Tokens})[0]
				if len(in.Hidden) != len(in.Tokens) {
					t.Fatalf("%q: reference has %d states for %d tokens", in.Text, len(in.Hidden), len(in.Tokens))
				}
				for i, want := range in.Hidden {
					cs := cosine(got[i], want)
					worst, maxDiff = min(worst, cs), max(maxDiff, maxAbsDiff(got[i], want))
					if cs < 0.999 {
						t.Errorf("%q token %d: cosine %.6f < 0.999", in.Text, i, cs)
					}
				}
			}
			t.Logf("%s: worst token cosine %.7f, max |Δ| %.2e over %d inputs", name, worst, maxDiff, len(rm.Inputs))
		})
	}
}

// TestBatchEqualsAlone: sequences of different lengths evaluated in one
// batch give each the same hidden states as alone (no attention across
// sequences, positions per sequence).
func TestBatchEqualsAlone(t *testing.T) {
	ref := readReference(t)
	be := cpu.New(2)
	defer be.Close()
	for name, rm := range ref.Models {
		t.Run(name, func(t *testing.T) {
			m := loadModel(t, be, name)
			var seqs [][]int32
			for _, in := range rm.Inputs {
				seqs = append(seqs, in.Tokens)
			}
			together := forward(t, m, seqs)
			for s, ids := range seqs {
				alone := forward(t, m, [][]int32{ids})[0]
				for i := range alone {
					if d := maxAbsDiff(alone[i], together[s][i]); d > 1e-5 {
						t.Errorf("sequence %d token %d: batched differs from alone by %.2e", s, i, d)
					}
				}
			}
		})
	}
}
