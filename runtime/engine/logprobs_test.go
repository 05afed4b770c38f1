package engine

import (
	"context"
	"errors"
	"io"
	"math"
	"testing"

	"github.com/hearth-llm/hearth/runtime/grammar"
	"github.com/hearth-llm/hearth/runtime/sample"
)

// TestBatchedLogprobs: each greedy token's logprob is the best of the
// step's log-softmax (the first alternative), and the batched engine's
// logprobs equal sample.Logprobs over the single-sequence logits.
func TestBatchedLogprobs(t *testing.T) {
	m := loadModel(t, "stories260K-f32.gguf")
	prompt := m.Tok.Encode("Once upon a time", true, false)
	const n = 8
	seq, _ := m.NewSequence(0)
	logits, err := seq.Eval(prompt)
	if err != nil {
		t.Fatal(err)
	}
	var alone []sample.TokenLogprobs
	for range n {
		tok := sample.Greedy(logits)
		alone = append(alone, sample.Logprobs(logits, tok, 5))
		if logits, err = seq.Eval([]int32{tok}); err != nil {
			t.Fatal(err)
		}
	}
	b := serveBatched(t, m, BatchConfig{KVBudget: 8 << 20})
	st, err := b.Submit(prompt, SeqOptions{NumPredict: n, Sample: greedy(), Logprobs: true, TopLogprobs: 5})
	if err != nil {
		t.Fatal(err)
	}
	var toks []int32
	var extra []any
	for err == nil {
		toks, extra, err = st.RecvExtra(context.Background(), toks, extra)
	}
	if !errors.Is(err, io.EOF) || len(toks) != n || len(extra) != n {
		t.Fatalf("%v: %d tokens, %d extras", err, len(toks), len(extra))
	}
	for i, x := range extra {
		lp, ok := x.(*sample.TokenLogprobs)
		if !ok || lp.ID != toks[i] || len(lp.Top) != 5 || lp.Top[0].ID != lp.ID || lp.Top[0].Logprob != lp.Logprob || lp.Logprob > 0 {
			t.Fatalf("token %d (%d): %+v", i, toks[i], x)
		}
		a := alone[i]
		if a.ID != lp.ID || math.Abs(a.Logprob-lp.Logprob) > 1e-4 {
			t.Errorf("token %d: batched %+v, alone %+v", i, lp, a)
		}
		for k := range a.Top {
			if a.Top[k].ID != lp.Top[k].ID || math.Abs(a.Top[k].Logprob-lp.Top[k].Logprob) > 1e-4 {
				t.Errorf("token %d top %d: batched %+v, alone %+v", i, k, lp.Top[k], a.Top[k])
			}
		}
	}
	// Without Logprobs, no extras.
	st, _ = b.Submit(prompt, SeqOptions{NumPredict: 2, Sample: greedy()})
	toks, extra, err = nil, nil, nil
	for err == nil {
		toks, extra, err = st.RecvExtra(context.Background(), toks, extra)
	}
	for _, x := range extra {
		if x != nil {
			t.Errorf("unasked extra %+v", x)
		}
	}
}

// TestPreservedVocab: a grammar literal spelled like a control token can be
// matched by that token only when it is preserved; EOG tokens never are;
// the preserving vocabulary is built once per set.
func TestPreservedVocab(t *testing.T) {
	m := loadModel(t, "tiny-llama-bpe-Q4_0.gguf")
	id, ok := m.Tok.TokenID("<|start_header_id|>")
	if !ok || !m.Tok.IsControl(id) {
		t.Fatalf("no control token <|start_header_id|>: %d %v", id, ok)
	}
	g, err := grammar.FromSchema([]byte(`{"const":"<|start_header_id|>"}`))
	if err != nil {
		t.Fatal(err)
	}
	vocab := m.Arch.Info().VocabSize
	allowed := func(mt *grammar.Matcher, tok int32) bool {
		row := make([]float32, vocab)
		mt.Mask(row)
		return !math.IsInf(float64(row[tok]), -1)
	}
	quote, _ := m.Tok.TokenID(`"`)
	plain, kept := m.NewMatcher(g), m.NewMatcherPreserving(g, []int32{id, id})
	for _, mt := range []*grammar.Matcher{plain, kept} {
		if err := mt.Accept(quote); err != nil {
			t.Fatal(err)
		}
	}
	if allowed(plain, id) || !allowed(kept, id) {
		t.Errorf("control token allowed: plain %v, preserved %v", allowed(plain, id), allowed(kept, id))
	}
	if err := kept.Accept(id); err != nil {
		t.Fatalf("preserved token refused: %v", err)
	}
	if m.grammarVocab(m.preservable([]int32{id})) != m.grammarVocab(m.preservable([]int32{id, id})) || len(m.vocabs) != 1 {
		t.Error("the preserving vocabulary was built twice")
	}
	eog := m.Tok.EOG()
	if len(eog) == 0 || len(m.preservable(eog)) != 0 {
		t.Errorf("EOG tokens preserved: %v", m.preservable(eog))
	}
}
