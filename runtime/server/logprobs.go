package server

import (
	"bytes"
	"encoding/json"
	"math"
	"net/http"

	"github.com/ollama/ollama/api"

	"github.com/hearth-llm/hearth/runtime/sample"
)

// Logprobs through the stop-string filter. The filter holds back text that
// may begin a stop string and cuts the text at one; the logprobs a client
// gets follow the text it gets:
//   - a token is reported once all of its text has been sent (so a token
//     whose text is held back is reported with the chunk that releases
//     it, not before);
//   - when a stop string is found, the tokens whose text begins before the
//     cut are reported (their text is, at least in part, in what the
//     client got), and those wholly at or after it are not;
//   - at the end without a stop, everything still held is sent, with its
//     tokens.
// So the reported tokens' texts, joined, always begin with the text sent,
// and run past it only by the part of one token cut by a stop string.

// heldLogprob is a token's logprobs waiting for its text to be sent: its
// text is bytes [start, end) of the generated text.
type heldLogprob struct {
	start, end int
	lp         TokenLogprob
}

// logprobTracker pairs the pieces' logprobs with the stop filter's output.
type logprobTracker struct {
	in, out int // bytes pushed into the filter; bytes it released
	held    []heldLogprob
	stopped bool
}

// push notes a piece about to go into the filter.
func (t *logprobTracker) push(p Piece) {
	for i, lp := range p.Logprobs {
		end := len(p.Text)
		if i+1 < len(p.Logprobs) {
			end = p.Logprobs[i+1].Offset
		}
		start := t.in + min(lp.Offset, len(p.Text))
		lp.Offset = start // now in the whole generated text
		t.held = append(t.held, heldLogprob{start: start, end: max(t.in+end, start), lp: lp})
	}
	t.in += len(p.Text)
}

// release takes the logprobs that go with the n bytes the filter just
// released; stop says it found a stop string there.
func (t *logprobTracker) release(n int, stop bool) []TokenLogprob {
	if t.stopped {
		return nil
	}
	t.out += n
	var out []TokenLogprob
	k := 0
	for ; k < len(t.held); k++ {
		h := t.held[k]
		if h.end > t.out && !(stop && h.start < t.out) {
			break
		}
		out = append(out, h.lp)
	}
	t.held = t.held[k:]
	if stop {
		t.held, t.stopped = nil, true
	}
	return out
}

// flush takes what is left at the end (the filter's held text is sent).
func (t *logprobTracker) flush() []TokenLogprob {
	if t.stopped {
		return nil
	}
	out := make([]TokenLogprob, len(t.held))
	for i, h := range t.held {
		out[i] = h.lp
	}
	t.held = nil
	return out
}

// Request checks. OpenAI and Ollama allow 0..20 alternatives per token.

func checkTopLogprobs(n int, param string) error {
	if n < 0 || n > sample.MaxTopLogprobs {
		return errorf(http.StatusBadRequest, "%s must be between 0 and %d (got %d)", param, sample.MaxTopLogprobs, n)
	}
	return nil
}

// oaiChatLogprobs reads chat's logprobs and top_logprobs: top_logprobs
// needs logprobs true, as OpenAI says.
func oaiChatLogprobs(logprobs *bool, top *int) (on bool, n int, err error) {
	on = logprobs != nil && *logprobs
	if top != nil {
		n = *top
		if err := checkTopLogprobs(n, "top_logprobs"); err != nil {
			return false, 0, err
		}
		if n > 0 && !on {
			return false, 0, errorf(http.StatusBadRequest, "top_logprobs requires logprobs to be true")
		}
	}
	return on, n, nil
}

// oaiCompletionLogprobs reads completions' logprobs: null is off, N (0..20;
// OpenAI allows 0..5, Hearth up to 20 as vLLM does) reports the chosen
// tokens and N alternatives each.
func oaiCompletionLogprobs(n *int) (on bool, top int, err error) {
	if n == nil {
		return false, 0, nil
	}
	if err := checkTopLogprobs(*n, "logprobs"); err != nil {
		return false, 0, err
	}
	return true, *n, nil
}

// Ollama's shape: api.Logprob per token.

func ollamaLogprobs(lps []TokenLogprob) []api.Logprob {
	if len(lps) == 0 {
		return nil
	}
	out := make([]api.Logprob, len(lps))
	for i, lp := range lps {
		out[i] = api.Logprob{TokenLogprob: ollamaToken(lp.TopLogprob)}
		for _, x := range lp.Top {
			out[i].TopLogprobs = append(out[i].TopLogprobs, ollamaToken(x))
		}
	}
	return out
}

