//go:build gpu

package cuda

// Device tests: they need a GPU and run in the one-call device check
// (scripts/gpu-check.sh builds them with `go test -c -tags gpu`). Without
// a usable GPU they fail (the tag says one is expected). Test data comes
// from $HEARTH_TESTDATA (the script points it at the models and golden
// files it carried); HEARTH_BENCH_MODEL names a GGUF file for TestGPUBench.

import (
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
	"unsafe"

	"github.com/hearth-llm/hearth/internal/golden"
	"github.com/hearth-llm/hearth/internal/testdata"
	kcuda "github.com/hearth-llm/hearth/kernels/cuda"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

var gpuBackend *Backend

// gpu returns the process's GPU backend, opened once (module load and JIT
// are paid once).
func gpu(t testing.TB) *Backend {
	t.Helper()
	if gpuBackend == nil {
		t0 := time.Now()
		b, err := New(Options{})
		if err != nil {
			t.Fatalf("no GPU: %v", err)
		}
		gpuBackend = b
		d := b.Device()
		summary("device", fmt.Sprintf("%s, cc %d.%d, %d SMs, %.0f GiB, CUDA driver %d.%d; open + PTX JIT %.2f s",
			d.Name, d.CC[0], d.CC[1], d.SMs, float64(d.TotalMem)/(1<<30), d.Driver/1000, d.Driver%1000/10, time.Since(t0).Seconds()))
	}
	return gpuBackend
}

func TestGPUDevice(t *testing.T) {
	b := gpu(t)
	tel, err := ReadTelemetry(b.Device().Ordinal)
	if err != nil {
		summary("nvml", "FAIL "+err.Error())
		t.Fatalf("NVML: %v", err)
	}
	summary("nvml", fmt.Sprintf("%s, cc %d.%d, mem %.1f/%.1f GiB used, %.0f W, util %d%%, %d °C",
		tel.Name, tel.CC[0], tel.CC[1], float64(tel.MemUsed)/(1<<30), float64(tel.MemTotal)/(1<<30), tel.PowerW, tel.UtilGPU, tel.TempC))
	if tel.MemTotal == 0 || tel.Name == "" {
		t.Errorf("telemetry %+v", tel)
	}
}

// TestGPUOps: every operation on random inputs against the CPU backend.
func TestGPUOps(t *testing.T) {
	cpuBE := cpu.New(0)
	defer cpuBE.Close()
	b := gpu(t)
	errs := opErrors(t, cpuBE, b)
	ops := make([]string, 0, len(errs))
	for op := range errs {
		ops = append(ops, op)
	}
	sort.Strings(ops)
	failed, worstOp, worst := 0, "", 0.0
	for _, op := range ops {
		e, tol := errs[op], opTolerance(op)
		line := fmt.Sprintf("%-28s rel.err %.3g (tol %.3g)", op, e, tol)
		if e > tol || math.IsNaN(e) {
			t.Error(line)
			failed++
		} else {
			t.Log(line)
		}
		if e/max(tol, 1e-12) > worst/max(opTolerance(worstOp), 1e-12) || worstOp == "" {
			worst, worstOp = e, op
		}
	}
	if err := b.Err(); err != nil {
		t.Fatalf("device error: %v", err)
	}
	summary("ops vs CPU", fmt.Sprintf("%d/%d within tolerance; closest to its bound: %s %.3g", len(ops)-failed, len(ops), worstOp, worst))
}

// TestGPUForward: the shared models, prompt and decode, one sequence and a
// batch of three over paged and separate caches, against the CPU backend.
func TestGPUForward(t *testing.T) {
	models := testdata.Dir(t, "models")
	cpuBE := cpu.New(0)
	defer cpuBE.Close()
	b := gpu(t)
	ok, n := 0, 0
	for _, name := range parityModels {
		path := filepath.Join(models, name+".gguf")
		if _, err := os.Stat(path); err != nil {
			t.Logf("%s: not carried, skipped", name)
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			p := loadPair(t, path, cpuBE, b)
			t.Log(checkSequence(t, p, goldenPrompt(t, name, 40), 4))
			t.Log(checkBatch(t, p, cpuBE, b))
			if !t.Failed() {
				ok++
			}
		})
	}
	summary("forward vs CPU", fmt.Sprintf("%d/%d models within the golden tolerance (prefill 40, decode 4, batch of 3)", ok, n))
}

