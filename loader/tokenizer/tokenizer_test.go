package tokenizer

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"
	"unicode/utf8"
)

// spmVocab is a small SentencePiece vocabulary: <unk> <s> </s>, the 256
// byte tokens, then the pieces given with their scores.
func spmVocab(pieces ...any) *Vocab {
	v := &Vocab{Model: ModelSPM, Tokens: []string{"<unk>", "<s>", "</s>"}}
	v.Types = []int32{TypeUnknown, TypeControl, TypeControl}
	v.Scores = []float32{0, 0, 0}
	for b := 0; b < 256; b++ {
		v.Tokens = append(v.Tokens, fmt.Sprintf("<0x%02X>", b))
		v.Types = append(v.Types, TypeByte)
		v.Scores = append(v.Scores, 0)
	}
	for i := 0; i < len(pieces); i += 2 {
		v.Tokens = append(v.Tokens, pieces[i].(string))
		v.Scores = append(v.Scores, float32(pieces[i+1].(float64)))
		v.Types = append(v.Types, TypeNormal)
	}
	v.SetDefaults()
	return v
}

func mustNew(t *testing.T, v *Vocab) *Tokenizer {
	t.Helper()
	tk, err := New(v)
	if err != nil {
		t.Fatal(err)
	}
	return tk
}

func ids(t *testing.T, tk *Tokenizer, toks ...string) []int32 {
	t.Helper()
	var out []int32
	for _, s := range toks {
		id, ok := tk.TokenID(s)
		if !ok {
			t.Fatalf("no token %q", s)
		}
		out = append(out, id)
	}
	return out
}

func TestSPM(t *testing.T) {
	tk := mustNew(t, spmVocab(
		"▁", -1.0, "a", -2.0, "b", -2.0, "c", -2.0, "ab", -3.0, "bc", -1.5, "▁a", -1.0, "▁ab", -0.5,
		"▁▁", -4.0, "▁c", -9.0,
	))
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"ab", []string{"▁ab"}},
		// "▁a" outscores "bc", then "▁ab" outscores "bc"
		{"abc", []string{"▁ab", "c"}},
		// leftmost wins a tie ("▁a" and the second "▁a")
		{"a a", []string{"▁a", "▁a"}},
		{"", nil},
		{" ", []string{"▁▁"}},
		// unknown characters fall back to their bytes
		{"é", []string{"▁", "<0xC3>", "<0xA9>"}},
		{"c\x00", []string{"▁c", "<0x00>"}},
	} {
		got := tk.Encode(tc.text, false, false)
		if want := ids(t, tk, tc.want...); !slices.Equal(got, want) {
			t.Errorf("Encode(%q) = %v, want %v %q", tc.text, got, want, tc.want)
		}
	}
	if got := tk.Encode("ab", true, false); !slices.Equal(got, ids(t, tk, "<s>", "▁ab")) {
		t.Errorf("with BOS: %v", got)
	}
	if got := tk.Encode("", true, false); !slices.Equal(got, []int32{1}) {
		t.Errorf("empty with BOS: %v", got)
	}
	if got := tk.Decode(tk.Encode("abc a", false, false)); got != "abc a" {
		t.Errorf("Decode = %q", got)
	}
	if got := tk.Decode(tk.Encode("abc", true, false)); got != " abc" {
		// llama_detokenize(remove_special=false): the BOS takes the space removal
		t.Errorf("Decode with BOS = %q", got)
	}
	// remove_special drops BOS, and with it llama.cpp skips the space removal
	if got := tk.Detokenize(tk.Encode("abc", true, false), true, false); got != " abc" {
		t.Errorf("Detokenize(remove_special) = %q", got)
	}
	if got := tk.Detokenize([]int32{1, 2}, false, true); got != "<s></s>" {
		t.Errorf("Detokenize(unparse_special) = %q", got)
	}
	if got := string(tk.Piece(ids(t, tk, "▁ab")[0])); got != " ab" {
		t.Errorf("Piece(▁ab) = %q", got)
	}
	if got := tk.Piece(ids(t, tk, "<0x41>")[0]); !slices.Equal(got, []byte{0x41}) {
		t.Errorf("Piece(<0x41>) = %q", got)
	}
	if tk.Piece(-1) != nil || tk.Piece(int32(tk.NumTokens())) != nil {
		t.Error("Piece out of range not nil")
	}
	if !tk.IsEOG(2) || tk.IsEOG(1) || !tk.IsControl(1) || tk.IsControl(3) {
		t.Error("EOG/control attributes wrong")
	}
}

