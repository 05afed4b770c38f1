package all_test

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/golden"
	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// TestBatchInvarianceFamilies runs, for every model of shared/arch, three
// sequences alone (contiguous caches) and together in one batch over one
// paged pool with scattered, interleaved blocks — prompts longer than the
// sliding windows (24), then a decode step each — and requires the same
// logits bit for bit: batching, paging, windows and expert grouping must
// not change results. Hybrid models (Qwen 3.5) carry each sequence's
// recurrent state in a slot of one state pool.
func TestBatchInvarianceFamilies(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(testdata.Dir(t, "arch/models"), "*.gguf"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no models (%v)", err)
	}
	next := testdata.Dir(t, "arch-next/models")
	for _, m := range golden.ArchNext {
		paths = append(paths, filepath.Join(next, m+".gguf"))
	}
	be := cpu.New(2)
	defer be.Close()
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".gguf"), func(t *testing.T) {
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			m, err := arch.Load(f, be)
			if err != nil {
				t.Fatal(err)
			}
			info := m.Info()
			prompt := func(n, seed int) []int32 {
				p := []int32{1}
				for i := 1; i < n; i++ {
					p = append(p, int32(3+(i*37+seed*101)%490))
				}
				return p
			}
			prompts := [][]int32{prompt(31, 1), prompt(3, 2), prompt(27, 3)}
			const next = 300
			var alone [][]float32
			for _, p := range prompts {
				kv, err := m.NewKV(64)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := m.Forward(arch.Single(p, 0, kv, false)); err != nil {
					t.Fatal(err)
				}
				out, err := m.Forward(arch.Single([]int32{next}, len(p), kv, false))
				if err != nil {
					t.Fatal(err)
				}
				alone = append(alone, append([]float32(nil), out...))
			}
			pool, err := be.NewKVPool(info.CacheLayers(), 24, 8, info.KVDim)
			if err != nil {
				t.Fatal(err)
			}
			kvs := []backend.KV{
				&backend.PagedKV{Pool: pool, Table: []int32{9, 2, 17, 4, 21}},
				&backend.PagedKV{Pool: pool, Table: []int32{0}},
				&backend.PagedKV{Pool: pool, Table: []int32{23, 5, 11, 1}},
			}
			if sm, ok := m.(arch.Stateful); ok && len(sm.StateSizes()) > 0 {
				// Hybrid models: each sequence's recurrent state in a
				// slot of one pool, in another order than the sequences.
				states, err := sm.NewStatePool(4)
				if err != nil {
					t.Fatal(err)
				}
				for i, slot := range []int{3, 0, 2} {
					kvs[i].(*backend.PagedKV).States, kvs[i].(*backend.PagedKV).Slot = states, slot
				}
			}
			b := &arch.Batch{KVs: kvs}
			for s, p := range prompts {
				for i, id := range p {
					b.IDs, b.Pos, b.Seq = append(b.IDs, id), append(b.Pos, int32(i)), append(b.Seq, int32(s))
				}
			}
			if _, err := m.Forward(b); err != nil {
				t.Fatal(err)
			}
			d := &arch.Batch{KVs: kvs, Outputs: []int{0, 1, 2}}
			for s, p := range prompts {
				d.IDs, d.Pos, d.Seq = append(d.IDs, next), append(d.Pos, int32(len(p))), append(d.Seq, int32(s))
			}
			out, err := m.Forward(d)
			if err != nil {
				t.Fatal(err)
			}
			vocab := info.VocabSize
			for s := range prompts {
				row := out[s*vocab : (s+1)*vocab]
				for i := range row {
					if row[i] != alone[s][i] {
						t.Fatalf("sequence %d: logit %d is %v batched, %v alone", s, i, row[i], alone[s][i])
					}
				}
			}
		})
	}
}
