package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/hearth-llm/hearth/loader/chat"
	"github.com/hearth-llm/hearth/runtime/chatfmt"
	"github.com/hearth-llm/hearth/runtime/grammar"
)

// chatTurn is one chat request, whichever API sent it (Ollama chat, OpenAI
// chat and Responses, Anthropic Messages): the conversation with its tools
// and thinking, and, once the model is loaded, its output split by the
// model's format (loaded.format, detected once per model).
type chatTurn struct {
	model string
	conv  chatfmt.Conversation
	// format is the response's own constraint (Ollama format, OpenAI
	// response_format, Responses text.format); nil: none.
	format *grammar.Grammar

	// Set by prompt.
	parser  chatfmt.Parser
	grammar *grammar.Grammar
	calls   int // calls parsed so far, for their indexes
	// texts counts the texts generated so far; reasoningTexts the texts
	// up to the last that added reasoning: the reasoning's tokens, one
	// token a text (but for text held back by stop strings).
	texts, reasoningTexts int
}

// newChatTurn checks the conversation's tools and choice.
func newChatTurn(model string, conv chatfmt.Conversation, format *grammar.Grammar) (*chatTurn, error) {
	if err := conv.Check(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return &chatTurn{model: model, conv: conv, format: format}, nil
}

// job is the generation of the turn.
func (t *chatTurn) job(keep time.Duration, options func(*genOptions) error) *genJob {
	return &genJob{model: t.model, keepAlive: keep, options: options, prompt: t.prompt, constrain: t.constraint}
}

// prompt renders the conversation with the model's template and starts
// the parser and the constraint that fit it.
func (t *chatTurn) prompt(ctx context.Context, l *loaded) ([]int32, error) {
	if l.info.TemplateErr != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, l.info.TemplateErr)
	}
	f := l.format
	prep, err := f.Prepare(&t.conv)
	switch {
	case errors.Is(err, chatfmt.ErrNoThinking):
		return nil, errorf(http.StatusBadRequest, "%q does not support thinking", t.model)
	case err != nil:
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	text, err := renderChat(ctx, l, prep.Messages, prep.Extra)
	if err != nil {
		return nil, err
	}
	o := f.ParseOptions(&t.conv, text)
	t.parser = f.NewParser(o)
	t.grammar = t.format
	if g, err := f.Grammar(&t.conv, o, t.format); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalid, err)
	} else if g != nil {
		t.grammar = g
	}
	return tokenizeChat(l, text)
}

// constraint is the grammar and the preserved tokens the turn's
// generation runs with.
func (t *chatTurn) constraint(l *loaded) (*grammar.Grammar, []int32) {
	return t.grammar, l.preserve
}

// runChat generates the turn, handing each piece of content, reasoning and
// each call to onDelta (nil: none) as the parser completes it, with the
// logprobs of the tokens pushed since the last delta, and returns the
// whole.
func (s *Server) runChat(r *http.Request, job *genJob, t *chatTurn, onDelta func(chatfmt.Delta, []TokenLogprob) error) (*genOutcome, chatfmt.Delta, error) {
	var all chatfmt.Delta
	var pending []TokenLogprob
	deliver := func(d chatfmt.Delta, lps []TokenLogprob, last bool) error {
		pending = append(pending, lps...)
		if d.Empty() && !(last && len(pending) > 0) {
			return nil
		}
		all.Add(d)
		t.calls += len(d.Calls)
		if d.Reasoning != "" {
			t.reasoningTexts = t.texts
		}
		lps, pending = pending, nil
		if onDelta == nil {
			return nil
		}
		return onDelta(d, lps)
	}
	out, err := s.generate(r, job, func(text string, lps []TokenLogprob) error {
		t.texts++
		return deliver(t.parser.Push(text), lps, false)
	})
	if err != nil {
		return nil, all, err
	}
	if err := deliver(t.parser.Finish(), nil, true); err != nil {
		return nil, all, err
	}
	return out, all, nil
}

// renderChat renders msgs with the model's template (the fallback when it
// has none), adding the model's system message.
func renderChat(ctx context.Context, l *loaded, msgs []chat.Message, extra map[string]any) (string, error) {
	tmpl := l.info.Template
	if tmpl == nil {
		tmpl = chat.Fallback()
	}
	if l.model.System != "" && (len(msgs) == 0 || msgs[0].Role != "system") {
		msgs = append([]chat.Message{{Role: "system", Content: l.model.System}}, msgs...)
	}
	// A conversation ending with the assistant's turn asks to continue it.
	genPrompt := len(msgs) == 0 || msgs[len(msgs)-1].Role != "assistant"
	return tmpl.RenderContext(ctx, msgs, chat.Options{BOSToken: l.info.BOS, EOSToken: l.info.EOS, AddGenerationPrompt: genPrompt, Extra: extra})
}

// tokenizeChat tokenizes a rendered conversation.
func tokenizeChat(l *loaded, text string) ([]int32, error) {
	emitsBOS := l.emitsBOS && l.info.Template != nil
	return l.runner.Tokenize(text, !emitsBOS, true)
}
