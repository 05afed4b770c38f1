// Package serial is a server.Runner over runtime/engine that runs one
// request at a time: each request gets a fresh engine.Sequence of its
// num_ctx (or, when its prompt extends the previous request's tokens with
// the same num_ctx, continues that sequence, so a conversation's earlier
// turns and Ollama's context are not evaluated again). Requests queue on a
// lock their context can abandon.
//
// It is the runner until the continuous-batching one (scheduler + batched
// engine) replaces it behind the same interface.
package serial

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/grammar"
	"github.com/hearth-llm/hearth/runtime/sample"
	"github.com/hearth-llm/hearth/runtime/server"
)

// defaultNumCtx caps the context a request gets when it names none, as
// engine.NewSequence does.
const defaultNumCtx = 4096

// Runner runs requests one at a time on an engine.Model.
type Runner struct {
	m    *engine.Model
	info server.Info
	lock chan struct{} // one slot: the right to use m

	waiting, running atomic.Int32
	queryTokens      atomic.Int64
	hitTokens        atomic.Int64

	// The previous request's sequence and the tokens evaluated in it;
	// guarded by lock.
	seq       *engine.Sequence
	seqTokens []int32
	seqCtx    int
	seqAd     string // the adapter seq runs with ("": none)
	seqAdGen  uint64 // adGen when seq started

	// adGen counts adapter loads and removals: a kept sequence continues
	// only while its adapter is the registration it started with.
	adGen atomic.Uint64
}

// Loader returns a server.Loader that loads models with o.
func Loader(o engine.Options) server.Loader {
	return func(ctx context.Context, path string) (server.Runner, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, err := engine.Load(path, o)
		if err != nil {
			return nil, err
		}
		return New(m, path), nil
	}
}

// New wraps a loaded model; the Runner owns it from then on.
func New(m *engine.Model, path string) *Runner {
	ai := m.Arch.Info()
	info := server.Info{
		Arch: ai.Arch, ContextLength: ai.ContextLength, VocabSize: ai.VocabSize,
		DefaultNumCtx: min(ai.ContextLength, defaultNumCtx), Template: m.Template, TemplateErr: m.TemplateErr,
		Embeddings: true, EmbeddingOnly: ai.EmbeddingOnly,
	}
	if info.DefaultNumCtx <= 0 {
		info.DefaultNumCtx = defaultNumCtx
	}
	if id := m.Tok.BOS(); id >= 0 {
		info.BOS = m.Tok.Token(id)
	}
	if id := m.Tok.EOS(); id >= 0 {
		info.EOS = m.Tok.Token(id)
	}
	if st, err := os.Stat(path); err == nil {
		info.Size = st.Size()
	}
	info.VRAM = m.VRAM()
	return &Runner{m: m, info: info, lock: make(chan struct{}, 1)}
}

// Info implements server.Runner.
func (r *Runner) Info() server.Info { return r.info }

// Tokenize implements server.Runner.
func (r *Runner) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	return r.m.Tok.Encode(text, addSpecial, parseSpecial), nil
}

// Stats implements server.StatsReporter. The engine's cache is one
// contiguous block per sequence, so there are no KV blocks to report.
func (r *Runner) Stats() server.Stats {
	return server.Stats{Waiting: int(r.waiting.Load()), Running: int(r.running.Load()),
		PrefixQueryTokens: r.queryTokens.Load(), PrefixHitTokens: r.hitTokens.Load()}
}

