package tokenizer

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hearth-llm/hearth/internal/testdata"
)

// gemma4Vocab is a small vocabulary of model gemma4: specials, the 256 byte
// tokens, then pieces, merged by the given merges.
func gemma4Vocab(pieces []string, merges ...string) *Vocab {
	v := &Vocab{Model: ModelGemma4, Tokens: []string{"<pad>", "<eos>", "<bos>", "<unk>", "<turn|>", "<|tool_response>", "</s>"}}
	v.Types = []int32{TypeControl, TypeControl, TypeControl, TypeUnknown, TypeControl, TypeUserDefined, TypeNormal}
	for b := range 256 {
		v.Tokens = append(v.Tokens, fmt.Sprintf("<0x%02X>", b))
		v.Types = append(v.Types, TypeByte)
	}
	for _, p := range pieces {
		v.Tokens = append(v.Tokens, p)
		v.Types = append(v.Types, TypeNormal)
	}
	v.Merges = merges
	v.SetDefaults()
	v.BOS, v.EOS, v.UNK, v.PAD = 2, 1, 3, 0
	return v
}

// TestGemma4Synthetic checks gemma4's BPE on a vocabulary small enough to
// follow by hand: "▁" for spaces, merges over UTF-8 characters, <0xXX> byte
// fallback, whole newline words, forced BOS, and the way back.
func TestGemma4Synthetic(t *testing.T) {
	v := gemma4Vocab([]string{"▁", "a", "b", "▁a", "ab", "\n", "\n\n", "."}, "a b", "▁ a")
	v.AddBOS = false // forced back on, as llama.cpp does
	v.Pre = "gpt-2"  // ignored for model gemma4
	tk := mustNew(t, v)
	if !tk.AddBOS() || tk.Pre() != "gemma4" || tk.Model() != ModelGemma4 {
		t.Errorf("AddBOS %v Pre %q Model %q", tk.AddBOS(), tk.Pre(), tk.Model())
	}
	for _, tc := range []struct {
		text string
		want []string
	}{
		// "a b" ranks before "▁ a"; merges cross the spaces (one word per line)
		{" ab é\n\n", []string{"<bos>", "▁", "ab", "▁", "<0xC3>", "<0xA9>", "\n\n"}},
		{" a", []string{"<bos>", "▁a"}},
		// no "\n\n\n" token and no merge of newlines: one token per newline
		{"\n\n\n", []string{"<bos>", "\n", "\n", "\n"}},
		// a newline word that is a token is taken whole without a merge
		{"a\n\nb", []string{"<bos>", "a", "\n\n", "b"}},
		// invalid UTF-8 becomes U+FFFD, spelled as bytes
		{"\xff", []string{"<bos>", "<0xEF>", "<0xBF>", "<0xBD>"}},
	} {
		got := tk.Encode(tc.text, true, false)
		if want := ids(t, tk, tc.want...); !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, want %v %q", tc.text, got, want, tc.want)
		}
	}
	if got := tk.Decode(tk.Encode(" ab é\n\n", true, false)); got != " ab é\n\n" {
		t.Errorf("Decode = %q", got)
	}
	// clean_up_tokenization_spaces is on for gemma4, as in llama.cpp
	if got := tk.Decode(tk.Encode("a .", false, false)); got != "a." {
		t.Errorf("Decode with clean-up = %q", got)
	}
	if got, want := tk.EOG(), ids(t, tk, "<eos>", "<turn|>", "<|tool_response>"); !slices.Equal(got, want) {
		t.Errorf("EOG = %v, want %v (no </s>)", got, want)
	}

	// Without merge ids (a merge whose parts are not tokens) the same.
	v2 := gemma4Vocab([]string{"▁", "a", "b", "▁a", "ab", "\n", "\n\n", "."}, "a b", "▁ a", "x y")
	tk2 := mustNew(t, v2)
	if tk2.mergeIDs != nil {
		t.Fatal("merge ids built despite a merge of non-tokens")
	}
	for _, s := range []string{" ab é\n\n", " a", "a\n\nb", "\n\n\n"} {
		if a, b := tk.Encode(s, true, false), tk2.Encode(s, true, false); !slices.Equal(a, b) {
			t.Errorf("%q: merge ids %v, merge text %v", s, a, b)
		}
	}
}

// gemma4VocabPath finds llama.cpp's ggml-vocab-gemma-4.gguf (15.8 MB, with
// its .inp/.out test vectors): in the shared test data first, then in a
// llama.cpp checkout ($HEARTH_LLAMA_CPP, default ~/.cache/hearth-ref/llama.cpp).
// It skips when neither has it, even under CI=true: the file is not part of
// the shared test data.
func gemma4VocabPath(t *testing.T) string {
	t.Helper()
	const name = "ggml-vocab-gemma-4.gguf"
	p, ok := testdata.Find(filepath.Join("vocab", name))
	if ok {
		return p
	}
	looked := []string{p}
	ref := os.Getenv("HEARTH_LLAMA_CPP")
	if ref == "" {
		if home, err := os.UserHomeDir(); err == nil {
			ref = filepath.Join(home, ".cache", "hearth-ref", "llama.cpp")
		}
	}
	if ref != "" {
		p := filepath.Join(ref, "models", name)
		if _, err := os.Stat(p); err == nil {
			return p
		}
		looked = append(looked, p)
	}
	t.Skipf("%s not found (looked at %s; set HEARTH_TESTDATA or HEARTH_LLAMA_CPP): it is not part of the shared test data, so this skips even under CI=true",
		name, strings.Join(looked, ", "))
	return ""
}

