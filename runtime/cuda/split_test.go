package cuda

// Partial offload over the fake driver: a split of this backend and the
// CPU's (runtime/split) against the CPU alone, where the weights go, the
// automatic split's choice under less free memory, and out-of-memory.

import (
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/cpu"
	"github.com/hearth-llm/hearth/runtime/split"
)

func openModel(t testing.TB, name string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(filepath.Join(testdata.Dir(t, "models"), name+".gguf"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestWriteFake: Write uploads whole rows into a view, Read brings several
// rows back in one copy.
func TestWriteFake(t *testing.T) {
	f := newFake()
	b := newFakeBackend(t, f)
	x := b.NewTensor(5, 4)
	v := b.Slice(x, 1, 3)
	src := make([]float32, 8)
	for i := range src {
		src[i] = float32(i + 1)
	}
	b.Write(v, 1, src) // rows 2 and 3 of x
	got := make([]float32, 8)
	b.Read(x, 2, got)
	if !slices.Equal(got, src) {
		t.Errorf("read back %v, want %v", got, src)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("a write past the end of a view did not panic")
			}
		}()
		b.Write(v, 2, src)
	}()
}

// TestSplitForwardFake runs the shared models with part of their layers
// on the fake GPU and the rest on the CPU and holds the logits (prompt,
// decode steps, a batch over paged caches) to the CPU's within the
// tolerances of the whole-GPU parity tests.
func TestSplitForwardFake(t *testing.T) {
	models := testdata.Dir(t, "models")
	cpuBE := cpu.New(2)
	defer cpuBE.Close()
	for _, name := range []string{"stories260K-q4_0", "stories260K-q4_k_m", "tiny-llama-spm-Q4_K_M"} {
		f := openModel(t, name)
		layers := split.ForFile(f, 0).Layers
		for _, n := range []int{1, layers / 2, layers, layers + 1} {
			fd := newFake()
			host := cpu.New(2)
			sb := split.New(newFakeBackend(t, fd), host, split.ForFile(f, n))
			p := loadPair(t, filepath.Join(models, name+".gguf"), cpuBE, sb)
			t.Logf("-ngl %d: %s", n, checkSequence(t, p, goldenPrompt(t, name, 20), 3))
			t.Logf("-ngl %d: %s", n, checkBatch(t, p, cpuBE, sb))
			st := sb.Stats()
			if st.ToDevice == 0 || (n <= layers) != (st.ToHost > 0) {
				t.Errorf("%s -ngl %d: copies %+v", name, n, st)
			}
			fd.mu.Lock()
			if fd.launches["attention_f16"] == 0 {
				t.Errorf("%s -ngl %d: no attention on the device", name, n)
			}
			fd.mu.Unlock()
			host.Close()
		}
	}
}

// TestSplitPlacementFake: the bytes uploaded while binding a model are
// exactly its offloaded weights in the device's storage rules, and
// nothing else.
func TestSplitPlacementFake(t *testing.T) {
	for _, name := range []string{"stories260K-q4_k_m", "tiny-llama-spm-Q4_0"} {
		f := openModel(t, name)
		all := split.ForFile(f, 99)
		for n := 0; n <= all.Layers+1; n++ {
			plan := split.ForFile(f, n)
			var want uint64
			var names []string
			for i := range f.Tensors {
				ti := &f.Tensors[i]
				if _, dev := plan.Place(ti.Name); dev {
					want += WeightBytes(ti.Type, int(ti.Elements()/ti.Dims[0]), int(ti.Dims[0]))
					names = append(names, ti.Name)
				}
			}
			fd := newFake()
			host := cpu.New(1)
			sb := split.New(newFakeBackend(t, fd), host, plan)
			if _, err := arch.Load(f, sb); err != nil {
				t.Fatal(err)
			}
			fd.mu.Lock()
			got := fd.htod
			fd.mu.Unlock()
			if got != want {
				t.Errorf("%s -ngl %d: %d bytes uploaded, want %d (%d tensors: %v)", name, n, got, want, len(names), names)
			}
			if n == all.Layers+1 && plan.TiedOutput && !slices.Contains(names, "token_embd.weight") {
				t.Errorf("%s: the tied output matrix is not offloaded with the output layer", name)
			}
			host.Close()
		}
	}
}

// TestAutoOffloadFake: the automatic split offloads everything when the
// device has room, fewer layers as its free memory shrinks, none when not
// even one layer fits, and what it chooses loads and runs in that memory.
func TestAutoOffloadFake(t *testing.T) {
	name := "tiny-llama-spm-Q4_K_M"
	f := openModel(t, name)
	layers := split.ForFile(f, 0).Layers
	const kv = 64 << 20
	fp := split.Measure(f, WeightBytes)
	// Probe with a large device: the estimate's full need.
	probe := newFakeBackend(t, newFake())
	full, err := probe.Offload(f, 0, kv)
	if err != nil {
		t.Fatal(err)
	}
	if !full.Plan.All() || !full.Auto {
		t.Fatalf("70 GiB free: %v", full)
	}
	t.Log(full)
	// Memory short of the full need by the output layer (and one byte),
	// then by each layer more, from the first: one layer fewer each time.
	r := offloadReserve(f, layers, kv)
	shorts := []uint64{0, 1}
	wantN := []int{layers + 1, layers}
	short := fp.Output + r.Output
	for k := 0; k < layers; k++ {
		shorts = append(shorts, short+1) // layers k+1 … on
		wantN = append(wantN, layers-k-1)
		short += fp.Layer[k] + r.KVPerLayer
	}
	for i, short := range shorts {
		fd := newFake()
		b := newFakeBackend(t, fd)
		fd.mu.Lock()
		fd.memLimit = fd.used + full.Need - short
		fd.mu.Unlock()
		o, err := b.Offload(f, 0, kv)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%d bytes short: %v", short, o)
		if got := o.Plan.N(); got != wantN[i] {
			t.Errorf("%d bytes short of the full need: -ngl %d, want %d", short, got, wantN[i])
		}
		if o.Need > o.Free {
			t.Errorf("the plan needs %d bytes, %d are free", o.Need, o.Free)
		}
		if !strings.HasPrefix(o.String(), "offloading ") || !strings.Contains(o.String(), " free)") {
			t.Errorf("log line %q", o)
		}
		if o.Plan.None() {
			continue
		}
		// What was chosen fits: bind it, make its KV cache and run it.
		host := cpu.New(1)
		sb := split.New(b, host, o.Plan)
		m, err := arch.Load(f, sb)
		if err != nil {
			t.Fatalf("%v: %v", o, err)
		}
		kvc, err := m.NewKV(64)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := m.Forward(arch.Single(goldenPrompt(t, name, 16), 0, kvc, false)); err != nil {
			t.Fatal(err)
		}
		host.Close()
	}
	// An explicit count is taken as asked, whatever is free.
	o, err := probe.Offload(f, 2, kv)
	if err != nil {
		t.Fatal(err)
	}
	if o.Auto || o.Plan.Offloaded != 2 || o.Plan.Output || !strings.Contains(o.String(), "as asked") {
		t.Errorf("-ngl 2: %v", o)
	}
}

// TestOffloadOutOfMemoryFake: a device too small for what was asked fails
// the load with an error naming the tensor and out-of-memory (errors.Is
// ErrOutOfMemory), not a panic; the backend stays usable.
func TestOffloadOutOfMemoryFake(t *testing.T) {
	f := openModel(t, "tiny-llama-spm-Q4_0")
	fd := newFake()
	b := newFakeBackend(t, fd)
	fd.mu.Lock()
	fd.memLimit = fd.used + 2<<20
	fd.mu.Unlock()
	host := cpu.New(1)
	defer host.Close()
	sb := split.New(b, host, split.ForFile(f, 99))
	_, err := arch.Load(f, sb)
	if err == nil {
		t.Fatal("no error binding 9 MB of weights in 2 MiB")
	}
	if !errors.Is(err, ErrOutOfMemory) || !strings.Contains(err.Error(), "CUDA_ERROR_OUT_OF_MEMORY") ||
		!strings.Contains(err.Error(), "offloading") || !strings.Contains(err.Error(), `tensor "`) {
		t.Errorf("error %q", err)
	}
	t.Log(err)
	if err := b.Err(); err != nil {
		t.Errorf("the device is failed after an allocation error: %v", err)
	}
	// A KV cache too large fails the same way.
	if _, err := b.NewKVPool(4, 1024, 1024, 256); !errors.Is(err, ErrOutOfMemory) {
		t.Errorf("KV pool beyond the memory: %v", err)
	}
}
