package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/loader/synth"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

func tinyModel(t *testing.T, q string, tied bool) string {
	t.Helper()
	s, err := synth.LookupShape("tiny")
	if err != nil {
		t.Fatal(err)
	}
	s.Tied = tied
	path := filepath.Join(t.TempDir(), "tiny-"+q+".gguf")
	if err := synth.Write(path, s, q, 2); err != nil {
		t.Fatal(err)
	}
	return path
}

// llamaBenchFields are the fields of llama-bench's JSON output that tools
// read.
var llamaBenchFields = []string{"model_filename", "model_type", "model_size", "model_n_params", "n_threads",
	"n_prompt", "n_gen", "avg_ts", "stddev_ts", "samples_ts", "avg_ns", "stddev_ns", "samples_ns",
	"n_batch", "n_ubatch", "cpu_info", "backends", "build_commit", "test_time", "type_k", "type_v"}

func TestRun(t *testing.T) {
	path := tinyModel(t, "q4_0", true)
	var calls int
	var last, total int64
	o := Options{Prompt: []int{24}, Gen: []int{5}, Parallel: []int{3}, Threads: []int{1, 2}, Reps: 2, Batch: 16,
		ReadGBs: 10, Progress: func(d, n int64) { calls++; last, total = d, n }}
	rs, err := Run(path, o)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"pp24", "tg5", "tg5 x3", "pp24", "tg5", "tg5 x3"}
	if len(rs) != len(want) {
		t.Fatalf("%d results, want %d", len(rs), len(want))
	}
	for i, r := range rs {
		if r.Test != want[i] {
			t.Errorf("result %d: test %q, want %q", i, r.Test, want[i])
		}
		if r.Threads != 1+i/3 {
			t.Errorf("%s: %d threads, want %d", r.Test, r.Threads, 1+i/3)
		}
		if len(r.SamplesNs) != 2 || len(r.SamplesTs) != 2 || r.AvgTs <= 0 || math.IsNaN(r.StddevTs) {
			t.Errorf("%s: samples %v, avg %v ± %v", r.Test, r.SamplesTs, r.AvgTs, r.StddevTs)
		}
		if s, _ := synth.LookupShape("tiny"); r.ModelType != "llama 3M Q4_0" || r.ModelParams != s.Params() || r.Backends != "CPU" {
			t.Errorf("%s: model %q, %d params, backend %q", r.Test, r.ModelType, r.ModelParams, r.Backends)
		}
		tokens := map[string]float64{"pp24": 24, "tg5": 5, "tg5 x3": 15}[r.Test]
		if got := tokens / (float64(r.SamplesNs[0]) / 1e9); math.Abs(got-r.SamplesTs[0]) > 1e-6*got {
			t.Errorf("%s: samples_ts[0] %v, want tokens/time %v", r.Test, r.SamplesTs[0], got)
		}
		if strings.HasPrefix(r.Test, "tg") != (r.RooflineTs > 0) || (r.RooflineTs > 0 && r.BytesPerToken <= 0) {
			t.Errorf("%s: roofline %v, bytes/token %v", r.Test, r.RooflineTs, r.BytesPerToken)
		}
	}
	if rs[2].NParallel != 3 || rs[2].NGen != 5 || rs[0].NPrompt != 24 || rs[1].NGen != 5 {
		t.Errorf("n_parallel %d, n_gen %d, n_prompt %d", rs[2].NParallel, rs[2].NGen, rs[0].NPrompt)
	}
	// warm-ups: pp 24, tg 1, tg x3 3; timed: 2 × (24 + 5 + 15); both thread counts
	if wantTotal := int64(2 * (24 + 1 + 3 + 2*(24+5+15))); total != wantTotal || last != total || calls == 0 {
		t.Errorf("progress ended at %d of %d after %d calls, want %d of %d", last, total, calls, wantTotal, wantTotal)
	}
}

