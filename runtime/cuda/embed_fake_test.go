package cuda

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// TestEncodersFake runs the embedding encoders (bert: learned positions,
// LayerNorm, GELU; nomic-bert: fused QKV, NeoX RoPE, SwiGLU; both
// non-causal) over the fake driver and holds every token's hidden state
// to the CPU backend's, for two sequences of different lengths in one
// batch.
func TestEncodersFake(t *testing.T) {
	cpuBE := cpu.New(2)
	defer cpuBE.Close()
	for _, name := range []string{"bert-tiny.gguf", "nomic-bert-tiny.gguf"} {
		t.Run(name, func(t *testing.T) {
			f, err := gguf.Open(filepath.Join("..", "arch", "bert", "testdata", name))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			dev := newFakeBackend(t, newFake())
			ids := [][]int32{{101, 7592, 2088, 2003, 1037, 3231, 102}, {101, 2204, 102}}
			run := func(be backend.Backend) []float32 {
				m, err := arch.Load(f, be)
				if err != nil {
					t.Fatal(err)
				}
				b := &arch.Batch{Hidden: true}
				for s, seq := range ids {
					kv, err := m.NewKV(len(seq))
					if err != nil {
						t.Fatal(err)
					}
					b.KVs = append(b.KVs, kv)
					for i, id := range seq {
						b.IDs, b.Pos, b.Seq = append(b.IDs, id), append(b.Pos, int32(i)), append(b.Seq, int32(s))
						b.Outputs = append(b.Outputs, len(b.IDs)-1)
					}
				}
				out, err := m.Forward(b)
				if err != nil {
					t.Fatal(err)
				}
				return append([]float32(nil), out...)
			}
			want, got := run(cpuBE), run(dev)
			// Per token, the cosine of the two hidden states: the measure
			// the embeddings are held to against llama.cpp (≥ 0.999).
			width := len(want) / len(flatten(ids))
			worst := 1.0
			for r := 0; r < len(want)/width; r++ {
				worst = min(worst, cosine(want[r*width:(r+1)*width], got[r*width:(r+1)*width]))
			}
			t.Logf("%s: worst per-token cosine to the CPU %.6f", name, worst)
			if !(worst >= 0.999) {
				t.Errorf("%s: a token's hidden state has cosine %.6f to the CPU's", name, worst)
			}
		})
	}
}

// flatten joins the batch's sequences.
func flatten(ids [][]int32) []int32 {
	var all []int32
	for _, s := range ids {
		all = append(all, s...)
	}
	return all
}

// cosine is the cosine similarity of x and y, in float64.
func cosine(x, y []float32) float64 {
	var xy, xx, yy float64
	for i := range x {
		xy += float64(x[i]) * float64(y[i])
		xx += float64(x[i]) * float64(x[i])
		yy += float64(y[i]) * float64(y[i])
	}
	return xy / math.Sqrt(xx*yy)
}
