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
		"llama-1b":  {2048, 16, 32, 8, 8192, 32000, 1},
		"llama-8b":  {4096, 32, 32, 8, 14336, 32000, 1},
		"llama3-8b": {4096, 32, 32, 8, 14336, 128256, 0},
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
	for _, s := range synth.Shapes() {
		if err := s.Validate(); err != nil {
			t.Error(err)
		}
	}
}
