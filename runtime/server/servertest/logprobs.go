package servertest

import (
	"context"
	"math"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go"

	"github.com/hearth-llm/hearth/runtime/server"
)

// Logprobs checks logprobs over the stories model with load's runner:
// greedy completions report the best token (the chosen token's logprob is
// the first alternative's), the tokens' texts join to the text, sampling
// options do not change the logprobs (they are the raw model's), and a
// stop string drops the tokens after it, streamed through Ollama's client.
func Logprobs(t *testing.T, load server.Loader) {
	c, oc, _ := Stories(t, load)
	ctx := context.Background()
	complete := func(extra func(*openai.CompletionNewParams)) openai.CompletionChoice {
		t.Helper()
		p := openai.CompletionNewParams{Model: "stories", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once upon a time")},
			MaxTokens: openai.Int(8), Temperature: openai.Float(0), Logprobs: openai.Int(5)}
		if extra != nil {
			extra(&p)
		}
		r, err := oc.Completions.New(ctx, p)
		if err != nil {
			t.Fatal(err)
		}
		return r.Choices[0]
	}
	g := complete(nil)
	lp := g.Logprobs
	if g.Text != ", there was a little girl" || len(lp.Tokens) != 8 || strings.Join(lp.Tokens, "") != g.Text ||
		len(lp.TokenLogprobs) != 8 || len(lp.TopLogprobs) != 8 || len(lp.TextOffset) != 8 {
		t.Fatalf("greedy %q: %+v", g.Text, lp)
	}
	for i := range lp.Tokens {
		best, sum := math.Inf(-1), 0.0
		for _, v := range lp.TopLogprobs[i] {
			best = max(best, v)
			sum += math.Exp(v)
		}
		if lp.TokenLogprobs[i] != best || lp.TopLogprobs[i][lp.Tokens[i]] != best || lp.TokenLogprobs[i] > 0 || sum > 1+1e-9 ||
			len(lp.TopLogprobs[i]) == 0 || int(lp.TextOffset[i]) != len(strings.Join(lp.Tokens[:i], "")) {
			t.Errorf("token %d %q: %v, top %v", i, lp.Tokens[i], lp.TokenLogprobs[i], lp.TopLogprobs[i])
		}
	}
	// Penalties, top_k/top_p and temperature change the draw, not the
	// logprobs: the same first token (greedy at temperature 1e-3) gets the
	// same logprob.
	s := complete(func(p *openai.CompletionNewParams) {
		p.Temperature, p.TopP, p.FrequencyPenalty, p.MaxTokens = openai.Float(1e-3), openai.Float(0.5), openai.Float(1.5), openai.Int(1)
	})
	if len(s.Logprobs.Tokens) != 1 || s.Logprobs.Tokens[0] != lp.Tokens[0] || math.Abs(s.Logprobs.TokenLogprobs[0]-lp.TokenLogprobs[0]) > 1e-6 {
		t.Errorf("with sampling options: %+v, greedy %v", s.Logprobs, lp.TokenLogprobs[0])
	}
	// Ollama, streamed, with a stop string: the tokens up to it, and the
	// one it cuts (" little": its space was sent).
	var text strings.Builder
	var toks []string
	err := c.Generate(ctx, &api.GenerateRequest{Model: "stories", Prompt: "Once upon a time", Raw: true, Logprobs: true, TopLogprobs: 2,
		Options: map[string]any{"num_predict": 8, "temperature": 0, "stop": []string{"little"}}},
		func(r api.GenerateResponse) error {
			text.WriteString(r.Response)
			for _, l := range r.Logprobs {
				toks = append(toks, l.Token)
				if len(l.TopLogprobs) != 2 || l.TopLogprobs[0].Logprob != l.Logprob {
					t.Errorf("token %+v", l)
				}
			}
			return nil
		})
	if err != nil {
		t.Fatal(err)
	}
	if text.String() != ", there was a " || !strings.HasPrefix(strings.Join(toks, ""), text.String()) || len(toks) != 5 || toks[4] != " little" {
		t.Errorf("stopped: %q, tokens %q", text.String(), toks)
	}
}