// TestGemma4Vectors runs llama.cpp's Gemma 4 test vectors and checks that
// every entry decodes back to its text.
func TestGemma4Vectors(t *testing.T) {
	path := gemma4VocabPath(t)
	tk := loadGGUF(t, path)
	cases := readVectors(t, path)
	fails, trips := 0, 0
	for i, c := range cases {
		got := tk.Encode(c.text, false, false)
		if !slices.Equal(got, c.ids) {
			fails++
			t.Errorf("entry %d %q:\n got  %v %s\n want %v %s", i, c.text, got, pieces(tk, got), c.ids, pieces(tk, c.ids))
		}
		if !utf8.ValidString(c.text) {
			continue // U+FFFD in place of invalid bytes
		}
		var raw []byte
		for _, id := range got {
			raw = append(raw, tk.Piece(id)...)
		}
		if string(raw) != c.text {
			t.Errorf("entry %d %q: pieces spell %q", i, c.text, raw)
			continue
		}
		if want := string(cleanSpaces([]byte(c.text))); tk.Decode(got) != want {
			t.Errorf("entry %d %q: Decode %q, want %q", i, c.text, tk.Decode(got), want)
			continue
		}
		trips++
	}
	t.Logf("gemma-4: %d/%d entries match, %d round trips", len(cases)-fails, len(cases), trips)
}

// TestGemma4Real checks the special tokens, BOS, newline words, byte
// fallback, streaming and the two ways of looking merges up on the real
// Gemma 4 vocabulary.
func TestGemma4Real(t *testing.T) {
	path := gemma4VocabPath(t)
	tk := loadGGUF(t, path)
	bos, eos := tk.BOS(), tk.EOS()
	if tk.Token(bos) != "<bos>" || tk.Token(eos) != "<eos>" || !tk.AddBOS() || tk.AddEOS() {
		t.Errorf("bos %d %q eos %d %q add %v/%v", bos, tk.Token(bos), eos, tk.Token(eos), tk.AddBOS(), tk.AddEOS())
	}
	want := ids(t, tk, "<eos>", "<|tool_response>", "<turn|>")
	slices.Sort(want)
	if got := tk.EOG(); !slices.Equal(got, want) {
		t.Errorf("EOG = %v %s, want %v", got, pieces(tk, got), want)
	}
	if id, ok := tk.TokenID("</s>"); ok && tk.IsEOG(id) {
		t.Error("</s> is EOG")
	}

	text := "<|turn>user\nHi there<turn|>\n"
	got := tk.Encode(text, true, true)
	if got[0] != bos || !slices.Contains(got, ids(t, tk, "<turn|>")[0]) {
		t.Errorf("parse special %q: %v %s", text, got, pieces(tk, got))
	}
	if s := tk.Detokenize(got, false, true); s != "<bos>"+text {
		t.Errorf("Detokenize(unparse) = %q", s)
	}
	if s := tk.Decode(got); s != "user\nHi there\n" {
		t.Errorf("Decode = %q", s)
	}

	// A run of newlines that is a token is one token.
	nl3 := ids(t, tk, "\n\n\n")
	if got := tk.Encode("a\n\n\nb", false, false); !slices.Contains(got, nl3[0]) {
		t.Errorf("newlines: %v %s", got, pieces(tk, got))
	}

	// A private-use character has no token: <0xXX> byte tokens, and back.
	pua := "\U000F0001"
	got = tk.Encode(pua, false, false)
	if len(got) != 4 || tk.Token(got[0]) != "<0xF3>" {
		t.Errorf("byte fallback %q: %v %s", pua, got, pieces(tk, got))
	}
	if s := tk.Decode(got); s != pua {
		t.Errorf("byte fallback Decode = %q", s)
	}

	// Streaming holds a character split across byte tokens.
	text = "Grüße, 世界! " + pua + " café  🦙\n\n x"
	d := tk.NewStreamDecoder()
	var b strings.Builder
	for _, id := range tk.Encode(text, true, false) {
		s := d.Add(id)
		if !utf8.ValidString(s) {
			t.Fatalf("invalid UTF-8 %q", s)
		}
		b.WriteString(s)
	}
	b.WriteString(d.Flush())
	if b.String() != text {
		t.Errorf("stream %q, want %q", b.String(), text)
	}

	txt := textMergeMode(t, tk, path)
	inputs := []string{text}
	for _, c := range readVectors(t, path) {
		inputs = append(inputs, c.text)
	}
	r := rand.New(rand.NewPCG(11, 12))
	for range 300 {
		inputs = append(inputs, randomText(r, 1+r.IntN(80)))
	}
	for _, s := range inputs {
		if a, b := tk.Encode(s, false, false), txt.Encode(s, false, false); !slices.Equal(a, b) {
			t.Errorf("%q:\n ids  %v\n text %v", s, a, b)
		}
	}
}
