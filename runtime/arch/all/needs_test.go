package all_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// TestDescribeMatchesLoad: what a family describes before binding (the
// placement's input) is what the bound model reports: its Info (Params
// aside, which Describe counts over the file's tensors), one cache per
// layer of Info.KVDim values, and the windows its layers attend over.
func TestDescribeMatchesLoad(t *testing.T) {
	var paths []string
	for _, dir := range []string{testdata.Dir(t, "models"), testdata.Dir(t, "arch/models"), "../bert/testdata", "../llama/testdata"} {
		ents, err := os.ReadDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".gguf") {
				paths = append(paths, filepath.Join(dir, e.Name()))
			}
		}
	}
	be := cpu.New(1)
	defer be.Close()
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			n, err := arch.Describe(f)
			if err != nil {
				t.Fatal(err)
			}
			m, err := arch.Load(f, be)
			if err != nil {
				t.Fatal(err)
			}
			info := m.Info()
			got := n.Info
			got.Params = info.Params
			if got != info {
				t.Errorf("Describe %+v\nLoad     %+v", n.Info, info)
			}
			var size, params uint64
			for i := range f.Tensors {
				size += f.Tensors[i].Size
				params += f.Tensors[i].Elements()
			}
			if n.WeightBytes != size || n.Info.Params != params {
				t.Errorf("weights %d bytes, %d params; the file's tensors %d, %d", n.WeightBytes, n.Info.Params, size, params)
			}
			if len(n.KV) != info.Layers {
				t.Fatalf("%d layer caches for %d layers", len(n.KV), info.Layers)
			}
			var windows []int
			if tr, ok := m.(arch.TrafficReporter); ok {
				windows = tr.Traffic().Windows
			}
			for il, l := range n.KV {
				if l.Dim != info.KVDim {
					t.Errorf("layer %d: KV width %d, want %d", il, l.Dim, info.KVDim)
				}
				if windows != nil && l.Window != windows[il] {
					t.Errorf("layer %d: window %d, the model attends over %d", il, l.Window, windows[il])
				}
			}
			per, err := n.KVBytesPerPosition(quant.F16)
			if want := uint64(info.Layers * info.KVDim * 2 * 2); err != nil || per != want {
				t.Errorf("F16 KV bytes per position %d (%v), want %d", per, err, want)
			}
		})
	}
}
