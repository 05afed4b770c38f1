// Package engine turns a GGUF file into something that generates text: it
// opens the file, binds the architecture on a backend, builds the
// tokenizer and chat template, and runs a sequence's prompt and decode
// steps with the sampler.
//
// This is the single-sequence engine of the foundation: one sequence, one
// contiguous KV cache. The batched step over a paged cache builds on the
// same Model.
package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	"github.com/hearth-llm/hearth/loader/chat"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/loader/tokenizer"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	_ "github.com/hearth-llm/hearth/runtime/arch/all" // registers every architecture
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/device"
	"github.com/hearth-llm/hearth/runtime/grammar"
	"github.com/hearth-llm/hearth/runtime/sample"
)

// ErrFault wraps a fault met while running the model: typically its file
// was truncated or replaced while mapped (reading past the new end raises
// SIGBUS), or a programming error (a panic). The step fails; the process
// keeps running. Errors of the backend's operations (a bad token id, a
// full context, memory, a device fault) are not faults: the model
// returns them (backend.Backend's Err).
var ErrFault = errors.New("model fault")

// forward runs one forward pass and hands its output to use, holding the
// model's lock throughout (the output buffer is reused by the next pass).
// Its one recover is for what the error channel cannot carry: a memory
// fault of the mapped file, or a panic (a programming error).
func (m *Model) forward(b *arch.Batch, use func(out []float32) error) (err error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	old := debug.SetPanicOnFault(true)
	defer debug.SetPanicOnFault(old)
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("%w: %v (was the model file changed while in use?)", ErrFault, r)
		}
	}()
	out, err := m.Arch.Forward(b)
	if err != nil {
		return err
	}
	return use(out)
}

// ErrNotFinite is returned when a forward pass produces NaN or infinite
// logits: the weights are corrupt (or overflow the activations).
var ErrNotFinite = errors.New("model produced non-finite logits (corrupt or overflowing weights?)")

// checkFinite returns ErrNotFinite when a row holds NaN or ±Inf.
func checkFinite(row []float32) error {
	for _, v := range row {
		if v-v != 0 { // NaN and ±Inf, without a call per element
			return ErrNotFinite
		}
	}
	return nil
}

// ErrOutOfMemory is returned when a context's cache would not fit in memory.
var ErrOutOfMemory = errors.New("out of memory")

// ErrPromptTooLong is returned when a prompt does not fit the context.
var ErrPromptTooLong = errors.New("prompt is longer than the context window")

// Options configure Load: the device, the threads and the KV cache the
// placement plans for (runtime/device.Options).
type Options = device.Options

// placement opens the backend o asks for and places the model in f on it
// (runtime/device), from what its architecture says it needs.
func placement(f *gguf.File, o Options) (backend.Backend, device.Placement, arch.Needs, error) {
	needs, err := arch.Describe(f)
	if err != nil {
		return nil, device.Placement{}, needs, err
	}
	be, p, err := device.Open(f, &needs, o)
	return be, p, needs, err
}

// Model is a loaded model. Its methods may be called concurrently: forward
// passes take turns on one lock. A Sequence is used by one goroutine at a
// time.
type Model struct {
	mu       sync.Mutex // one forward pass at a time
	File     *gguf.File
	Arch     arch.Model
	Tok      *tokenizer.Tokenizer
	Template *chat.Template // nil when the file has none, or one Hearth cannot parse
	// TemplateErr is why the file's chat template could not be parsed: the
	// model loads (raw prompts, embeddings) and chat requests get this.
	TemplateErr error
	backend     backend.Backend
	place       device.Placement
	needs       arch.Needs // what the architecture says the model needs (KV bytes per position)

	vocabOnce sync.Once
	vocab     *grammar.Vocab // the tokens' bytes for constrained decoding, built on first use
	// vocabMu guards vocabs: the grammar vocabularies with preserved
	// control tokens, one per distinct set (NewMatcherPreserving).
	vocabMu sync.Mutex
	vocabs  map[string]*grammar.Vocab
	// adMu guards adapters, the registered LoRA adapters by name, and
	// adSalt, the last prefix-cache salt given out (LoadAdapter).
	adMu     sync.Mutex
	adapters map[string]*adapter
	adSalt   uint64
}

