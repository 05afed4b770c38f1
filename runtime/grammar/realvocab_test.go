package grammar

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

var realVocabs = []string{
	"ggml-vocab-llama-bpe-reconstructed.gguf",
	"ggml-vocab-llama-spm.gguf",
	"ggml-vocab-gpt-2.gguf",
	"ggml-vocab-phi-3.gguf",
}

// sampleDoc draws tokens with random logits through Mask until EOG, Done or
// maxTokens, favouring closing tokens (and EOG) as the document grows so
// that it ends. Every drawn token must be accepted.
func sampleDoc(t *testing.T, g *Grammar, v *Vocab, rng *rand.Rand, closers []int32, maxTokens int, check func(m *Matcher, doc []byte)) ([]byte, bool) {
	t.Helper()
	m := g.NewMatcher(v)
	logits := make([]float32, v.size+3)
	var doc []byte
	for step := range maxTokens {
		if check != nil {
			check(m, doc)
		}
		for i := range logits {
			logits[i] = float32(rng.NormFloat64())
		}
		if step > 30 {
			for _, id := range closers {
				logits[id] += 3
			}
			for _, id := range v.eog {
				logits[id] += 10
			}
		}
		m.Mask(logits)
		best := 0
		for i, l := range logits {
			if l > logits[best] {
				best = i
			}
		}
		if math.IsInf(float64(logits[best]), -1) {
			t.Fatalf("no token allowed after %q", doc)
		}
		tok := int32(best)
		if err := m.Accept(tok); err != nil {
			t.Fatalf("after %q: mask allowed a token Accept refuses: %v", doc, err)
		}
		if v.isEOG[tok] {
			return doc, true
		}
		doc = append(doc, v.pieces[tok]...)
		if m.Done() {
			return doc, true
		}
	}
	return doc, m.Complete()
}

func closerTokens(v *Vocab) []int32 {
	var ids []int32
	for id, p := range v.pieces {
		if bytes.ContainsAny(p, `"}]\`) {
			ids = append(ids, int32(id))
		}
	}
	return ids
}

// TestSampleRealVocabs samples documents over real vocabularies with random
// logits: each must be valid JSON matching its schema.
func TestSampleRealVocabs(t *testing.T) {
	schemas := []string{"", benchSchema, propertySchemas[1], propertySchemas[2], propertySchemas[4], propertySchemas[8]}
	n := 4
	if testing.Short() {
		n = 1
	}
	if os.Getenv("GRAMMAR_SOAK") != "" {
		n = 40
	}
	for _, name := range realVocabs {
		t.Run(name, func(t *testing.T) {
			v := realVocab(t, name)
			closers := closerTokens(v)
			rng := rand.New(rand.NewPCG(11, uint64(len(name))))
			for _, src := range schemas {
				g, schema := JSON(), (*jv)(nil)
				if src != "" {
					var err error
					if g, err = FromSchema([]byte(src)); err != nil {
						t.Fatal(err)
					}
					schema, _ = parseJSON([]byte(src))
				}
				for range n {
					doc, complete := sampleDoc(t, g, v, rng, closers, 400, nil)
					if !complete {
						t.Fatalf("not complete after 400 tokens: %q", doc)
					}
					checkDoc(t, schema, string(doc))
				}
			}
		})
	}
}

// TestMaskRealVocab compares Mask with accepting every token on a copy of
// the matcher, at states along sampled documents of a 128k vocabulary.
func TestMaskRealVocab(t *testing.T) {
	if testing.Short() {
		t.Skip("slow brute force")
	}
	v := realVocab(t, realVocabs[0])
	closers := closerTokens(v)
	rng := rand.New(rand.NewPCG(5, 6))
	logits := make([]float32, v.size)
	for _, src := range []string{benchSchema, propertySchemas[8]} {
		g, err := FromSchema([]byte(src))
		if err != nil {
			t.Fatal(err)
		}
		checks := 0
		sampleDoc(t, g, v, rng, closers, 60, func(m *Matcher, doc []byte) {
			if rng.IntN(6) != 0 || checks >= 5 {
				return
			}
			checks++
			for range 3 { // trie walk, cache build, cached
				clear(logits)
				m.Mask(logits)
				for i := range v.size {
					got := !math.IsInf(float64(logits[i]), -1)
					if want := m.Allowed(int32(i)); got != want {
						t.Fatalf("after %q: token %d %q: mask allows %v, want %v", doc, i, v.pieces[i], got, want)
					}
				}
			}
		})
	}
}
