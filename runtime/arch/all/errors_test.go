package all_test

import (
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// TestForwardErrorsFamilies: for every model of shared/arch (decoders and
// mixtures), a bad token id and a position past the cache,
// recorded by the backend, are errors of the forward pass with the
// backend's messages, none left pending after it; the next pass gives the
// logits of a pass that never failed, bit for bit.
func TestForwardErrorsFamilies(t *testing.T) {
	paths, err := filepath.Glob(filepath.Join(testdata.Dir(t, "arch/models"), "*.gguf"))
	if err != nil || len(paths) == 0 {
		t.Fatalf("no models (%v)", err)
	}
	for _, path := range paths {
		t.Run(strings.TrimSuffix(filepath.Base(path), ".gguf"), func(t *testing.T) {
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			be := cpu.New(1)
			defer be.Close()
			m, err := arch.Load(f, be)
			if err != nil {
				t.Fatal(err)
			}
			info := m.Info()
			if info.EmbeddingOnly {
				t.Skip("an encoder: runtime/arch/bert's tests")
			}
			ids := []int32{1, 7, 42, 99, 5, 300}
			kv, err := m.NewKV(8)
			if err != nil {
				t.Fatal(err)
			}
			want, err := m.Forward(arch.Single(ids, 0, kv, false))
			if err != nil {
				t.Fatal(err)
			}
			want = append([]float32(nil), want...)
			bad := append([]int32(nil), ids...)
			bad[3] = int32(info.VocabSize)
			if _, err := m.Forward(arch.Single(bad, 0, kv, false)); err == nil || !strings.Contains(err.Error(), "out of range") {
				t.Errorf("a token id past the vocabulary: %v", err)
			}
			if err := be.Err(); err != nil {
				t.Errorf("left pending: %v", err)
			}
			if _, err := m.Forward(arch.Single(ids, 4, kv, false)); !errors.Is(err, backend.ErrContextFull) {
				t.Errorf("positions past the cache: %v", err)
			}
			if err := be.Err(); err != nil {
				t.Errorf("left pending: %v", err)
			}
			got, err := m.Forward(arch.Single(ids, 0, kv, false))
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want) {
				t.Fatalf("%d values after the failed passes, %d before", len(got), len(want))
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					t.Fatalf("value %d after the failed passes %v, before %v", i, got[i], want[i])
				}
			}
		})
	}
}
