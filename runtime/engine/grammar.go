package engine

import (
	"slices"
	"strconv"
	"strings"

	"github.com/hearth-llm/hearth/runtime/grammar"
)

// NewMatcher starts constrained decoding of g over the model's vocabulary,
// in which control tokens print as nothing (never part of a document).
// The vocabulary's byte index is built on the first call (tens of
// milliseconds for 128k tokens) and shared by every later matcher.
func (m *Model) NewMatcher(g *grammar.Grammar) *grammar.Matcher {
	return m.NewMatcherPreserving(g, nil)
}

// NewMatcherPreserving is NewMatcher where the control tokens of preserve
// keep their text (as llama.cpp's preserved_tokens): a grammar literal such
// as "[TOOL_CALLS]" or "<|channel|>" can then be matched by the special
// token, whose text the runners put in the output. End-of-generation
// tokens are never preserved, and ids outside the vocabulary are ignored.
// One index is built per distinct set (a model's tool-call format is fixed,
// so there is usually one beside the plain one) and kept for the model's
// life.
func (m *Model) NewMatcherPreserving(g *grammar.Grammar, preserve []int32) *grammar.Matcher {
	return g.NewMatcher(m.grammarVocab(m.preservable(preserve)))
}

// preservable returns the ids of preserve that may be preserved: in the
// vocabulary, not end-of-generation, sorted, without duplicates.
func (m *Model) preservable(preserve []int32) []int32 {
	if len(preserve) == 0 {
		return nil
	}
	n := min(m.Arch.Info().VocabSize, m.Tok.NumTokens())
	ids := make([]int32, 0, len(preserve))
	for _, id := range preserve {
		if id >= 0 && int(id) < n && !m.Tok.IsEOG(id) && len(m.Tok.Piece(id)) > 0 {
			ids = append(ids, id)
		}
	}
	slices.Sort(ids)
	return slices.Compact(ids)
}

// grammarVocab returns the (cached) grammar vocabulary in which the ids of
// keep, sorted and deduplicated, print as their text.
func (m *Model) grammarVocab(keep []int32) *grammar.Vocab {
	build := func() *grammar.Vocab {
		n := m.Arch.Info().VocabSize
		pieces := make([][]byte, n)
		for id := range min(n, m.Tok.NumTokens()) {
			// Control and unknown tokens print as nothing: never part
			// of a document, unless preserved.
			if !m.Tok.IsControl(int32(id)) && int32(id) != m.Tok.UNK() {
				pieces[id] = m.Tok.Piece(int32(id))
			}
		}
		for _, id := range keep {
			pieces[id] = m.Tok.Piece(id)
		}
		return grammar.NewVocab(pieces, m.Tok.EOG())
	}
	if len(keep) == 0 {
		m.vocabOnce.Do(func() { m.vocab = build() })
		return m.vocab
	}
	var key strings.Builder
	for _, id := range keep {
		key.WriteString(strconv.Itoa(int(id)))
		key.WriteByte(',')
	}
	m.vocabMu.Lock()
	defer m.vocabMu.Unlock()
	if v := m.vocabs[key.String()]; v != nil {
		return v
	}
	if m.vocabs == nil {
		m.vocabs = map[string]*grammar.Vocab{}
	}
	v := build()
	m.vocabs[key.String()] = v
	return v
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
