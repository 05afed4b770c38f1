package bench

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/loader/synth"
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
	if err := WriteReport(&md, "xml", sys, rs); err == nil {
		t.Error("unknown format accepted")
	}
}

func TestBytesPerToken(t *testing.T) {
	for _, tied := range []bool{true, false} {
		path := tinyModel(t, "f16", tied)
		f, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		m := describeModel(f)
		f.Close()
		s, _ := synth.LookupShape("tiny")
		d, v := float64(s.Embd), float64(s.Vocab)
		// F16 everywhere but the F32 norms.
		layer := 2*(d*d*2+2*d*float64(s.KVHeads*s.HeadDim())+3*d*float64(s.FF)) + 4*2*d
		weights := float64(s.Layers)*layer + 4*d + 2*v*d // + output (or tied token_embd)
		if !tied {
			weights += 2 * d // one row of token_embd
		}
		if math.Abs(m.weightBytes-weights) > 1 {
			t.Errorf("tied %v: weight bytes %v, want %v", tied, m.weightBytes, weights)
		}
		kv := float64(s.Layers) * 2 * float64(s.KVHeads*s.HeadDim()) * 2
		if m.kvPerPos != kv {
			t.Errorf("kv bytes per position %v, want %v", m.kvPerPos, kv)
		}
		if got, want := m.bytesPerToken(test{gen: 9}), weights+5*kv; got != want {
			t.Errorf("tg9: %v bytes per token, want %v", got, want)
		}
		if got, want := m.bytesPerToken(test{gen: 9, parallel: 4}), (weights+4*(5+ParallelPrompt)*kv)/4; got != want {
			t.Errorf("tg9 x4: %v bytes per token, want %v", got, want)
		}
		if m.bos != 1 {
			t.Errorf("bos %d, want 1", m.bos)
		}
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
