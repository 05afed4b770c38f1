package device

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	_ "github.com/hearth-llm/hearth/runtime/arch/all"
	"github.com/hearth-llm/hearth/runtime/split"
)

func open(t *testing.T, name string) (*gguf.File, arch.Needs) {
	t.Helper()
	f, err := gguf.Open(filepath.Join(testdata.Dir(t, "models"), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	n, err := arch.Describe(f)
	if err != nil {
		t.Fatal(err)
	}
	return f, n
}

// TestDefaultKVBytes: the default KV reserve of the automatic split is one
// sequence of the model's context (at most 4096) in F16, as the engine's
// NewSequence allocates it.
func TestDefaultKVBytes(t *testing.T) {
	for _, name := range []string{"stories260K-q4_0.gguf", "tiny-llama-spm-Q4_0.gguf"} {
		_, n := open(t, name)
		info := n.Info
		want := int64(min(info.ContextLength, 4096)) * int64(info.Layers) * int64(info.KVDim) * 4
		if got := DefaultKVBytes(&n); got != want || want == 0 {
			t.Errorf("%s: %d bytes, want %d", name, got, want)
		}
	}
}

// TestOpenCPU: Device "cpu" places everything on the CPU, whatever the
// layer count asked; a negative count is refused.
func TestOpenCPU(t *testing.T) {
	f, n := open(t, "stories260K-q4_0.gguf")
	if _, _, err := Open(f, &n, Options{Threads: 1, GPULayers: -1}); err == nil || !strings.Contains(err.Error(), "GPU layers") {
		t.Errorf("GPULayers -1: %v", err)
	}
	be, p, err := Open(f, &n, Options{Threads: 1, Device: "cpu", GPULayers: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer Close(be)
	want := Placement{Kind: CPU, Layers: 5, Threads: 1}
	if p != want || be.Name() != "cpu" {
		t.Errorf("placement %+v on %s, want %+v on cpu", p, be.Name(), want)
	}
	if _, _, err := Open(f, &n, Options{Device: "tpu"}); err == nil {
		t.Error("device tpu accepted")
	}
}

// TestVRAM: the bytes on the device are those of the tensors the plan
// places there.
func TestVRAM(t *testing.T) {
	f, _ := open(t, "stories260K-q8_0.gguf")
	plan := split.ForFile(f, 2) // the last two of five layers
	var want int64
	for _, ti := range f.Tensors {
		if strings.HasPrefix(ti.Name, "blk.3.") || strings.HasPrefix(ti.Name, "blk.4.") {
			want += int64(ti.Size)
		}
	}
	if got := vram(f, plan); got != want || want == 0 {
		t.Errorf("2 of 5 layers offloaded: VRAM %d, want %d", got, want)
	}
}