func TestReports(t *testing.T) {
	path := tinyModel(t, "q8_0", false)
	sys := Describe()
	sys.ReadGBs, sys.CopyGBs, sys.BandwidthBytes, sys.BandwidthThreads = 12.5, 20, 1<<30, 2
	rs, err := Run(path, Options{Prompt: []int{8}, Gen: []int{3}, Parallel: []int{2}, Threads: []int{2}, Reps: 1, ReadGBs: sys.ReadGBs})
	if err != nil {
		t.Fatal(err)
	}
	var js bytes.Buffer
	if err := WriteReport(&js, "json", sys, rs); err != nil {
		t.Fatal(err)
	}
	var objs []map[string]any
	if err := json.Unmarshal(js.Bytes(), &objs); err != nil {
		t.Fatalf("json output: %v\n%s", err, js.String())
	}
	for _, o := range objs {
		for _, f := range llamaBenchFields {
			if _, ok := o[f]; !ok {
				t.Errorf("json lacks llama-bench's field %q", f)
			}
		}
	}
	var jl bytes.Buffer
	WriteReport(&jl, "jsonl", sys, rs)
	if n := strings.Count(jl.String(), "\n"); n != len(rs) {
		t.Errorf("jsonl: %d lines for %d results", n, len(rs))
	}
	var cs bytes.Buffer
	if err := WriteReport(&cs, "csv", sys, rs); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&cs).ReadAll()
	if err != nil || len(recs) != len(rs)+1 {
		t.Fatalf("csv: %d records, %v", len(recs), err)
	}
	for _, f := range llamaBenchFields {
		found := false
		for _, h := range recs[0] {
			found = found || h == f
		}
		if !found {
			t.Errorf("csv lacks column %q", f)
		}
	}
	var md bytes.Buffer
	if err := WriteReport(&md, "md", sys, rs); err != nil {
		t.Fatal(err)
	}
	out := md.String()
	for _, want := range []string{"CPU: " + sys.CPU, "SIMD " + sys.SIMD, "read 12.5 GB/s", "| model", " t/s |", "pp8", "tg3 x2",
		"llama 3M Q8_0", "% of ", "tg3 x2 aggregate", "× tg3", "build: "} {
		if !strings.Contains(out, want) {
			t.Errorf("markdown lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "active") {
		t.Errorf("markdown of a dense model has an active column:\n%s", out)
	}
	if err := WriteReport(&md, "xml", sys, rs); err == nil {
		t.Error("unknown format accepted")
	}
}

// describe returns what Run knows of the model at path once loaded.
func describe(t *testing.T, path string) (file, loaded modelInfo) {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	be := cpu.New(1)
	defer be.Close()
	m, err := arch.Load(f, be)
	if err != nil {
		t.Fatal(err)
	}
	needs, err := arch.Describe(f)
	if err != nil {
		t.Fatal(err)
	}
	file = describeModel(f, &needs)
	loaded = file
	loaded.describeLoaded(f, m)
	return file, loaded
}

func TestBytesPerToken(t *testing.T) {
	for _, tied := range []bool{true, false} {
		file, m := describe(t, tinyModel(t, "f16", tied))
		s, _ := synth.LookupShape("tiny")
		d, v := float64(s.Embd), float64(s.Vocab)
		// F16 everywhere but the F32 norms.
		layer := 2*(d*d*2+2*d*float64(s.KVHeads*s.HeadDim())+3*d*float64(s.FF)) + 4*2*d
		weights := float64(s.Layers)*layer + 4*d + 2*v*d // + output (or tied token_embd)
		row := 0.0
		if !tied {
			row = 2 * d // one row of token_embd
		}
		if got := m.traffic.StepBytes(1); math.Abs(got-weights-row) > 1 {
			t.Errorf("tied %v: weight bytes %v, want %v", tied, got, weights+row)
		}
		if file.traffic.Dense != m.traffic.Dense || file.traffic.EmbedRow != m.traffic.EmbedRow {
			t.Errorf("tied %v: the file's count %+v differs from the model's %+v", tied, file.traffic, m.traffic)
		}
		if m.active != 0 || m.traffic.ActiveParams != m.params {
			t.Errorf("dense model: active %d (%d), want %d", m.active, m.traffic.ActiveParams, m.params)
		}
		kv := float64(s.Layers) * 2 * float64(s.KVHeads*s.HeadDim()) * 2
		if got, want := m.bytesPerToken(test{gen: 9}), weights+row+5*kv; got != want {
			t.Errorf("tg9: %v bytes per token, want %v", got, want)
		}
		if got, want := m.bytesPerToken(test{gen: 9, parallel: 4}), (weights+4*row+4*(5+ParallelPrompt)*kv)/4; got != want {
			t.Errorf("tg9 x4: %v bytes per token, want %v", got, want)
		}
		if m.bos != 1 {
			t.Errorf("bos %d, want 1", m.bos)
		}
	}
}

// TestMoETraffic: a mixture's roofline counts the experts a token is
// routed to, not the file; sliding layers read their window of the cache.
func TestMoETraffic(t *testing.T) {
	for _, c := range []struct{ shape, q string }{{"tiny-qwen3moe", "q4_k_m"}, {"tiny-gpt-oss", "mxfp4_moe"}} {
		s, err := synth.LookupShape(c.shape)
		if err != nil {
			t.Fatal(err)
		}
		ft, _ := synth.LookupFileType(c.q)
		path := filepath.Join(t.TempDir(), c.shape+".gguf")
		if err := synth.Write(path, s, c.q, 2); err != nil {
			t.Fatal(err)
		}
		_, m := describe(t, path)
		var dense, experts, row float64
		for _, tn := range synth.Plan(s, ft) {
			switch {
			case strings.Contains(tn.Name, "_exps."):
				experts += float64(tn.Bytes())
			case tn.Name == "token_embd.weight" && !s.Tied:
				row = float64(tn.Bytes()) / float64(s.Vocab)
			default:
				dense += float64(tn.Bytes())
			}
		}
		tr := m.traffic
		if float64(tr.Dense) != dense || float64(tr.Experts) != experts || float64(tr.EmbedRow) != row ||
			tr.NumExperts != s.Experts || tr.ExpertsUsed != s.ExpertsUsed {
			t.Errorf("%s: traffic %+v, want dense %v, experts %v, row %v", c.shape, tr, dense, experts, row)
		}
		if m.active != s.ActiveParams() || m.params != s.Params() {
			t.Errorf("%s: %d of %d params active, want %d of %d", c.shape, m.active, m.params, s.ActiveParams(), s.Params())
		}
		k := float64(s.ExpertsUsed) / float64(s.Experts)
		if got, want := tr.StepBytes(1), dense+row+k*experts; math.Abs(got-want) > 1e-6*want {
			t.Errorf("%s: one token reads %v weight bytes, want %v", c.shape, got, want)
		}
		if got, want := tr.StepBytes(3), dense+3*row+(1-math.Pow(1-k, 3))*experts; math.Abs(got-want) > 1e-6*want {
			t.Errorf("%s: three tokens read %v weight bytes, want %v", c.shape, got, want)
		}
		// tg9: positions 1..9, sliding layers read at most their window.
		var positions float64
		for p := 1; p <= 9; p++ {
			for l := range s.Layers {
				slides := s.Window > 0 && l%s.WindowPattern < s.WindowPattern-1
				if slides {
					positions += float64(min(p, s.Window))
				} else {
					positions += float64(p)
				}
			}
		}
		kv := 2 * float64(s.KVHeads*s.HeadDim()) * 2 * positions / 9
		if got, want := m.bytesPerToken(test{gen: 9}), dense+row+k*experts+kv; math.Abs(got-want) > 1e-6*want {
			t.Errorf("%s: tg9 %v bytes per token, want %v", c.shape, got, want)
		}
	}
}

// TestRunMoE: a mixture reports its active parameters, names its size as
// llama.cpp does, and its roofline counts the experts a token reads.
func TestRunMoE(t *testing.T) {
	s, _ := synth.LookupShape("tiny-qwen3moe")
	path := filepath.Join(t.TempDir(), "moe.gguf")
	if err := synth.Write(path, s, "q8_0", 2); err != nil {
		t.Fatal(err)
	}
	rs, err := Run(path, Options{Prompt: []int{6}, Gen: []int{3}, Threads: []int{2}, Reps: 1, ReadGBs: 10})
	if err != nil {
		t.Fatal(err)
	}
	_, m := describe(t, path)
	for _, r := range rs {
		if r.ActiveParams != s.ActiveParams() || r.ModelParams != s.Params() || r.ModelType != "qwen3moe 8M.A3M Q8_0" {
			t.Errorf("%s: %q, %d of %d params active; want %d of %d", r.Test, r.ModelType, r.ActiveParams, r.ModelParams, s.ActiveParams(), s.Params())
		}
		if r.Test == "tg3" && (r.BytesPerToken != m.bytesPerToken(test{gen: 3}) || r.BytesPerToken >= float64(r.ModelSize)) {
			t.Errorf("tg3: %v bytes per token of a %d-byte file", r.BytesPerToken, r.ModelSize)
		}
	}
	var md bytes.Buffer
	if err := WriteReport(&md, "md", Describe(), rs); err != nil {
		t.Fatal(err)
	}
	if out := md.String(); !strings.Contains(out, "| active |") || !strings.Contains(out, paramString(s.ActiveParams())) {
		t.Errorf("markdown lacks the active parameters:\n%s", out)
	}
}

func TestMeanStd(t *testing.T) {
	m, s := meanStd([]float64{2, 4, 4, 4, 5, 5, 7, 9})
	if m != 5 || math.Abs(s-2.138089935) > 1e-6 {
		t.Errorf("mean %v sd %v, want 5 and 2.138 (sample sd)", m, s)
	}
	if m, s := meanStd([]float64{3}); m != 3 || s != 0 {
		t.Errorf("one value: %v ± %v", m, s)
	}
}

func TestBandwidthAndSystem(t *testing.T) {
	sys := Describe()
	if sys.CPU == "" || sys.Cores < 1 || sys.SIMD == "" || sys.Kernels == "" {
		t.Errorf("system %+v", sys)
	}
	sys.MeasureBandwidth(16<<20, 2)
	if sys.ReadGBs <= 0 || sys.CopyGBs <= 0 || sys.BandwidthBytes != 16<<20 || sys.BandwidthThreads != 2 {
		t.Errorf("bandwidth %+v", sys)
	}
}

func TestSizeLabel(t *testing.T) {
	for n, want := range map[uint64]string{1038682112: "1B", 8030261248: "8B", 2621696: "3M", 260000: "260K"} {
		if got := sizeLabel(n); got != want {
			t.Errorf("sizeLabel(%d) = %q, want %q", n, got, want)
		}
	}
}

func TestNoTests(t *testing.T) {
	if _, err := Run(tinyModel(t, "q4_0", true), Options{Prompt: []int{0}, Gen: []int{0}}); err == nil {
		t.Error("a run with no tests succeeded")
	}
	if _, err := Run(filepath.Join(t.TempDir(), "missing.gguf"), Options{Gen: []int{1}}); err == nil {
		t.Error("a missing file succeeded")
	}
}

// TestRunHybrid: Qwen 3.5 (Gated DeltaNet + attention), dense and MoE:
// every test runs, batched decode included (each run restores the
// sequences' recurrent states after the prompt: they cannot be rewound as
// KV positions are overwritten), and the weights a pass reads count the
// recurrent layers and the attention gates (a dense model's active
// parameters are all of them).
func TestRunHybrid(t *testing.T) {
	for _, name := range []string{"qwen35-h1001-Q8_0", "qwen35moe-h1001-Q8_0"} {
		path := filepath.Join(testdata.Dir(t, "arch-next/models"), name+".gguf")
		rs, err := Run(path, Options{Prompt: []int{8}, Gen: []int{3}, Parallel: []int{3}, Threads: []int{2}, Reps: 2, ReadGBs: 10})
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if len(rs) != 3 {
			t.Fatalf("%s: %d results", name, len(rs))
		}
		dense := name == "qwen35-h1001-Q8_0"
		for _, r := range rs {
			if dense != (r.ActiveParams == 0) || r.AvgTs <= 0 {
				t.Errorf("%s %s: %q, %d active params, %v t/s", name, r.Test, r.ModelType, r.ActiveParams, r.AvgTs)
			}
		}
	}
}
