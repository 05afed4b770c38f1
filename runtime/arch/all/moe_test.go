package all_test

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// hostRouting is the CPU backend without backend.Experts: the two Route
// methods at one depth hide each other, so mixtures route on the host.
type hostRouting struct {
	*cpu.Backend
	noRoute
}

type noRoute struct{}

func (noRoute) Route() {}

// countRoutes is the CPU backend counting its Route calls.
type countRoutes struct {
	*cpu.Backend
	n int
}

func (c *countRoutes) Route(ids, weights, logits backend.Tensor, r backend.Routing) {
	c.n++
	c.Backend.Route(ids, weights, logits, r)
}

// TestMoEByIDMatchesHost runs every mixture of shared/arch and
// shared/arch-next on the CPU backend with the by-id operations (decode
// steps of up to 8 tokens route on the backend) and without them (every
// step routes on the host and groups rows by expert), and requires the
// same logits bit for bit: a prompt, decode steps of one token, and a
// step of three sequences together.
func TestMoEByIDMatchesHost(t *testing.T) {
	if _, ok := any(hostRouting{}).(backend.Experts); ok {
		t.Fatal("hostRouting still has the by-id operations")
	}
	var paths []string
	for _, m := range []string{"arch/models/qwen3moe-h1001-Q8_0", "arch/models/llama-moe-h1001-Q8_0", "arch/models/gpt-oss-h1001-MXFP4_MOE",
		"arch-next/models/gemma4-moe-h1001-Q8_0", "arch-next/models/qwen35moe-h1001-Q8_0"} {
		dir, name := filepath.Split(m)
		paths = append(paths, filepath.Join(testdata.Dir(t, filepath.Clean(dir)), name+".gguf"))
	}
	be := cpu.New(2)
	defer be.Close()
	host := hostRouting{Backend: be}
	for _, path := range paths {
		t.Run(filepath.Base(path), func(t *testing.T) {
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			run := func(b backend.Backend) [][]float32 {
				m, err := arch.Load(f, b)
				if err != nil {
					t.Fatal(err)
				}
				var out [][]float32
				step := func(bt *arch.Batch) {
					l, err := m.Forward(bt)
					if err != nil {
						t.Fatal(err)
					}
					out = append(out, append([]float32(nil), l...))
				}
				var kvs []backend.KV
				for s := range 3 {
					kv, err := m.NewKV(64)
					if err != nil {
						t.Fatal(err)
					}
					kvs = append(kvs, kv)
					p := []int32{1}
					for i := 1; i < 12+5*s; i++ {
						p = append(p, int32(3+(i*37+s*101)%490))
					}
					step(arch.Single(p, 0, kv, true))
					for i := range 3 {
						step(arch.Single([]int32{int32(40 + 17*i + s)}, len(p)+i, kv, false))
					}
				}
				step(&arch.Batch{IDs: []int32{7, 8, 9}, Pos: []int32{15, 20, 25}, Seq: []int32{0, 1, 2}, KVs: kvs, Outputs: []int{0, 1, 2}})
				return out
			}
			counted := &countRoutes{Backend: be}
			byID, onHost := run(counted), run(host)
			if counted.n == 0 {
				t.Fatal("no step routed on the backend")
			}
			t.Logf("%d mixture steps routed by id", counted.n)
			for s := range byID {
				for i := range byID[s] {
					if math.Float32bits(byID[s][i]) != math.Float32bits(onHost[s][i]) {
						t.Fatalf("step %d logit %d: %v by id, %v routed on the host", s, i, byID[s][i], onHost[s][i])
					}
				}
			}
		})
	}
}
