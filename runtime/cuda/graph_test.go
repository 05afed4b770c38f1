package cuda

import (
	"bytes"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"unsafe"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// generation runs a scripted batched generation on a model and returns
// every step's logits, as the engine drives it: three sequences in one
// paged pool of 4-position blocks, each prompt on its own, then decode
// steps of all three (positions advancing, a block appended to a table
// every fourth step), then sequence 1 finishes and two decode on, then a
// fourth sequence's prompt, then three decode together again (the first
// shape once more). Tokens follow a fixed schedule, so two runs see the
// same inputs whatever their logits. A hybrid model's sequences each
// get a slot of one recurrent state pool.
func generation(t testing.TB, m arch.Model, be backend.Backend) [][]float32 {
	t.Helper()
	return generationWith(t, m, be, nil)
}

// generationWith is generation with LoRA adapters: the k-th sequence
// made runs with ads[k%len(ads)] (nil: the bare base), so the adapters of
// a step change as sequences come and go.
func generationWith(t testing.TB, m arch.Model, be backend.Backend, ads []arch.Adapter) [][]float32 {
	t.Helper()
	info := m.Info()
	const blockSize = 4
	pool, err := be.NewKVPool(info.Layers, 64, blockSize, info.KVDim)
	if err != nil {
		t.Fatal(err)
	}
	next := int32(63) // blocks handed out from the top, scattered
	type seq struct {
		kv  *backend.PagedKV
		pos int32
		ad  arch.Adapter
	}
	grow := func(s *seq, upto int32) {
		for int32(len(s.kv.Table))*blockSize <= upto {
			s.kv.Table = append(s.kv.Table, next)
			next -= 5
			if next < 0 {
				next += 63
			}
		}
	}
	tok := func(step, i int) int32 { return int32(1 + (step*7919+i*104729)%(info.VocabSize-1)) }
	var out [][]float32
	forward := func(b *arch.Batch) {
		l, err := m.Forward(b)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, append([]float32(nil), l...))
	}
	prompt := func(s *seq, n, step int) {
		b := &arch.Batch{KVs: []backend.KV{s.kv}, Outputs: []int{n - 1}}
		if ads != nil {
			b.Adapters = []arch.Adapter{s.ad}
		}
		for i := range n {
			grow(s, s.pos)
			b.IDs, b.Pos, b.Seq = append(b.IDs, tok(step, i)), append(b.Pos, s.pos), append(b.Seq, 0)
			s.pos++
		}
		forward(b)
	}
	decode := func(ss []*seq, step int) {
		b := &arch.Batch{}
		for i, s := range ss {
			grow(s, s.pos)
			b.KVs = append(b.KVs, s.kv)
			if ads != nil {
				b.Adapters = append(b.Adapters, s.ad)
			}
			b.IDs, b.Pos, b.Seq = append(b.IDs, tok(step, i)), append(b.Pos, s.pos), append(b.Seq, int32(i))
			b.Outputs = append(b.Outputs, i)
			s.pos++
		}
		forward(b)
	}
	// Hybrid models: a recurrent state slot per sequence, as the engine
	// gives them.
	var states backend.StatePool
	if sm, ok := m.(arch.Stateful); ok && len(sm.StateSizes()) > 0 {
		if states, err = sm.NewStatePool(4); err != nil {
			t.Fatal(err)
		}
	}
	slots := 0
	mk := func() *seq {
		slots++
		var ad arch.Adapter
		if len(ads) > 0 {
			ad = ads[(slots-1)%len(ads)]
		}
		return &seq{kv: &backend.PagedKV{Pool: pool, States: states, Slot: slots - 1}, ad: ad}
	}
	s0, s1, s2 := mk(), mk(), mk()
	prompt(s0, 5, 100)
	prompt(s1, 3, 101)
	prompt(s2, 7, 102)
	step := 0
	for range 6 {
		decode([]*seq{s0, s1, s2}, step)
		step++
	}
	for range 4 {
		decode([]*seq{s0, s2}, step)
		step++
	}
	// A prompt longer than any before: the model grows its activation
	// buffers, so the three-sequence graph replays with moved tensors.
	s3 := mk()
	prompt(s3, 9, 103)
	for range 6 {
		decode([]*seq{s0, s2, s3}, step)
		step++
	}
	return out
}

