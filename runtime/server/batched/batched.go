// Package batched is the continuous-batching server.Runner: every request
// becomes a sequence of an engine.Batched, whose scheduler mixes the
// decode steps of running sequences with chunks of new prompts in one
// forward pass per step, over a paged KV cache with prefix sharing. Many
// requests therefore run at once, and a repeated prefix (a system prompt,
// an earlier chat turn) is evaluated once.
package batched

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/sample"
	"github.com/hearth-llm/hearth/runtime/server"
	"github.com/hearth-llm/hearth/scheduler"
)

// Runner serves one model through an engine.Batched (an embedding-only
// model without one: it has nothing to generate).
type Runner struct {
	m    *engine.Model
	b    *engine.Batched // nil for an embedding-only model
	info server.Info

	stop context.CancelFunc
	done chan struct{}
	once sync.Once
}

// Loader returns a server.Loader that loads models with o and serves each
// through a Batched engine sized by c.
func Loader(o engine.Options, c engine.BatchConfig) server.Loader {
	return func(ctx context.Context, path string) (server.Runner, error) {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		m, err := engine.Load(path, o)
		if err != nil {
			return nil, err
		}
		r, err := New(m, path, c)
		if err != nil {
			m.Close()
			return nil, err
		}
		return r, nil
	}
}

// New starts serving m; the Runner owns m from then on.
func New(m *engine.Model, path string, c engine.BatchConfig) (*Runner, error) {
	ai := m.Arch.Info()
	if c.DefaultNumCtx <= 0 {
		c.DefaultNumCtx = min(ai.ContextLength, 4096)
	}
	info := server.Info{
		Arch: ai.Arch, ContextLength: ai.ContextLength, VocabSize: ai.VocabSize,
		DefaultNumCtx: c.DefaultNumCtx, Template: m.Template, TemplateErr: m.TemplateErr, Embeddings: true, EmbeddingOnly: ai.EmbeddingOnly,
	}
	var b *engine.Batched
	if !ai.EmbeddingOnly {
		var err error
		if b, err = m.NewBatched(c); err != nil {
			return nil, err
		}
		info.DefaultNumCtx, info.MaxNumCtx = min(c.DefaultNumCtx, b.Capacity()), b.Capacity()
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
	ctx, cancel := context.WithCancel(context.Background())
	r := &Runner{m: m, b: b, info: info, stop: cancel, done: make(chan struct{})}
	if b == nil {
		close(r.done)
		return r, nil
	}
	go func() {
		defer close(r.done)
		b.Serve(ctx)
	}()
	return r, nil
}

// Info implements server.Runner.
func (r *Runner) Info() server.Info { return r.info }

// Tokenize implements server.Runner.
func (r *Runner) Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error) {
	return r.m.Tok.Encode(text, addSpecial, parseSpecial), nil
}

// Stats implements server.StatsReporter from the scheduler's metrics.
func (r *Runner) Stats() server.Stats {
	if r.b == nil {
		return server.Stats{}
	}
	mt := r.b.Metrics()
	return server.Stats{Waiting: mt.Waiting, Running: mt.Running,
		KVBlocksUsed: mt.BlocksUsed, KVBlocksFree: mt.BlocksFree + mt.BlocksCached, KVBlockSize: mt.BlockSize,
		PrefixQueryTokens: mt.PrefixQueryTokens, PrefixHitTokens: mt.PrefixHitTokens}
}

// classify maps engine and scheduler errors to the server's statuses.
func classify(err error) error {
	switch {
	case errors.Is(err, scheduler.ErrQueueFull):
		return fmt.Errorf("%w: %w", server.ErrBusy, err)
	case errors.Is(err, scheduler.ErrPromptTooLong), errors.Is(err, scheduler.ErrEmptyPrompt),
		errors.Is(err, sample.ErrInvalid), errors.Is(err, engine.ErrPromptTooLong), errors.Is(err, engine.ErrEmbeddingOnly):
		return fmt.Errorf("%w: %w", server.ErrInvalid, err)
	case errors.Is(err, engine.ErrUnsupported):
		return fmt.Errorf("%w: %w", server.ErrUnsupported, err)
	case errors.Is(err, engine.ErrUnknownAdapter):
		return fmt.Errorf("%w: %w", server.ErrInvalid, err)
	case errors.Is(err, scheduler.ErrQueueTimeout):
		return fmt.Errorf("%w: %w", server.ErrBusy, err)
	}
	return err
}

