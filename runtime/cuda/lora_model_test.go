package cuda

import (
	"path/filepath"
	"testing"

	"github.com/hearth-llm/hearth/internal/golden"
	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/lora"
)

// loraAdapters writes n random adapters for the model at path (rank 16,
// 4, 8, …; F16 and F32 pairs alternating; attention, the FFN, the output
// and the flipped token embedding, or parts) and binds each on every
// model given (its backend with it). The result's i-th entry holds
// adapter i bound on models[k] at [k][i].
func loraAdapters(t testing.TB, path string, n int, parts []string, models []arch.Model, bes []backend.Backend) [][]arch.Adapter {
	t.Helper()
	base, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { base.Close() })
	out := make([][]arch.Adapter, len(models))
	for i := range n {
		rank := []int{16, 4, 8}[i%3]
		w, err := lora.Random(base, lora.RandomOptions{Seed: uint64(40 + i), Rank: rank, Alpha: float32(2 * rank), Parts: parts, StdB: 0.05, F16: i%2 == 0})
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), "adapter.gguf")
		if err := w.WriteFile(file); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		c, err := lora.Check(f, base)
		if err != nil {
			t.Fatal(err)
		}
		for k, m := range models {
			ad, err := lora.Bind("a", c, m, bes[k], 1)
			if err != nil {
				t.Fatal(err)
			}
			out[k] = append(out[k], ad)
		}
		f.Close()
	}
	return out
}

// loraParts are the weights the model tests adapt: everything Hearth
// adapts on a dense model.
var loraParts = append([]string{"token_embd.weight", "output.weight"}, lora.AttnFFN...)

// TestLoRAForwardFake runs graph_test.go's scripted generation (sequences
// coming and going, so the adapters of a step change) with two adapters
// and the bare base mixed, on the CPU and on the CUDA backend over the
// fake driver (direct launches, and decode steps as graphs): the device
// holds the CPU's logits within the model's tolerance, and graph steps
// give the direct steps' logits bit for bit. On a dense model the
// adapted decode steps replay as graphs (the adapters' task tables are
// step inputs); on a mixture with adapted experts (Qwen3-MoE: attention
// and expert stacks) the steps route on the host, where each (expert,
// adapter) of a grouped product is a task.
func TestLoRAForwardFake(t *testing.T) {
	for _, c := range []struct {
		dir, name string
		parts     []string
		dense     bool
	}{
		{"models", "stories260K-f32", loraParts, true},
		{"arch/models", "qwen3moe-h1001-Q8_0", append([]string{"attn_q", "attn_v", "attn_output"}, lora.Experts...), false},
	} {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(testdata.Dir(t, c.dir), c.name+".gguf")
			cpuBE := newCPU(t)
			fd, fg := newFake(), newFake()
			direct := newFakeBackendOpts(t, fd, Options{Graphs: Off})
			graphs := newFakeBackendOpts(t, fg, Options{Graphs: On})
			bes := []backend.Backend{cpuBE, direct, graphs}
			var ms []arch.Model
			for _, be := range bes {
				ms = append(ms, loadOn(t, path, be))
			}
			ads := loraAdapters(t, path, 2, c.parts, ms, bes)
			mix := func(k int) []arch.Adapter { return []arch.Adapter{ads[k][0], ads[k][1], nil} }
			want := generationWith(t, ms[0], cpuBE, mix(0))
			plain := generation(t, ms[0], cpuBE)
			got := generationWith(t, ms[1], direct, mix(1))
			viaGraphs := generationWith(t, ms[2], graphs, mix(2))
			var worst, moved float32
			for s := range want {
				d, bad := maxDiff(got[s], want[s])
				if bad {
					t.Fatalf("step %d: non-finite logits", s)
				}
				worst = max(worst, d)
				m, _ := maxDiff(plain[s], want[s])
				moved = max(moved, m)
			}
			t.Logf("device vs CPU with adapters: max |Δ logit| %.3g (the adapters move the logits by up to %.3g)", worst, moved)
			if moved < 0.5 {
				t.Fatalf("the adapters hardly change the logits (%.3g): the test would prove nothing", moved)
			}
			if tol := golden.ToleranceCUDA(c.name); worst > tol {
				t.Errorf("device vs CPU with adapters: max |Δ logit| %.3g > %.3g", worst, tol)
			}
			if fd.launches["lora_shrink"] == 0 || fd.launches["lora_expand"] == 0 || c.dense && fd.launches["lora_shrink_embed"] == 0 {
				t.Errorf("the LoRA kernels did not run: %v", fd.launches)
			}
			if diff, w := sameLogits(viaGraphs, got); diff != "" {
				t.Fatalf("graph steps with adapters differ from direct ones: first at %s (max |Δ| %g)", diff, w)
			}
			st := graphs.GraphStats()
			t.Logf("graphs: %+v", st)
			// Decode shapes: sequences (a0, a1, base) for 6 steps (one
			// task per adapter: built at the 2nd step, replayed 4 more
			// times), (a0, base) for 4 (1 task: built, 2 more), then (a0,
			// base, a0) for 6: one task of two rows, another topology than
			// the first phase's (built, 4 more). Graphs are keyed by the
			// adapters' task count and rank.
			if c.dense && (st.Built != 3 || st.Replays != 5+3+5 || st.Failures != 0) {
				t.Errorf("stats %+v: want 3 decode graphs built, 13 replays, no failure", st)
			}
			if st.Failures != 0 {
				t.Errorf("graph failures: %+v", st)
			}
		})
	}
}
