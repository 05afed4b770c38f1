package server

import (
	"context"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go"
)

// tok is a token of a test piece: its text (within the piece, in order).
func piece(toks ...string) Piece {
	p := Piece{Text: strings.Join(toks, "")}
	off := 0
	for i, t := range toks {
		p.Logprobs = append(p.Logprobs, TokenLogprob{TopLogprob: TopLogprob{ID: int32(i), Token: t, Bytes: []byte(t), Logprob: -1}, Offset: off})
		off += len(t)
	}
	return p
}

type chunk struct {
	text string
	toks []string
}

// filterRun runs pieces through the stop filter and the tracker as
// generate does, returning the chunks sent.
func filterRun(stops []string, pieces ...Piece) []chunk {
	f := &stopFilter{stops: stops}
	tr := &logprobTracker{}
	var out []chunk
	send := func(text string, lps []TokenLogprob) {
		if text == "" && len(lps) == 0 {
			return
		}
		c := chunk{text: text}
		for _, lp := range lps {
			c.toks = append(c.toks, lp.Token)
		}
		out = append(out, c)
	}
	for _, p := range pieces {
		tr.push(p)
		text, stop := f.push(p.Text)
		send(text, tr.release(len(text), stop))
		if stop {
			return out
		}
	}
	send(f.flush(), tr.flush())
	return out
}

// TestLogprobsThroughStops pins the rule: a token is reported with the
// chunk that sends the last of its text; a stop string drops the tokens
// that begin at or after it and reports the one it cuts.
func TestLogprobsThroughStops(t *testing.T) {
	for _, c := range []struct {
		name   string
		stops  []string
		pieces []Piece
		want   []chunk
	}{
		{"no stops", nil, []Piece{piece("He", "llo"), piece(" there")},
			[]chunk{{"Hello", []string{"He", "llo"}}, {" there", []string{" there"}}}},
		{"held back, then released", []string{"XYZ"}, []Piece{piece("aX"), piece("b")},
			[]chunk{{"a", nil}, {"Xb", []string{"aX", "b"}}}},
		{"held back to the end", []string{"XYZ"}, []Piece{piece("aX"), piece("Y")},
			[]chunk{{"a", nil}, {"XY", []string{"aX", "Y"}}}},
		{"stop cuts a token", []string{"o th"}, []Piece{piece("Hel"), piece("lo"), piece(" the"), piece("re")},
			[]chunk{{"Hel", []string{"Hel"}}, {"l", nil}, {"", []string{"lo"}}}},
		{"stop at a token's start", []string{"STOP"}, []Piece{piece("ab"), piece("STOP"), piece("c")},
			[]chunk{{"ab", []string{"ab"}}}},
		{"stop inside a held token", []string{"bc"}, []Piece{piece("ab"), piece("cd")},
			[]chunk{{"a", nil}, {"", []string{"ab"}}}},
		{"stop first", []string{"ab"}, []Piece{piece("ab")}, nil},
	} {
		got := filterRun(c.stops, c.pieces...)
		if !slices.EqualFunc(got, c.want, func(a, b chunk) bool { return a.text == b.text && slices.Equal(a.toks, b.toks) }) {
			t.Errorf("%s: %+v, want %+v", c.name, got, c.want)
		}
	}
}

// TestLogprobsOffsets: text offsets count bytes of the generated text.
func TestLogprobsOffsets(t *testing.T) {
	tr := &logprobTracker{}
	var all []TokenLogprob
	for _, p := range []Piece{piece("He", "llo"), piece(" w", "orld")} {
		tr.push(p)
		all = append(all, tr.release(len(p.Text), false)...)
	}
	var offs []int
	for _, lp := range all {
		offs = append(offs, lp.Offset)
	}
	if !slices.Equal(offs, []int{0, 2, 5, 7}) {
		t.Errorf("offsets %v", offs)
	}
}

