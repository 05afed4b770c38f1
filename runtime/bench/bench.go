package bench

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime/debug"
	"strings"
	"time"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/loader/synth"
	"github.com/hearth-llm/hearth/runtime/arch"
	_ "github.com/hearth-llm/hearth/runtime/arch/all" // registers every architecture
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/device"
)

// ParallelPrompt is the prompt each sequence of a tgN xP test gets before
// the timed steps.
const ParallelPrompt = 16

// Options choose the tests of Run. Every combination of a thread count with
// each test runs.
type Options struct {
	Prompt   []int // pp tests, tokens each (llama-bench -p)
	Gen      []int // tg tests, tokens each (llama-bench -n)
	Parallel []int // sequence counts > 1: a tgN xP test for each N of Gen
	Threads  []int // thread counts (llama-bench -t); <= 0: all CPUs
	Reps     int   // timed runs per test (llama-bench -r); <= 0: 5
	Batch    int   // most tokens per forward pass; <= 0: 512
	Seed     uint64
	// ReadGBs, when set, is the memory read bandwidth the roofline of tg
	// tests is computed from (System.ReadGBs).
	ReadGBs float64
	// Progress, when set, is called after every forward pass with the
	// tokens processed so far and the total of the whole Run.
	Progress func(done, total int64)
	// Device and GPULayers place the model for each test (runtime/device:
	// "auto", "cuda", a split by GPULayers); Device "": the CPU. The
	// test's threads are the CPU's.
	Device    string
	GPULayers int
}

func (o *Options) defaults() {
	if o.Reps <= 0 {
		o.Reps = 5
	}
	if o.Batch <= 0 {
		o.Batch = 512
	}
	if len(o.Threads) == 0 {
		o.Threads = []int{0}
	}
}

// Result is one test's outcome. The JSON field names up to samples_ts are
// llama-bench's, so tools that read its JSON read these.
type Result struct {
	BuildCommit string    `json:"build_commit"`
	CPUInfo     string    `json:"cpu_info"`
	Backends    string    `json:"backends"`
	ModelFile   string    `json:"model_filename"`
	ModelType   string    `json:"model_type"`
	ModelSize   uint64    `json:"model_size"`
	ModelParams uint64    `json:"model_n_params"`
	NBatch      int       `json:"n_batch"`
	NUBatch     int       `json:"n_ubatch"`
	Threads     int       `json:"n_threads"`
	TypeK       string    `json:"type_k"`
	TypeV       string    `json:"type_v"`
	NPrompt     int       `json:"n_prompt"`
	NGen        int       `json:"n_gen"`
	NDepth      int       `json:"n_depth"`
	TestTime    string    `json:"test_time"`
	AvgNs       uint64    `json:"avg_ns"`
	StddevNs    uint64    `json:"stddev_ns"`
	AvgTs       float64   `json:"avg_ts"`
	StddevTs    float64   `json:"stddev_ts"`
	SamplesNs   []uint64  `json:"samples_ns"`
	SamplesTs   []float64 `json:"samples_ts"`
	// Hearth's additions.
	Cores         int     `json:"cores"`
	SIMD          string  `json:"simd"`
	Kernels       string  `json:"kernels"`
	NParallel     int     `json:"n_parallel"`                // sequences decoding together (1 but for tgN xP)
	Test          string  `json:"test"`                      // "pp512", "tg128", "tg128 x8"
	ActiveParams  uint64  `json:"active_params,omitempty"`   // parameters a token is computed with (a mixture of experts)
	BytesPerToken float64 `json:"bytes_per_token,omitempty"` // memory read per generated token (tg tests)
	ReadGBs       float64 `json:"read_gbs,omitempty"`        // memory read bandwidth of the run, GB/s
	RooflineTs    float64 `json:"roofline_ts,omitempty"`     // read bandwidth ÷ bytes per token
	RooflinePct   float64 `json:"roofline_pct,omitempty"`    // avg_ts as a percentage of roofline_ts
}

