package server

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/hearth-llm/hearth/loader/chat"
	"github.com/hearth-llm/hearth/runtime/grammar"
)

// genJob is one generation, whichever API asked for it.
type genJob struct {
	model     string
	keepAlive time.Duration
	// options applies the request's own settings over the defaults and
	// the model's (Ollama params); it runs once on the defaults before the
	// model is loaded, so bad options fail fast.
	options func(*genOptions) error
	// prompt builds the prompt's tokens once the model is loaded.
	prompt func(ctx context.Context, l *loaded) ([]int32, error)
	// grammar constrains the output (format / response_format); nil: none.
	grammar *grammar.Grammar
	// logprobs asks for the tokens' logprobs, topLogprobs (0..20) for
	// that many alternatives each (logprobs.go).
	logprobs    bool
	topLogprobs int
	// constrain, when set, replaces grammar once the prompt is built: the
	// constraint of a chat turn, and the control tokens its format must
	// see in the output.
	constrain func(l *loaded) (*grammar.Grammar, []int32)
}

// genOutcome is how a generation went.
type genOutcome struct {
	model   string // the model's short name
	prompt  []int32
	res     Result
	loadDur time.Duration
	start   time.Time
	// logprobs are those of the text sent, in order, when the job asked.
	logprobs []TokenLogprob
	// stop is the stop string that ended the generation; "" when none did.
	stop string
}

// precheck applies the request's options to the defaults, to refuse bad
// ones before any model is loaded.
func (j *genJob) precheck() error {
	o := defaultGenOptions()
	if err := j.options(&o); err != nil {
		return err
	}
	return o.validate()
}

