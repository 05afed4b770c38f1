package tokenizer

import (
	"bytes"
	"slices"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/loader/gguf"
)

func parseMeta(t *testing.T, set func(w *gguf.Writer)) *gguf.File {
	t.Helper()
	w := gguf.NewWriter()
	set(w)
	var buf bytes.Buffer
	if _, err := w.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Parse(buf.Bytes())
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestVocabFromGGUF(t *testing.T) {
	tokens := []string{"<unk>", "<s>", "</s>", "▁a", "a"}
	f := parseMeta(t, func(w *gguf.Writer) {
		w.Set("tokenizer.ggml.model", gguf.String("llama"))
		w.Set("tokenizer.ggml.tokens", gguf.ArrayValue(tokens))
		w.Set("tokenizer.ggml.scores", gguf.ArrayValue([]float32{0, 0, 0, -1, -2}))
		w.Set("tokenizer.ggml.token_type", gguf.ArrayValue([]int32{2, 3, 3, 1, 1}))
		w.Set("tokenizer.ggml.eos_token_id", gguf.Uint32(1))
		w.Set("tokenizer.ggml.bos_token_id", gguf.Uint32(99)) // out of range: default kept
		w.Set("tokenizer.ggml.add_eos_token", gguf.Bool(true))
		w.Set("general.name", gguf.String("test"))
	})
	v, err := VocabFromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	if v.Model != ModelSPM || !slices.Equal(v.Tokens, tokens) || v.Scores[3] != -1 || v.Types[0] != TypeUnknown {
		t.Errorf("vocab = %+v", v)
	}
	if v.BOS != 1 || v.EOS != 1 || v.UNK != 0 || v.PAD != -1 || !v.AddBOS || !v.AddEOS || !v.AddSpacePrefix || v.Name != "test" {
		t.Errorf("special/flags = bos %d eos %d unk %d pad %d add %v/%v/%v name %q",
			v.BOS, v.EOS, v.UNK, v.PAD, v.AddBOS, v.AddEOS, v.AddSpacePrefix, v.Name)
	}
	tk, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	if got := tk.Encode("a", true, false); !slices.Equal(got, []int32{1, 3, 1}) {
		t.Errorf("Encode = %v", got)
	}

	for _, tc := range []struct {
		name, want string
		set        func(w *gguf.Writer)
	}{
		{"no model", "tokenizer.ggml.model", func(w *gguf.Writer) {
			w.Set("tokenizer.ggml.tokens", gguf.ArrayValue(tokens))
		}},
		{"no tokens", "tokenizer.ggml.tokens", func(w *gguf.Writer) {
			w.Set("tokenizer.ggml.model", gguf.String("llama"))
		}},
		{"no merges", "tokenizer.ggml.merges", func(w *gguf.Writer) {
			w.Set("tokenizer.ggml.model", gguf.String("gpt2"))
			w.Set("tokenizer.ggml.tokens", gguf.ArrayValue(tokens))
		}},
		{"no merges gemma4", "tokenizer.ggml.merges", func(w *gguf.Writer) {
			w.Set("tokenizer.ggml.model", gguf.String("gemma4"))
			w.Set("tokenizer.ggml.tokens", gguf.ArrayValue(tokens))
		}},
		{"short scores", "tokenizer.ggml.scores", func(w *gguf.Writer) {
			w.Set("tokenizer.ggml.model", gguf.String("llama"))
			w.Set("tokenizer.ggml.tokens", gguf.ArrayValue(tokens))
			w.Set("tokenizer.ggml.scores", gguf.ArrayValue([]float32{0}))
		}},
		{"bad types", "tokenizer.ggml.token_type", func(w *gguf.Writer) {
			w.Set("tokenizer.ggml.model", gguf.String("llama"))
			w.Set("tokenizer.ggml.tokens", gguf.ArrayValue(tokens))
			w.Set("tokenizer.ggml.token_type", gguf.ArrayValue([]string{"x"}))
		}},
	} {
		_, err := VocabFromGGUF(parseMeta(t, tc.set))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want one naming %s", tc.name, err, tc.want)
		}
	}
}
