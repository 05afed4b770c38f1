//go:build gpu

package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/runtime/cpu"
	"github.com/hearth-llm/hearth/runtime/split"
)

// TestGPUSplit: partial offload on the device. Models run with their last
// layers on the GPU and the rest on the CPU (runtime/split), held to the
// CPU alone within the golden tolerances, prompt, decode and a batch over
// paged caches; and the automatic split's decision from the real free
// memory is reported.
func TestGPUSplit(t *testing.T) {
	models := testdata.Dir(t, "models")
	cpuBE := cpu.New(0)
	defer cpuBE.Close()
	host := cpu.New(0)
	defer host.Close()
	b := gpu(t) // shared: the split is not closed
	ok, n := 0, 0
	for _, name := range []string{"stories260K-q4_0", "tiny-llama-spm-Q4_K_M", "tiny-llama-spm-Q6_K"} {
		path := filepath.Join(models, name+".gguf")
		if _, err := os.Stat(path); err != nil {
			t.Logf("%s: not carried, skipped", name)
			continue
		}
		f := openModel(t, name)
		layers := split.ForFile(f, 0).Layers
		for _, ngl := range []int{1, layers / 2, layers} {
			n++
			t.Run(fmt.Sprintf("%s/ngl=%d", name, ngl), func(t *testing.T) {
				sb := split.New(b, host, split.ForFile(f, ngl))
				p := loadPair(t, path, cpuBE, sb)
				t.Log(checkSequence(t, p, goldenPrompt(t, name, 40), 4))
				t.Log(checkBatch(t, p, cpuBE, sb))
				if st := sb.Stats(); st.ToDevice == 0 || st.ToHost == 0 {
					t.Errorf("copies %+v", st)
				}
				if !t.Failed() {
					ok++
				}
			})
		}
		if o, err := b.Offload(f, 0, 1<<30); err != nil {
			t.Error(err)
		} else {
			summary("auto split", fmt.Sprintf("%s: %v", name, o))
		}
	}
	summary("split vs CPU", fmt.Sprintf("%d/%d model × -ngl runs within the golden tolerance (prefill 40, decode 4, batch of 3)", ok, n))
}
