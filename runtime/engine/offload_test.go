package engine

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/runtime/cpu"
	"github.com/hearth-llm/hearth/runtime/split"
)

// TestGPULayersOptions: a negative layer count is refused; Device "cpu"
// offloads nothing whatever the count.
func TestGPULayersOptions(t *testing.T) {
	path := filepath.Join(testdata.Dir(t, "models"), "stories260K-q4_0.gguf")
	if _, err := Load(path, Options{Threads: 1, GPULayers: -1}); err == nil || !strings.Contains(err.Error(), "GPU layers") {
		t.Errorf("GPULayers -1: %v", err)
	}
	m, err := Load(path, Options{Threads: 1, Device: "cpu", GPULayers: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if g, n, out := m.Offload(); g != 0 || n != 5 || out || m.Backend() != "cpu" {
		t.Errorf("Device cpu: %d/%d layers offloaded, output %v, backend %s", g, n, out, m.Backend())
	}
}

// TestKVBytes: the default KV reserve of the automatic split is one
// sequence of the model's context (at most 4096) in F16, as NewSequence
// allocates it.
func TestKVBytes(t *testing.T) {
	for _, name := range []string{"stories260K-q4_0.gguf", "tiny-llama-spm-Q4_0.gguf"} {
		m := loadModel(t, name)
		info := m.Arch.Info()
		want := int64(min(info.ContextLength, 4096)) * int64(info.Layers) * int64(info.KVDim) * 4
		if got := kvBytes(m.File, 0); got != want {
			t.Errorf("%s: %d bytes, want %d", name, got, want)
		}
		if got := kvBytes(m.File, 12345); got != 12345 {
			t.Errorf("%s: an explicit budget became %d", name, got)
		}
	}
}

// TestVRAM: the bytes on the device are those of the tensors the plan
// places there (two CPU backends stand in for GPU and host), none on the
// CPU backend.
func TestVRAM(t *testing.T) {
	path := filepath.Join(testdata.Dir(t, "models"), "stories260K-q8_0.gguf")
	m, err := Load(path, Options{Threads: 1, Device: "cpu"})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if v := m.VRAM(); v != 0 {
		t.Errorf("CPU backend: VRAM %d", v)
	}
	plan := split.ForFile(m.File, 2) // the last two of five layers
	var want int64
	for _, ti := range m.File.Tensors {
		if strings.HasPrefix(ti.Name, "blk.3.") || strings.HasPrefix(ti.Name, "blk.4.") {
			want += int64(ti.Size)
		}
	}
	cpuBE := m.backend
	sb := split.New(cpu.New(1), cpu.New(1), plan)
	m.backend = sb
	defer func() { closeBackend(sb); m.backend = cpuBE }()
	if got := m.VRAM(); got != want || want == 0 {
		t.Errorf("2 of 5 layers offloaded: VRAM %d, want %d", got, want)
	}
}
