package tokenizer

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
)

// benchTexts returns ~10 KB of English (the golden paragraph prompt repeated)
// and the test vector inputs joined (code, many scripts, emoji, whitespace).
func benchTexts(b *testing.B) map[string]string {
	para, err := os.ReadFile(filepath.Join(testdata.Dir(b, "golden"), "prompts", "paragraph.txt"))
	if err != nil {
		b.Fatal(err)
	}
	var en strings.Builder
	for en.Len() < 10*1024 {
		en.Write(para)
		en.WriteString("\n\n")
	}
	return map[string]string{
		"english": en.String(),
		"mixed":   strings.Join(vectorInputs(b), "\n"),
	}
}

// BenchmarkEncode reports ns per KB of input (and MB/s) for each vocabulary.
func BenchmarkEncode(b *testing.B) {
	texts := benchTexts(b)
	dir := testdata.Dir(b, "vocab")
	for _, name := range []string{"llama-bpe-reconstructed", "llama-spm", "gpt-2", "deepseek-llm", "bert-bge"} {
		tk := loadGGUF(b, filepath.Join(dir, "ggml-vocab-"+name+".gguf"))
		for _, tn := range []string{"english", "mixed"} {
			text := texts[tn]
			b.Run(name+"/"+tn, func(b *testing.B) {
				b.SetBytes(int64(len(text)))
				var n int
				for b.Loop() {
					n = len(tk.Encode(text, true, false))
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/(float64(len(text))/1024), "ns/KB")
				b.ReportMetric(float64(n), "tokens")
			})
		}
	}
}

// BenchmarkLoad is the cost of building the Llama 3 tokenizer (128k tokens,
// 280k merges) from its metadata.
func BenchmarkLoad(b *testing.B) {
	path := filepath.Join(testdata.Dir(b, "vocab"), "ggml-vocab-llama-bpe-reconstructed.gguf")
	tk := loadGGUF(b, path) // warm the file cache
	_ = tk
	v := vocabOf(b, path)
	for b.Loop() {
		if _, err := New(v); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecode(b *testing.B) {
	text := benchTexts(b)["english"]
	tk := loadGGUF(b, filepath.Join(testdata.Dir(b, "vocab"), "ggml-vocab-llama-bpe-reconstructed.gguf"))
	toks := tk.Encode(text, true, false)
	b.SetBytes(int64(len(text)))
	for b.Loop() {
		_ = tk.Decode(toks)
	}
}
