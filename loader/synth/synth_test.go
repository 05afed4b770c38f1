package synth_test

import (
	"bytes"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/loader/synth"
	"github.com/hearth-llm/hearth/loader/tokenizer"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	_ "github.com/hearth-llm/hearth/runtime/arch/all"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// small is a shape whose widths are whole K-quant blocks (so the q4_k_m
// recipe applies unchanged) with 8 layers (so use_more_bits picks layers
// 0, 3, 6 and 7), and which writes in well under a second.
var small = synth.Shape{Name: "small", Embd: 256, Layers: 8, Heads: 4, KVHeads: 1, FF: 512, Vocab: 600,
	Tied: true, Context: 256, RopeBase: 10000, NormEps: 1e-5}

func write(t *testing.T, s synth.Shape, q string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), s.Name+"-"+q+".gguf")
	if err := synth.Write(path, s, q, 2); err != nil {
		t.Fatal(err)
	}
	return path
}

// forward loads path with Hearth and returns the logits of a short prompt.
func forward(t *testing.T, path string) (logits []float32, vocab int) {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	be := cpu.New(2)
	t.Cleanup(be.Close)
	m, err := arch.Load(f, be)
	if err != nil {
		t.Fatal(err)
	}
	kv, err := m.NewKV(16)
	if err != nil {
		t.Fatal(err)
	}
	ids := []int32{1, 300, 301, 5, 400}
	out, err := m.Forward(arch.Single(ids, 0, kv, true))
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), out...), m.Info().VocabSize
}

// checkLogits: finite, not flat, in a realistic range, and different per
// position.
func checkLogits(t *testing.T, logits []float32, vocab int) {
	t.Helper()
	rows := len(logits) / vocab
	for r := range rows {
		row := logits[r*vocab : (r+1)*vocab]
		var sum, sq float64
		for i, v := range row {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				t.Fatalf("row %d: logit %d is %v", r, i, v)
			}
			sum += float64(v)
		}
		mean := sum / float64(vocab)
		for _, v := range row {
			sq += (float64(v) - mean) * (float64(v) - mean)
		}
		std := math.Sqrt(sq / float64(vocab))
		if std < 0.1 || std > 20 {
			t.Errorf("row %d: logits std %.4g, want a realistic spread (0.1..20)", r, std)
		}
	}
	if rows > 1 && slicesEqual(logits[:vocab], logits[vocab:2*vocab]) {
		t.Error("logits do not depend on the input")
	}
}

