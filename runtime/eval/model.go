package eval

import (
	"github.com/hearth-llm/hearth/runtime/engine"
)

// LM is what perplexity and KL-divergence runs need of a model.
type LM interface {
	// Vocab is the number of logits per position.
	Vocab() int
	// Tokenize tokenizes text as llama.cpp's common_tokenize(ctx, text,
	// true) does: special tokens added (BOS when the model adds one),
	// special-token text not parsed.
	Tokenize(text string) []int32
	// BOS is the token set first in every chunk; ok is false when the
	// model adds none.
	BOS() (id int32, ok bool)
	// Logits evaluates ids from an empty context, batch tokens per forward
	// pass, and hands use the logits of positions from … len(ids)-1 in
	// order; a row is valid only during its call.
	Logits(ids []int32, from, batch int, use func(i int, row []float32) error) error
}

// Engine adapts a loaded engine model to LM.
func Engine(m *engine.Model) LM { return engineLM{m: m} }

// EngineAdapter adapts a loaded engine model to LM with the LoRA adapter
// registered on it as adapter (engine.Model.LoadAdapter) applied to every
// position.
func EngineAdapter(m *engine.Model, adapter string) LM { return engineLM{m: m, adapter: adapter} }

type engineLM struct {
	m       *engine.Model
	adapter string // "": none
}

func (e engineLM) Vocab() int                   { return e.m.Arch.Info().VocabSize }
func (e engineLM) Tokenize(text string) []int32 { return e.m.Tok.Encode(text, true, false) }

func (e engineLM) BOS() (int32, bool) {
	return e.m.Tok.BOS(), e.m.Tok.AddBOS() && e.m.Tok.BOS() >= 0
}

func (e engineLM) Logits(ids []int32, from, batch int, use func(int, []float32) error) error {
	s, err := e.m.NewSequence(len(ids))
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.UseAdapter(e.adapter); err != nil {
		return err
	}
	return s.EvalAll(ids, from, batch, use)
}