func ollamaToken(x TopLogprob) api.TokenLogprob {
	return api.TokenLogprob{Token: x.Token, Logprob: jsonLogprob(x.Logprob), Bytes: intBytes(x.Bytes)}
}

// withOllamaLogprobs sets the Logprobs of an Ollama response (a
// *api.GenerateResponse or *api.ChatResponse).
func withOllamaLogprobs(v any, lps []TokenLogprob) {
	if len(lps) == 0 {
		return
	}
	switch r := v.(type) {
	case *api.GenerateResponse:
		r.Logprobs = ollamaLogprobs(lps)
	case *api.ChatResponse:
		r.Logprobs = ollamaLogprobs(lps)
	}
}

// OpenAI chat's shape: {"content": [{token, logprob, bytes, top_logprobs}]}.

type oaiChatLogprobsBody struct {
	Content []oaiTokenLogprob `json:"content"`
	Refusal []oaiTokenLogprob `json:"refusal"`
}

type oaiTokenLogprob struct {
	Token       string          `json:"token"`
	Logprob     float64         `json:"logprob"`
	Bytes       []int           `json:"bytes"`
	TopLogprobs []oaiTopLogprob `json:"top_logprobs"`
}

type oaiTopLogprob struct {
	Token   string  `json:"token"`
	Logprob float64 `json:"logprob"`
	Bytes   []int   `json:"bytes"`
}

// oaiChatLogprobsOf is a chat choice's logprobs: nil (JSON null) when the
// request did not ask; an empty content list when it asked and no token
// goes with this chunk.
func oaiChatLogprobsOf(on bool, lps []TokenLogprob) any {
	if !on {
		return nil
	}
	body := &oaiChatLogprobsBody{Content: make([]oaiTokenLogprob, len(lps)), Refusal: nil}
	for i, lp := range lps {
		e := oaiTokenLogprob{Token: lp.Token, Logprob: jsonLogprob(lp.Logprob), Bytes: intBytes(lp.Bytes),
			TopLogprobs: make([]oaiTopLogprob, len(lp.Top))}
		for k, x := range lp.Top {
			e.TopLogprobs[k] = oaiTopLogprob{Token: x.Token, Logprob: jsonLogprob(x.Logprob), Bytes: intBytes(x.Bytes)}
		}
		body.Content[i] = e
	}
	return body
}

// OpenAI completions' (legacy) shape: parallel lists.

type oaiCompletionLogprobsBody struct {
	Tokens        []string             `json:"tokens"`
	TokenLogprobs []float64            `json:"token_logprobs"`
	TopLogprobs   []orderedTopLogprobs `json:"top_logprobs"`
	TextOffset    []int                `json:"text_offset"`
}

// orderedTopLogprobs is one token's alternatives as a JSON object of
// token text to logprob, best first; of tokens with the same text, the
// more likely one is kept.
type orderedTopLogprobs []TopLogprob

func (o orderedTopLogprobs) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	seen := make(map[string]bool, len(o))
	for _, x := range o {
		if seen[x.Token] {
			continue
		}
		seen[x.Token] = true
		if len(seen) > 1 {
			b.WriteByte(',')
		}
		k, err := json.Marshal(x.Token)
		if err != nil {
			return nil, err
		}
		v, err := json.Marshal(jsonLogprob(x.Logprob))
		if err != nil {
			return nil, err
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(v)
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// oaiCompletionLogprobsOf is a text choice's logprobs (nil: null when the
// request did not ask). text_offset counts bytes of the generated text
// (no echo: the prompt is not counted).
func oaiCompletionLogprobsOf(on bool, lps []TokenLogprob) any {
	if !on {
		return nil
	}
	body := &oaiCompletionLogprobsBody{Tokens: make([]string, len(lps)), TokenLogprobs: make([]float64, len(lps)),
		TopLogprobs: make([]orderedTopLogprobs, len(lps)), TextOffset: make([]int, len(lps))}
	for i, lp := range lps {
		body.Tokens[i] = lp.Token
		body.TokenLogprobs[i] = jsonLogprob(lp.Logprob)
		body.TopLogprobs[i] = orderedTopLogprobs(lp.Top)
		body.TextOffset[i] = lp.Offset
	}
	return body
}

// jsonLogprob makes a logprob JSON can carry: a token the model gave no
// mass (-Inf) is reported as -9999, OpenAI's floor.
func jsonLogprob(v float64) float64 {
	if math.IsInf(v, -1) || math.IsNaN(v) || v < -9999 {
		return -9999
	}
	return v
}

// intBytes is a token's bytes as OpenAI's and Ollama's lists of integers.
func intBytes(b []byte) []int {
	out := make([]int, len(b))
	for i, c := range b {
		out[i] = int(c)
	}
	return out
}
