package tokenizer

import (
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hearth-llm/hearth/internal/testdata"
)

// TestVectors runs llama.cpp's tokenizer test vectors (tests/test-tokenizer-0)
// on every vocabulary in shared/vocab: Encode(text, false, false) must give
// exactly the expected ids.
func TestVectors(t *testing.T) {
	dir := testdata.Dir(t, "vocab")
	files, err := filepath.Glob(filepath.Join(dir, "ggml-vocab-*.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		testdata.Missing(t, filepath.Join(dir, "ggml-vocab-*.gguf"))
	}
	for _, path := range files {
		name := strings.TrimSuffix(strings.TrimPrefix(filepath.Base(path), "ggml-vocab-"), ".gguf")
		t.Run(name, func(t *testing.T) {
			tk := loadGGUF(t, path)
			cases := readVectors(t, path)
			fails := 0
			for i, c := range cases {
				got := tk.Encode(c.text, false, false)
				if !slices.Equal(got, c.ids) {
					fails++
					t.Errorf("entry %d %q:\n got  %v %s\n want %v %s", i, c.text, got, pieces(tk, got), c.ids, pieces(tk, c.ids))
				}
			}
			t.Logf("%s: %d/%d entries match", name, len(cases)-fails, len(cases))
		})
	}
}

func pieces(tk *Tokenizer, ids []int32) string {
	var b strings.Builder
	for _, id := range ids {
		fmt.Fprintf(&b, "%q ", tk.Piece(id))
	}
	return b.String()
}

// TestSpecialTokensReal checks parseSpecial and the end-of-generation set on
// the Llama 3 and Llama 2 vocabularies.
func TestSpecialTokensReal(t *testing.T) {
	dir := testdata.Dir(t, "vocab")
	l3 := loadGGUF(t, filepath.Join(dir, "ggml-vocab-llama-bpe-reconstructed.gguf"))
	text := "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|>"
	want := []int32{128000, 128006, 882, 128007, 271, 13347, 128009}
	if got := l3.Encode(text, true, true); !slices.Equal(got, want) {
		t.Errorf("llama3 parse special: %v, want %v", got, want)
	}
	if got := l3.Encode(text, false, false); slices.Contains(got, 128006) {
		t.Errorf("llama3 without parse special produced a control token: %v", got)
	}
	if got := l3.EOG(); !slices.Equal(got, []int32{128001, 128008, 128009}) {
		t.Errorf("llama3 EOG = %v", got)
	}
	if l3.EOT() != 128009 || l3.EOM() != 128008 || !l3.IsControl(128000) || l3.IsControl(882) {
		t.Errorf("llama3 EOT %d EOM %d", l3.EOT(), l3.EOM())
	}
	if got := l3.Decode(want); got != "user\n\nHi" {
		t.Errorf("llama3 Decode = %q", got)
	}
	if got := l3.Detokenize(want, false, true); got != "<|begin_of_text|>"+text {
		t.Errorf("llama3 Detokenize(unparse) = %q", got)
	}

	l2 := loadGGUF(t, filepath.Join(dir, "ggml-vocab-llama-spm.gguf"))
	hello := l2.Encode("Hello", false, false)
	want = append(append([]int32{1}, hello...), 2)
	if got := l2.Encode("<s>Hello</s>", false, true); !slices.Equal(got, want) {
		t.Errorf("llama2 parse special: %v, want %v", got, want)
	}
	if got := l2.EOG(); !slices.Equal(got, []int32{2}) {
		t.Errorf("llama2 EOG = %v", got)
	}
}

// TestStreamDecoderReal streams multilingual text through the Llama 2 (byte
// fallback tokens) and Llama 3 (byte-level tokens) vocabularies: characters
// split across tokens must come out whole, and the stream must spell the text.
func TestStreamDecoderReal(t *testing.T) {
	dir := testdata.Dir(t, "vocab")
	text := "Grüße, 世界! Привет, мир. 😀 café naïve 🦙🚀 ✅ ក៏"
	for _, name := range []string{"llama-spm", "llama-bpe-reconstructed", "gpt-2"} {
		tk := loadGGUF(t, filepath.Join(dir, "ggml-vocab-"+name+".gguf"))
		toks := tk.Encode(text, true, false)
		d := tk.NewStreamDecoder()
		var b strings.Builder
		held := 0
		for _, id := range toks {
			s := d.Add(id)
			if !utf8.ValidString(s) {
				t.Fatalf("%s: invalid UTF-8 %q", name, s)
			}
			if s == "" && len(tk.Piece(id)) > 0 && !tk.IsControl(id) {
				held++
			}
			b.WriteString(s)
		}
		b.WriteString(d.Flush())
		got := b.String()
		if tk.addSpacePrefix {
			got = strings.TrimPrefix(got, " ")
		}
		if got != text {
			t.Errorf("%s: stream %q, want %q", name, got, text)
		}
		if held == 0 {
			t.Errorf("%s: no token held back: the test does not split a character", name)
		}
	}
}