// TestGPUGolden holds the GPU to llama.cpp's outputs in shared/golden as
// the CPU's TestGoldenParity does: last-position logits within the model's
// tolerance, top-1 at every prompt position (unless llama.cpp's own margin
// is within it), greedy continuation until the first near-tie. Models with
// a format that has no kernel (converted to F16 at load) are reported, not
// failed.
func TestGPUGolden(t *testing.T) {
	cases, err := golden.Load(testdata.Dir(t, "golden"))
	if err != nil {
		t.Fatal(err)
	}
	models := testdata.Dir(t, "models")
	b := gpu(t)
	byModel := map[string][]*golden.Case{}
	for _, c := range cases {
		byModel[c.Model] = append(byModel[c.Model], c)
	}
	names := make([]string, 0, len(byModel))
	for n := range byModel {
		names = append(names, n)
	}
	sort.Strings(names)
	defer func(on bool) { b.mma = on }(b.mma)
	for _, mma := range []bool{true, false} {
		// Prompts of 16 tokens or more go through the tensor-core matmul
		// (mma.cu) when it is on, else through matmul.cu's FMA tiles.
		b.mma = mma
		pass, total := goldenModels(t, b, names, byModel, models, mma)
		summary(fmt.Sprintf("golden mma=%v", mma), fmt.Sprintf("%d/%d models match llama.cpp within tolerance (prefill via %s)",
			pass, total, map[bool]string{true: "mma.sync tensor cores", false: "f32 FMA tiles"}[mma]))
	}
}

// TestGPUSynthGolden holds the device to llama.cpp on internal/golden's
// synthetic cases (Gemma 4 with sliding and global layers of different KV
// widths: kv_store and attention with a row stride), written here.
func TestGPUSynthGolden(t *testing.T) {
	cases, models := golden.Synth(t)
	b := gpu(t)
	golden.RunModelsWith(t, cases, models, b, golden.ToleranceCUDA)
	summary("golden synthetic", "gemma4 with KV widths 128/256 (see the test log for max |Δ|)")
}

func goldenModels(t *testing.T, b *Backend, names []string, byModel map[string][]*golden.Case, models string, mma bool) (pass, total int) {
	for _, name := range names {
		path := filepath.Join(models, name+".gguf")
		if _, err := os.Stat(path); err != nil {
			continue
		}
		t.Run(fmt.Sprintf("%s/mma=%v", name, mma), func(t *testing.T) {
			f, err := gguf.Open(path)
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			native := true
			for _, ti := range f.Tensors {
				if _, ok := kcuda.Suffix(ti.Type); !ok {
					native = false
				}
			}
			m, err := arch.Load(f, b)
			if err != nil {
				t.Fatal(err)
			}
			tol := golden.ToleranceCUDA(name)
			var problems []string
			var worst float32
			same, steps := 0, 0
			for _, c := range byModel[name] {
				w, s, n, pr := goldenCase(t, m, c, tol)
				worst, same, steps, problems = max(worst, w), same+s, steps+n, append(problems, pr...)
			}
			line := fmt.Sprintf("%-24s tol %.2f max|Δ| last_logits %.4f greedy %d/%d", name, tol, worst, same, steps)
			if !native {
				line += " (F16 conversion: reported only)"
			}
			t.Log(line)
			for _, p := range problems {
				if native {
					t.Error(p)
				} else {
					t.Log(p)
				}
			}
			total++
			if len(problems) == 0 {
				pass++
			}
		})
	}
	return pass, total
}

