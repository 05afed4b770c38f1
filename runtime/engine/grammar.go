package engine

import (
	"github.com/hearth-llm/hearth/runtime/grammar"
)

// NewMatcher starts constrained decoding of g over the model's vocabulary.
// The vocabulary's byte index is built on the first call (tens of
// milliseconds for 128k tokens) and shared by every later matcher.
func (m *Model) NewMatcher(g *grammar.Grammar) *grammar.Matcher {
	m.vocabOnce.Do(func() {
		n := m.Arch.Info().VocabSize
		pieces := make([][]byte, n)
		for id := range min(n, m.Tok.NumTokens()) {
			// Control and unknown tokens print as nothing: never part
			// of a document.
			if !m.Tok.IsControl(int32(id)) && int32(id) != m.Tok.UNK() {
				pieces[id] = m.Tok.Piece(int32(id))
			}
		}
		m.vocab = grammar.NewVocab(pieces, m.Tok.EOG())
	})
	return g.NewMatcher(m.vocab)
}

// constrain masks row to what matcher allows; a nil matcher allows all.
func constrain(matcher *grammar.Matcher, row []float32) {
	if matcher != nil {
		matcher.Mask(row)
	}
}

// accept advances matcher by tok and reports whether generation must stop:
// the document is finished (nothing more may follow), or tok was not
// allowed (only when every token was masked, which a correct grammar
// never does: stopping keeps the output a valid prefix).
func accept(matcher *grammar.Matcher, tok int32) (stop bool) {
	if matcher == nil {
		return false
	}
	if err := matcher.Accept(tok); err != nil {
		return true
	}
	return matcher.Done()
}
