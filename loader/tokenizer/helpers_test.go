package tokenizer

import (
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/hearth-llm/hearth/loader/gguf"
)

var (
	loadedMu sync.Mutex
	loaded   = map[string]*Tokenizer{}
)

// loadGGUF builds (once per test binary) the tokenizer of a GGUF file.
func loadGGUF(t testing.TB, path string) *Tokenizer {
	t.Helper()
	loadedMu.Lock()
	defer loadedMu.Unlock()
	if tk, ok := loaded[path]; ok {
		return tk
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := VocabFromGGUF(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	tk, err := New(v)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	loaded[path] = tk
	return tk
}

// vocabOf reads the Vocab of a GGUF file.
func vocabOf(t testing.TB, path string) *Vocab {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	v, err := VocabFromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// vectorCase is one entry of a llama.cpp .inp/.out pair.
type vectorCase struct {
	text string
	ids  []int32
}

// readVectors reads X.gguf.inp and X.gguf.out the way llama.cpp's
// test-tokenizer-0 does: inputs separated by "\n__ggml_vocab_test__\n" (the
// file ends with the separator), outputs one line each.
func readVectors(t testing.TB, ggufPath string) []vectorCase {
	t.Helper()
	inp, err := os.ReadFile(ggufPath + ".inp")
	if err != nil {
		t.Fatal(err)
	}
	outb, err := os.ReadFile(ggufPath + ".out")
	if err != nil {
		t.Fatal(err)
	}
	const sep = "\n__ggml_vocab_test__\n"
	var ins []string
	raw := string(inp)
	for pos := 0; pos < len(raw); {
		next := strings.Index(raw[pos:], sep)
		if next < 0 {
			ins = append(ins, raw[pos:])
			break
		}
		ins = append(ins, raw[pos:pos+next])
		pos += next + len(sep)
	}
	outs := strings.Split(strings.TrimSuffix(string(outb), "\n"), "\n")
	if len(ins) != len(outs) {
		t.Fatalf("%s: %d inputs but %d outputs", ggufPath, len(ins), len(outs))
	}
	cases := make([]vectorCase, len(ins))
	for i := range ins {
		cases[i].text = ins[i]
		for _, f := range strings.Fields(outs[i]) {
			x, err := strconv.Atoi(f)
			if err != nil {
				t.Fatalf("%s.out line %d: %v", ggufPath, i+1, err)
			}
			cases[i].ids = append(cases[i].ids, int32(x))
		}
	}
	return cases
}