func goldenCase(t *testing.T, m arch.Model, c *golden.Case, tol float32) (worst float32, same, total int, problems []string) {
	vocab := m.Info().VocabSize
	kv, err := m.NewKV(len(c.PromptIDs) + len(c.GreedyIDs) + 1)
	if err != nil {
		t.Fatal(err)
	}
	n := len(c.PromptIDs)
	logits, err := m.Forward(arch.Single(c.PromptIDs, 0, kv, true))
	if err != nil {
		t.Fatal(err)
	}
	margin := func(top []golden.Pair) float32 { return top[0].Logit - top[1].Logit }
	for i := 0; i < n; i++ {
		row := logits[i*vocab : (i+1)*vocab]
		if got := argmaxRow(row); int32(got) != c.PromptTop10[i][0].ID && margin(c.PromptTop10[i]) > tol {
			problems = append(problems, fmt.Sprintf("%s: prompt position %d: top-1 %d, llama.cpp %d (margin %.3f)", c.Slug, i, got, c.PromptTop10[i][0].ID, margin(c.PromptTop10[i])))
			break
		}
	}
	last := append([]float32(nil), logits[(n-1)*vocab:n*vocab]...)
	for i, want := range c.LastLogits {
		worst = max(worst, float32(math.Abs(float64(last[i]-want))))
	}
	if worst > tol {
		problems = append(problems, fmt.Sprintf("%s: last_logits max|Δ| %.4f > %.2f", c.Slug, worst, tol))
	}
	tops := append([][]golden.Pair{c.PromptTop10[n-1]}, c.GreedyStepTop10...)
	row := last
	total = len(c.GreedyIDs)
	for k, want := range c.GreedyIDs {
		got := int32(argmaxRow(row))
		if got != want {
			if margin(tops[k]) > tol {
				problems = append(problems, fmt.Sprintf("%s: greedy token %d is %d, llama.cpp %d (margin %.3f)", c.Slug, k, got, want, margin(tops[k])))
			}
			break
		}
		same++
		if k == len(c.GreedyIDs)-1 {
			break
		}
		out, err := m.Forward(arch.Single([]int32{got}, n+k, kv, false))
		if err != nil {
			t.Fatal(err)
		}
		row = append(row[:0], out...)
	}
	return worst, same, total, problems
}

// TestGPUGraph captures launches into a CUDA graph and replays it.
func TestGPUGraph(t *testing.T) {
	b := gpu(t)
	const n = 1 << 16
	ones := make([]float32, n)
	for i := range ones {
		ones[i] = 1
	}
	x := b.NewTensor(1, n).(*tensor)
	y := b.NewTensor(1, n).(*tensor)
	b.upload(x.ptr(), unsafe.Slice((*byte)(unsafe.Pointer(&ones[0])), 4*n))
	b.upload(y.ptr(), unsafe.Slice((*byte)(unsafe.Pointer(&ones[0])), 4*n))
	g, err := b.Device().Capture(func() {
		b.Add(y, x) // y += 1, twice per replay
		b.Add(y, x)
	})
	if err != nil {
		t.Fatal(err)
	}
	defer g.Destroy()
	for range 3 {
		g.Launch()
	}
	out := make([]float32, n)
	b.Read(y, 0, out)
	for i, v := range out {
		if v != 7 {
			t.Fatalf("element %d is %v after 3 replays of 2 adds, want 7", i, v)
		}
	}
	summary("graph capture", "ok: 3 replays of a 2-kernel graph")
}

