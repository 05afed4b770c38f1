package cuda

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// expertOps compares backend.Experts' operations on both backends: Route
// for each gating (ids equal, weights to float rounding), MatMulByID for
// every format with a kernel (per-token and per-pair activations, with
// and without biases) against the CPU and, exactly, against the device's
// own MatMul of each pair's expert, and AddWeightedByID against the CPU
// and, exactly, against the device's AddScaledRows of the same pairs.
func (e *opEnv) expertOps(r *rand.Rand) {
	t, cpuBE, devBE, note, read, both, table := e.t, e.cpu, e.dev, e.note, e.read, e.both, e.table
	t.Helper()
	cx, ok1 := cpuBE.(backend.Experts)
	dx, ok2 := devBE.(backend.Experts)
	if !ok1 || !ok2 {
		t.Fatal("a backend without backend.Experts")
	}
	ids := func(be backend.Backend, x backend.Tensor) []int32 {
		v := read(be, x)
		out := make([]int32, len(v))
		for i, f := range v {
			out[i] = int32(math.Float32bits(f))
		}
		return out
	}
	route := func(n, ne, k int, rt backend.Routing, scale []float32) (ic, id, wc, wd backend.Tensor) {
		logits := make([]float32, n*ne)
		for i := range logits {
			logits[i] = float32(r.NormFloat64() * 2)
		}
		lc, ld := both(n, ne, logits)
		rc, rd := rt, rt
		if scale != nil {
			rc.Scale, rd.Scale = table(cpuBE, 1, ne, scale), table(devBE, 1, ne, scale)
		}
		ic, id, wc, wd = cpuBE.NewTensor(n, k), devBE.NewTensor(n, k), cpuBE.NewTensor(n, k), devBE.NewTensor(n, k)
		cx.Route(ic, wc, lc, rc)
		dx.Route(id, wd, ld, rd)
		if err := devBE.Err(); err != nil {
			t.Fatal(err)
		}
		gi, wi := ids(devBE, id), ids(cpuBE, ic)
		for i := range gi {
			if gi[i] != wi[i] {
				t.Errorf("route %d of %d, %+v: ids %v, want %v", k, ne, rt, gi, wi)
				break
			}
		}
		for i := 1; i < len(gi); i++ {
			if i%k != 0 && gi[i] <= gi[i-1] {
				t.Errorf("route: ids of a row not increasing: %v", gi)
				break
			}
		}
		return
	}
	scales := make([]float32, 100)
	for i := range scales {
		scales[i] = 0.5 + r.Float32()
	}
	for _, c := range []struct {
		ne, k int
		rt    backend.Routing
		scale bool
	}{
		{16, 4, backend.Routing{Gating: backend.SoftmaxTopK, Renorm: true}, false},
		{16, 4, backend.Routing{Gating: backend.SoftmaxTopK}, false},
		{100, 8, backend.Routing{Gating: backend.SoftmaxTopK, Renorm: true}, true},
		{32, 4, backend.Routing{Gating: backend.TopKSoftmax}, false},
		{7, 7, backend.Routing{Gating: backend.TopKSoftmax}, false},
		{40, 1, backend.Routing{Gating: backend.SoftmaxTopK}, true},
	} {
		c.rt.K = c.k
		var sc []float32
		if c.scale {
			sc = scales[:c.ne]
		}
		_, _, wc, wd := route(5, c.ne, c.k, c.rt, sc)
		note(fmt.Sprintf("route %d of %d gating=%d renorm=%v scale=%v", c.k, c.ne, c.rt.Gating, c.rt.Renorm, c.scale), read(devBE, wd), read(cpuBE, wc))
	}

	// Products by id: 6 experts of 70 × 256, 3 tokens choosing 2 each.
	const ne, k, n, rows, cols = 6, 2, 3, 70, 256
	ic, id, wc, wd := route(n, ne, k, backend.Routing{K: k, Gating: backend.SoftmaxTopK, Renorm: true}, nil)
	pairs := ids(devBE, id)
	var bc, bd []backend.Weight
	for range ne {
		v := e.randVals(rows)
		bc, bd = append(bc, table(cpuBE, 1, rows, v)), append(bd, table(devBE, 1, rows, v))
	}
	bsc, err := cx.ExpertSet(bc)
	if err != nil {
		t.Fatal(err)
	}
	bsd, err := dx.ExpertSet(bd)
	if err != nil {
		t.Fatal(err)
	}
	for _, typ := range kernelTypes {
		var mc, md []backend.Weight
		for range ne {
			data := randomWeight(r, typ, rows, cols)
			w, err := cpuBE.Weight("e", typ, rows, cols, data)
			if err != nil {
				t.Fatal(err)
			}
			mc = append(mc, w)
			if w, err = devBE.Weight("e", typ, rows, cols, data); err != nil {
				t.Fatal(err)
			}
			md = append(md, w)
		}
		sc, err := cx.ExpertSet(mc)
		if err != nil {
			t.Fatal(err)
		}
		sd, err := dx.ExpertSet(md)
		if err != nil {
			t.Fatal(err)
		}
		for _, xr := range []int{n, n * k} {
			xc, xd := both(xr, cols, e.randVals(xr*cols))
			oc, od := cpuBE.NewTensor(n*k, rows), devBE.NewTensor(n*k, rows)
			for _, bias := range []bool{false, true} {
				var b1, b2 backend.ExpertSet
				if bias {
					b1, b2 = bsc, bsd
				}
				cx.MatMulByID(oc, xc, sc, b1, ic)
				dx.MatMulByID(od, xd, sd, b2, id)
				note(fmt.Sprintf("matmul by id %v x rows %d bias %v", typ, xr, bias), read(devBE, od), read(cpuBE, oc))
			}
			// Each pair against the device's own MatMul (no bias): exact.
			dx.MatMulByID(od, xd, sd, nil, id)
			got := read(devBE, od)
			want := make([]float32, 0, n*k*rows)
			one := devBE.NewTensor(1, rows)
			for p, ex := range pairs {
				row := p / k
				if xr == n*k {
					row = p
				}
				devBE.MatMul(one, devBE.Slice(xd, row, 1), md[ex])
				want = append(want, read(devBE, one)...)
			}
			note(fmt.Sprintf("by id exact: matvec %v x rows %d", typ, xr), got, want)
		}
	}

	// The weighted sum, against the CPU and against AddScaledRows.
	y := e.randVals(n * k * 64)
	yc, yd := both(n*k, 64, y)
	dst := e.randVals(n * 64)
	dc, dd := both(n, 64, dst)
	cx.AddWeightedByID(dc, yc, wc)
	dx.AddWeightedByID(dd, yd, wd)
	got := read(devBE, dd)
	note("add weighted by id", got, read(cpuBE, dc))
	_, d2 := both(n, 64, dst)
	idx := make([]int, n*k)
	for i := range idx {
		idx[i] = i / k
	}
	devBE.AddScaledRows(d2, yd, idx, read(devBE, wd))
	note("by id exact: add weighted = add scaled rows", got, read(devBE, d2))
}

