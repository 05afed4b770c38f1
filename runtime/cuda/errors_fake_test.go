package cuda

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// TestOutOfMemoryFake: memory that runs out during a forward pass (the
// activations, scratch, the RoPE table, the step-input arena with graphs)
// is an error of that pass, never a panic; a pass that failed keeps
// nothing half-made, and once memory is there again the model's logits
// are bit for bit a fresh backend's, with the same device memory held.
func TestOutOfMemoryFake(t *testing.T) {
	path := testdata.Dir(t, "models") + "/stories260K-q4_0.gguf"
	file, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer file.Close()
	prompt := []int32{1, 403, 407, 261, 378, 429, 267, 2}
	// load binds the model with a 64-position cache; used is the device
	// memory then.
	load := func(t *testing.T, f *fakeDriver, graphs Toggle) (*Backend, arch.Model, backend.KV, uint64) {
		b := newFakeBackendOpts(t, f, Options{Graphs: graphs})
		m, err := arch.Load(file, b)
		if err != nil {
			t.Fatal(err)
		}
		kv, err := m.NewKV(64)
		if err != nil {
			t.Fatal(err)
		}
		return b, m, kv, f.usedBytes()
	}
	for _, graphs := range []Toggle{Off, On} {
		t.Run(fmt.Sprintf("graphs=%v", graphs == On), func(t *testing.T) {
			rf := newFake()
			_, rm, rkv, base := load(t, rf, graphs)
			want, err := rm.Forward(arch.Single(prompt, 0, rkv, false))
			if err != nil {
				t.Fatal(err)
			}
			want = slices.Clone(want)
			need := rf.usedBytes() - base // what the first pass allocates
			f := newFake()
			b, m, kv, _ := load(t, f, graphs)
			failed := 0
			for extra := uint64(0); extra < need+4096; extra += max(need/24, 1) {
				f.mu.Lock()
				f.memLimit = f.used + extra
				f.mu.Unlock()
				_, err := m.Forward(arch.Single(prompt, 0, kv, false))
				if err == nil {
					break
				}
				var de *Error
				if !errors.As(err, &de) || !strings.Contains(err.Error(), "CUDA_ERROR_OUT_OF_MEMORY") {
					t.Fatalf("%d bytes free: %v, want an out-of-memory error", extra, err)
				}
				if err := b.Err(); err != nil {
					t.Fatalf("Err after the failed pass returned it: %v", err)
				}
				failed++
			}
			if failed == 0 {
				t.Fatal("no pass ran out of memory")
			}
			f.mu.Lock()
			f.memLimit = 0
			f.mu.Unlock()
			got, err := m.Forward(arch.Single(prompt, 0, kv, false))
			if err != nil {
				t.Fatal(err)
			}
			if !sameBitsF32(got, want) {
				t.Error("logits after passes that ran out of memory differ from a fresh backend's")
			}
			b.dev.Sync()
			rf2 := rf.usedBytes()
			if u := f.usedBytes(); u != rf2 {
				t.Errorf("device memory after recovering %d bytes, a fresh backend's %d", u, rf2)
			}
			t.Logf("%d passes ran out of memory (%d bytes needed by the first pass)", failed, need)
		})
	}
}

func sameBitsF32(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] && !(a[i] != a[i] && b[i] != b[i]) {
			return false
		}
	}
	return true
}

// TestRecordedErrorsFake: a bad token id and a position past the cache
// are recorded with the CPU backend's messages, the operations after do
// nothing (no kernel launched), Err takes the error once, and the
// backend works after it.
func TestRecordedErrorsFake(t *testing.T) {
	f := newFake()
	b := newFakeBackend(t, f)
	w, err := b.Weight("t", quant.F32, 4, 64, make([]byte, 4*4*64))
	if err != nil {
		t.Fatal(err)
	}
	x := b.NewTensor(2, 64)
	b.Embed(x, w, []int32{1, 7})
	launches := f.launchCount()
	b.Add(x, x)
	kv, _ := b.NewKV(1, 2, 64)
	p := backend.AttentionParams{Heads: 1, KVHeads: 1, HeadDim: 64, Scale: 1}
	b.Attention(x, x, x, x, []backend.KV{kv}, []int32{0, 0}, 0, []int32{0, 1}, p)
	if n := f.launchCount(); n != launches {
		t.Errorf("%d kernels launched with an error pending", n-launches)
	}
	if err := b.Err(); err == nil || err.Error() != "token id 7 out of range [0, 4)" {
		t.Errorf("Err after a bad token id: %v", err)
	}
	if err := b.Err(); err != nil {
		t.Errorf("Err did not clear: %v", err)
	}
	b.Attention(x, x, x, x, []backend.KV{kv}, []int32{0, 0}, 0, []int32{1, 2}, p)
	if err := b.Err(); !errors.Is(err, backend.ErrContextFull) {
		t.Errorf("Err after a position past the cache: %v", err)
	}
	b.Embed(x, w, []int32{1, 3})
	b.Add(x, x)
	b.Read(x, 0, make([]float32, 64))
	if err := b.Err(); err != nil {
		t.Error(err)
	}
}
