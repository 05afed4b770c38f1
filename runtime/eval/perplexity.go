package eval

import (
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
)

// Options configure Perplexity and KLDivergence.
type Options struct {
	// Ctx is the tokens per chunk (llama-perplexity's -c, default 512).
	// KLDivergence takes the base file's instead.
	Ctx int
	// Batch is the tokens per forward pass (<= 0: the engine's default).
	Batch int
	// Chunks caps the chunks evaluated (<= 0: every whole chunk).
	Chunks int
	// SaveLogits, when set, receives the base log-probabilities file of
	// the run (Perplexity only): llama-perplexity's --kl-divergence-base.
	SaveLogits io.Writer
	// Progress, when set, is called after each chunk with the chunks done
	// and the total.
	Progress func(done, total int)
	// Out, when set, receives llama-perplexity's running lines: "[1]12.3456,"
	// per chunk for Perplexity, the per-chunk table for KLDivergence.
	Out io.Writer
}

// ErrTooShort is returned when the text has fewer than two chunks of
// tokens (llama-perplexity's "you need at least 2*n_ctx tokens").
var ErrTooShort = errors.New("eval: text too short")

// PPLResult is a perplexity run's outcome.
type PPLResult struct {
	Ctx         int       `json:"ctx"`
	Chunks      int       `json:"chunks"`
	InputTokens int       `json:"input_tokens"` // the whole text's tokens
	Tokens      int       `json:"tokens"`       // the tokens scored
	PPL         float64   `json:"ppl"`
	Uncertainty float64   `json:"uncertainty"`
	Running     []float64 `json:"running"` // the estimate after each chunk
}

// evalChunk evaluates one chunk of original tokens from an empty context
// with BOS in place of the first (when the model adds one) and hands use
// the logits of positions len/2 … len-2 (j from 0) with the token each
// predicts.
func evalChunk(lm LM, toks []int32, batch int, use func(j int, row []float32, next int32) error) error {
	ids := slices.Clone(toks)
	if bos, ok := lm.BOS(); ok {
		ids[0] = bos
	}
	first := len(toks) / 2
	return lm.Logits(ids, first, batch, func(i int, row []float32) error {
		if i >= len(toks)-1 {
			return nil
		}
		return use(i-first, row, toks[i+1])
	})
}

// nll is −log softmax(logits)[tok], as llama-perplexity's log_softmax.
func nll(logits []float32, tok int32) float64 {
	maxL := slices.Max(logits)
	var sum float64
	for _, l := range logits {
		sum += float64(expf(l - maxL))
	}
	return -(float64(logits[tok]-maxL) - math.Log(sum))
}

// Perplexity tokenizes text and computes its perplexity in chunks as
// llama-perplexity does (see the package doc), and the uncertainty of the
// estimate: ppl·sqrt((⟨nll²⟩−⟨nll⟩²)/(n−1)).
func Perplexity(lm LM, text string, o Options) (*PPLResult, error) {
	if o.Ctx <= 0 {
		o.Ctx = 512
	}
	if o.Ctx < 4 {
		return nil, fmt.Errorf("eval: a context of %d tokens is too small", o.Ctx)
	}
	toks := lm.Tokenize(text)
	if len(toks) < 2*o.Ctx {
		return nil, fmt.Errorf("%w: %d tokens, at least %d needed for a context of %d", ErrTooShort, len(toks), 2*o.Ctx, o.Ctx)
	}
	nChunk := len(toks) / o.Ctx
	if o.Chunks > 0 {
		nChunk = min(nChunk, o.Chunks)
	}
	var lw *LogitsWriter
	if o.SaveLogits != nil {
		var err error
		lw, err = NewLogitsWriter(o.SaveLogits, BaseHeader{Ctx: o.Ctx, Vocab: lm.Vocab(), Chunks: nChunk, Tokens: toks[:nChunk*o.Ctx]})
		if err != nil {
			return nil, err
		}
	}
	r := &PPLResult{Ctx: o.Ctx, Chunks: nChunk, InputTokens: len(toks)}
	var sum, sum2 float64
	for c := range nChunk {
		chunk := toks[c*o.Ctx : (c+1)*o.Ctx]
		err := evalChunk(lm, chunk, o.Batch, func(_ int, row []float32, next int32) error {
			v := nll(row, next)
			sum += v
			sum2 += v * v
			r.Tokens++
			if lw != nil {
				return lw.Write(row)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("eval: chunk %d: %w", c+1, err)
		}
		r.Running = append(r.Running, math.Exp(sum/float64(r.Tokens)))
		if o.Out != nil {
			fmt.Fprintf(o.Out, "[%d]%.4f,", c+1, r.Running[c])
		}
		if o.Progress != nil {
			o.Progress(c+1, nChunk)
		}
	}
	if o.Out != nil {
		fmt.Fprintln(o.Out)
	}
	n := float64(r.Tokens)
	mean := sum / n
	r.PPL = math.Exp(mean)
	if v := sum2/n - mean*mean; v > 0 && r.Tokens > 1 {
		r.Uncertainty = math.Sqrt(v/(n-1)) * r.PPL
	}
	return r, nil
}

// KLDivergence evaluates the base file's chunks with lm and compares its
// distributions with the stored ones (llama-perplexity --kl-divergence).
func KLDivergence(lm LM, base *LogitsReader, o Options) (*KLDSummary, error) {
	if base.Vocab != lm.Vocab() {
		return nil, fmt.Errorf("eval: the base file's vocabulary has %d tokens, the model's %d", base.Vocab, lm.Vocab())
	}
	nChunk := base.Chunks
	if o.Chunks > 0 {
		nChunk = min(nChunk, o.Chunks)
	}
	nCtx := base.Ctx
	var acc KLDAccumulator
	recs := make([]Record, scored(nCtx))
	if o.Out != nil {
		fmt.Fprint(o.Out, KLDChunkHeader)
	}
	for c := range nChunk {
		for j := range recs {
			if err := base.Next(&recs[j]); err != nil {
				return nil, fmt.Errorf("chunk %d: %w", c+1, err)
			}
		}
		chunk := base.Tokens[c*nCtx : (c+1)*nCtx]
		err := evalChunk(lm, chunk, o.Batch, func(j int, row []float32, next int32) error {
			acc.Add(row, &recs[j], next)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("eval: chunk %d: %w", c+1, err)
		}
		if o.Out != nil {
			s := acc.summary(false)
			s.PrintChunk(o.Out, c+1)
		}
		if o.Progress != nil {
			o.Progress(c+1, nChunk)
		}
	}
	s := acc.Summary()
	return &s, nil
}