func (r *Runner) acquire(ctx context.Context) error {
	r.waiting.Add(1)
	defer r.waiting.Add(-1)
	select {
	case r.lock <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (r *Runner) unlock() { <-r.lock }

// invalid marks engine errors that come from the request (its size, or
// generation asked of an embedding model) or from what the model cannot do.
func invalid(err error) error {
	if errors.Is(err, engine.ErrPromptTooLong) || errors.Is(err, engine.ErrOutOfMemory) ||
		errors.Is(err, backend.ErrContextFull) || errors.Is(err, sample.ErrInvalid) ||
		errors.Is(err, engine.ErrEmbeddingOnly) || strings.Contains(err.Error(), "larger than the maximum") {
		return fmt.Errorf("%w: %w", server.ErrInvalid, err)
	}
	if errors.Is(err, engine.ErrUnsupported) {
		return fmt.Errorf("%w: %w", server.ErrUnsupported, err)
	}
	if errors.Is(err, engine.ErrUnknownAdapter) {
		return fmt.Errorf("%w: %w", server.ErrInvalid, err)
	}
	return err
}

// Generate implements server.Runner. It follows engine.Sequence.Generate
// step for step (the same sampler calls, so the same tokens), and also
// keeps the sampled ids, which Generate does not expose.
func (r *Runner) Generate(ctx context.Context, req *server.Request, emit func(server.Piece) error) (server.Result, error) {
	res := server.Result{PromptTokens: len(req.Prompt)}
	if len(req.Prompt) == 0 {
		return res, fmt.Errorf("%w: empty prompt", server.ErrInvalid)
	}
	if err := r.acquire(ctx); err != nil {
		return res, err
	}
	defer r.unlock()
	r.running.Add(1)
	defer r.running.Add(-1)

	numCtx := req.NumCtx
	if numCtx <= 0 {
		numCtx = r.info.DefaultNumCtx
	}
	if len(req.Prompt) > numCtx {
		return res, fmt.Errorf("%w: %w: %d tokens, context %d", server.ErrInvalid, engine.ErrPromptTooLong, len(req.Prompt), numCtx)
	}
	smp, err := sample.New(req.Sampling, r.info.VocabSize)
	if err != nil {
		return res, invalid(err)
	}
	for _, t := range req.Prompt {
		smp.Accept(t)
	}
	var matcher *grammar.Matcher
	if req.Grammar != nil {
		matcher = r.m.NewMatcherPreserving(req.Grammar, req.Preserve)
	}

	// Continue the previous sequence when the prompt extends it.
	seq, evaluated := r.seq, r.seqTokens
	r.seq, r.seqTokens = nil, nil
	defer func() {
		if r.seq != seq { // not kept for the next request: free its cache
			seq.Close()
		}
	}()
	r.queryTokens.Add(int64(len(req.Prompt)))
	adGen := r.adGen.Load()
	if seq == nil || r.seqCtx != numCtx || r.seqAd != req.Adapter || r.seqAdGen != adGen ||
		len(evaluated) >= len(req.Prompt) || !hasPrefix(req.Prompt, evaluated) {
		seq.Close()
		if seq, err = r.m.NewSequence(numCtx); err != nil {
			return res, invalid(err)
		}
		if err := seq.UseAdapter(req.Adapter); err != nil {
			seq.Close()
			seq = nil
			return res, invalid(err)
		}
		evaluated = nil
	}
	res.PromptCached = len(evaluated)
	r.hitTokens.Add(int64(len(evaluated)))
	evaluated = append(evaluated[:len(evaluated):len(evaluated)], req.Prompt[len(evaluated):]...)

	t0 := time.Now()
	logits, err := seq.Eval(req.Prompt[res.PromptCached:])
	res.PromptDuration = time.Since(t0)
	if err != nil {
		return res, invalid(err)
	}
	pieces := server.NewPieces(r.m.Tok, r.m.Tok.NewStreamDecoder(), req)
	var raw []float32 // the logits before the grammar mask, for logprobs
	t0 = time.Now()
	res.DoneReason = "length"
	stopped := false
	for req.NumPredict <= 0 || len(res.Tokens) < req.NumPredict {
		if err := ctx.Err(); err != nil {
			res.GenDuration = time.Since(t0)
			return res, err
		}
		rawRow := logits
		if matcher != nil {
			if req.Logprobs {
				raw = append(raw[:0], logits...) // Mask writes logits
				rawRow = raw
			}
			matcher.Mask(logits)
		}
		tok := smp.Sample(logits)
		smp.Accept(tok)
		res.Tokens = append(res.Tokens, tok)
		if r.m.Tok.IsEOG(tok) {
			res.DoneReason = "stop"
			break
		}
		finished := false // the grammar's document is complete
		if matcher != nil {
			finished = matcher.Accept(tok) != nil || matcher.Done()
		}
		var lp *sample.TokenLogprobs
		if req.Logprobs {
			l := sample.Logprobs(rawRow, tok, req.TopLogprobs)
			lp = &l
		}
		if pc, ok := pieces.Add(tok, lp); ok {
			if err := emit(pc); errors.Is(err, server.ErrStop) {
				res.DoneReason, stopped = "stop", true
				break
			} else if err != nil {
				res.GenDuration = time.Since(t0)
				return res, err
			}
		}
		if finished {
			res.DoneReason = "stop"
			break
		}
		if seq.Len() >= numCtx || (req.NumPredict > 0 && len(res.Tokens) >= req.NumPredict) {
			break
		}
		if logits, err = seq.Eval([]int32{tok}); err != nil {
			res.GenDuration = time.Since(t0)
			return res, invalid(err)
		}
		evaluated = append(evaluated, tok)
	}
	if pc, ok := pieces.Flush(); ok && !stopped {
		if err := emit(pc); err != nil && !errors.Is(err, server.ErrStop) {
			res.GenDuration = time.Since(t0)
			return res, err
		}
	}
	res.GenDuration = time.Since(t0)
	r.seq, r.seqTokens, r.seqCtx, r.seqAd, r.seqAdGen = seq, evaluated, numCtx, req.Adapter, adGen
	return res, nil
}

func hasPrefix(s, prefix []int32) bool {
	if len(prefix) > len(s) {
		return false
	}
	for i, t := range prefix {
		if s[i] != t {
			return false
		}
	}
	return true
}

// Embed implements server.Runner: all the inputs in one engine call
// (several per forward pass), pooled as the model says, unit length.
func (r *Runner) Embed(ctx context.Context, req *server.EmbedRequest) (server.EmbedResult, error) {
	if err := r.acquire(ctx); err != nil {
		return server.EmbedResult{}, err
	}
	defer r.unlock()
	r.running.Add(1)
	defer r.running.Add(-1)
	numCtx := req.NumCtx
	if numCtx <= 0 {
		numCtx = r.info.DefaultNumCtx
	}
	vs, n, err := r.m.Embeddings(ctx, req.Inputs, numCtx, req.Truncate)
	if err != nil {
		return server.EmbedResult{}, invalid(err)
	}
	return server.EmbedResult{Vectors: vs, PromptTokens: n}, nil
}

// LoadAdapter implements server.AdapterRunner.
func (r *Runner) LoadAdapter(name, path string, scale float32) error {
	if err := r.m.LoadAdapter(name, path, scale); err != nil {
		return server.AdapterError(err)
	}
	r.adGen.Add(1)
	return nil
}

// RemoveAdapter implements server.AdapterRunner.
func (r *Runner) RemoveAdapter(name string) bool {
	ok := r.m.RemoveAdapter(name)
	r.adGen.Add(1)
	return ok
}

var _ server.AdapterRunner = (*Runner)(nil)

// Close implements server.Runner: it waits for the request in progress.
func (r *Runner) Close() error {
	r.lock <- struct{}{}
	r.seq.Close()
	r.seq = nil
	return r.m.Close()
}