// moeModels are the mixtures whose decode steps route on the device
// (Qwen 3.5's MoE with its shared expert's gate applied there too:
// ScaleSigmoid, and its recurrent layers: recurrent.cu).
var moeModels = []string{"arch/models/qwen3moe-h1001-Q8_0", "arch/models/llama-moe-h1001-Q8_0",
	"arch/models/gpt-oss-h1001-MXFP4_MOE", "arch-next/models/gemma4-moe-h1001-Q8_0", "arch-next/models/qwen35moe-h1001-Q8_0"}

func moePath(t testing.TB, m string) string {
	dir, name := filepath.Split(m)
	return filepath.Join(testdata.Dir(t, filepath.Clean(dir)), name+".gguf")
}

// TestMoEDecodeNoReadFake: a decode step of a mixture on the CUDA backend
// (one token, then three sequences) copies nothing to the host but its
// logits (one device-to-host copy), so it can be captured whole in a CUDA
// graph; a prompt longer than the by-id threshold still routes on the
// host (a copy per mixture layer more). With graphs on, the generation of
// graph_test.go gives the logits of direct launches bit for bit, and its
// decode steps replay as graphs.
func TestMoEDecodeNoReadFake(t *testing.T) {
	for _, m := range moeModels {
		path := moePath(t, m)
		t.Run(filepath.Base(m), func(t *testing.T) {
			f := newFake()
			b := newFakeBackendOpts(t, f, Options{})
			model := loadOn(t, path, b)
			layers := model.Info().Layers
			kv, err := model.NewKV(64)
			if err != nil {
				t.Fatal(err)
			}
			reads := func(bt *arch.Batch) int {
				f.mu.Lock()
				n := f.dtoh
				f.mu.Unlock()
				if _, err := model.Forward(bt); err != nil {
					t.Fatal(err)
				}
				f.mu.Lock()
				defer f.mu.Unlock()
				return f.dtoh - n
			}
			prompt := make([]int32, 12)
			for i := range prompt {
				prompt[i] = int32(3 + 37*i%400)
			}
			if n := reads(arch.Single(prompt, 0, kv, false)); n <= 1 {
				t.Errorf("a %d-token prompt made %d device-to-host copies: routed on the device?", len(prompt), n)
			}
			for s := range 3 {
				if n := reads(arch.Single([]int32{int32(50 + s)}, len(prompt)+s, kv, false)); n != 1 {
					t.Errorf("decode step %d: %d device-to-host copies, want 1 (the logits)", s, n)
				}
			}
			if f.launches["moe_route_f32"] == 0 || f.launches["moe_sum_f32"] == 0 {
				t.Errorf("no routing on the device: launches %v", f.launches)
			}
			t.Logf("%d layers; routed on the device %d times", layers, f.launches["moe_route_f32"])

			fd, fg := newFake(), newFake()
			direct := newFakeBackendOpts(t, fd, Options{Graphs: Off})
			graphs := newFakeBackendOpts(t, fg, Options{Graphs: On})
			want := generation(t, loadOn(t, path, direct), direct)
			got := generation(t, loadOn(t, path, graphs), graphs)
			if diff, worst := sameLogits(got, want); diff != "" {
				t.Fatalf("graph steps differ from direct ones: first at %s (max |Δ| %g)", diff, worst)
			}
			// Whole steps are segments now: the decode shapes replay as in
			// TestGraphFake (14 times) and a short prompt may too.
			st := graphs.GraphStats()
			if st.Built < 2 || st.Replays < 5+6+3 || st.Failures != 0 {
				t.Errorf("stats %+v: want the 2 decode graphs built and replayed 14 times (graph_test.go's generation)", st)
			}
			t.Logf("graphs: %+v", st)
		})
	}
}

