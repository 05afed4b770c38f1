package tokenizer

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
)

// splitWords returns the words pre-tokenizer p makes of s, as strings.
func splitWords(p *preTokenizer, s string) []string {
	cpts := decodeCpts(s, nil)
	var words []string
	start := 0
	for _, n := range p.split(cpts) {
		var b []byte
		for _, c := range cpts[start : start+n] {
			b = appendCpt(b, c)
		}
		words = append(words, string(b))
		start += n
	}
	return words
}

// splitterAlphabet mixes every class the splitters distinguish: ASCII
// letters, digits, contractions, spaces, tabs and newlines, punctuation and
// symbols, non-ASCII letters, digits, marks, whitespace and symbols,
// unassigned and format code points, and bytes that are not UTF-8.
var splitterAlphabet = []string{
	"a", "Z", "s", "t", "re", "ve", "m", "ll", "d", "S", "LL", "'", "'s", "'T", "'Re",
	"0", "7", "123", "4567", " ", "  ", "\t", "\n", "\r", "\r\n", "\v", "\f",
	".", ",", "!", "?", "-", "_", "$", "+", "<", "=", ">", "^", "~", "|", "`", "(", ")", "[", "]", "{", "}", "/", "\\", "\"",
	"é", "ß", "Ж", "世", "界", "ア", "한", "ñ", "\u0301", "\u0663", "\u00B2", "\u2167",
	"\u00A0", "\u3000", "\u2028", "\u0085", "\u1680", "\u2003",
	"€", "😀", "🦙", "✅", "\u0378", "\u200B", "\u00AD", "\x00", "\x1F",
	"\xff", "\xc3", "\xe4\xb8", "\xed\xa0\x80",
}

func randomText(r *rand.Rand, n int) string {
	var b strings.Builder
	for range n {
		b.WriteString(splitterAlphabet[r.IntN(len(splitterAlphabet))])
	}
	return b.String()
}

// vectorInputs returns every .inp string of shared/vocab, or nil.
func vectorInputs(t testing.TB) []string {
	dir, _ := testdata.Find("vocab")
	files, _ := filepath.Glob(filepath.Join(dir, "*.inp"))
	var out []string
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, strings.Split(string(b), "\n__ggml_vocab_test__\n")...)
	}
	return out
}

