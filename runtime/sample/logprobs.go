package sample

import (
	"math"
	"slices"
)

// MaxTopLogprobs is the most alternatives Logprobs reports per token
// (OpenAI's and Ollama's limit).
const MaxTopLogprobs = 20

// Logprob is one token's log-probability under a step's distribution.
type Logprob struct {
	ID      int32
	Logprob float64
}

// TokenLogprobs is the log-probability of a sampled token and, when asked,
// of the most likely tokens at its step.
type TokenLogprobs struct {
	ID      int32   // the sampled token
	Logprob float64 // its log-probability
	// Top holds the most likely tokens, best first, ties to the lowest
	// id; tokens of probability 0 (-Inf or NaN logits) are never listed,
	// so it may be shorter than asked.
	Top []Logprob
}

// Logprobs returns the log-softmax of logits at tok and at the top most
// likely tokens (top is capped at MaxTopLogprobs; 0 lists none). These are
// the model's raw distribution, as vLLM's default (raw_logprobs): before
// the penalties, top_k/top_p/min_p/typical_p, temperature and grammar
// masking, so they do not depend on the sampling options. The normaliser
// is computed in float64: the max is subtracted before exp, NaN counts as
// -Inf and a +Inf logit takes all the mass (0 for it, -Inf for the rest).
// The alternatives are chosen in one pass with a heap of top entries
// (O(vocab), no sort of the vocabulary). logits is only read.
func Logprobs(logits []float32, tok int32, top int) TokenLogprobs {
	lse := logSumExp(logits)
	lp := func(id int32) float64 {
		if id < 0 || int(id) >= len(logits) {
			return math.Inf(-1)
		}
		v := float64(logits[id])
		switch {
		case v != v, math.IsInf(v, -1):
			return math.Inf(-1)
		case math.IsInf(lse, 1):
			if math.IsInf(v, 1) {
				return 0 // the mass is shared by the +Inf logits; counted as certain
			}
			return math.Inf(-1)
		}
		return v - lse
	}
	out := TokenLogprobs{ID: tok, Logprob: lp(tok)}
	top = min(top, MaxTopLogprobs, len(logits))
	if top <= 0 {
		return out
	}
	c := selectTop(make([]cand, 0, top), logits, top)
	slices.SortFunc(c, cmpBetter)
	out.Top = make([]Logprob, len(c))
	for i, x := range c {
		out.Top[i] = Logprob{ID: x.id, Logprob: lp(x.id)}
	}
	return out
}

// logSumExp is log Σ exp(logits) in float64, max-subtracted; NaN counts
// as -Inf; -Inf when nothing is finite, +Inf when a logit is +Inf.
func logSumExp(logits []float32) float64 {
	m := math.Inf(-1)
	for _, v := range logits {
		if f := float64(v); f > m { // false for NaN
			m = f
		}
	}
	if math.IsInf(m, 0) {
		return m
	}
	var sum float64
	for _, v := range logits {
		if f := float64(v); f > math.Inf(-1) {
			sum += math.Exp(f - m)
		}
	}
	return m + math.Log(sum)
}
