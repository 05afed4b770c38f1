package llama_test

import (
	"path/filepath"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// TestBatchInvariance evaluates three sequences in one batch (a prompt of
// one, the decode step of another, a chunk of a third) and checks each
// logit row equals the same work done alone: batching must not change
// results.
func TestBatchInvariance(t *testing.T) {
	f, err := gguf.Open(filepath.Join(testdata.Dir(t, "models"), "tiny-llama-spm-Q4_K_M.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	be := cpu.New(2)
	defer be.Close()
	m, err := arch.Load(f, be)
	if err != nil {
		t.Fatal(err)
	}
	vocab := m.Info().VocabSize
	prompts := [][]int32{{1, 450, 4996, 17354}, {1, 15043}, {1, 9038, 2501, 263, 931, 29892, 727}}
	// Alone: each prompt, then one decode token 29871.
	var alone [][]float32
	for _, p := range prompts {
		kv, _ := m.NewKV(64)
		if _, err := m.Forward(arch.Single(p, 0, kv, false)); err != nil {
			t.Fatal(err)
		}
		out, err := m.Forward(arch.Single([]int32{29871}, len(p), kv, false))
		if err != nil {
			t.Fatal(err)
		}
		alone = append(alone, append([]float32(nil), out...))
	}
	// Together: prompts in one batch, then the three decode tokens in one.
	kvs := make([]backend.KV, len(prompts))
	b := &arch.Batch{}
	for s, p := range prompts {
		kvs[s], _ = m.NewKV(64)
		for i, id := range p {
			b.IDs = append(b.IDs, id)
			b.Pos = append(b.Pos, int32(i))
			b.Seq = append(b.Seq, int32(s))
		}
	}
	b.KVs = kvs
	if _, err := m.Forward(b); err != nil {
		t.Fatal(err)
	}
	d := &arch.Batch{KVs: kvs, Outputs: []int{0, 1, 2}}
	for s, p := range prompts {
		d.IDs = append(d.IDs, 29871)
		d.Pos = append(d.Pos, int32(len(p)))
		d.Seq = append(d.Seq, int32(s))
	}
	out, err := m.Forward(d)
	if err != nil {
		t.Fatal(err)
	}
	for s := range prompts {
		row := out[s*vocab : (s+1)*vocab]
		for i := range row {
			if row[i] != alone[s][i] {
				t.Fatalf("sequence %d: logit %d is %v batched, %v alone", s, i, row[i], alone[s][i])
			}
		}
	}
}
