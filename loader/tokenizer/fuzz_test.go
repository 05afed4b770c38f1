package tokenizer

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/hearth-llm/hearth/internal/testdata"
)

// fuzzVocabs are the vocabularies FuzzEncode runs, and whether Decode gives
// the text back for valid UTF-8 (with parseSpecial false):
//   - llama-spm: yes, except that U+2581 ("▁") comes back as a space
//     (not for invalid UTF-8: a bad lead byte swallows the next byte of an
//     escaped space, which then stays "▁");
//   - deepseek-coder: yes (byte-level BPE that keeps spaces as they are);
//   - llama-bpe, gpt-2: the pieces concatenate to the text, but Decode's
//     clean-up of tokenization spaces turns " ." into "." and the like;
//   - bert-bge: no (lowercases, strips accents, drops spaces).
var fuzzVocabs = []struct {
	file                string
	decodeLossless      bool
	piecesLossless      bool
	spaceEscapeIsLossy  bool
	invalidUTF8Lossless bool
}{
	{"ggml-vocab-llama-spm.gguf", true, true, true, false},
	{"ggml-vocab-deepseek-coder.gguf", true, true, false, false},
	{"ggml-vocab-llama-bpe-reconstructed.gguf", false, true, false, false},
	{"ggml-vocab-gpt-2.gguf", false, true, false, false},
	{"ggml-vocab-bert-bge.gguf", false, false, false, false},
}

// FuzzEncode encodes arbitrary bytes with every flag combination and
// decodes the result: nothing may panic, every id must be in range, and
// where the tokenizer is lossless the text must come back.
func FuzzEncode(f *testing.F) {
	dir := testdata.Dir(f, "vocab")
	var tks []*Tokenizer
	for _, v := range fuzzVocabs {
		tks = append(tks, loadGGUF(f, filepath.Join(dir, v.file)))
	}
	files, _ := filepath.Glob(filepath.Join(dir, "*.inp"))
	for _, p := range files {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		for _, s := range strings.Split(string(b), "\n__ggml_vocab_test__\n") {
			f.Add(s)
		}
	}
	f.Add("<s>Hello</s> <|begin_of_text|><|eot_id|> [CLS] x")
	f.Add("\xff\xfe\xed\xa0\x80\xc0\x80\xf4\x90\x80\x80")
	f.Add("\u2581 \u2581\u2581")
	f.Fuzz(func(t *testing.T, s string) {
		for i, tk := range tks {
			fv := fuzzVocabs[i]
			for _, flags := range [][2]bool{{false, false}, {true, false}, {false, true}, {true, true}} {
				got := tk.Encode(s, flags[0], flags[1])
				for _, id := range got {
					if id < 0 || int(id) >= tk.NumTokens() {
						t.Fatalf("%s: id %d out of range", fv.file, id)
					}
				}
				_ = tk.Decode(got)
				d := tk.NewStreamDecoder()
				for _, id := range got {
					if out := d.Add(id); !utf8.ValidString(out) {
						t.Fatalf("%s: stream output %q not UTF-8", fv.file, out)
					}
				}
				d.Flush()
			}
			if !utf8.ValidString(s) && !fv.invalidUTF8Lossless {
				continue
			}
			toks := tk.Encode(s, false, false)
			if fv.piecesLossless {
				var b bytes.Buffer
				for j, id := range toks {
					p := tk.Piece(id)
					if j == 0 && tk.addSpacePrefix {
						p = bytes.TrimPrefix(p, []byte(" "))
					}
					b.Write(p)
				}
				want := s
				if fv.spaceEscapeIsLossy {
					want = strings.ReplaceAll(s, "\u2581", " ")
				}
				if b.String() != want {
					t.Errorf("%s: pieces of %q give %q", fv.file, s, b.String())
				}
			}
			if fv.decodeLossless {
				want := s
				if fv.spaceEscapeIsLossy {
					want = strings.ReplaceAll(s, "\u2581", " ")
				}
				if got := tk.Decode(toks); got != want {
					t.Errorf("%s: Decode(Encode(%q)) = %q", fv.file, s, got)
				}
			}
		}
	})
}