// TestGPUGraphStep: decode steps recorded and replayed as CUDA graphs
// (graph.go, HEARTH_CUDA_GRAPH=1) give bitwise the logits of the same
// generation launched kernel by kernel, on the real driver: graphs built
// node by node, arguments patched between replays, the step-input arena
// uploaded before each replay. This is the check that lets graphs be on
// by default.
func TestGPUGraphStep(t *testing.T) {
	models := testdata.Dir(t, "models")
	b := gpu(t)
	defer b.setGraphs(false)
	ok, n := 0, 0
	var st GraphStats
	for _, name := range []string{"stories260K-q4_0", "stories260K-q4_k_m", "tiny-llama-spm-Q4_0", "tiny-llama-spm-Q4_K_M", "tiny-llama-spm-Q6_K"} {
		path := filepath.Join(models, name+".gguf")
		if _, err := os.Stat(path); err != nil {
			continue
		}
		n++
		t.Run(name, func(t *testing.T) {
			m := loadOn(t, path, b)
			b.setGraphs(false)
			want := generation(t, m, b)
			before := b.GraphStats()
			b.setGraphs(true)
			got := generation(t, m, b)
			b.setGraphs(false)
			if err := b.Err(); err != nil {
				t.Fatalf("device error: %v", err)
			}
			after := b.GraphStats()
			d := GraphStats{Built: after.Built - before.Built, Replays: after.Replays - before.Replays,
				Patched: after.Patched - before.Patched, Failures: after.Failures - before.Failures}
			st.Built, st.Replays, st.Patched, st.Failures = st.Built+d.Built, st.Replays+d.Replays, st.Patched+d.Patched, st.Failures+d.Failures
			if diff, worst := sameLogits(got, want); diff != "" {
				t.Errorf("graph steps differ from direct ones: first at %s (max |Δ| %g)", diff, worst)
			}
			if d.Failures > 0 || d.Built != 2 || d.Replays != 14 {
				t.Errorf("graph stats %+v: want 2 builds, 14 replays, no failure", d)
			}
			if !t.Failed() {
				ok++
			}
		})
	}
	summary("graph decode steps", fmt.Sprintf("%d/%d models bitwise equal to direct launches; %d graphs built, %d replays, %d nodes patched, %d failures",
		ok, n, st.Built, st.Replays, st.Patched, st.Failures))
}

// copyBandwidth times device-to-device copies of size bytes with events
// and returns GB/s counting bytes read plus bytes written.
func copyBandwidth(t testing.TB, b *Backend, size uint64) float64 {
	src, err := b.alloc(size)
	if err != nil {
		t.Fatal(err)
	}
	dst, err := b.alloc(size)
	if err != nil {
		t.Fatal(err)
	}
	var ms float32
	const reps = 20
	err = b.Device().Do(func(drv Driver, s Stream) error {
		if err := drv.MemsetD8Async(src.ptr, 1, size, s); err != nil {
			return err
		}
		e0, err := drv.EventCreate()
		if err != nil {
			return err
		}
		defer drv.EventDestroy(e0)
		e1, err := drv.EventCreate()
		if err != nil {
			return err
		}
		defer drv.EventDestroy(e1)
		for range 3 { // warm-up
			drv.MemcpyDtoDAsync(dst.ptr, src.ptr, size, s)
		}
		drv.EventRecord(e0, s)
		for range reps {
			if err := drv.MemcpyDtoDAsync(dst.ptr, src.ptr, size, s); err != nil {
				return err
			}
		}
		drv.EventRecord(e1, s)
		if err := drv.EventSynchronize(e1); err != nil {
			return err
		}
		ms, err = drv.EventElapsedTime(e0, e1)
		return err
	})
	if err != nil {
		t.Fatalf("copy bandwidth: %v", err)
	}
	return 2 * float64(size) * reps / (float64(ms) / 1e3) / 1e9
}

func TestGPUBandwidth(t *testing.T) {
	b := gpu(t)
	gbs := copyBandwidth(t, b, 2<<30)
	summary("copy bandwidth", fmt.Sprintf("%.0f GB/s device-to-device, 2 GiB × 20, read + write counted", gbs))
}