func TestLogprobsOllama(t *testing.T) {
	f := newFake("Hello", " there", "!")
	f.info.Template = testTemplate
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	ctx := context.Background()
	check := func(name string, lps []api.Logprob, texts []string, top int) {
		t.Helper()
		if len(lps) != len(texts) {
			t.Fatalf("%s: %d logprobs, want %d: %+v", name, len(lps), len(texts), lps)
		}
		for i, lp := range lps {
			if lp.Token != texts[i] || math.Abs(lp.Logprob+float64(i+1)/10) > 1e-9 || string(intsToBytes(lp.Bytes)) != texts[i] || len(lp.TopLogprobs) != top {
				t.Errorf("%s: logprob %d: %+v", name, i, lp)
			}
		}
	}
	// Not asked: none, and the runner is not asked either.
	var plain api.GenerateResponse
	if err := e.ollama.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "x", Stream: ptr(false)},
		func(r api.GenerateResponse) error { plain = r; return nil }); err != nil {
		t.Fatal(err)
	}
	if plain.Logprobs != nil || f.lastRequest(t).Logprobs {
		t.Errorf("unasked logprobs: %+v", plain.Logprobs)
	}
	// Generate, whole and streamed; a stop string drops the tokens it cuts off.
	var whole api.GenerateResponse
	if err := e.ollama.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "x", Stream: ptr(false), Logprobs: true, TopLogprobs: 2},
		func(r api.GenerateResponse) error { whole = r; return nil }); err != nil {
		t.Fatal(err)
	}
	check("generate", whole.Logprobs, []string{"Hello", " there", "!"}, 2)
	if req := f.lastRequest(t); !req.Logprobs || req.TopLogprobs != 2 {
		t.Errorf("runner request %+v", req)
	}
	var streamed []api.Logprob
	var text strings.Builder
	if err := e.ollama.Generate(ctx, &api.GenerateRequest{Model: "tiny", Prompt: "x", Logprobs: true, Options: map[string]any{"stop": []string{"!"}}},
		func(r api.GenerateResponse) error {
			text.WriteString(r.Response)
			if r.Response == "" && len(r.Logprobs) > 0 && !r.Done {
				t.Errorf("logprobs without text: %+v", r)
			}
			streamed = append(streamed, r.Logprobs...)
			return nil
		}); err != nil {
		t.Fatal(err)
	}
	if text.String() != "Hello there" {
		t.Errorf("text %q", text.String())
	}
	check("generate stream", streamed, []string{"Hello", " there"}, 0)
	// Chat.
	var chatLPs []api.Logprob
	if err := e.ollama.Chat(ctx, &api.ChatRequest{Model: "tiny", Messages: []api.Message{{Role: "user", Content: "hi"}}, Logprobs: true, TopLogprobs: 20},
		func(r api.ChatResponse) error { chatLPs = append(chatLPs, r.Logprobs...); return nil }); err != nil {
		t.Fatal(err)
	}
	check("chat stream", chatLPs, []string{"Hello", " there", "!"}, 20)
	var chatWhole api.ChatResponse
	if err := e.ollama.Chat(ctx, &api.ChatRequest{Model: "tiny", Messages: []api.Message{{Role: "user", Content: "hi"}}, Logprobs: true, Stream: ptr(false)},
		func(r api.ChatResponse) error { chatWhole = r; return nil }); err != nil {
		t.Fatal(err)
	}
	check("chat", chatWhole.Logprobs, []string{"Hello", " there", "!"}, 0)
	// Out of range: Ollama's 400.
	err := e.ollama.Chat(ctx, &api.ChatRequest{Model: "tiny", Messages: []api.Message{{Role: "user", Content: "hi"}}, Logprobs: true, TopLogprobs: 21},
		func(api.ChatResponse) error { return nil })
	if se, ok := err.(api.StatusError); !ok || se.StatusCode != 400 || !strings.Contains(se.ErrorMessage, "top_logprobs") {
		t.Errorf("top_logprobs 21: %v", err)
	}
}

func intsToBytes(v []int) []byte {
	b := make([]byte, len(v))
	for i, x := range v {
		b[i] = byte(x)
	}
	return b
}