// Load opens and binds the model at path.
func Load(path string, o Options) (*Model, error) {
	f, err := gguf.Open(path)
	if err != nil {
		return nil, err
	}
	m, err := load(f, o)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

func load(f *gguf.File, o Options) (*Model, error) {
	tok, err := tokenizer.FromGGUF(f)
	if err != nil {
		return nil, err
	}
	m := &Model{File: f, Tok: tok}
	if src, ok := f.String("tokenizer.chat_template"); ok && src != "" {
		if m.Template, err = chat.New(src); err != nil {
			m.TemplateErr = fmt.Errorf("the model's chat template cannot be used (%w): send raw prompts", err)
			slog.Warn("chat template not usable; raw prompts only", "err", err)
		}
	}
	if m.backend, m.place, m.needs, err = placement(f, o); err != nil {
		return nil, err
	}
	if m.Arch, err = arch.Load(f, m.backend); err != nil {
		device.Close(m.backend)
		if errors.Is(err, device.ErrOutOfMemory) {
			err = fmt.Errorf("%w (offload fewer layers: --gpu-layers)", err)
		}
		return nil, err
	}
	return m, nil
}

// Close releases the model's memory map and threads.
func (m *Model) Close() error {
	device.Close(m.backend)
	return m.File.Close()
}

// Threads reports the CPU threads in use (0 on a GPU alone).
func (m *Model) Threads() int { return m.place.Threads }

// Offload reports how many of the model's repeating layers run on a GPU,
// of how many, and whether its output layer does too.
func (m *Model) Offload() (gpuLayers, layers int, output bool) {
	return m.place.GPULayers, m.place.Layers, m.place.Output
}

// VRAM is the bytes of the model's weights held in GPU memory (their file
// sizes): all of them on the CUDA backend, the offloaded ones of a split,
// none on the CPU. /api/ps and hearth ps show it as the GPU share.
func (m *Model) VRAM() int64 { return m.place.VRAM }

// Placement is where the model's parts run.
func (m *Model) Placement() device.Placement { return m.place }

// Backend names the backend the model runs on ("cpu", "cuda").
func (m *Model) Backend() string { return m.backend.Name() }

// ChatPrompt renders a user message (and an optional system message)
// through the model's chat template and tokenizes it. Without a template
// the text is used as it is.
func (m *Model) ChatPrompt(system, user string) ([]int32, error) {
	if m.TemplateErr != nil {
		return nil, m.TemplateErr
	}
	if m.Template == nil {
		text := user
		if system != "" {
			text = system + "\n\n" + user
		}
		return m.Tok.Encode(text, true, false), nil
	}
	var msgs []chat.Message
	if system != "" {
		msgs = append(msgs, chat.Message{Role: "system", Content: system})
	}
	msgs = append(msgs, chat.Message{Role: "user", Content: user})
	bos, eos := "", ""
	if id := m.Tok.BOS(); id >= 0 {
		bos = m.Tok.Token(id)
	}
	if id := m.Tok.EOS(); id >= 0 {
		eos = m.Tok.Token(id)
	}
	text, err := m.Template.Render(msgs, chat.Options{BOSToken: bos, EOSToken: eos, AddGenerationPrompt: true})
	if err != nil {
		return nil, err
	}
	// Templates that write the BOS text themselves (Llama 3) must not get
	// a second BOS from the tokenizer.
	return m.Tok.Encode(text, !m.Template.EmitsBOS(bos), true), nil
}

// Sequence is one conversation's state: its tokens and KV cache.
type Sequence struct {
	m       *Model
	kv      backend.KV
	ctx     int
	tokens  []int32
	logits  []float32
	grammar *grammar.Grammar
	raw     bool // emit exact token bytes (RawBytes)
	// adapters is the batch's per-sequence adapter list: nil, or the
	// one adapter the sequence runs with (UseAdapter).
	adapters []arch.Adapter
}

// Constrain makes Generate's output a document of g (nil: free text):
// only tokens that keep it one are sampled, and generation stops when it
// is complete.
func (s *Sequence) Constrain(g *grammar.Grammar) { s.grammar = g }

// RawBytes makes Generate emit each token's exact bytes, valid UTF-8 or
// not (a CLI writing to a terminal or file), instead of whole characters.
func (s *Sequence) RawBytes() { s.raw = true }

// NewSequence allocates a sequence with a context of ctx tokens (<= 0: the
// model's trained context, capped at 4096).
func (m *Model) NewSequence(ctx int) (*Sequence, error) {
	info := m.Arch.Info()
	if info.EmbeddingOnly {
		return nil, fmt.Errorf("%s: %w", info.Arch, ErrEmbeddingOnly)
	}
	if ctx <= 0 {
		ctx = min(info.ContextLength, 4096)
	}
	if ctx > MaxContext {
		return nil, fmt.Errorf("context of %d tokens is larger than the maximum %d", ctx, MaxContext)
	}
	// The cache holds K and V as float16 for every layer and position.
	need, err := m.needs.KVBytes(ctx, quant.F16)
	if err != nil {
		return nil, err
	}
	need += m.needs.StateBytes // a hybrid model's recurrent state
	if avail, ok := memAvailable(); ok && need > avail {
		return nil, fmt.Errorf("%w: a %d-token context needs %d MiB of KV cache, %d MiB of memory is available",
			ErrOutOfMemory, ctx, need>>20, avail>>20)
	}
	if cs, ok := m.Arch.(arch.ContextSizer); ok {
		cs.SetContext(ctx)
	}
	kv, err := m.Arch.NewKV(ctx)
	if err != nil {
		return nil, err
	}
	return &Sequence{m: m, kv: kv, ctx: ctx}, nil
}

// Len is the number of tokens evaluated so far.
func (s *Sequence) Len() int { return len(s.tokens) }

// Close frees the sequence's KV cache now (on a GPU, its device memory);
// the sequence must not be used after. A nil or closed sequence: nothing.
// A sequence never closed is freed with its model (Model.Close).
func (s *Sequence) Close() {
	if s == nil || s.kv == nil {
		return
	}
	s.m.free(s.kv)
	s.kv = nil
}

// free returns x (a KV cache) to the model's backend, between forward
// passes.
func (m *Model) free(x any) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.backend.Free(x)
}

