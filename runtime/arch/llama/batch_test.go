package llama_test

import (
	"errors"
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

// TestPagedKV runs a prompt and decode steps through a paged cache whose
// blocks are scattered (and interleaved with another sequence's) and
// checks the logits equal those of a contiguous cache.
func TestPagedKV(t *testing.T) {
	f, err := gguf.Open(filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf"))
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
	info := m.Info()
	prompt := []int32{1, 403, 407, 261, 378, 383, 286, 261, 376}
	contiguous, _ := m.NewKV(64)
	want, err := m.Forward(arch.Single(prompt, 0, contiguous, true))
	if err != nil {
		t.Fatal(err)
	}
	want = append([]float32(nil), want...)

	pool, err := be.NewKVPool(info.Layers, 16, 4, info.KVDim)
	if err != nil {
		t.Fatal(err)
	}
	a := &backend.PagedKV{Pool: pool, Table: []int32{7, 2, 11}}
	other := &backend.PagedKV{Pool: pool, Table: []int32{3, 8, 0}}
	// The other sequence writes its blocks first; ours must not see them.
	if _, err := m.Forward(arch.Single(prompt[:6], 0, other, false)); err != nil {
		t.Fatal(err)
	}
	got, err := m.Forward(arch.Single(prompt, 0, a, true))
	if err != nil {
		t.Fatal(err)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("logit %d: paged %v, contiguous %v", i, got[i], want[i])
		}
	}
	// A position past the table is an error, not a write into another block.
	if _, err := m.Forward(arch.Single([]int32{5}, 12, a, false)); !errors.Is(err, backend.ErrContextFull) {
		t.Fatalf("position past the block table: %v", err)
	}
}