// hostRouting is the CUDA backend without backend.Experts (the two Route
// methods at one depth hide each other): mixtures route on the host.
type hostRouting struct {
	*Backend
	noRoute
}

type noRoute struct{}

func (noRoute) Route() {}

// TestMoEByIDMatchesHostFake runs each mixture over the fake driver with
// decode steps routed on the device and with every step routed on the
// host: the prompt (grouped on both) gives the same logits bit for bit,
// the decode steps the same to the rounding of the device's softmax
// (fast_exp against the host's float64 exp).
func TestMoEByIDMatchesHostFake(t *testing.T) {
	if _, ok := any(hostRouting{}).(backend.Experts); ok {
		t.Fatal("hostRouting still has the by-id operations")
	}
	for _, m := range moeModels {
		path := moePath(t, m)
		t.Run(filepath.Base(m), func(t *testing.T) {
			fd, fh := newFake(), newFake()
			byID, onHost := moeSteps(t, path, newFakeBackendOpts(t, fd, Options{})), moeSteps(t, path, hostRouting{Backend: newFakeBackendOpts(t, fh, Options{})})
			if fd.launches["moe_route_f32"] == 0 || fh.launches["moe_route_f32"] != 0 {
				t.Fatalf("routed on the device %d and %d times, want some and none", fd.launches["moe_route_f32"], fh.launches["moe_route_f32"])
			}
			if d, _ := maxDiff(byID[0], onHost[0]); d != 0 {
				t.Errorf("prompt: max |Δ logit| %g, want 0 (both grouped)", d)
			}
			var worst float32
			for s := 1; s < len(byID); s++ {
				d, _ := maxDiff(byID[s], onHost[s])
				worst = max(worst, d)
			}
			if worst > 1e-3 {
				t.Errorf("decode: max |Δ logit| %g between device and host routing", worst)
			}
			t.Logf("decode steps: max |Δ logit| %.3g between device and host routing", worst)
		})
	}
}

// moeSteps runs a 12-token prompt and 4 decode steps of the model at
// path on be and returns each step's logits.
func moeSteps(t testing.TB, path string, be backend.Backend) [][]float32 {
	t.Helper()
	model := loadOn(t, path, be)
	kv, err := model.NewKV(64)
	if err != nil {
		t.Fatal(err)
	}
	prompt := make([]int32, 12)
	for i := range prompt {
		prompt[i] = int32(3 + 37*i%400)
	}
	var out [][]float32
	for s := range 5 {
		bt := arch.Single(prompt, 0, kv, false)
		if s > 0 {
			bt = arch.Single([]int32{int32(50 + 13*s)}, len(prompt)+s-1, kv, false)
		}
		l, err := model.Forward(bt)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append([]float32(nil), l...))
	}
	return out
}