// Generate implements server.Runner.
func (r *Runner) Generate(ctx context.Context, req *server.Request, emit func(server.Piece) error) (server.Result, error) {
	res := server.Result{PromptTokens: len(req.Prompt)}
	if r.b == nil {
		return res, classify(fmt.Errorf("%s: %w", r.info.Arch, engine.ErrEmbeddingOnly))
	}
	numCtx := req.NumCtx
	if numCtx <= 0 {
		numCtx = r.info.DefaultNumCtx
	}
	start := time.Now()
	st, err := r.b.Submit(req.Prompt, engine.SeqOptions{NumCtx: numCtx, NumPredict: req.NumPredict, Sample: req.Sampling, Grammar: req.Grammar,
		Logprobs: req.Logprobs, TopLogprobs: req.TopLogprobs, Preserve: req.Preserve, Adapter: req.Adapter})
	if err != nil {
		return res, classify(err)
	}
	pieces := server.NewPieces(r.m.Tok, r.m.Tok.NewStreamDecoder(), req)
	var first time.Time
	var buf []int32
	var extra []any // each token's *sample.TokenLogprobs, with req.Logprobs
	stopped := false
	finish := func() {
		if first.IsZero() {
			first = time.Now()
		}
		res.PromptDuration = first.Sub(start)
		res.GenDuration = time.Since(first)
	}
	for {
		if req.Logprobs {
			buf, extra, err = st.RecvExtra(ctx, buf[:0], extra[:0])
		} else {
			buf, err = st.Recv(ctx, buf[:0])
		}
		if len(buf) > 0 && first.IsZero() {
			first = time.Now()
		}
		for i, tok := range buf {
			if stopped {
				break // tokens sampled after the stop string: dropped
			}
			res.Tokens = append(res.Tokens, tok)
			if r.m.Tok.IsEOG(tok) {
				continue
			}
			var lp *sample.TokenLogprobs
			if i < len(extra) {
				lp, _ = extra[i].(*sample.TokenLogprobs)
			}
			if pc, ok := pieces.Add(tok, lp); ok {
				if e := emit(pc); errors.Is(e, server.ErrStop) {
					stopped = true
					st.Finish(scheduler.FinishStop)
				} else if e != nil {
					st.Cancel()
					finish()
					return res, e
				}
			}
		}
		if err == nil {
			continue
		}
		finish()
		if !errors.Is(err, io.EOF) {
			if stopped {
				break
			}
			return res, classify(err)
		}
		break
	}
	if stopped {
		res.DoneReason = "stop"
		return res, nil
	}
	if pc, ok := pieces.Flush(); ok {
		if e := emit(pc); e != nil && !errors.Is(e, server.ErrStop) {
			return res, e
		}
	}
	res.DoneReason = string(st.Reason())
	if res.DoneReason != "stop" {
		res.DoneReason = "length"
	}
	return res, nil
}

// Embed implements server.Runner: all the inputs in one engine call
// (several per forward pass), whose passes take turns with the batched
// steps on the model's lock.
func (r *Runner) Embed(ctx context.Context, req *server.EmbedRequest) (server.EmbedResult, error) {
	numCtx := req.NumCtx
	if numCtx <= 0 {
		numCtx = r.info.DefaultNumCtx
	}
	vs, n, err := r.m.Embeddings(ctx, req.Inputs, numCtx, req.Truncate)
	if err != nil {
		return server.EmbedResult{}, classify(err)
	}
	return server.EmbedResult{Vectors: vs, PromptTokens: n}, nil
}

// LoadAdapter implements server.AdapterRunner.
func (r *Runner) LoadAdapter(name, path string, scale float32) error {
	return server.AdapterError(r.m.LoadAdapter(name, path, scale))
}

// RemoveAdapter implements server.AdapterRunner.
func (r *Runner) RemoveAdapter(name string) bool { return r.m.RemoveAdapter(name) }

var _ server.AdapterRunner = (*Runner)(nil)

// Close implements server.Runner: it stops the step loop and releases the
// model.
func (r *Runner) Close() error {
	var err error
	r.once.Do(func() {
		r.stop()
		<-r.done
		err = r.m.Close()
	})
	return err
}