// bpeVocab is a byte-level BPE vocabulary holding the 256 byte tokens, then
// extra tokens, with the given merges.
func bpeVocab(pre string, extra []string, merges ...string) *Vocab {
	v := &Vocab{Model: ModelBPE, Pre: pre}
	for b := 0; b < 256; b++ {
		v.Tokens = append(v.Tokens, string(byteToRune[b]))
	}
	v.Tokens = append(v.Tokens, extra...)
	v.Merges = merges
	v.SetDefaults()
	return v
}

func TestBPE(t *testing.T) {
	extra := []string{"ab", "bc", "abc", "Ġa", "Ġab", "<|end|>", "<tool>"}
	v := bpeVocab("gpt-2", extra, "b c", "a b", "ab c", "Ġ a", "Ġ ab")
	v.Types = make([]int32, len(v.Tokens))
	for i := range v.Types {
		v.Types[i] = TypeNormal
	}
	v.Types[len(v.Types)-2] = TypeControl
	v.Types[len(v.Types)-1] = TypeUserDefined
	v.BOS, v.EOS = -1, -1
	tk := mustNew(t, v)
	for _, tc := range []struct {
		text  string
		parse bool
		want  []string
	}{
		// "b c" ranks before "a b": a + bc, and "a bc" is no merge
		{"abc", false, []string{"a", "bc"}},
		{"ab", false, []string{"ab"}},
		{" ab", false, []string{"Ġab"}},
		{"ab ab", false, []string{"ab", "Ġab"}},
		// bytes with no merges stay bytes, spelled byte-encoded
		{"é", false, []string{"Ã", "©"}},
		// control tokens are text unless parseSpecial
		{"<|end|>", false, []string{"<", "|", "e", "n", "d", "|", ">"}},
		{"a<|end|>b", true, []string{"a", "<|end|>", "b"}},
		// user-defined tokens are always split out
		{"a<tool>b", false, []string{"a", "<tool>", "b"}},
	} {
		got := tk.Encode(tc.text, false, tc.parse)
		if want := ids(t, tk, tc.want...); !slices.Equal(got, want) {
			t.Errorf("Encode(%q, parse=%v) = %v, want %v %q", tc.text, tc.parse, got, want, tc.want)
		}
	}
	if got := tk.Decode(tk.Encode("a . b ,c 's", false, false)); got != "a. b,c's" {
		t.Errorf("Decode with clean-up = %q", got)
	}
	if got := tk.Decode(tk.Encode("é<tool>", false, false)); got != "é<tool>" {
		t.Errorf("Decode = %q", got)
	}
	if !tk.IsEOG(ids(t, tk, "<|end|>")[0]) {
		t.Error("<|end|> is not EOG")
	}
	if tk.EOT() != ids(t, tk, "<|end|>")[0] {
		t.Errorf("EOT = %d", tk.EOT())
	}
}

func TestIgnoreMerges(t *testing.T) {
	// With llama3's ignore_merges a word that is a token is taken whole even
	// when the merges cannot build it.
	extra := []string{"ab", "abc"}
	v := bpeVocab("llama-bpe", extra, "a b")
	v.BOS, v.AddBOS = 256, true
	tk := mustNew(t, v)
	if got := tk.Encode("abc", false, false); !slices.Equal(got, ids(t, tk, "abc")) {
		t.Errorf("llama-bpe: %v", got)
	}
	v.Pre = "gpt-2"
	tk = mustNew(t, v)
	if got := tk.Encode("abc", false, false); !slices.Equal(got, ids(t, tk, "ab", "c")) {
		t.Errorf("gpt-2: %v", got)
	}
}

