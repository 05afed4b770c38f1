package server

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"time"

	"github.com/hearth-llm/hearth/loader/chat"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/grammar"
	"github.com/hearth-llm/hearth/runtime/lora"
	"github.com/hearth-llm/hearth/runtime/sample"
)

// Errors a Runner (or Loader) wraps so that the HTTP layer answers with the
// right status in each API's shape. Anything else is a 500.
var (
	// ErrUnsupported: the model or runner cannot do what was asked
	// (embeddings from a runner without hidden-state output, say): 501.
	ErrUnsupported = errors.New("not supported")
	// ErrInvalid: the request cannot be served as asked (a prompt longer
	// than the context, a context too large for memory): 400.
	ErrInvalid = errors.New("invalid request")
	// ErrBusy: the runner is overloaded right now; the client may retry:
	// 503 with Retry-After.
	ErrBusy = errors.New("server busy")
	// ErrStop is what an emit callback returns to end generation normally
	// (a stop string was found): Generate then returns a nil error and
	// DoneReason "stop".
	ErrStop = errors.New("stop")
)

// Runner is one loaded model, as the HTTP layer sees it. The server never
// touches tensors, devices or KV caches: a single-sequence runner over
// runtime/engine and a continuous-batching one over the scheduler both
// fit behind it.
//
// All methods are safe for concurrent use. The server calls Close once,
// after every Generate and Embed call has returned.
type Runner interface {
	// Info describes the model; it does not change after load.
	Info() Info
	// Tokenize encodes text as the model's tokenizer does: addSpecial adds
	// BOS/EOS as the model's metadata says, parseSpecial turns the text of
	// special tokens ("<|eot_id|>") into their ids.
	Tokenize(text string, addSpecial, parseSpecial bool) ([]int32, error)
	// Generate evaluates req.Prompt, then samples until an
	// end-of-generation token, req.NumPredict tokens, a full context, or
	// ctx's end. It calls emit with the text of the tokens sampled, in
	// order, as soon as it forms complete UTF-8 (never with an empty Text).
	// When emit returns ErrStop, Generate stops and returns a nil error with
	// DoneReason "stop"; any other emit error is returned as it is. The
	// Result is filled as far as generation got, on error too.
	Generate(ctx context.Context, req *Request, emit func(Piece) error) (Result, error)
	// Embed returns one vector per input (not normalized). Runners without
	// embeddings return an error wrapping ErrUnsupported.
	Embed(ctx context.Context, req *EmbedRequest) (EmbedResult, error)
	// Close releases the model.
	Close() error
}

// Loader loads the GGUF file at path. ctx bounds the load; the Runner it
// returns outlives ctx.
type Loader func(ctx context.Context, path string) (Runner, error)

// Info is what a Runner reports about its model.
type Info struct {
	Arch          string
	ContextLength int // trained context; 0 when unknown
	DefaultNumCtx int // the context a request gets when it names no num_ctx
	// MaxNumCtx is the largest num_ctx the runner can hold (its KV cache
	// memory); 0: ContextLength.
	MaxNumCtx int
	VocabSize int
	// Template is the model's chat template (tokenizer.chat_template);
	// nil when the file has none, or one Hearth cannot parse.
	Template *chat.Template
	// TemplateErr is why the file's template could not be parsed: chat
	// requests get it (raw prompts and embeddings still work).
	TemplateErr error
	// BOS and EOS are the texts of the model's begin/end-of-sequence
	// tokens, bound to bos_token and eos_token in templates; "" when none.
	BOS, EOS string
	// Size and VRAM are the bytes the model holds in host and device
	// memory, for placement and /api/ps.
	Size, VRAM int64
	// Embeddings says Embed works.
	Embeddings bool
	// EmbeddingOnly says the model makes embeddings only (an encoder such
	// as BERT): the server refuses generation requests for it, and
	// Generate fails.
	EmbeddingOnly bool
}

