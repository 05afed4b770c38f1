package engine

import (
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
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