// test is one measurement to make.
type test struct {
	prompt, gen, parallel, threads int
}

func (t test) name() string {
	switch {
	case t.parallel > 1:
		return fmt.Sprintf("tg%d x%d", t.gen, t.parallel)
	case t.prompt > 0:
		return fmt.Sprintf("pp%d", t.prompt)
	}
	return fmt.Sprintf("tg%d", t.gen)
}

// tokens is what one run processes (prompt tokens of tgN xP not counted).
func (t test) tokens() int { return t.prompt + t.gen*max(1, t.parallel) }

func (o *Options) tests() []test {
	var ts []test
	for _, th := range o.Threads {
		for _, p := range o.Prompt {
			if p > 0 {
				ts = append(ts, test{prompt: p, threads: th})
			}
		}
		for _, n := range o.Gen {
			if n > 0 {
				ts = append(ts, test{gen: n, threads: th})
			}
		}
		for _, par := range o.Parallel {
			for _, n := range o.Gen {
				if par > 1 && n > 0 {
					ts = append(ts, test{gen: n, parallel: par, threads: th})
				}
			}
		}
	}
	return ts
}

// Run measures the model at path. Tests run one after the other, never
// concurrently.
func Run(path string, o Options) ([]Result, error) {
	o.defaults()
	tests := o.tests()
	if len(tests) == 0 {
		return nil, errors.New("bench: no test to run (all of -p, -n are 0)")
	}
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	needs, err := arch.Describe(f)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	info := describeModel(f, &needs)
	var total, done int64
	for _, t := range tests {
		total += int64(t.tokens() * o.Reps)
		if t.prompt > 0 {
			total += int64(t.prompt) // the warm-up
		} else {
			total += int64(max(1, t.parallel))
		}
	}
	progress := func(n int) {
		done += int64(n)
		if o.Progress != nil {
			o.Progress(done, total)
		}
	}
	sys := Describe()
	var results []Result
	for _, t := range tests {
		dev := o.Device
		if dev == "" {
			dev = "cpu"
		}
		be, place, err := device.Open(f, &needs, device.Options{Threads: t.threads, Device: dev, GPULayers: o.GPULayers})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		m, err := arch.Load(f, be)
		if err != nil {
			device.Close(be)
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		info.describeLoaded(f, m)
		rec, _ := be.(backend.Recurrent)
		r := &runner{m: m, rec: rec, t: t, batch: o.Batch, bos: info.bos, vocab: m.Info().VocabSize,
			rng: rand.New(rand.NewPCG(o.Seed, uint64(len(results)))), progress: progress}
		samples, err := r.run(o.Reps)
		// Backends as llama-bench writes them ("CPU", "CUDA+CPU").
		threads, names := place.Threads, strings.ToUpper(be.Name())
		device.Close(be)
		if err != nil {
			return nil, fmt.Errorf("%s: %s: %w", path, t.name(), err)
		}
		res := Result{
			BuildCommit: buildCommit(), CPUInfo: sys.CPU, Backends: names, Cores: sys.Cores, SIMD: sys.SIMD, Kernels: sys.Kernels,
			ModelFile: path, ModelType: info.desc, ModelSize: info.size, ModelParams: info.params, ActiveParams: info.active,
			NBatch: o.Batch, NUBatch: o.Batch, Threads: threads, TypeK: "f16", TypeV: "f16",
			NPrompt: t.prompt, NGen: t.gen, NParallel: max(1, t.parallel), Test: t.name(),
			TestTime: time.Now().UTC().Format(time.RFC3339),
		}
		res.setSamples(samples, t.tokens())
		if t.gen > 0 {
			res.BytesPerToken = info.bytesPerToken(t)
			if o.ReadGBs > 0 {
				res.ReadGBs = o.ReadGBs
				res.RooflineTs = o.ReadGBs * 1e9 / res.BytesPerToken
				res.RooflinePct = 100 * res.AvgTs / res.RooflineTs
			}
		}
		results = append(results, res)
	}
	return results, nil
}

func (r *Result) setSamples(ns []uint64, tokens int) {
	r.SamplesNs = ns
	r.SamplesTs = make([]float64, len(ns))
	nsf := make([]float64, len(ns))
	for i, v := range ns {
		nsf[i] = float64(v)
		r.SamplesTs[i] = float64(tokens) / (float64(v) / 1e9)
	}
	avg, sd := meanStd(nsf)
	r.AvgNs, r.StddevNs = uint64(avg), uint64(sd)
	r.AvgTs, r.StddevTs = meanStd(r.SamplesTs)
}

// meanStd returns the mean and the sample standard deviation (0 for one
// value), as llama-bench's avg and stdev.
func meanStd(x []float64) (mean, sd float64) {
	if len(x) == 0 {
		return 0, 0
	}
	for _, v := range x {
		mean += v
	}
	mean /= float64(len(x))
	if len(x) < 2 {
		return mean, 0
	}
	for _, v := range x {
		sd += (v - mean) * (v - mean)
	}
	return mean, math.Sqrt(sd / float64(len(x)-1))
}

// runner runs one test on a loaded model.
type runner struct {
	m        arch.Model
	rec      backend.Recurrent // the backend's recurrent ops, nil when it has none
	t        test
	batch    int
	bos      int32 // -1: the model adds no BOS
	vocab    int
	rng      *rand.Rand
	progress func(int)
}

func (r *runner) token() int32 { return int32(r.rng.IntN(r.vocab)) }

func (r *runner) run(reps int) ([]uint64, error) {
	t := r.t
	if t.parallel > 1 {
		return r.runParallel(reps)
	}
	kv, err := r.m.NewKV(t.prompt + t.gen)
	if err != nil {
		return nil, err
	}
	// Warm-up, as llama-bench: the whole prompt, or one generated token.
	if t.prompt > 0 {
		err = r.prompt(kv, t.prompt)
	} else {
		err = r.generate(kv, 1)
	}
	if err != nil {
		return nil, err
	}
	samples := make([]uint64, 0, reps)
	for range reps {
		// The cache is reused: positions are overwritten from 0, and
		// attention reads only positions up to the token's own, so this
		// is llama_memory_clear.
		start := time.Now()
		if t.prompt > 0 {
			err = r.prompt(kv, t.prompt)
		}
		if err == nil && t.gen > 0 {
			err = r.generate(kv, t.gen)
		}
		if err != nil {
			return nil, err
		}
		samples = append(samples, uint64(time.Since(start).Nanoseconds()))
	}
	return samples, nil
}

// prompt evaluates n random tokens from position 0 in passes of r.batch,
// with the logits of the last token of each pass (llama-bench's
// test_prompt).
func (r *runner) prompt(kv backend.KV, n int) error {
	ids := make([]int32, 0, r.batch)
	for done := 0; done < n; {
		k := min(n-done, r.batch)
		ids = ids[:0]
		for i := range k {
			if done == 0 && i == 0 && r.bos >= 0 {
				ids = append(ids, r.bos)
			} else {
				ids = append(ids, r.token())
			}
		}
		if _, err := r.m.Forward(arch.Single(ids, done, kv, false)); err != nil {
			return err
		}
		done += k
		r.progress(k)
	}
	return nil
}

// generate evaluates n single tokens from position 0, each with its logits
// (llama-bench's test_gen).
func (r *runner) generate(kv backend.KV, n int) error {
	tok := r.bos
	if tok < 0 {
		tok = r.token()
	}
	ids := []int32{0}
	for i := range n {
		ids[0] = tok
		if _, err := r.m.Forward(arch.Single(ids, i, kv, true)); err != nil {
			return err
		}
		tok = r.token()
		r.progress(1)
	}
	return nil
}

// runParallel: P sequences get ParallelPrompt tokens each in one untimed
// pass, then advance together one token per step for t.gen steps, each
// step one forward pass of P tokens with P rows of logits.
func (r *runner) runParallel(reps int) ([]uint64, error) {
	t := r.t
	p := t.parallel
	kvs := make([]backend.KV, p)
	for i := range kvs {
		kv, err := r.m.NewKV(ParallelPrompt + t.gen)
		if err != nil {
			return nil, err
		}
		kvs[i] = kv
	}
	// A hybrid model's sequences hold recurrent state, which cannot be
	// rewound as the KV positions are overwritten: each gets a slot of
	// one pool, and each run restores the states after the prompt.
	restore, err := r.stateSlots(kvs)
	if err != nil {
		return nil, err
	}
	b := &arch.Batch{KVs: kvs}
	fill := func(npos, start int) {
		b.IDs, b.Pos, b.Seq, b.Outputs = b.IDs[:0], b.Pos[:0], b.Seq[:0], b.Outputs[:0]
		for s := range p {
			for i := range npos {
				id := r.token()
				if start+i == 0 && r.bos >= 0 {
					id = r.bos
				}
				b.IDs = append(b.IDs, id)
				b.Pos = append(b.Pos, int32(start+i))
				b.Seq = append(b.Seq, int32(s))
			}
			b.Outputs = append(b.Outputs, len(b.IDs)-1)
		}
	}
	decode := func(steps int) error {
		restore(false)
		for i := range steps {
			fill(1, ParallelPrompt+i)
			if _, err := r.m.Forward(b); err != nil {
				return err
			}
			r.progress(p)
		}
		return nil
	}
	fill(ParallelPrompt, 0)
	if _, err := r.m.Forward(b); err != nil {
		return nil, err
	}
	restore(true)
	if err := decode(1); err != nil { // warm-up
		return nil, err
	}
	samples := make([]uint64, 0, reps)
	for range reps {
		start := time.Now()
		if err := decode(t.gen); err != nil {
			return nil, err
		}
		samples = append(samples, uint64(time.Since(start).Nanoseconds()))
	}
	return samples, nil
}

// stateSlots gives each of kvs (a hybrid model's) a slot of one state
// pool, and returns the function that saves (save true) or restores their
// states; for a model without recurrent layers it does nothing.
func (r *runner) stateSlots(kvs []backend.KV) (func(save bool), error) {
	sm, ok := r.m.(arch.Stateful)
	if !ok || len(sm.StateSizes()) == 0 {
		return func(bool) {}, nil
	}
	if r.rec == nil {
		return nil, fmt.Errorf("%w: the backend has no recurrent ops", backend.ErrStateLost)
	}
	states, err := sm.NewStatePool(len(kvs))
	if err != nil {
		return nil, err
	}
	saved, err := sm.NewStatePool(len(kvs))
	if err != nil {
		return nil, err
	}
	for i, kv := range kvs {
		pk, ok := kv.(*backend.PagedKV)
		if !ok {
			return nil, fmt.Errorf("bench: a %T cache cannot carry a recurrent state slot", kv)
		}
		pk.States, pk.Slot = states, i
	}
	return func(save bool) {
		for i := range kvs {
			if save {
				r.rec.CopyState(saved, i, states, i)
			} else {
				r.rec.CopyState(states, i, saved, i)
			}
		}
	}, nil
}

// modelInfo is what the report needs from the file and the model.
type modelInfo struct {
	desc         string
	size, params uint64
	active       uint64 // parameters a token is computed with, when fewer than params (a mixture of experts)
	bos          int32
	traffic      arch.Traffic   // weights read per forward pass
	kv           []arch.LayerKV // each layer's cache (width, window), from the architecture
	fromModel    bool           // traffic comes from the loaded model
}

// bytesPerToken is the memory traffic per generated token of a tg test:
// the weights a step reads (Traffic.StepBytes: in a mixture, the experts
// its tokens are routed to) plus every sequence's cached positions that
// each layer's attention reads (up to its sliding window), averaged over
// the steps of the run, over the tokens of a step.
func (m modelInfo) bytesPerToken(t test) float64 {
	p := max(1, t.parallel)
	start := 0
	if p > 1 {
		start = ParallelPrompt
	}
	var kv float64 // F16 K and V bytes read per step, all layers, summed over the steps
	for i := range t.gen {
		pos := start + i + 1
		for _, l := range m.kv {
			w := pos
			if l.Window > 0 {
				w = min(pos, l.Window)
			}
			kv += float64(w) * 2 * 2 * float64(l.Dim)
		}
	}
	kv /= float64(max(1, t.gen))
	return (m.traffic.StepBytes(p) + float64(p)*kv) / float64(p)
}

// describeModel reads what the report needs from the file, with the
// weight traffic of a model that does not report its own: every tensor
// once per step but the token embedding, of which a token reads one row
// (unless it is also the output matrix).
func describeModel(f *gguf.File, n *arch.Needs) modelInfo {
	m := modelInfo{size: n.WeightBytes, params: n.Info.Params, kv: n.KV}
	_, untied := f.Tensor("output.weight")
	for i := range f.Tensors {
		t := &f.Tensors[i]
		if t.Name == "token_embd.weight" && untied {
			if len(t.Dims) > 1 && t.Dims[1] > 0 {
				m.traffic.EmbedRow = t.Size / t.Dims[1]
			}
			continue
		}
		m.traffic.Dense += t.Size
	}
	m.bos = -1
	addBOS, ok := f.Bool("tokenizer.ggml.add_bos_token")
	if model, _ := f.String("tokenizer.ggml.model"); !ok && model == "llama" {
		addBOS = true // llama.cpp's default for SentencePiece
	}
	if id, ok := f.Uint("tokenizer.ggml.bos_token_id"); ok && addBOS {
		m.bos = int32(id)
	}
	m.desc = fmt.Sprintf("%s %s %s", n.Info.Arch, sizeLabel(m.params), fileTypeName(f))
	return m
}

// describeLoaded completes m from the loaded model: when it reports
// them, the weights a pass reads and its active parameters.
func (m *modelInfo) describeLoaded(f *gguf.File, am arch.Model) {
	if m.fromModel {
		return
	}
	m.fromModel = true
	tr, ok := am.(arch.TrafficReporter)
	if !ok {
		return
	}
	m.traffic = tr.Traffic()
	if a := m.traffic.ActiveParams; a > 0 && a < m.params {
		m.active = a
		// llama.cpp names mixtures by both counts: "30B.A3B".
		m.desc = fmt.Sprintf("%s %s.A%s %s", architecture(f), sizeLabel(m.params), sizeLabel(a), fileTypeName(f))
	}
}

func architecture(f *gguf.File) string {
	a, _ := f.String("general.architecture")
	return a
}

// sizeLabel names a parameter count as llama.cpp's model types do: "1B",
// "8B", "260K".
func sizeLabel(n uint64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.0fB", math.Round(float64(n)/1e9))
	case n >= 1e6:
		return fmt.Sprintf("%.0fM", math.Round(float64(n)/1e6))
	}
	return fmt.Sprintf("%.0fK", math.Round(float64(n)/1e3))
}

// fileTypeName is llama.cpp's name of general.file_type ("Q4_K - Medium").
func fileTypeName(f *gguf.File) string {
	id, ok := f.Uint("general.file_type")
	if !ok {
		return "?"
	}
	for _, ft := range synth.FileTypes() {
		if uint64(ft.ID) == id {
			return ft.Desc
		}
	}
	return fmt.Sprintf("ftype %d", id)
}

func buildCommit() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 7 {
				return s.Value[:7]
			}
		}
	}
	return "unknown"
}

// ModelName is the file name without its folder, for tables.
func ModelName(path string) string { return filepath.Base(path) }