func slicesEqual(a, b []float32) bool {
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestWriteLoadsAndRuns(t *testing.T) {
	for _, q := range []string{"q4_k_m", "q4_0", "q8_0", "f16", "iq4_nl"} {
		t.Run(q, func(t *testing.T) {
			path := write(t, small, q)
			logits, vocab := forward(t, path)
			if vocab != small.Vocab {
				t.Fatalf("vocab %d, want %d", vocab, small.Vocab)
			}
			checkLogits(t, logits, vocab)
		})
	}
}

func TestMetadataAndTokenizer(t *testing.T) {
	path := write(t, small, "q4_k_m")
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for key, want := range map[string]uint64{
		"general.file_type": 15, "llama.block_count": 8, "llama.embedding_length": 256,
		"llama.feed_forward_length": 512, "llama.attention.head_count": 4, "llama.attention.head_count_kv": 1,
		"llama.vocab_size": 600, "llama.rope.dimension_count": 64, "general.quantization_version": 2,
	} {
		if got, ok := f.Uint(key); !ok || got != want {
			t.Errorf("%s = %d (present %v), want %d", key, got, ok, want)
		}
	}
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	if tok.BOS() != 1 || tok.EOS() != 2 || !tok.AddBOS() {
		t.Errorf("BOS %d EOS %d add_bos %v, want 1, 2, true", tok.BOS(), tok.EOS(), tok.AddBOS())
	}
	ids := tok.Encode("the cat", true, false)
	if len(ids) < 2 || ids[0] != 1 {
		t.Fatalf("Encode gave %v, want BOS first", ids)
	}
	for _, id := range ids {
		if id < 0 || int(id) >= small.Vocab {
			t.Fatalf("token id %d outside the vocabulary", id)
		}
	}
	var params uint64
	for _, tn := range f.Tensors {
		params += tn.Elements()
	}
	if params != small.Params() {
		t.Errorf("file has %d weights, Shape.Params says %d", params, small.Params())
	}
	tokens, _ := f.Strings("tokenizer.ggml.tokens")
	seen := map[string]bool{}
	for _, s := range tokens {
		if seen[s] {
			t.Fatalf("piece %q appears twice", s)
		}
		seen[s] = true
	}
	if tokens[3] != "<0x00>" || tokens[258] != "<0xFF>" || tokens[0] != "<unk>" {
		t.Errorf("tokens 0, 3, 258 = %q %q %q", tokens[0], tokens[3], tokens[258])
	}
}

// TestQ4KMMix checks llama-quantize's Q4_K_M recipe: Q6_K for the tied
// token_embd and for attn_v and ffn_down in the use_more_bits layers, Q4_K
// elsewhere, F32 norms.
func TestQ4KMMix(t *testing.T) {
	ft, _ := synth.LookupFileType("q4_k_m")
	got := map[string]quant.Type{}
	for _, tn := range synth.Plan(small, ft) {
		got[tn.Name] = tn.Type
	}
	more := map[int]bool{0: true, 3: true, 6: true, 7: true}
	want := map[string]quant.Type{"token_embd.weight": quant.Q6_K, "output_norm.weight": quant.F32}
	for i := range small.Layers {
		p := fmt.Sprintf("blk.%d.", i)
		for _, n := range []string{"attn_q", "attn_k", "attn_output", "ffn_gate", "ffn_up", "attn_v", "ffn_down"} {
			want[p+n+".weight"] = quant.Q4_K
		}
		want[p+"attn_norm.weight"], want[p+"ffn_norm.weight"] = quant.F32, quant.F32
		if more[i] {
			want[p+"attn_v.weight"], want[p+"ffn_down.weight"] = quant.Q6_K, quant.Q6_K
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d tensors, want %d", len(got), len(want))
	}
	for n, w := range want {
		if got[n] != w {
			t.Errorf("%s: %v, want %v", n, got[n], w)
		}
	}
	// The written file has the planned types.
	f, err := gguf.Open(write(t, small, "q4_k_m"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, tn := range f.Tensors {
		if tn.Type != want[tn.Name] {
			t.Errorf("file: %s is %v, want %v", tn.Name, tn.Type, want[tn.Name])
		}
	}
}

// TestMixes spot-checks other recipes: an untied output, the 32-element
// fallback of K-quants on rows that are not whole 256 blocks, Q8_0's output.
func TestMixes(t *testing.T) {
	untied := small
	untied.Tied = false
	narrow := small
	narrow.Embd, narrow.FF = 96, 160 // not whole K-quant blocks
	cases := []struct {
		s    synth.Shape
		q    string
		name string
		want quant.Type
	}{
		{untied, "q4_0", "token_embd.weight", quant.Q4_0},
		{untied, "q4_0", "output.weight", quant.Q6_K},
		{small, "q4_0", "token_embd.weight", quant.Q6_K},
		{small, "q4_0", "blk.0.ffn_down.weight", quant.Q4_0},
		{small, "q8_0", "token_embd.weight", quant.Q8_0},
		{small, "f16", "token_embd.weight", quant.F16},
		{small, "f16", "blk.0.attn_norm.weight", quant.F32},
		{small, "q3_k_m", "blk.0.attn_v.weight", quant.Q5_K},
		{small, "q3_k_m", "blk.2.attn_v.weight", quant.Q4_K},
		{small, "q3_k_m", "blk.2.attn_output.weight", quant.Q4_K},
		{small, "q3_k_m", "blk.2.attn_q.weight", quant.Q3_K},
		{small, "q2_k", "blk.2.ffn_down.weight", quant.Q3_K},
		{small, "q2_k", "blk.2.attn_v.weight", quant.Q4_K}, // n_gqa 4
		{small, "iq4_xs", "blk.2.attn_v.weight", quant.Q5_K},
		{small, "iq4_xs", "blk.0.ffn_down.weight", quant.Q5_K},
		{small, "iq4_xs", "blk.2.ffn_down.weight", quant.IQ4_XS},
		{narrow, "q4_k_m", "blk.1.attn_q.weight", quant.Q5_0},
		{narrow, "q4_k_m", "token_embd.weight", quant.Q8_0},
		{narrow, "q4_k_m", "blk.0.ffn_down.weight", quant.Q8_0},
		{narrow, "q5_k_m", "blk.1.ffn_up.weight", quant.Q5_1},
	}
	for _, c := range cases {
		ft, err := synth.LookupFileType(c.q)
		if err != nil {
			t.Fatal(err)
		}
		found := false
		for _, tn := range synth.Plan(c.s, ft) {
			if tn.Name == c.name {
				found = true
				if tn.Type != c.want {
					t.Errorf("%s %s (tied %v, n_embd %d): %v, want %v", c.q, c.name, c.s.Tied, c.s.Embd, tn.Type, c.want)
				}
			}
		}
		if !found {
			t.Errorf("%s: no tensor %s", c.q, c.name)
		}
	}
}

// TestDeterministic: the same seed gives the same bytes whatever the thread
// count; another seed gives other weights.
func TestDeterministic(t *testing.T) {
	dir := t.TempDir()
	a, b, c := filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")
	tiny, _ := synth.LookupShape("tiny")
	if err := synth.WriteWith(a, tiny, "q4_0", synth.Options{Threads: 1}); err != nil {
		t.Fatal(err)
	}
	if err := synth.WriteWith(b, tiny, "q4_0", synth.Options{Threads: 3}); err != nil {
		t.Fatal(err)
	}
	if err := synth.WriteWith(c, tiny, "q4_0", synth.Options{Threads: 2, Seed: 7}); err != nil {
		t.Fatal(err)
	}
	ba, _ := os.ReadFile(a)
	bb, _ := os.ReadFile(b)
	bc, _ := os.ReadFile(c)
	if !bytes.Equal(ba, bb) {
		t.Error("1 and 3 threads wrote different files")
	}
	if len(ba) != len(bc) || bytes.Equal(ba, bc) {
		t.Error("seed 7 should give the same size and other bytes")
	}
}

func TestProgressAndCache(t *testing.T) {
	t.Setenv("XDG_CACHE_HOME", t.TempDir())
	tiny, _ := synth.LookupShape("tiny")
	var last, total int64
	path, fresh, err := synth.Cached(tiny, "Q4_0", synth.Options{Threads: 2, Progress: func(d, n int64) { last, total = d, n }})
	if err != nil || !fresh {
		t.Fatalf("Cached: %v (fresh %v)", err, fresh)
	}
	if last != total || total == 0 {
		t.Errorf("progress ended at %d of %d", last, total)
	}
	if !strings.HasSuffix(path, filepath.Join("hearth", "models", "tiny-q4_0.gguf")) {
		t.Errorf("cache path %s", path)
	}
	if _, fresh, err := synth.Cached(tiny, "q4_0", synth.Options{}); err != nil || fresh {
		t.Errorf("second Cached: fresh %v, err %v; want the cached file", fresh, err)
	}
	// A truncated file is rewritten.
	st, _ := os.Stat(path)
	os.Truncate(path, st.Size()/2)
	if err := synth.Check(path, tiny, "q4_0", 0); err == nil {
		t.Error("Check accepted a truncated file")
	}
	if _, fresh, err := synth.Cached(tiny, "q4_0", synth.Options{}); err != nil || !fresh {
		t.Errorf("Cached after truncation: fresh %v, err %v; want a rewrite", fresh, err)
	}
	if err := synth.Check(path, tiny, "q4_0", 3); !errors.Is(err, synth.ErrNotSynthetic) {
		t.Errorf("Check with another seed: %v, want ErrNotSynthetic", err)
	}
}

func TestErrors(t *testing.T) {
	dir := t.TempDir()
	tiny, _ := synth.LookupShape("tiny")
	if err := synth.Write(filepath.Join(dir, "x"), tiny, "q9_9", 1); err == nil || !strings.Contains(err.Error(), "unknown quantization") {
		t.Errorf("unknown quant: %v", err)
	}
	bad := tiny
	bad.Heads = 7
	if err := synth.Write(filepath.Join(dir, "x"), bad, "q4_0", 1); err == nil {
		t.Error("a shape with 7 heads over 256 was accepted")
	}
	if _, err := synth.LookupShape("llama-70q"); err == nil || !strings.Contains(err.Error(), "llama-1b") {
		t.Errorf("unknown shape: %v", err)
	}
	if err := synth.Write(filepath.Join(dir, "missing", "x.gguf"), tiny, "q4_0", 1); err == nil {
		t.Error("writing into a missing folder succeeded")
	}
	if _, err := os.Stat(filepath.Join(dir, "x")); err == nil {
		t.Error("a failed write left a file")
	}
}

func TestShapesTable(t *testing.T) {
	want := map[string][7]int{ // embd, layers, heads, kv heads, ff, vocab, tied
		"llama-1b":      {2048, 16, 32, 8, 8192, 32000, 1},
		"llama-8b":      {4096, 32, 32, 8, 14336, 32000, 1},
		"llama3-8b":     {4096, 32, 32, 8, 14336, 128256, 0},
		"qwen3-8b":      {4096, 36, 32, 8, 12288, 151936, 0},
		"gemma3-4b":     {2560, 34, 8, 4, 10240, 262144, 1},
		"qwen3-30b-a3b": {2048, 48, 32, 4, 6144, 151936, 0},
		"gpt-oss-20b":   {2880, 24, 64, 8, 2880, 201088, 0},
	}
	for name, w := range want {
		s, err := synth.LookupShape(name)
		if err != nil {
			t.Fatal(err)
		}
		tied := 0
		if s.Tied {
			tied = 1
		}
		if got := [7]int{s.Embd, s.Layers, s.Heads, s.KVHeads, s.FF, s.Vocab, tied}; got != w {
			t.Errorf("%s: %v, want %v", name, got, w)
		}
		if err := s.Validate(); err != nil {
			t.Error(err)
		}
	}
	// The rest of what the families' real configs say.
	type more struct {
		arch                          string
		head, experts, used, expertFF int
		window, pattern, origCtx      int
		base, baseSWA, factor         float32
		scaling                       string
	}
	for name, w := range map[string]more{
		"qwen3-8b":      {arch: "qwen3", head: 128, base: 1e6},
		"gemma3-4b":     {arch: "gemma3", head: 256, window: 1024, pattern: 6, base: 1e6, baseSWA: 1e4, factor: 8, scaling: "linear"},
		"qwen3-30b-a3b": {arch: "qwen3moe", head: 128, experts: 128, used: 8, expertFF: 768, base: 1e6},
		"gpt-oss-20b": {arch: "gpt-oss", head: 64, experts: 32, used: 4, expertFF: 2880, window: 128, pattern: 2,
			origCtx: 4096, base: 150000, factor: 32, scaling: "yarn"},
		"moe-3b-a0.6b": {arch: "qwen3moe", head: 128, experts: 32, used: 4, expertFF: 1536, base: 1e6},
	} {
		s, err := synth.LookupShape(name)
		if err != nil {
			t.Fatal(err)
		}
		got := more{s.Arch, s.HeadDim(), s.Experts, s.ExpertsUsed, s.ExpertFF, s.Window, s.WindowPattern, s.RopeOrigCtx,
			s.RopeBase, s.RopeBaseSWA, s.RopeFactor, s.RopeScaling}
		if got != w {
			t.Errorf("%s: %+v, want %+v", name, got, w)
		}
	}
	for _, s := range synth.Shapes() {
		if err := s.Validate(); err != nil {
			t.Error(err)
		}
	}
}

// familyShapes are the tiny shapes of the families beyond Llama.
var familyShapes = []string{"tiny-qwen3", "tiny-qwen3moe", "tiny-gemma3", "tiny-gpt-oss", "tiny-qwen35"}

// TestFamiliesLoadAndRun writes each family's tiny shape, loads it with
// Hearth and runs a prompt longer than the sliding windows: the file has
// what the family's loader binds (its parameter count is the shape's) and
// gives realistic logits.
func TestFamiliesLoadAndRun(t *testing.T) {
	for _, name := range familyShapes {
		s, err := synth.LookupShape(name)
		if err != nil {
			t.Fatal(err)
		}
		qs := []string{"q4_k_m", "q8_0"}
		if s.Experts > 0 {
			qs = append(qs, "mxfp4_moe")
		}
		for _, q := range qs {
			t.Run(name+"/"+q, func(t *testing.T) {
				path := write(t, s, q)
				f, err := gguf.Open(path)
				if err != nil {
					t.Fatal(err)
				}
				defer f.Close()
				be := cpu.New(2)
				defer be.Close()
				m, err := arch.Load(f, be)
				if err != nil {
					t.Fatal(err)
				}
				info := m.Info()
				if info.Arch != s.Arch || info.Params != s.Params() || info.HeadDim != s.HeadDim() ||
					info.KVDim != s.KVHeads*s.HeadDim() || info.Layers != s.Layers || info.VocabSize != s.Vocab {
					t.Errorf("loaded %+v; shape: arch %s, %d params, head %d, kv %d", info, s.Arch, s.Params(), s.HeadDim(), s.KVHeads*s.HeadDim())
				}
				if tr, ok := m.(arch.TrafficReporter); !ok || tr.Traffic().ActiveParams != s.ActiveParams() {
					t.Errorf("the loaded model does not report %d active parameters", s.ActiveParams())
				}
				kv, err := m.NewKV(32)
				if err != nil {
					t.Fatal(err)
				}
				ids := []int32{1, 300, 301, 5, 400, 17, 900, 260, 261, 262, 777, 42}
				logits, err := m.Forward(arch.Single(ids, 0, kv, true))
				if err != nil {
					t.Fatal(err)
				}
				checkLogits(t, logits, info.VocabSize)
			})
		}
	}
}

// TestFamilyPlans checks the tensor plans of the real shapes, which are
// too big to write in a test: names, shapes and llama-quantize's types,
// and the tensor counts of the published GGUF files.
func TestFamilyPlans(t *testing.T) {
	plan := func(shape, q string) map[string]synth.Tensor {
		s, err := synth.LookupShape(shape)
		if err != nil {
			t.Fatal(err)
		}
		ft, err := synth.LookupFileType(q)
		if err != nil {
			t.Fatal(err)
		}
		m := map[string]synth.Tensor{}
		for _, tn := range synth.Plan(s, ft) {
			m[tn.Name] = tn
		}
		return m
	}
	type want struct {
		name string
		typ  quant.Type
		dims []uint64
	}
	cases := []struct {
		shape, q string
		tensors  int
		want     []want
	}{
		{"qwen3-8b", "q4_k_m", 3 + 36*11, []want{
			{"output.weight", quant.Q6_K, []uint64{4096, 151936}},
			{"token_embd.weight", quant.Q4_K, []uint64{4096, 151936}},
			{"blk.0.attn_q.weight", quant.Q4_K, []uint64{4096, 4096}},
			{"blk.0.attn_k.weight", quant.Q4_K, []uint64{4096, 1024}},
			{"blk.0.attn_v.weight", quant.Q6_K, []uint64{4096, 1024}},
			{"blk.5.attn_v.weight", quant.Q4_K, []uint64{4096, 1024}},
			{"blk.0.attn_q_norm.weight", quant.F32, []uint64{128}},
			{"blk.35.ffn_down.weight", quant.Q6_K, []uint64{12288, 4096}},
		}},
		{"gemma3-4b", "q4_k_m", 2 + 34*13, []want{
			{"token_embd.weight", quant.Q6_K, []uint64{2560, 262144}},
			{"blk.0.attn_q.weight", quant.Q4_K, []uint64{2560, 2048}},
			{"blk.0.attn_output.weight", quant.Q4_K, []uint64{2048, 2560}},
			{"blk.0.attn_k_norm.weight", quant.F32, []uint64{256}},
			{"blk.0.post_attention_norm.weight", quant.F32, []uint64{2560}},
			{"blk.0.post_ffw_norm.weight", quant.F32, []uint64{2560}},
			{"blk.1.ffn_gate.weight", quant.Q4_K, []uint64{2560, 10240}},
		}},
		{"qwen3-30b-a3b", "q4_k_m", 3 + 48*12, []want{
			{"output.weight", quant.Q6_K, []uint64{2048, 151936}},
			{"blk.0.ffn_gate_inp.weight", quant.F32, []uint64{2048, 128}},
			{"blk.0.ffn_gate_exps.weight", quant.Q4_K, []uint64{2048, 768, 128}},
			{"blk.0.ffn_up_exps.weight", quant.Q4_K, []uint64{2048, 768, 128}},
			{"blk.0.ffn_down_exps.weight", quant.Q6_K, []uint64{768, 2048, 128}},
			{"blk.7.ffn_down_exps.weight", quant.Q4_K, []uint64{768, 2048, 128}},
			{"blk.0.attn_q.weight", quant.Q4_K, []uint64{2048, 4096}},
		}},
		{"gpt-oss-20b", "mxfp4_moe", 3 + 24*19, []want{
			{"output.weight", quant.Q8_0, []uint64{2880, 201088}},
			{"token_embd.weight", quant.Q8_0, []uint64{2880, 201088}},
			{"blk.0.attn_q.weight", quant.Q8_0, []uint64{2880, 4096}},
			{"blk.0.attn_q.bias", quant.F32, []uint64{4096}},
			{"blk.0.attn_k.weight", quant.Q8_0, []uint64{2880, 512}},
			{"blk.0.attn_output.weight", quant.Q8_0, []uint64{4096, 2880}},
			{"blk.0.attn_output.bias", quant.F32, []uint64{2880}},
			{"blk.0.attn_sinks.weight", quant.F32, []uint64{64}},
			{"blk.0.post_attention_norm.weight", quant.F32, []uint64{2880}},
			{"blk.0.ffn_gate_inp.weight", quant.F32, []uint64{2880, 32}},
			{"blk.0.ffn_gate_inp.bias", quant.F32, []uint64{32}},
			{"blk.0.ffn_gate_exps.weight", quant.MXFP4, []uint64{2880, 2880, 32}},
			{"blk.0.ffn_down_exps.weight", quant.MXFP4, []uint64{2880, 2880, 32}},
			{"blk.0.ffn_up_exps.bias", quant.F32, []uint64{2880, 32}},
			{"blk.0.ffn_down_exps.bias", quant.F32, []uint64{2880, 32}},
		}},
		// 2880 is not a whole number of 256 blocks: K-quants fall back.
		{"gpt-oss-20b", "q4_k_m", 3 + 24*19, []want{
			{"output.weight", quant.Q8_0, []uint64{2880, 201088}},
			{"token_embd.weight", quant.Q5_0, []uint64{2880, 201088}},
			{"blk.1.attn_output.weight", quant.Q4_K, []uint64{4096, 2880}},
			{"blk.1.ffn_gate_exps.weight", quant.Q5_0, []uint64{2880, 2880, 32}},
			{"blk.0.ffn_down_exps.weight", quant.Q8_0, []uint64{2880, 2880, 32}},
			{"blk.3.ffn_down_exps.weight", quant.Q5_0, []uint64{2880, 2880, 32}},
		}},
		// 24 Gated DeltaNet layers (14 tensors), 8 gated attention ones (11).
		{"qwen3.5-9b", "q4_k_m", 3 + 24*14 + 8*11, []want{
			{"output.weight", quant.Q6_K, []uint64{4096, 248320}},
			{"blk.0.attn_qkv.weight", quant.Q5_K, []uint64{4096, 8192}},
			{"blk.0.attn_gate.weight", quant.Q4_K, []uint64{4096, 4096}},
			{"blk.0.ssm_alpha.weight", quant.Q4_K, []uint64{4096, 32}},
			{"blk.0.ssm_a", quant.F32, []uint64{32}},
			{"blk.0.ssm_dt.bias", quant.F32, []uint64{32}},
			{"blk.0.ssm_conv1d.weight", quant.F32, []uint64{4, 8192}},
			{"blk.0.ssm_norm.weight", quant.F32, []uint64{128}},
			{"blk.0.ssm_out.weight", quant.Q4_K, []uint64{4096, 4096}},
			{"blk.0.post_attention_norm.weight", quant.F32, []uint64{4096}},
			{"blk.3.attn_q.weight", quant.Q4_K, []uint64{4096, 8192}},
			{"blk.3.attn_k.weight", quant.Q4_K, []uint64{4096, 1024}},
			{"blk.3.attn_output.weight", quant.Q4_K, []uint64{4096, 4096}},
			{"blk.3.attn_q_norm.weight", quant.F32, []uint64{256}},
		}},
		// 6 tensors outside the layers (rope_freqs and the per-layer
		// embeddings among them), 24 layers that own KV (17 tensors), 18
		// that share it (14: no k, v, k norm).
		{"gemma4-e4b", "q4_k_m", 6 + 24*17 + 18*14, []want{
			{"token_embd.weight", quant.Q6_K, []uint64{2560, 262144}},
			{"per_layer_token_embd.weight", quant.Q6_K, []uint64{42 * 256, 262144}},
			{"per_layer_model_proj.weight", quant.F32, []uint64{2560, 42 * 256}},
			{"per_layer_proj_norm.weight", quant.F32, []uint64{256}},
			{"rope_freqs.weight", quant.F32, []uint64{256}},
			{"blk.0.attn_q.weight", quant.Q4_K, []uint64{2560, 2048}},
			{"blk.0.attn_k.weight", quant.Q4_K, []uint64{2560, 512}},
			{"blk.0.attn_v.weight", quant.Q6_K, []uint64{2560, 512}},
			{"blk.0.attn_q_norm.weight", quant.F32, []uint64{256}},
			{"blk.5.attn_q.weight", quant.Q4_K, []uint64{2560, 4096}},
			{"blk.5.attn_k.weight", quant.Q4_K, []uint64{2560, 1024}},
			{"blk.5.attn_output.weight", quant.Q4_K, []uint64{4096, 2560}},
			{"blk.5.attn_k_norm.weight", quant.F32, []uint64{512}},
			{"blk.30.attn_q.weight", quant.Q4_K, []uint64{2560, 2048}},
			{"blk.30.inp_gate.weight", quant.Q4_K, []uint64{2560, 256}},
			{"blk.30.proj.weight", quant.Q4_K, []uint64{256, 2560}},
			{"blk.30.post_norm.weight", quant.F32, []uint64{2560}},
			{"blk.30.layer_output_scale.weight", quant.F32, []uint64{1}},
			{"blk.30.post_ffw_norm.weight", quant.F32, []uint64{2560}},
		}},
		{"moe-3b-a0.6b", "q4_0", 2 + 18*12, []want{
			{"token_embd.weight", quant.Q6_K, []uint64{1024, 151936}},
			{"blk.3.ffn_down_exps.weight", quant.Q4_0, []uint64{1536, 1024, 32}},
			{"blk.3.ffn_gate_inp.weight", quant.F32, []uint64{1024, 32}},
		}},
	}
	for _, c := range cases {
		p := plan(c.shape, c.q)
		if len(p) != c.tensors {
			t.Errorf("%s %s: %d tensors, want %d", c.shape, c.q, len(p), c.tensors)
		}
		for _, w := range c.want {
			got, ok := p[w.name]
			if !ok {
				t.Errorf("%s %s: no tensor %s", c.shape, c.q, w.name)
				continue
			}
			if got.Type != w.typ || fmt.Sprint(got.Dims) != fmt.Sprint(w.dims) {
				t.Errorf("%s %s: %s is %v %v, want %v %v", c.shape, c.q, w.name, got.Type, got.Dims, w.typ, w.dims)
			}
		}
	}
	// Mixtral's 8 experts: attn_k and attn_v in Q8_0, attn_output in Q5_K.
	mix := synth.Shape{Name: "mix", Embd: 256, Layers: 4, Heads: 8, KVHeads: 2, Experts: 8, ExpertsUsed: 2, ExpertFF: 256,
		Vocab: 600, Context: 256, RopeBase: 1e6, NormEps: 1e-5}
	ft, _ := synth.LookupFileType("q4_k_m")
	for _, tn := range synth.Plan(mix, ft) {
		want := map[string]quant.Type{"blk.1.attn_k.weight": quant.Q8_0, "blk.1.attn_v.weight": quant.Q8_0,
			"blk.1.attn_output.weight": quant.Q5_K, "blk.1.attn_q.weight": quant.Q4_K, "blk.1.ffn_up_exps.weight": quant.Q4_K}
		if w, ok := want[tn.Name]; ok && tn.Type != w {
			t.Errorf("8 experts: %s is %v, want %v", tn.Name, tn.Type, w)
		}
	}
}

// TestRealShapeCounts holds the real shapes to their published parameter
// counts (within 1%).
func TestRealShapeCounts(t *testing.T) {
	for _, c := range []struct {
		shape          string
		total, active  float64
		embeddingAside bool // the card's active count leaves the token embedding out
	}{
		{"qwen3-8b", 8.2e9, 8.2e9, false},
		{"gemma3-4b", 3.88e9, 3.88e9, false}, // Gemma 3 4B's 4.3 B less its 0.42 B vision tower
		{"qwen3-30b-a3b", 30.5e9, 3.3e9, false},
		{"gpt-oss-20b", 20.9e9, 3.6e9, true},
		{"moe-3b-a0.6b", 3e9, 0.6e9, false},
	} {
		s, err := synth.LookupShape(c.shape)
		if err != nil {
			t.Fatal(err)
		}
		total, active := float64(s.Params()), float64(s.ActiveParams())
		if c.embeddingAside {
			active -= float64(s.Embd * s.Vocab)
		}
		if math.Abs(total/c.total-1) > 0.015 || math.Abs(active/c.active-1) > 0.025 {
			t.Errorf("%s: %.3g total, %.3g active; want %.3g and %.3g", c.shape, total, active, c.total, c.active)
		}
	}
}

// TestValidateFamilies: a shape must have what its architecture has, and
// nothing it lacks.
func TestValidateFamilies(t *testing.T) {
	get := func(name string) synth.Shape {
		s, err := synth.LookupShape(name)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	bad := map[string]func(s *synth.Shape){
		"unknown architecture":    func(s *synth.Shape) { s.Arch = "mamba" },
		"qwen3 with experts":      func(s *synth.Shape) { *s = get("tiny-qwen3"); s.Experts, s.ExpertsUsed, s.ExpertFF = 4, 2, 64 },
		"qwen3moe without":        func(s *synth.Shape) { *s = get("tiny-qwen3moe"); s.Experts, s.ExpertsUsed, s.ExpertFF = 0, 0, 0 },
		"more used than experts":  func(s *synth.Shape) { *s = get("tiny-qwen3moe"); s.ExpertsUsed = 9 },
		"expert width 100":        func(s *synth.Shape) { *s = get("tiny-qwen3moe"); s.ExpertFF = 100 },
		"gpt-oss tied":            func(s *synth.Shape) { *s = get("tiny-gpt-oss"); s.Tied = true },
		"gpt-oss without window":  func(s *synth.Shape) { *s = get("tiny-gpt-oss"); s.Window, s.WindowPattern = 0, 0 },
		"llama with a window":     func(s *synth.Shape) { s.Window = 8 },
		"odd head size":           func(s *synth.Shape) { *s = get("tiny-gemma3"); s.HeadSize = 33 },
		"rope scaling":            func(s *synth.Shape) { s.RopeScaling = "longrope"; s.RopeFactor = 2 },
		"factor without type":     func(s *synth.Shape) { s.RopeFactor = 2 },
		"llama with ssm heads":    func(s *synth.Shape) { s.SSMKHeads = 2 },
		"qwen35 without ssm":      func(s *synth.Shape) { *s = get("tiny-qwen35"); s.SSMVHeads = 0 },
		"qwen35 v not k-multiple": func(s *synth.Shape) { *s = get("tiny-qwen35"); s.SSMVHeads = 3 },
		"qwen35 interval 1":       func(s *synth.Shape) { *s = get("tiny-qwen35"); s.FullAttnInterval = 1 },
		"rope dims odd":           func(s *synth.Shape) { *s = get("tiny-qwen35"); s.RopeDims = 15 },
	}
	for name, f := range bad {
		s := get("tiny")
		f(&s)
		if err := s.Validate(); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}

// TestFamilyMetadata: the keys llama.cpp's loaders read, under the
// architecture's prefix.
func TestFamilyMetadata(t *testing.T) {
	for shape, want := range map[string]map[string]any{
		"tiny-gpt-oss": {"general.architecture": "gpt-oss", "gpt-oss.expert_count": uint64(8), "gpt-oss.expert_used_count": uint64(2),
			"gpt-oss.expert_feed_forward_length": uint64(256), "gpt-oss.attention.sliding_window": uint64(4),
			"gpt-oss.attention.sliding_window_pattern": uint64(2), "gpt-oss.rope.scaling.type": "yarn",
			"gpt-oss.rope.scaling.factor": 32.0, "gpt-oss.rope.scaling.original_context_length": uint64(64),
			"gpt-oss.attention.key_length": uint64(64), "gpt-oss.attention.value_length": uint64(64),
			"gpt-oss.rope.dimension_count": uint64(64), "gpt-oss.rope.freq_base": 150000.0, "general.file_type": uint64(38)},
		"tiny-gemma3": {"general.architecture": "gemma3", "gemma3.attention.sliding_window": uint64(4),
			"gemma3.attention.sliding_window_pattern": uint64(3), "gemma3.rope.freq_base_swa": 10000.0,
			"gemma3.rope.scaling.type": "linear", "gemma3.rope.scaling.factor": 8.0, "gemma3.attention.key_length": uint64(128)},
		"tiny-qwen35": {"general.architecture": "qwen35", "qwen35.full_attention_interval": uint64(2),
			"qwen35.ssm.conv_kernel": uint64(4), "qwen35.ssm.state_size": uint64(32), "qwen35.ssm.group_count": uint64(2),
			"qwen35.ssm.time_step_rank": uint64(4), "qwen35.ssm.inner_size": uint64(128), "qwen35.rope.dimension_count": uint64(16),
			"qwen35.attention.key_length": uint64(64), "qwen35.rope.freq_base": 1e7},
		"tiny-qwen3moe": {"general.architecture": "qwen3moe", "qwen3moe.expert_count": uint64(8),
			"qwen3moe.expert_feed_forward_length": uint64(256), "qwen3moe.feed_forward_length": uint64(512),
			"qwen3moe.attention.layer_norm_rms_epsilon": 1e-6},
	} {
		s, _ := synth.LookupShape(shape)
		q := "q8_0"
		if s.Arch == "gpt-oss" {
			q = "mxfp4_moe"
		}
		f, err := gguf.Open(write(t, s, q))
		if err != nil {
			t.Fatal(err)
		}
		for k, w := range want {
			var got any
			var ok bool
			switch wv := w.(type) {
			case string:
				got, ok = f.String(k)
			case uint64:
				got, ok = f.Uint(k)
			case float64:
				var v float64
				v, ok = f.Float(k)
				got = float64(float32(v))
				w = float64(float32(wv))
			}
			if !ok || got != w {
				t.Errorf("%s: %s = %v (present %v), want %v", shape, k, got, ok, w)
			}
		}
		f.Close()
	}
}