func TestPartitionStrip(t *testing.T) {
	v := spmVocab("▁a", -1.0, "a", -2.0, "▁", -3.0, "<|user|>", 0.0)
	v.Types[len(v.Types)-1] = TypeUserDefined
	v.Name = "Phi3 mini" // phi-3: special tokens strip spaces on their right
	tk := mustNew(t, v)
	got := tk.Encode("a <|user|>  a", false, false)
	// the text after a special token gets the SPM space prefix again
	want := ids(t, tk, "▁a", "▁", "<|user|>", "▁a")
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestNewErrors(t *testing.T) {
	v := bpeVocab("no-such-pre", nil)
	if _, err := New(v); err == nil || !errors.Is(err, ErrUnsupported) ||
		!strings.Contains(err.Error(), `unsupported tokenizer pre-tokenizer "no-such-pre"`) {
		t.Errorf("unknown pre: %v", err)
	}
	v = &Vocab{Model: "t5", Tokens: []string{"a"}}
	if _, err := New(v); err == nil || !strings.Contains(err.Error(), `unsupported tokenizer model "t5"`) {
		t.Errorf("unknown model: %v", err)
	}
	v = spmVocab()
	v.Tokens[5] = v.Tokens[6]
	if _, err := New(v); err == nil || !strings.Contains(err.Error(), "duplicate") {
		t.Errorf("duplicate: %v", err)
	}
	v = spmVocab()
	v.BOS = -1
	if _, err := New(v); err == nil {
		t.Error("add_bos without bos: no error")
	}
	if _, err := New(&Vocab{Model: ModelSPM}); err == nil {
		t.Error("empty vocabulary: no error")
	}
}

func TestWPM(t *testing.T) {
	v := &Vocab{Model: ModelWPM, Tokens: []string{"[PAD]", "[UNK]", "[CLS]", "[SEP]", "▁hello", "▁world", "▁cafe", "s", "▁!", "▁世"}}
	v.SetDefaults()
	v.BOS, v.UNK, v.SEP, v.PAD, v.MASK = 2, 1, 3, 0, -1
	tk := mustNew(t, v)
	got := tk.Encode("Hello WORLDs! Café 世 xyz", true, false)
	want := ids(t, tk, "[CLS]", "▁hello", "▁world", "s", "▁!", "▁cafe", "▁世", "[UNK]", "[SEP]")
	if !slices.Equal(got, want) {
		t.Errorf("got %v, want %v", got, want)
	}
}

func TestStreamDecoder(t *testing.T) {
	tk := mustNew(t, spmVocab("▁a", -1.0, "a", -2.0, "▁", -3.0))
	text := "a😀é世a\x00"
	toks := tk.Encode(text, true, false)
	d := tk.NewStreamDecoder()
	var got strings.Builder
	for i, id := range toks {
		s := d.Add(id)
		if !utf8.ValidString(s) {
			t.Fatalf("token %d: invalid UTF-8 %q", i, s)
		}
		got.WriteString(s)
	}
	got.WriteString(d.Flush())
	if want := " " + text; got.String() != want {
		t.Errorf("stream = %q, want %q", got.String(), want)
	}
	// the emoji's four byte tokens give nothing until the last one
	d = tk.NewStreamDecoder()
	emoji := tk.Encode("😀", false, false)[1:] // drop "▁"
	for i, id := range emoji {
		s := d.Add(id)
		if (i < 3 && s != "") || (i == 3 && s != "😀") {
			t.Errorf("byte %d: %q", i, s)
		}
	}
	// a cut-short character becomes U+FFFD when something else follows or
	// at Flush
	d = tk.NewStreamDecoder()
	b0, b1 := ids(t, tk, "<0xE4>")[0], ids(t, tk, "<0xB8>")[0]
	if s := d.Add(b0) + d.Add(b1); s != "" {
		t.Errorf("partial: %q", s)
	}
	if s := d.Add(ids(t, tk, "a")[0]); s != "\uFFFDa" {
		t.Errorf("after partial: %q", s)
	}
	d.Add(b0)
	if s := d.Flush(); s != "\uFFFD" {
		t.Errorf("Flush = %q", s)
	}
	// control tokens render as nothing
	if s := d.Add(tk.EOS()); s != "" {
		t.Errorf("EOS = %q", s)
	}
}

// TestRawStreamDecoder: the raw decoder hands out each byte token's byte at
// once, so a cut-short character reaches the output exactly as generated.
func TestRawStreamDecoder(t *testing.T) {
	tk := mustNew(t, spmVocab("▁a", -1.0, "a", -2.0, "▁", -3.0))
	d := tk.NewRawStreamDecoder()
	b0, b1 := ids(t, tk, "<0xE4>")[0], ids(t, tk, "<0xB8>")[0]
	got := d.Add(b0) + d.Add(b1) + d.Add(ids(t, tk, "a")[0]) + d.Flush()
	if want := "\xe4\xb8a"; got != want {
		t.Errorf("raw stream = %q, want %q", got, want)
	}
	if s := d.Add(tk.EOS()); s != "" {
		t.Errorf("EOS = %q", s)
	}
}

func TestValidPrefix(t *testing.T) {
	for _, tc := range []struct {
		in, out, rest string
	}{
		{"abc", "abc", ""},
		{"a\xe4\xb8", "a", "\xe4\xb8"},
		{"a\xe4\xb8b", "a\uFFFDb", ""},
		{"\xff\xfe", "\uFFFD\uFFFD", ""},
		{"\xed\xa0\x80", "\uFFFD\uFFFD\uFFFD", ""}, // surrogate: E0-ED rule
		{"\xf0\x9f\x98", "", "\xf0\x9f\x98"},
		{"\xc0\x80", "\uFFFD\uFFFD", ""},
	} {
		out, rest := validPrefix([]byte(tc.in), false)
		if out != tc.out || string(rest) != tc.rest {
			t.Errorf("validPrefix(%q) = %q, %q; want %q, %q", tc.in, out, rest, tc.out, tc.rest)
		}
	}
}

func TestCleanSpaces(t *testing.T) {
	for in, want := range map[string]string{
		"a , b . c ! d ?":          "a, b. c! d?",
		"it ' s":                   "it's",
		"a ' ' b":                  "a'' b",
		"I 'm we 're they 've 'll": "I'm we're they've 'll",
		"don 't":                   "don 't",
		" .":                       ".",
		"":                         "",
	} {
		if got := string(cleanSpaces([]byte(in))); got != want {
			t.Errorf("cleanSpaces(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBigramKeys(t *testing.T) {
	// SPM: higher score first, then leftmost; -0 ties with +0.
	keys := []uint64{
		spmKey(5, 3), spmKey(5, 7), spmKey(0.5, 0), spmKey(float32(math.Copysign(0, -1)), 1), spmKey(0, 2),
		spmKey(-0.5, 0), spmKey(-1000, 0), spmKey(float32(math.Inf(-1)), 0),
	}
	if !slices.IsSorted(keys) {
		t.Errorf("SPM keys out of order: %x", keys)
	}
	// BPE: lower rank first, then leftmost.
	keys = []uint64{bpeKey(0, 5), bpeKey(1, 0), bpeKey(1, 2), bpeKey(280000, 0)}
	if !slices.IsSorted(keys) {
		t.Errorf("BPE keys out of order: %x", keys)
	}
	var h bigramHeap
	r := rand.New(rand.NewPCG(7, 8))
	var want []uint64
	for range 1000 {
		k := r.Uint64N(500)
		want = append(want, k)
		h.push(bigram{key: k})
	}
	slices.Sort(want)
	for i, w := range want {
		if got := h.pop().key; got != w {
			t.Fatalf("pop %d = %d, want %d", i, got, w)
		}
	}
}

func TestConcurrentEncode(t *testing.T) {
	tk := mustNew(t, bpeVocab("llama-bpe", []string{"ab", "Ġab"}, "a b", "Ġ ab"))
	spm := mustNew(t, spmVocab("▁a", -1.0, "a", -2.0))
	text := strings.Repeat("ab ab abc é 12345 ", 50)
	want, wantSPM := tk.Encode(text, true, false), spm.Encode(text, true, false)
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				if got := tk.Encode(text, true, false); !slices.Equal(got, want) {
					t.Error("BPE result differs across goroutines")
					return
				}
				if got := spm.Encode(text, true, false); !slices.Equal(got, wantSPM) {
					t.Error("SPM result differs across goroutines")
					return
				}
			}
		})
	}
	wg.Wait()
}