// MaxContext bounds a sequence's context (and keeps size arithmetic far
// from overflow).
const MaxContext = 1 << 24

// BatchSize is the most tokens evaluated in one forward pass.
const BatchSize = 512

// Eval appends ids to the sequence and returns the logits of the last one,
// valid until the next Eval.
func (s *Sequence) Eval(ids []int32) ([]float32, error) {
	if len(s.tokens)+len(ids) > s.ctx {
		return nil, fmt.Errorf("%w: %d + %d tokens, context %d", backend.ErrContextFull, len(s.tokens), len(ids), s.ctx)
	}
	var logits []float32
	for start := 0; start < len(ids); start += BatchSize {
		chunk := ids[start:min(len(ids), start+BatchSize)]
		b := arch.Single(chunk, len(s.tokens), s.kv, false)
		b.Adapters = s.adapters
		err := s.m.forward(b, func(out []float32) error {
			s.logits = append(s.logits[:0], out...)
			return checkFinite(out)
		})
		if err != nil {
			return nil, err
		}
		logits = s.logits
		s.tokens = append(s.tokens, chunk...)
	}
	return logits, nil
}

// EvalAll appends ids to the sequence, batch tokens per forward pass
// (<= 0: BatchSize), and hands use the logits of every token from index
// from on, in order: row i (len vocab) follows ids[:i+1]. A row is valid
// only during its call. Perplexity and KL-divergence runs read every
// position this way (llama-perplexity's second half of a chunk).
func (s *Sequence) EvalAll(ids []int32, from, batch int, use func(i int, logits []float32) error) error {
	if len(s.tokens)+len(ids) > s.ctx {
		return fmt.Errorf("%w: %d + %d tokens, context %d", backend.ErrContextFull, len(s.tokens), len(ids), s.ctx)
	}
	if batch <= 0 || batch > BatchSize {
		batch = BatchSize
	}
	vocab := s.m.Arch.Info().VocabSize
	for start := 0; start < len(ids); start += batch {
		chunk := ids[start:min(len(ids), start+batch)]
		b := arch.Single(chunk, len(s.tokens), s.kv, false)
		b.Adapters = s.adapters
		b.Outputs = b.Outputs[:0]
		for k := range chunk {
			if start+k >= from {
				b.Outputs = append(b.Outputs, k)
			}
		}
		err := s.m.forward(b, func(out []float32) error {
			for j, k := range b.Outputs {
				row := out[j*vocab : (j+1)*vocab]
				if err := checkFinite(row); err != nil {
					return err
				}
				if err := use(start+k, row); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		s.tokens = append(s.tokens, chunk...)
	}
	return nil
}

// Stats are the counts and timings of one Generate call.
type Stats struct {
	PromptTokens, Generated int
	PromptNanos, GenNanos   int64
	DoneReason              string // "stop" (end-of-generation token) or "length"
}

// Generate evaluates prompt, then samples up to n tokens (n < 0: until an
// end-of-generation token or the context is full), calling emit with each
// token's text as soon as it forms complete UTF-8.
func (s *Sequence) Generate(ctx context.Context, prompt []int32, n int, o sample.Options, emit func(text string) error) (Stats, error) {
	var st Stats
	st.PromptTokens = len(prompt)
	if len(prompt) == 0 {
		return st, errors.New("empty prompt")
	}
	if len(s.tokens)+len(prompt) > s.ctx {
		return st, fmt.Errorf("%w: %d tokens, context %d", ErrPromptTooLong, len(prompt), s.ctx)
	}
	smp, err := sample.New(o, s.m.Arch.Info().VocabSize)
	if err != nil {
		return st, err
	}
	for _, t := range prompt {
		smp.Accept(t)
	}
	var matcher *grammar.Matcher
	if s.grammar != nil {
		matcher = s.m.NewMatcher(s.grammar)
	}
	t0 := nanotime()
	logits, err := s.Eval(prompt)
	if err != nil {
		return st, err
	}
	st.PromptNanos = nanotime() - t0
	dec := s.m.Tok.NewStreamDecoder()
	if s.raw {
		dec = s.m.Tok.NewRawStreamDecoder()
	}
	t0 = nanotime()
	defer func() { st.GenNanos = nanotime() - t0 }()
	st.DoneReason = "length"
	for n < 0 || st.Generated < n {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		constrain(matcher, logits)
		tok := smp.Sample(logits)
		smp.Accept(tok)
		st.Generated++
		if s.m.Tok.IsEOG(tok) {
			st.DoneReason = "stop"
			break
		}
		if text := dec.Add(tok); text != "" {
			if err := emit(text); err != nil {
				return st, err
			}
		}
		if accept(matcher, tok) {
			st.DoneReason = "stop"
			break
		}
		if len(s.tokens) >= s.ctx || (n >= 0 && st.Generated >= n) {
			break
		}
		if logits, err = s.Eval([]int32{tok}); err != nil {
			return st, err
		}
	}
	if text := dec.Flush(); text != "" {
		if err := emit(text); err != nil {
			return st, err
		}
	}
	st.GenNanos = nanotime() - t0
	return st, nil
}