// TestCustomSplittersMatchRegex checks the hand-written GPT-2 and Llama 3
// splitters against the same regexes run by regexp2 (llama.cpp's collapsed
// std::regex path), on the test vector inputs and on random text.
func TestCustomSplittersMatchRegex(t *testing.T) {
	inputs := vectorInputs(t)
	r := rand.New(rand.NewPCG(1, 2))
	for range 3000 {
		inputs = append(inputs, randomText(r, 1+r.IntN(40)))
	}
	for _, tc := range []struct {
		name  string
		exprs []string
	}{
		{"gpt2", []string{exprGPT2}},
		{"llama3", []string{exprLlama3}},
		{"starcoder", []string{`\p{N}`, exprGPT2}},
		{"falcon", preConfigs["falcon"].exprs},
		{"lines", []string{exprLines}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			custom, err := newPreTokenizer(tc.exprs, true)
			if err != nil {
				t.Fatal(err)
			}
			generic, err := newPreTokenizer(tc.exprs, false)
			if err != nil {
				t.Fatal(err)
			}
			if custom.steps[len(custom.steps)-1].kind == generic.steps[len(generic.steps)-1].kind &&
				tc.name != "falcon" {
				t.Fatal("custom splitter not selected")
			}
			bad := 0
			for _, s := range inputs {
				a, b := splitWords(custom, s), splitWords(generic, s)
				if !slices.Equal(a, b) {
					bad++
					if bad <= 10 {
						t.Errorf("%q:\n custom %q\n regex  %q", s, a, b)
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d inputs differ", bad, len(inputs))
			}
		})
	}
}

// FuzzSplitters compares the hand-written splitters with regexp2.
func FuzzSplitters(f *testing.F) {
	for _, s := range vectorInputs(f) {
		f.Add(s)
	}
	f.Add("Hello, y'all! How're   you\t\n\n 😀 ?")
	gpt2, _ := newPreTokenizer([]string{exprGPT2}, true)
	gpt2re, _ := newPreTokenizer([]string{exprGPT2}, false)
	llama3, _ := newPreTokenizer([]string{exprLlama3}, true)
	llama3re, _ := newPreTokenizer([]string{exprLlama3}, false)
	f.Fuzz(func(t *testing.T, s string) {
		if a, b := splitWords(gpt2, s), splitWords(gpt2re, s); !slices.Equal(a, b) {
			t.Errorf("gpt2 %q:\n custom %q\n regex  %q", s, a, b)
		}
		if a, b := splitWords(llama3, s), splitWords(llama3re, s); !slices.Equal(a, b) {
			t.Errorf("llama3 %q:\n custom %q\n regex  %q", s, a, b)
		}
	})
}

func TestTranslateRegex(t *testing.T) {
	for _, tc := range []struct {
		in, out   string
		collapsed bool
	}{
		{`\p{N}`, `[\u00D10-9]`, true},
		{`[^\s\p{L}\p{N}]+`, `[^\s\u00D2A-Za-z\u00D10-9]+`, true},
		{`\s+$`, `\s+\z`, false},
		{`[$]\$`, `[$]\$`, false},
		{"[\r\n]", "[\r\n]", false},
	} {
		got, collapsed, err := translateRegex(tc.in)
		if err != nil || got != tc.out || collapsed != tc.collapsed {
			t.Errorf("translateRegex(%q) = %q, %v, %v; want %q, %v", tc.in, got, collapsed, err, tc.out, tc.collapsed)
		}
	}
	if _, _, err := translateRegex(`\p{L}é`); err == nil {
		t.Error("categories mixed with non-ASCII: no error")
	}
}

func TestSplitExamples(t *testing.T) {
	llama3, err := newPreTokenizer([]string{exprLlama3}, true)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"Hello world", []string{"Hello", " world"}},
		{"I'm 12345 ok!!\n\n  x", []string{"I", "'m", " ", "123", "45", " ok", "!!\n\n", " ", " x"}},
		{"   ", []string{"   "}},
		{"a   b", []string{"a", "  ", " b"}},
	} {
		if got := splitWords(llama3, tc.in); !slices.Equal(got, tc.want) {
			t.Errorf("llama3 %q = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// TestSPMWordSplit checks that merging SPM words one at a time (the
// spmWordSafe shortcut) gives the same tokens as merging the whole text.
func TestSPMWordSplit(t *testing.T) {
	dir := testdata.Dir(t, "vocab")
	inputs := vectorInputs(t)
	r := rand.New(rand.NewPCG(5, 6))
	for range 2000 {
		s := randomText(r, 1+r.IntN(60))
		inputs = append(inputs, s, strings.ReplaceAll(s, "a", "\u2581"))
	}
	for _, name := range []string{"llama-spm", "phi-3"} {
		tk := loadGGUF(t, filepath.Join(dir, "ggml-vocab-"+name+".gguf"))
		if !tk.spmWordSafe {
			t.Fatalf("%s: not word-safe", name)
		}
		whole := *tk
		whole.spmWordSafe = false
		for _, s := range inputs {
			a, b := tk.Encode(s, true, false), whole.Encode(s, true, false)
			if !slices.Equal(a, b) {
				t.Errorf("%s %q:\n by word %v\n whole   %v", name, s, a, b)
			}
		}
	}
	if spmWordSafe([]string{"▁a", "▁▁", "b▁"}) || !spmWordSafe([]string{"▁a", "▁▁▁", "ab"}) {
		t.Error("spmWordSafe wrong")
	}
}

// textMergeMode returns a copy of tk that looks merges up by text, as
// llama.cpp does, instead of by token ids.
func textMergeMode(t testing.TB, tk *Tokenizer, path string) *Tokenizer {
	if tk.mergeIDs == nil {
		t.Fatalf("%s: merges not indexed by id", path)
	}
	txt := *tk
	txt.mergeIDs = nil
	txt.ranks = buildRanks(vocabOf(t, path).Merges)
	return &txt
}

// TestBPEMergeModes checks that merging by token ids (the fast path) gives
// the same tokens as merging by text on every BPE vocabulary.
func TestBPEMergeModes(t *testing.T) {
	dir := testdata.Dir(t, "vocab")
	inputs := vectorInputs(t)
	r := rand.New(rand.NewPCG(9, 10))
	for range 1000 {
		inputs = append(inputs, randomText(r, 1+r.IntN(80)))
	}
	for _, name := range []string{"llama-bpe-reconstructed", "gpt-2", "deepseek-llm", "deepseek-coder", "falcon", "mpt", "starcoder", "refact"} {
		path := filepath.Join(dir, "ggml-vocab-"+name+".gguf")
		tk := loadGGUF(t, path)
		txt := textMergeMode(t, tk, path)
		txt.ignoreMerges = false // exercise the merges on every word
		ids := *tk
		ids.ignoreMerges = false
		for _, s := range inputs {
			a, b := ids.Encode(s, false, false), txt.Encode(s, false, false)
			if !slices.Equal(a, b) {
				t.Errorf("%s %q:\n ids  %v\n text %v", name, s, a, b)
			}
		}
	}
}

func BenchmarkBPEMergeMode(b *testing.B) {
	path := filepath.Join(testdata.Dir(b, "vocab"), "ggml-vocab-gpt-2.gguf")
	tk := loadGGUF(b, path)
	txt := textMergeMode(b, tk, path)
	text := benchTexts(b)["english"]
	for _, m := range []struct {
		name string
		tk   *Tokenizer
	}{{"ids", tk}, {"text", txt}} {
		b.Run(m.name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				m.tk.Encode(text, false, false)
			}
		})
	}
}
