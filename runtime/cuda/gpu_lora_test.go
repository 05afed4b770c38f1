//go:build gpu

package cuda

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/hearth-llm/hearth/internal/golden"
	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// TestGPULoRA: lora.cu on the GPU (its op parity is in TestGPUOps'
// "lora" rows): graph_test.go's scripted generation with two adapters
// and the bare base mixed (TestLoRAForwardFake's) against the CPU
// backend, within the model's tolerance, and with decode steps as CUDA
// graphs bitwise equal to direct launches.
func TestGPULoRA(t *testing.T) {
	b := gpu(t)
	defer b.setGraphs(false)
	name := "stories260K-f32"
	path := filepath.Join(testdata.Dir(t, "models"), name+".gguf")
	cpuBE := newCPU(t)
	bes := []backend.Backend{cpuBE, b}
	ms := []arch.Model{loadOn(t, path, cpuBE), loadOn(t, path, b)}
	ads := loraAdapters(t, path, 2, loraParts, ms, bes)
	mix := func(k int) []arch.Adapter { return []arch.Adapter{ads[k][0], ads[k][1], nil} }
	want := generationWith(t, ms[0], cpuBE, mix(0))
	b.setGraphs(false)
	got := generationWith(t, ms[1], b, mix(1))
	before := b.GraphStats()
	b.setGraphs(true)
	viaGraphs := generationWith(t, ms[1], b, mix(1))
	b.setGraphs(false)
	if err := b.Err(); err != nil {
		t.Fatalf("device error: %v", err)
	}
	after := b.GraphStats()
	var worst float32
	for s := range want {
		d, bad := maxDiff(got[s], want[s])
		if bad {
			t.Fatalf("step %d: non-finite logits", s)
		}
		worst = max(worst, d)
	}
	tol := golden.ToleranceCUDA(name)
	if worst > tol {
		t.Errorf("GPU vs CPU with adapters: max |Δ logit| %.3g > %.3g", worst, tol)
	}
	diff, gw := sameLogits(viaGraphs, got)
	if diff != "" {
		t.Errorf("graph steps with adapters differ from direct ones: first at %s (max |Δ| %g)", diff, gw)
	}
	built, replays, fails := after.Built-before.Built, after.Replays-before.Replays, after.Failures-before.Failures
	if fails > 0 || replays == 0 {
		t.Errorf("graphs: %d built, %d replays, %d failures", built, replays, fails)
	}
	res := "PASS"
	if t.Failed() {
		res = "FAIL"
	}
	summary("lora (adapters mixed in a batch)", fmt.Sprintf("%s: max |Δ logit| vs CPU %.3g (tol %.2g); graphs bitwise %v, %d built, %d replays",
		res, worst, tol, diff == "", built, replays))
}
