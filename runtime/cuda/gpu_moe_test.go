//go:build gpu

package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-llm/hearth/runtime/cpu"
)

// TestGPUMoERouting: each mixture's decode steps routed on the GPU
// (moe_route_f32, matvec_id_<type>, moe_sum_f32) against the same steps
// routed on the host on the same GPU (within 1e-2 of a logit: the
// device's fast_exp moves weights by ~1e-7, and a near-tie may choose
// another expert), and with no copy to the host but the logits.
func TestGPUMoERouting(t *testing.T) {
	b := gpu(t)
	ok, n := 0, 0
	for _, m := range moeModels {
		path := moePath(t, m)
		if _, err := os.Stat(path); err != nil {
			t.Logf("%s: not carried, skipped", m)
			continue
		}
		n++
		t.Run(filepath.Base(m), func(t *testing.T) {
			byID, onHost := moeSteps(t, path, b), moeSteps(t, path, hostRouting{Backend: b})
			var worst float32
			for s := 1; s < len(byID); s++ {
				d, bad := maxDiff(byID[s], onHost[s])
				if bad {
					t.Fatalf("decode step %d: non-finite logits", s)
				}
				worst = max(worst, d)
			}
			if worst > 1e-2 {
				t.Errorf("decode: max |Δ logit| %g between device and host routing", worst)
			}
			t.Logf("decode steps: max |Δ logit| %.3g between device and host routing", worst)
			if !t.Failed() {
				ok++
			}
		})
	}
	summary("moe routing on the device", fmt.Sprintf("%d/%d mixtures match host routing", ok, n))
}

// TestGPURecurrent: Qwen 3.5, dense and MoE (recurrent.cu's conv and
// gated delta rule, σ gates), on the GPU against the CPU backend: a golden
// prompt and decode steps, ErrStateLost on a gap, a restart after it
// (checkRecurrent).
func TestGPURecurrent(t *testing.T) {
	b := gpu(t)
	cpuBE := cpu.New(0)
	defer cpuBE.Close()
	ok, n := 0, 0
	for _, m := range recurrentModels {
		path := moePath(t, "arch-next/models/"+m)
		if _, err := os.Stat(path); err != nil {
			t.Logf("%s: not carried, skipped", m)
			continue
		}
		n++
		t.Run(m, func(t *testing.T) {
			t.Log(checkRecurrent(t, path, cpuBE, b))
			if !t.Failed() {
				ok++
			}
		})
	}
	summary("recurrent vs CPU", fmt.Sprintf("%d/%d Qwen 3.5 models within the golden tolerance (prefill 20, decode 3, ErrStateLost)", ok, n))
}