// generate runs job: admission, the model, the options, the prompt, the
// runner, and stop strings; onText gets the text to send, in order, with
// the logprobs that go with it (when job.logprobs; text may then be empty
// when a stop string cut the rest of a token already sent).
func (s *Server) generate(r *http.Request, job *genJob, onText func(text string, lps []TokenLogprob) error) (*genOutcome, error) {
	ctx := r.Context()
	noteModel(r, job.model)
	out := &genOutcome{start: s.now()}
	done, err := s.admit()
	if err != nil {
		return nil, err
	}
	defer done()
	l, ad, release, loadDur, err := s.acquireFor(ctx, r, job.model, job.keepAlive)
	if err != nil {
		return nil, err
	}
	defer release()
	out.model, out.loadDur = l.model.Name.Short(), loadDur
	adapter := ""
	if ad != nil {
		adapter = ad.run()
	}
	labels := []string{out.model, l.version()}
	queued := s.now().Sub(out.start)
	s.metrics.queue.WithLabelValues(labels...).Observe(queued.Seconds())
	ttft, interToken := s.metrics.ttft.WithLabelValues(labels...), s.metrics.interToken.WithLabelValues(labels...)

	info := l.info
	if info.EmbeddingOnly {
		return nil, errorf(http.StatusBadRequest, "%q is an embedding model: it does not generate text (use /api/embed or /v1/embeddings)", job.model)
	}
	o := defaultGenOptions()
	if err := o.apply(l.model.Params); err != nil {
		s.log.Warn("ignoring the model's default options", "model", out.model, "error", err)
		o = defaultGenOptions()
	}
	// A model's own default is trimmed to what the model and the runner's
	// memory allow; a request's is refused.
	if info.ContextLength > 0 && o.NumCtx > info.ContextLength {
		o.NumCtx = info.ContextLength
	}
	if info.MaxNumCtx > 0 && o.NumCtx > info.MaxNumCtx {
		o.NumCtx = info.MaxNumCtx
	}
	if err := job.options(&o); err != nil {
		return nil, err
	}
	if err := o.validate(); err != nil {
		return nil, err
	}
	if o.NumCtx > 0 && info.ContextLength > 0 && o.NumCtx > info.ContextLength {
		return nil, fmt.Errorf("%w: num_ctx %d is larger than the model's context length %d", ErrInvalid, o.NumCtx, info.ContextLength)
	}
	if o.NumCtx > 0 && info.MaxNumCtx > 0 && o.NumCtx > info.MaxNumCtx {
		return nil, fmt.Errorf("%w: num_ctx %d is more than the KV cache holds (%d tokens): raise the server's --kv-budget", ErrInvalid, o.NumCtx, info.MaxNumCtx)
	}
	numCtx := o.NumCtx
	if numCtx == 0 {
		numCtx = info.DefaultNumCtx
	}
	prompt, err := job.prompt(ctx, l)
	if err != nil {
		return nil, err
	}
	out.prompt = prompt
	if len(prompt) == 0 {
		return nil, fmt.Errorf("%w: the prompt is empty", ErrInvalid)
	}
	if numCtx > 0 && len(prompt) > numCtx {
		return nil, fmt.Errorf("%w: the prompt is %d tokens, longer than the context of %d (num_ctx)", ErrInvalid, len(prompt), numCtx)
	}

	filter := &stopFilter{stops: o.Stop}
	track := &logprobTracker{}
	var last, first time.Time
	emit := func(p Piece) error {
		now := s.now()
		if last.IsZero() {
			first = now
			ttft.Observe(now.Sub(out.start).Seconds())
		} else {
			interToken.Observe(now.Sub(last).Seconds())
		}
		last = now
		track.push(p)
		text, stop := filter.push(p.Text)
		lps := track.release(len(text), stop)
		out.logprobs = append(out.logprobs, lps...)
		if text != "" || len(lps) > 0 {
			if err := onText(text, lps); err != nil {
				return err
			}
		}
		if stop {
			return ErrStop
		}
		return nil
	}
	req := &Request{Prompt: prompt, NumCtx: o.NumCtx, NumPredict: o.NumPredict, Sampling: o.Sampling, Grammar: job.grammar,
		Logprobs: job.logprobs, TopLogprobs: job.topLogprobs, Adapter: adapter}
	if job.constrain != nil {
		req.Grammar, req.Preserve = job.constrain(l)
	}
	out.res, err = l.runner.Generate(ctx, req, emit)
	out.stop = filter.matched
	attrs := []slog.Attr{slog.Int("prompt_tokens", out.res.PromptTokens), slog.Int("gen_tokens", len(out.res.Tokens)),
		slog.Duration("queue", queued)}
	if !first.IsZero() {
		attrs = append(attrs, slog.Duration("ttft", first.Sub(out.start)))
	}
	if err == nil {
		attrs = append(attrs, slog.String("finish", out.res.DoneReason))
	}
	noteAttrs(r, attrs...)
	// Every token generated counts, a cancelled or failed request's too.
	s.metrics.genTokens.WithLabelValues(labels...).Add(float64(len(out.res.Tokens)))
	if adapter != "" {
		s.metrics.adapterGenTokens.WithLabelValues(adapter, out.model).Add(float64(len(out.res.Tokens)))
	}
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	tail, lps := filter.flush(), track.flush()
	out.logprobs = append(out.logprobs, lps...)
	if tail != "" || len(lps) > 0 {
		if err := onText(tail, lps); err != nil {
			return nil, err
		}
	}
	s.metrics.promptTokens.WithLabelValues(labels...).Add(float64(out.res.PromptTokens))
	if adapter != "" {
		s.metrics.adapterPromptTokens.WithLabelValues(adapter, out.model).Add(float64(out.res.PromptTokens))
	}
	if d := out.res.GenDuration.Seconds(); d > 0 && len(out.res.Tokens) > 0 {
		s.metrics.tokensPerSec.WithLabelValues(labels...).Observe(float64(len(out.res.Tokens)) / d)
	}
	return out, nil
}

// acquire holds the model for a request, noting it for the access log, and
// says how long loading it took when this request loaded it.
func (s *Server) acquire(ctx context.Context, name string) (*loaded, time.Duration, error) {
	l, fresh, err := s.mgr.acquire(ctx, name)
	if err != nil {
		return nil, 0, err
	}
	noteVersion(ctx, l)
	if !fresh {
		return l, 0, nil
	}
	return l, l.loadDur, nil
}

// keepAlive turns a request's keep_alive into a duration: nil means the
// server's default; negative means forever.
func (s *Server) keepAlive(d *time.Duration) time.Duration {
	if d == nil {
		return s.cfg.KeepAlive
	}
	if *d < 0 {
		return -1
	}
	return *d
}