// Request is one generation.
type Request struct {
	// Prompt is the whole prompt, tokenized (chat template, BOS and any
	// earlier context already applied). Runners may reuse the KV cache of
	// a shared prefix.
	Prompt []int32
	// NumCtx is the context (prompt + generated tokens) in tokens;
	// 0: Info.DefaultNumCtx.
	NumCtx int
	// NumPredict is the most tokens to generate; <= 0: no limit but the
	// context.
	NumPredict int
	// Sampling is validated (sample.Options.Validate) by the server.
	Sampling sample.Options
	// Grammar, when set, constrains the output: at each step only tokens
	// that keep the text a prefix of a document it accepts may be
	// sampled, end-of-generation only once the document is complete, and
	// generation stops (DoneReason "stop") when nothing more can follow.
	// The grammar sees Preserve's tokens as their text.
	Grammar *grammar.Grammar
	// Logprobs asks for each generated token's log-probability on the
	// pieces (Piece.Logprobs), and TopLogprobs (0..20) for that many of
	// the most likely tokens at each step. See TokenLogprob.
	Logprobs    bool
	TopLogprobs int
	// Preserve lists control tokens whose text must appear in the
	// generated text (as llama.cpp's preserved_tokens: a tool-call
	// format's [TOOL_CALLS] or <|channel|>), which control tokens
	// otherwise never do; a grammar can match them by that text.
	// End-of-generation tokens are never preserved: they still end
	// generation.
	Preserve []int32
	// Adapter names a LoRA adapter registered on the runner
	// (AdapterRunner.LoadAdapter) to run the request with; "": the bare
	// model. A runner without adapters fails such a request with
	// ErrUnsupported; an unknown name with ErrInvalid.
	Adapter string
}

// Piece is generated text.
type Piece struct {
	Text string
	// Logprobs are those of the tokens whose text completes in this
	// piece, in order (only when Request.Logprobs). A token whose text
	// is empty (an end-of-generation token, an unpreserved control
	// token at the very end) is not reported.
	Logprobs []TokenLogprob
}

// Result is how a generation went.
type Result struct {
	// Tokens are the sampled tokens, the end-of-generation one included.
	Tokens []int32
	// PromptTokens were in the prompt; PromptCached of them were reused
	// from a cache rather than evaluated.
	PromptTokens, PromptCached int
	PromptDuration             time.Duration // evaluating the prompt
	GenDuration                time.Duration // sampling the tokens
	// DoneReason is "stop" (end-of-generation token, or emit returned
	// ErrStop) or "length" (NumPredict or the context reached).
	DoneReason string
}

// EmbedRequest is one embedding call.
type EmbedRequest struct {
	Inputs []string
	NumCtx int
	// Truncate cuts inputs longer than the context instead of failing.
	Truncate bool
}

// EmbedResult holds one vector per input, and the tokens evaluated.
type EmbedResult struct {
	Vectors      [][]float32
	PromptTokens int
}

// Stats is a runner's load, for /metrics.
type Stats struct {
	Waiting, Running int // requests queued in the runner; sequences running
	// KV cache blocks in use and free (0 and 0 for a runner without a
	// paged cache).
	KVBlocksUsed, KVBlocksFree int
	// KVBlockSize is the token positions per KV cache block (0 without
	// a paged cache).
	KVBlockSize int
	// Prompt tokens looked up in a prefix cache, and those found there.
	PrefixQueryTokens, PrefixHitTokens int64
	// LoRA adapters: the most the runner holds at once, those with
	// sequences running, and those only requests waiting ask for. No
	// runner serves adapters yet (all zero); /metrics reports them as
	// vLLM's vllm:lora_requests_info, which the Gateway API Inference
	// Extension's endpoint picker reads for adapter affinity.
	MaxLoRA                  int
	RunningLoRA, WaitingLoRA []string
}

// AdapterRunner is implemented by runners that serve LoRA adapters over
// their model (one base loaded once, many adapters beside it). Adapters
// are registered by name; Request.Adapter picks one per request. Safe for
// concurrent use with Generate: a request running with an adapter that is
// removed or replaced finishes with the one it started with, and its
// prefix cache never serves another registration (engine.Model's salts).
type AdapterRunner interface {
	// LoadAdapter reads the llama.cpp GGUF LoRA file at path, checks it
	// against the model and registers it as name at user scale scale,
	// replacing an adapter of that name. Errors from the file (not an
	// adapter, another architecture, shapes) wrap ErrInvalid.
	LoadAdapter(name, path string, scale float32) error
	// RemoveAdapter unregisters name; false when it was not registered.
	RemoveAdapter(name string) bool
}

// StatsReporter is implemented by runners that can say how busy they are.
type StatsReporter interface {
	Stats() Stats
}

// AdapterError marks an error of AdapterRunner.LoadAdapter that comes
// from the file (missing, not a GGUF, not a LoRA adapter, made for another
// model, adapting weights Hearth does not adapt) as ErrInvalid, so that
// the client that named the file gets a 400 saying why.
func AdapterError(err error) error {
	if err == nil || errors.Is(err, ErrInvalid) {
		return err
	}
	if errors.Is(err, lora.ErrNotAdapter) || errors.Is(err, lora.ErrMismatch) || errors.Is(err, lora.ErrUnsupported) ||
		errors.Is(err, gguf.ErrInvalid) || errors.Is(err, fs.ErrNotExist) || errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return err
}
