package engine

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/sample"
)

func loadModel(t *testing.T, name string) *Model {
	t.Helper()
	m, err := Load(filepath.Join(testdata.Dir(t, "models"), name), Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

func greedy() sample.Options {
	o := sample.DefaultOptions()
	o.Temperature, o.RepeatPenalty = 0, 1
	return o
}

func TestGenerate(t *testing.T) {
	m := loadModel(t, "stories260K-f32.gguf")
	seq, err := m.NewSequence(0)
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	st, err := seq.Generate(context.Background(), m.Tok.Encode("Once upon a time", true, false), 8, greedy(),
		func(s string) error { out.WriteString(s); return nil })
	if err != nil {
		t.Fatal(err)
	}
	if out.String() != ", there was a little girl" || st.Generated != 8 || st.DoneReason != "length" {
		t.Errorf("got %q, %+v", out.String(), st)
	}
	// The sequence continues where it stopped.
	if seq.Len() != 5+7 {
		t.Errorf("sequence length %d, want 12 (the last sampled token is not yet evaluated)", seq.Len())
	}
}

func TestContextLimits(t *testing.T) {
	m := loadModel(t, "stories260K-f32.gguf")
	seq, _ := m.NewSequence(8)
	long := m.Tok.Encode("Once upon a time there was a little girl", true, false)
	_, err := seq.Generate(context.Background(), long, 4, greedy(), func(string) error { return nil })
	if !errors.Is(err, ErrPromptTooLong) {
		t.Errorf("long prompt: %v, want ErrPromptTooLong", err)
	}
	// Generation stops with "length" when the context fills.
	seq, _ = m.NewSequence(8)
	st, err := seq.Generate(context.Background(), m.Tok.Encode("Once", true, false), -1, greedy(), func(string) error { return nil })
	if err != nil || st.DoneReason != "length" || seq.Len() != 8 {
		t.Errorf("full context: %v, %+v, len %d", err, st, seq.Len())
	}
	if _, err := seq.Eval([]int32{1}); !errors.Is(err, backend.ErrContextFull) {
		t.Errorf("eval past the context: %v", err)
	}
}

func TestCancel(t *testing.T) {
	m := loadModel(t, "stories260K-f32.gguf")
	seq, _ := m.NewSequence(0)
	ctx, cancel := context.WithCancel(context.Background())
	n := 0
	_, err := seq.Generate(ctx, m.Tok.Encode("Once", true, false), 100, greedy(), func(string) error {
		if n++; n == 3 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) || n > 4 {
		t.Errorf("cancel: %v after %d pieces", err, n)
	}
}

// TestChatPromptBOS: the Llama 3 template writes <|begin_of_text|> itself,
// so the prompt must start with exactly one BOS.
func TestChatPromptBOS(t *testing.T) {
	m := loadModel(t, "tiny-llama-bpe-Q4_0.gguf")
	ids, err := m.ChatPrompt("Be brief.", "Hello")
	if err != nil {
		t.Fatal(err)
	}
	bos := m.Tok.BOS()
	if ids[0] != bos || ids[1] == bos {
		t.Fatalf("prompt starts %v, want one BOS %d", ids[:3], bos)
	}
	var sb strings.Builder
	for _, id := range ids {
		sb.Write(m.Tok.Piece(id))
	}
	text := sb.String()
	for _, want := range []string{"<|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>", "<|start_header_id|>assistant<|end_header_id|>\n\n"} {
		if !strings.Contains(text, want) {
			t.Errorf("prompt %q lacks %q", text, want)
		}
	}
	// Special tokens in the template are single tokens, not spelled out.
	eot, _ := m.Tok.TokenID("<|eot_id|>")
	found := false
	for _, id := range ids {
		found = found || id == eot
	}
	if !found {
		t.Error("<|eot_id|> was not parsed as a special token")
	}
}

func TestHugeContext(t *testing.T) {
	m := loadModel(t, "stories260K-f32.gguf")
	defer func(f func() (uint64, bool)) { memAvailable = f }(memAvailable)
	memAvailable = func() (uint64, bool) { return 1 << 20, true } // 1 MiB free
	// stories260K: 5 layers × 32 K and 32 V values × 2 bytes = 640 B/token.
	if _, err := m.NewSequence(1600); err != nil {
		t.Errorf("a 1,600-token context (1,000 KiB): %v", err)
	}
	if _, err := m.NewSequence(1700); !errors.Is(err, ErrOutOfMemory) {
		t.Errorf("a 1,700-token context: %v, want ErrOutOfMemory", err)
	}
	if _, err := m.NewSequence(1 << 40); err == nil {
		t.Error("a 2^40-token context was accepted")
	}
}

func TestEmbed(t *testing.T) {
	m := loadModel(t, "stories260K-f32.gguf")
	a, n, err := m.Embed("The cat sat on the mat.", 0, false)
	if err != nil || n == 0 {
		t.Fatal(err, n)
	}
	b, _, _ := m.Embed("The cat sat on the mat.", 0, false)
	c, _, _ := m.Embed("Rockets fly to the moon and back!", 0, false)
	var norm, ab, ac float64
	for i := range a {
		norm += float64(a[i] * a[i])
		ab += float64(a[i] * b[i])
		ac += float64(a[i] * c[i])
	}
	if math.Abs(norm-1) > 1e-4 || math.Abs(ab-1) > 1e-4 || ac > 0.9999 {
		t.Errorf("|a|² %v, a·a' %v, a·c %v", norm, ab, ac)
	}
	if _, _, err := m.Embed(strings.Repeat("word ", 100), 10, false); !errors.Is(err, ErrPromptTooLong) {
		t.Errorf("too long without truncate: %v", err)
	}
	if _, n, err := m.Embed(strings.Repeat("word ", 100), 10, true); err != nil || n != 10 {
		t.Errorf("truncate: %v, %d tokens", err, n)
	}
}

// TestTruncatedWhileMapped truncates the model file under a loaded model:
// the next forward pass reads past the new end of the mapping (SIGBUS),
// which must become an error, not a crash.
func TestTruncatedWhileMapped(t *testing.T) {
	src := filepath.Join(testdata.Dir(t, "models"), "tiny-llama-spm-Q8_0.gguf")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "m.gguf")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path, Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	seq, _ := m.NewSequence(64)
	if _, err := seq.Eval([]int32{1, 15043}); err != nil {
		t.Fatal(err)
	}
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	seq, _ = m.NewSequence(64)
	_, err = seq.Eval([]int32{1, 15043, 3186})
	if !errors.Is(err, ErrFault) {
		t.Fatalf("forward over a truncated file: %v, want ErrFault", err)
	}
}

// TestNaNWeights: a model whose weights hold NaN loads (weights are not
// scanned at load), and its forward pass fails with ErrNotFinite instead
// of sampling from garbage.
func TestNaNWeights(t *testing.T) {
	src := filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf")
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	ti, _ := f.Tensor("blk.0.attn_q.weight")
	off := int(f.DataOffset + ti.Offset)
	for i := 0; i < 64; i++ { // the first row: NaN
		copy(b[off+4*i:], []byte{0, 0, 0xc0, 0x7f})
	}
	path := filepath.Join(t.TempDir(), "nan.gguf")
	if err := os.WriteFile(path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path, Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	seq, _ := m.NewSequence(32)
	if _, err := seq.Eval([]int32{1, 403}); !errors.Is(err, ErrNotFinite) {
		t.Fatalf("eval: %v, want ErrNotFinite", err)
	}
	if _, _, err := m.Embed("hello", 0, false); !errors.Is(err, ErrNotFinite) {
		t.Fatalf("embed: %v, want ErrNotFinite", err)
	}
}

// TestUnusableTemplate: a file whose chat template Hearth cannot parse
// still loads; chat prompts get an error naming the template, raw prompts
// run.
func TestUnusableTemplate(t *testing.T) {
	src, err := gguf.Open(filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	w := gguf.NewWriter()
	w.CopyMetadata(src)
	w.Set("tokenizer.chat_template", gguf.String("{% if messages %}{{ messages[0]['content'] }"))
	if err := w.CopyTensors(src); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "bad-template.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	m, err := Load(path, Options{Threads: 2})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	defer m.Close()
	if _, err := m.ChatPrompt("", "Hi"); err == nil || !strings.Contains(err.Error(), "chat template") {
		t.Errorf("ChatPrompt: %v, want the template's error", err)
	}
	seq, err := m.NewSequence(64)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := seq.Generate(context.Background(), m.Tok.Encode("Once upon a time", true, false), 4, greedy(), func(string) error { return nil }); err != nil {
		t.Errorf("raw generation: %v", err)
	}
}