func TestLogprobsOpenAIChat(t *testing.T) {
	f := newFake("Hello", " there", "!")
	f.info.Template = testTemplate
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{Model: "tiny", Messages: []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Hi")},
		Logprobs: openai.Bool(true), TopLogprobs: openai.Int(3)}
	resp, err := e.openai.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	content := resp.Choices[0].Logprobs.Content
	if len(content) != 3 || content[1].Token != " there" || math.Abs(content[1].Logprob+0.2) > 1e-9 || len(content[1].Bytes) != 6 ||
		len(content[1].TopLogprobs) != 3 || content[1].TopLogprobs[0].Token != "alt0" {
		t.Errorf("logprobs %+v", resp.Choices[0].Logprobs)
	}
	// Streamed: each chunk's tokens go with its text.
	params.Stop = openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"!"}}
	stream := e.openai.Chat.Completions.NewStreaming(ctx, params)
	var toks []string
	for stream.Next() {
		c := stream.Current()
		if len(c.Choices) == 0 {
			continue
		}
		var text string
		for _, lp := range c.Choices[0].Logprobs.Content {
			toks = append(toks, lp.Token)
			text += lp.Token
		}
		if text != c.Choices[0].Delta.Content {
			t.Errorf("chunk %q with tokens %q", c.Choices[0].Delta.Content, text)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(toks, []string{"Hello", " there"}) {
		t.Errorf("streamed tokens %q", toks)
	}
	// Without logprobs the field is null.
	params.Logprobs, params.TopLogprobs = openai.Bool(false), openai.Int(0)
	resp, err = e.openai.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Choices[0].Logprobs.JSON.Content.Valid() {
		t.Errorf("unasked logprobs: %s", resp.Choices[0].Logprobs.RawJSON())
	}
}

func TestLogprobsOpenAICompletions(t *testing.T) {
	f := newFake("Hello", " there", "!")
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	ctx := context.Background()
	params := openai.CompletionNewParams{Model: "tiny", Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("x")},
		Logprobs: openai.Int(2)}
	resp, err := e.openai.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	lp := resp.Choices[0].Logprobs
	if !slices.Equal(lp.Tokens, []string{"Hello", " there", "!"}) || !slices.Equal(lp.TextOffset, []int64{0, 5, 11}) ||
		len(lp.TokenLogprobs) != 3 || math.Abs(lp.TokenLogprobs[2]+0.3) > 1e-9 || len(lp.TopLogprobs) != 3 || len(lp.TopLogprobs[0]) != 2 ||
		lp.TopLogprobs[0]["alt1"] != -0.02 {
		t.Errorf("logprobs %+v", lp)
	}
	// The alternatives' object keeps best-first order.
	if raw := lp.JSON.TopLogprobs.Raw(); !strings.Contains(raw, `{"alt0":-0.01,"alt1":-0.02}`) {
		t.Errorf("top_logprobs %s", raw)
	}
	// Streamed, logprobs 0: tokens only.
	params.Logprobs = openai.Int(0)
	stream := e.openai.Completions.NewStreaming(ctx, params)
	var offs []int64
	for stream.Next() {
		c := stream.Current()
		if len(c.Choices) > 0 {
			offs = append(offs, c.Choices[0].Logprobs.TextOffset...)
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(offs, []int64{0, 5, 11}) {
		t.Errorf("streamed offsets %v", offs)
	}
}

// TestLogprobsJSON: a token the model gave no mass is -9999, not an
// invalid -Inf; tokens with the same text keep the likelier.
func TestLogprobsJSON(t *testing.T) {
	lps := []TokenLogprob{{TopLogprob: TopLogprob{Token: "a", Logprob: math.Inf(-1)},
		Top: []TopLogprob{{Token: "b", Logprob: -1}, {Token: "b", Logprob: -2}, {Token: "\"", Logprob: -3}}}}
	for _, v := range []any{oaiChatLogprobsOf(true, lps), oaiCompletionLogprobsOf(true, lps), ollamaLogprobs(lps)} {
		b, err := json.Marshal(v)
		if err != nil || !strings.Contains(string(b), "-9999") {
			t.Errorf("%s: %v", b, err)
		}
	}
	b, _ := json.Marshal(orderedTopLogprobs(lps[0].Top))
	if string(b) != `{"b":-1,"\"":-3}` {
		t.Errorf("top %s", b)
	}
}