// chatPrompt renders msgs through the model's chat template (ChatML when
// the file has none) and tokenizes the result. The model's default system
// message (from an Ollama manifest) goes first when msgs has none.
func chatPrompt(ctx context.Context, l *loaded, msgs []chat.Message) ([]int32, error) {
	if l.info.TemplateErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, l.info.TemplateErr)
	}
	text, err := renderChat(ctx, l, msgs, nil)
	if err != nil {
		return nil, err
	}
	return tokenizeChat(l, text)
}

// generatePrompt builds /api/generate's prompt: the earlier context's
// tokens, then the prompt, through the chat template unless raw (or the
// model has none, when the system message and the prompt are joined as
// plain text, as `hearth run` does).
func generatePrompt(ctx context.Context, l *loaded, prompt, system string, raw bool, prev []int) ([]int32, error) {
	ids := make([]int32, 0, len(prev))
	for _, id := range prev {
		if id < 0 || (l.info.VocabSize > 0 && id >= l.info.VocabSize) {
			return nil, fmt.Errorf("%w: context holds token id %d, outside the vocabulary", ErrInvalid, id)
		}
		ids = append(ids, int32(id))
	}
	first := len(ids) == 0 // only the start of a sequence gets BOS
	if system == "" {
		system = l.model.System
	}
	var toks []int32
	var err error
	switch {
	case raw:
		toks, err = l.runner.Tokenize(prompt, first, true)
	case l.info.TemplateErr != nil:
		err = fmt.Errorf("%w: %w", ErrInvalid, l.info.TemplateErr)
	case l.info.Template != nil:
		var msgs []chat.Message
		if system != "" {
			msgs = append(msgs, chat.Message{Role: "system", Content: system})
		}
		msgs = append(msgs, chat.Message{Role: "user", Content: prompt})
		var text string
		text, err = l.info.Template.RenderContext(ctx, msgs, chat.Options{BOSToken: l.info.BOS, EOSToken: l.info.EOS, AddGenerationPrompt: true})
		if err == nil {
			toks, err = l.runner.Tokenize(text, first && !l.emitsBOS, true)
		}
	default:
		text := prompt
		if system != "" {
			text = system + "\n\n" + prompt
		}
		toks, err = l.runner.Tokenize(text, first, false)
	}
	if err != nil {
		return nil, err
	}
	return append(ids, toks...), nil
}

// parseFormat compiles a structured-output format: absent, null or ""
// means none (nil), "json" any JSON object, an object a JSON schema.
// Anything else, an invalid schema, or a keyword Hearth cannot enforce is a
// 400 naming the problem (Ollama answers 400 for an invalid format too).
func parseFormat(raw []byte) (*grammar.Grammar, error) {
	s := string(bytes.TrimSpace(raw))
	switch {
	case s == "", s == "null", s == `""`:
		return nil, nil
	case s == `"json"`:
		return grammar.JSON(), nil
	case s[0] == '{':
		g, err := grammar.FromSchema([]byte(s))
		if err != nil {
			return nil, errorf(http.StatusBadRequest, "invalid format: %v", err)
		}
		return g, nil
	}
	return nil, errorf(http.StatusBadRequest, `format must be "json" or a JSON schema object`)
}

// refuseImages answers a request with images: the model's 404 when it
// does not exist, else 400, since every Hearth model is text only.
func (s *Server) refuseImages(name string) error {
	if _, err := s.cfg.Store.Resolve(s.baseName(name)); err != nil {
		return err
	}
	return errorf(http.StatusBadRequest, "model %q does not support images: Hearth runs text models only", name)
}

// generateAll runs a non-streaming generation and returns its whole text,
// or answers with the error in the dialect's shape and returns false.
func (s *Server) generateAll(w http.ResponseWriter, r *http.Request, job *genJob, d dialect) (*genOutcome, string, bool) {
	var sb strings.Builder
	out, err := s.generate(r, job, func(text string, _ []TokenLogprob) error { sb.WriteString(text); return nil })
	if err != nil {
		writeError(w, r, d, err)
		return nil, "", false
	}
	return out, sb.String(), true
}
