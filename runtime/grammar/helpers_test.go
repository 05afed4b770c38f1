package grammar

import (
	"path/filepath"
	"sync"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/loader/tokenizer"
)

var (
	vocabMu    sync.Mutex
	vocabCache = map[string]*Vocab{}
)

// realVocab builds (once per test binary) the Vocab of a shared vocab GGUF,
// with control tokens given empty pieces as the engine passes them.
func realVocab(t testing.TB, name string) *Vocab {
	t.Helper()
	path := filepath.Join(testdata.Dir(t, "vocab"), name)
	vocabMu.Lock()
	defer vocabMu.Unlock()
	if v, ok := vocabCache[path]; ok {
		return v
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		t.Fatal(err)
	}
	pieces := make([][]byte, tok.NumTokens())
	for i := range pieces {
		if !tok.IsControl(int32(i)) {
			pieces[i] = tok.Piece(int32(i))
		}
	}
	v := NewVocab(pieces, tok.EOG())
	vocabCache[path] = v
	return v
}

// accepts reports whether configuration c accepts all of p (stepping on
// scratch; the matcher is unchanged).
func (m *Matcher) accepts(c config, p []byte) bool {
	st := &m.w.st
	st.frames = st.frames[:m.base]
	st.out = append(st.out[:0], c)
	lo, hi := 0, 1
	for k, b := range p {
		st.step(st.out[lo:hi], b)
		if len(st.out) == hi {
			return st.complete && k == len(p)-1
		}
		lo, hi = hi, len(st.out)
	}
	return true
}