// sameLogits reports the first step and index where two generations
// differ in any bit, and the largest difference.
func sameLogits(a, b [][]float32) (string, float64) {
	first := ""
	var worst float64
	for s := range a {
		for i := range a[s] {
			if math.Float32bits(a[s][i]) != math.Float32bits(b[s][i]) {
				if first == "" {
					first = fmt.Sprintf("step %d logit %d: %v vs %v", s, i, a[s][i], b[s][i])
				}
				worst = max(worst, math.Abs(float64(a[s][i]-b[s][i])))
			}
		}
	}
	return first, worst
}

func loadOn(t testing.TB, path string, be backend.Backend) arch.Model {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	m, err := arch.Load(f, be)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestGraphFake: a generation with decode steps replayed as graphs gives
// exactly the logits of the same generation launched kernel by kernel;
// each decode shape is built once (at its second step), replayed after,
// its changed arguments patched, and the three-sequence graph is found
// again after the two-sequence one.
func TestGraphFake(t *testing.T) {
	models := testdata.Dir(t, "models")
	for _, name := range []string{"stories260K-q4_0", "tiny-llama-spm-Q4_K_M"} {
		t.Run(name, func(t *testing.T) {
			path := models + "/" + name + ".gguf"
			fd, fg := newFake(), newFake()
			direct := newFakeBackendOpts(t, fd, Options{Graphs: Off})
			graphs := newFakeBackendOpts(t, fg, Options{Graphs: On})
			want := generation(t, loadOn(t, path, direct), direct)
			got := generation(t, loadOn(t, path, graphs), graphs)
			if diff, worst := sameLogits(got, want); diff != "" {
				t.Fatalf("graph steps differ from direct ones: first at %s (max |Δ| %g)", diff, worst)
			}
			st := graphs.GraphStats()
			t.Logf("%+v; driver graph calls %v", st, fg.graphCalls)
			if direct.GraphStats() != (GraphStats{}) {
				t.Errorf("graphs off, yet stats %+v", direct.GraphStats())
			}
			// Decode shapes: 3 sequences (built at its 2nd step, replayed
			// 4 more times, then 6 times after the 2-sequence phase) and 2
			// sequences (built at its 2nd step, replayed twice).
			if st.Built != 2 || st.Replays != 5+6+3 || st.Failures != 0 {
				t.Errorf("stats %+v: want 2 graphs built, 14 replays, no failure", st)
			}
			if st.Patched == 0 {
				t.Errorf("no node patched: the activations moved when the 9-token prompt grew them")
			}
			if fg.graphCalls["cuGraphLaunch"] != st.Replays || fg.graphCalls["cuGraphInstantiate"] != 2 {
				t.Errorf("driver calls %v for stats %+v", fg.graphCalls, st)
			}
			// Most kernels ran as graph nodes: direct launches are the
			// prompts and the first two steps of each shape.
			if fg.launches["attention_f16"] != fd.launches["attention_f16"] {
				t.Errorf("attention ran %d times with graphs, %d without", fg.launches["attention_f16"], fd.launches["attention_f16"])
			}
		})
	}
}

// TestGraphFallbackFake: when the driver cannot build graphs, the step
// runs directly, one line is logged, and the results are the same.
func TestGraphFallbackFake(t *testing.T) {
	path := testdata.Dir(t, "models") + "/stories260K-q4_0.gguf"
	fd, fg := newFake(), newFake()
	fg.failGraph = true
	var log bytes.Buffer
	direct := newFakeBackendOpts(t, fd, Options{Graphs: Off})
	graphs := newFakeBackendOpts(t, fg, Options{Graphs: On, Log: slog.New(slog.NewTextHandler(&log, nil))})
	log.Reset() // the "GPU in use" line
	want := generation(t, loadOn(t, path, direct), direct)
	got := generation(t, loadOn(t, path, graphs), graphs)
	if diff, worst := sameLogits(got, want); diff != "" {
		t.Fatalf("after a failed graph build, steps differ from direct ones: %s (max |Δ| %g)", diff, worst)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 1 || !strings.Contains(lines[0], "graph build failed") || !strings.Contains(lines[0], "CUDA_ERROR_NOT_SUPPORTED") {
		t.Errorf("logged %q, want one line about the failed build", log.String())
	}
	st := graphs.GraphStats()
	if st.Failures != 1 || st.Built != 1 {
		t.Errorf("stats %+v: want the one failed build, then no more tries", st)
	}
	if fg.graphCalls["cuGraphLaunch"] != 0 {
		t.Errorf("a graph was launched after its build failed: %v", fg.graphCalls)
	}
}

// TestGraphOpsFake: every operation, with the recorder on, against the
// CPU (segments are short here: each Read submits what was recorded).
func TestGraphOpsFake(t *testing.T) {
	cpuBE := newCPU(t)
	b := newFakeBackendOpts(t, newFake(), Options{Graphs: On})
	for op, e := range opErrors(t, cpuBE, b) {
		if tol := opTolerance(op); e > tol {
			t.Errorf("%s: relative error %.3g > %.3g", op, e, tol)
		}
	}
	if st := b.GraphStats(); st.Segments == 0 || st.Kernels == 0 {
		t.Errorf("nothing recorded: %+v", st)
	}
}

// TestCaptureFake: Device.Capture records the stream's launches into a
// graph (the fake runs none of them while capturing) and each Launch
// replays them on the memory as it is then.
func TestCaptureFake(t *testing.T) {
	for _, g := range []Toggle{Off, On} {
		f := newFake()
		b := newFakeBackendOpts(t, f, Options{Graphs: g})
		const n = 1000
		ones := make([]float32, n)
		for i := range ones {
			ones[i] = 1
		}
		x, y := b.NewTensor(1, n), b.NewTensor(1, n)
		b.Write(x, 0, ones)
		b.Write(y, 0, ones)
		cg, err := b.Device().Capture(func() {
			b.Add(y, x)
			b.Add(y, x)
		})
		if err != nil {
			t.Fatal(err)
		}
		out := make([]float32, n)
		b.Read(y, 0, out)
		if out[0] != 1 {
			t.Fatalf("graphs %v: the captured adds ran during capture: %v", g, out[0])
		}
		for range 3 {
			cg.Launch()
		}
		b.Read(y, 0, out)
		if out[0] != 7 || out[n-1] != 7 {
			t.Errorf("graphs %v: %v after 3 replays of 2 adds, want 7", g, out[0])
		}
		if err := cg.Destroy(); err != nil {
			t.Error(err)
		}
	}
}

// TestKernelNodeParamsLayout pins CUDA_KERNEL_NODE_PARAMS_v2's layout.
func TestKernelNodeParamsLayout(t *testing.T) {
	var p kernelNodeParams
	if s, o := unsafe.Sizeof(p), unsafe.Offsetof(p.kernelParams); s != 72 || o != 40 || unsafe.Offsetof(p.sharedMem) != 32 ||
		unsafe.Offsetof(p.ctx) != 64 {
		t.Errorf("size %d, kernelParams at %d: want 72 and 40 (cuda.h)", s, o)
	}
}

// TestStepInputGrowthFake: per-step inputs larger than the arena move the
// recorder to a larger one mid-segment; what was recorded before still
// reads the old arena's contents.
func TestStepInputGrowthFake(t *testing.T) {
	cpuBE := newCPU(t)
	b := newFakeBackendOpts(t, newFake(), Options{Graphs: On})
	const rows, cols = 50, 32
	vals := make([]float32, rows*cols)
	for i := range vals {
		vals[i] = float32(i%977) - 300
	}
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&vals[0])), 4*len(vals))
	wc, _ := cpuBE.Weight("t", quant.F32, rows, cols, raw)
	wd, err := b.Weight("t", quant.F32, rows, cols, raw)
	if err != nil {
		t.Fatal(err)
	}
	small := []int32{3, 1, 4}
	big := make([]int32, 40000) // 160 KB of ids: past the first 64 KiB arena
	for i := range big {
		big[i] = int32(i * 7 % rows)
	}
	ds, db := b.NewTensor(len(small), cols), b.NewTensor(len(big), cols)
	cs, cb := cpuBE.NewTensor(len(small), cols), cpuBE.NewTensor(len(big), cols)
	b.Embed(ds, wd, small)
	b.Embed(db, wd, big)
	cpuBE.Embed(cs, wc, small)
	cpuBE.Embed(cb, wc, big)
	for _, e := range []error{b.Err(), cpuBE.Err()} {
		if e != nil {
			t.Fatal(e)
		}
	}
	for _, c := range []struct{ d, c backend.Tensor }{{ds, cs}, {db, cb}} {
		n, _ := c.d.Shape()
		got, want := make([]float32, n*cols), make([]float32, n*cols)
		b.Read(c.d, 0, got)
		cpuBE.Read(c.c, 0, want)
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("%d ids: value %d is %v, want %v", n, i, got[i], want[i])
			}
		}
	}
}

