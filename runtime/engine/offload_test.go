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