// TestGPUBench measures the model at $HEARTH_BENCH_MODEL on the GPU as
// hearth bench does on the CPU: pp512 (one 512-token forward pass, logits
// of the last), tg128 (128 decode steps, logits read back each step) and
// tg32 x8 (8 sequences decoding together), after a warm-up each, and tg
// against the roofline of the measured copy bandwidth.
func TestGPUBench(t *testing.T) {
	path := os.Getenv("HEARTH_BENCH_MODEL")
	if path == "" {
		t.Skip("HEARTH_BENCH_MODEL is not set")
	}
	b := gpu(t)
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var weightBytes, params uint64
	for _, ti := range f.Tensors {
		weightBytes += ti.Size
		n := uint64(1)
		for _, d := range ti.Dims {
			n *= d
		}
		params += n
	}
	t0 := time.Now()
	m, err := arch.Load(f, b)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Device().Sync(); err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(path)
	summary("bench load", fmt.Sprintf("%s: %.2f GB of weights uploaded in %.1f s", name, float64(weightBytes)/1e9, time.Since(t0).Seconds()))
	vocab := m.Info().VocabSize
	r := rand.New(rand.NewPCG(1, 2))
	tok := func() int32 { return int32(1 + r.IntN(vocab-1)) }
	bw := copyBandwidth(t, b, 2<<30)
	timeIt := func(reps int, fn func()) float64 {
		fn() // warm-up
		best := math.Inf(1)
		for range reps {
			t0 := time.Now()
			fn()
			best = min(best, time.Since(t0).Seconds())
		}
		return best
	}
	kv, err := m.NewKV(1024)
	if err != nil {
		t.Fatal(err)
	}
	ids := make([]int32, 512)
	for i := range ids {
		ids[i] = tok()
	}
	mmaOn := b.mma
	for _, mma := range []bool{true, false} {
		b.mma = mma
		pp := timeIt(3, func() {
			if _, err := m.Forward(arch.Single(ids, 0, kv, false)); err != nil {
				t.Fatal(err)
			}
		})
		kernel := map[bool]string{true: "mma.sync", false: "f32 FMA"}[mma]
		summary("bench pp512 "+kernel, fmt.Sprintf("%8.1f t/s  (%.0f ms per 512 tokens, %.1f TFLOP/s)", 512/pp, pp*1e3, 2*float64(params)*512/pp/1e12))
	}
	b.mma = mmaOn
	kvs := make([]backend.KV, 8)
	for i := range kvs {
		if kvs[i], err = m.NewKV(64); err != nil {
			t.Fatal(err)
		}
	}
	roof := bw * 1e9 / float64(weightBytes)
	defer b.setGraphs(false)
	for _, graphs := range []bool{false, true} {
		b.setGraphs(graphs)
		tg := timeIt(2, func() {
			for i := range 128 {
				if _, err := m.Forward(arch.Single([]int32{tok()}, i, kv, false)); err != nil {
					t.Fatal(err)
				}
			}
		})
		tps := 128 / tg
		mode := map[bool]string{false: "", true: " graphs"}[graphs]
		summary("bench tg128"+mode, fmt.Sprintf("%8.1f t/s  (%.2f ms/token; %.0f GB/s of weights = %.0f%% of the %.0f GB/s copy roofline)",
			tps, tg/128*1e3, tps*float64(weightBytes)/1e9, 100*tps/roof, bw))
		par := timeIt(1, func() {
			for step := range 32 {
				bt := &arch.Batch{KVs: kvs}
				for s := range 8 {
					bt.IDs, bt.Pos, bt.Seq = append(bt.IDs, tok()), append(bt.Pos, int32(step)), append(bt.Seq, int32(s))
					bt.Outputs = append(bt.Outputs, s)
				}
				if _, err := m.Forward(bt); err != nil {
					t.Fatal(err)
				}
			}
		})
		summary("bench tg32 x8"+mode, fmt.Sprintf("%8.1f t/s aggregate (%.2f ms per step of 8)", 8*32/par, par/32*1e3))
	}
	if st := b.GraphStats(); st.Built > 0 {
		summary("bench graph stats", fmt.Sprintf("%+v", st))
	}
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
}