// TestGraphRowInputsFake: a step of the MoE-style operations whose
// per-row host inputs change from step to step (Scale's per-row scales,
// AddScaledRows' weights), replayed as a graph: each replay must see its
// own step's values (they travel in the step-input arena), bit for bit
// the CPU's.
func TestGraphRowInputsFake(t *testing.T) {
	cpuBE := newCPU(t)
	b := newFakeBackendOpts(t, newFake(), Options{Graphs: On})
	r := rand.New(rand.NewPCG(11, 12))
	const n, cols = 3, 96
	randVals := func(k int) []float32 {
		v := make([]float32, k)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	biasVals := randVals(cols)
	raw := unsafe.Slice((*byte)(unsafe.Pointer(&biasVals[0])), 4*cols)
	bc, _ := cpuBE.Weight("bias", quant.F32, 1, cols, raw)
	bd, err := b.Weight("bias", quant.F32, 1, cols, raw)
	if err != nil {
		t.Fatal(err)
	}
	idx := []int{2, 0, 2, 1, 0, 2} // two experts per token, token 2 three times
	run := func(be backend.Backend, bias backend.Weight, x0 []float32, scales [][]float32, ws [][]float32) []float32 {
		x, out := be.NewTensor(len(idx), cols), be.NewTensor(n, cols)
		be.Write(x, 0, x0)
		be.Write(out, 0, make([]float32, n*cols))
		for i := range scales { // 4 kernels a round: long enough for a graph
			be.Scale(x, scales[i]...)
			be.AddBias(x, bias)
			be.AddScaledRows(out, x, idx, ws[i])
			be.Scale(out, 0.5)
		}
		got := make([]float32, n*cols)
		be.Read(out, 0, got)
		return got
	}
	for step := range 4 {
		x0 := randVals(len(idx) * cols)
		var scales, ws [][]float32
		for range 5 {
			scales, ws = append(scales, randVals(len(idx))), append(ws, randVals(len(idx)))
		}
		got, want := run(b, bd, x0, scales, ws), run(cpuBE, bc, x0, scales, ws)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				t.Fatalf("step %d: value %d is %v, the CPU's %v", step, i, got[i], want[i])
			}
		}
	}
	if st := b.GraphStats(); st.Replays < 2 {
		t.Errorf("graphs replayed %d times, want 2 or more: %+v", st.Replays, st)
	} else {
		t.Logf("%+v", st)
	}
}
