package server

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/shared"
)

func TestOpenAIChat(t *testing.T) {
	f := newFake("Hello", " there", "!", " Bye")
	f.info.Template = testTemplate
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	ctx := context.Background()
	params := openai.ChatCompletionNewParams{
		Model: "tiny",
		Messages: []openai.ChatCompletionMessageParamUnion{
			openai.SystemMessage("Be kind."), openai.UserMessage("Hi"),
		},
		Temperature: openai.Float(0),
		Seed:        openai.Int(42),
		MaxTokens:   openai.Int(3),
	}
	resp, err := e.openai.Chat.Completions.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Choices) != 1 || resp.Choices[0].Message.Content != "Hello there!" || resp.Choices[0].FinishReason != "length" ||
		resp.Object != "chat.completion" || !strings.HasPrefix(resp.ID, "chatcmpl-") || resp.Model != "tiny" {
		t.Errorf("response %+v", resp)
	}
	if resp.Usage.CompletionTokens != 3 || resp.Usage.PromptTokens == 0 || resp.Usage.TotalTokens != resp.Usage.PromptTokens+3 {
		t.Errorf("usage %+v", resp.Usage)
	}
	req := f.lastRequest(t)
	if req.Sampling.Temperature != 0 || req.Sampling.Seed != 42 || req.Sampling.TopP != 1 || req.NumPredict != 3 {
		t.Errorf("options %+v", req)
	}
	if p := detok(req.Prompt); p != "<s><system>Be kind.\n<user>Hi\n<assistant>" {
		t.Errorf("prompt %q", p)
	}

	// Streaming with usage and a stop string; max_completion_tokens wins
	// over max_tokens.
	params.MaxTokens = openai.Int(1)
	params.MaxCompletionTokens = openai.Int(10)
	params.Stop = openai.ChatCompletionNewParamsStopUnion{OfStringArray: []string{"!"}}
	params.StreamOptions = openai.ChatCompletionStreamOptionsParam{IncludeUsage: openai.Bool(true)}
	stream := e.openai.Chat.Completions.NewStreaming(ctx, params)
	var acc openai.ChatCompletionAccumulator
	chunks := 0
	for stream.Next() {
		acc.AddChunk(stream.Current())
		chunks++
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if got := acc.Choices[0].Message.Content; got != "Hello there" || acc.Choices[0].FinishReason != "stop" {
		t.Errorf("stream: %q, %q", got, acc.Choices[0].FinishReason)
	}
	if acc.Usage.CompletionTokens != 3 || chunks != 4 {
		t.Errorf("usage %+v after %d chunks", acc.Usage, chunks)
	}
}

func TestOpenAICompletionsEmbeddingsModels(t *testing.T) {
	f := newFake("upon", " a", " time")
	f.info.Template = testTemplate // not used by /v1/completions
	emb := newFake()
	emb.info.Embeddings = true
	emb.embed = [][]float32{{0, 0, 5}}
	e := newEnv(t, map[string]*fakeRunner{"tiny": f, "emb": emb}, nil)
	ctx := context.Background()

	c, err := e.openai.Completions.New(ctx, openai.CompletionNewParams{Model: "tiny",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once")}})
	if err != nil {
		t.Fatal(err)
	}
	if c.Choices[0].Text != "upon a time" || c.Choices[0].FinishReason != "stop" || c.Object != "text_completion" {
		t.Errorf("completion %+v", c)
	}
	if p := detok(f.lastRequest(t).Prompt); p != "<BOS>Once" {
		t.Errorf("completion prompt %q (want no template)", p)
	}
	stream := e.openai.Completions.NewStreaming(ctx, openai.CompletionNewParams{Model: "tiny",
		Prompt: openai.CompletionNewParamsPromptUnion{OfString: openai.String("Once")}, MaxTokens: openai.Int(2)})
	var text strings.Builder
	var reason string
	for stream.Next() {
		ch := stream.Current()
		text.WriteString(ch.Choices[0].Text)
		if ch.Choices[0].FinishReason != "" {
			reason = string(ch.Choices[0].FinishReason)
		}
	}
	if stream.Err() != nil || text.String() != "upon a" || reason != "length" {
		t.Errorf("completion stream %q %q %v", text.String(), reason, stream.Err())
	}

	er, err := e.openai.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "emb",
		Input: openai.EmbeddingNewParamsInputUnion{OfArrayOfStrings: []string{"a", "b"}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(er.Data) != 2 || er.Data[1].Index != 1 || er.Data[0].Embedding[2] != 1 || er.Usage.PromptTokens != 2 {
		t.Errorf("embeddings %+v", er)
	}
	// openai-go v1 does not decode base64 vectors: read the wire.
	code, _, body := e.do("POST", "/v1/embeddings", `{"model":"emb","input":"a","encoding_format":"base64"}`)
	if want := base64Floats([]float32{0, 0, 1}); code != 200 || !strings.Contains(body, `"embedding":"`+want+`"`) {
		t.Errorf("base64 embeddings: %d %s", code, body)
	}
	_, err = e.openai.Embeddings.New(ctx, openai.EmbeddingNewParams{Model: "tiny",
		Input: openai.EmbeddingNewParamsInputUnion{OfString: openai.String("a")}})
	if code := apiStatus(err); code != 501 {
		t.Errorf("embeddings from a text model: %v", err)
	}

	page, err := e.openai.Models.List(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(page.Data) != 2 || page.Data[1].ID != "tiny:latest" || page.Data[1].OwnedBy != "library" {
		t.Errorf("models %+v", page.Data)
	}
	m, err := e.openai.Models.Get(ctx, "tiny")
	if err != nil || m.ID != "tiny:latest" {
		t.Errorf("model %+v %v", m, err)
	}
	if _, err := e.openai.Models.Get(ctx, "nope"); apiStatus(err) != 404 {
		t.Errorf("unknown model: %v", err)
	}
}

func apiStatus(err error) int {
	var ae *openai.Error
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	return 0
}

func TestOpenAIErrors(t *testing.T) {
	e := newEnv(t, map[string]*fakeRunner{"tiny": newFake("a")}, nil)
	ctx := context.Background()
	user := []openai.ChatCompletionMessageParamUnion{openai.UserMessage("x")}
	for _, c := range []struct {
		name string
		p    openai.ChatCompletionNewParams
		code int
		msg  string
	}{
		{"unknown model", openai.ChatCompletionNewParams{Model: "nope", Messages: user}, 404, "not found"},
		{"json_schema", openai.ChatCompletionNewParams{Model: "tiny", Messages: user,
			ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
				JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "x", Schema: map[string]any{"type": 7}}}}}, 400, "json_schema"},
		{"n", openai.ChatCompletionNewParams{Model: "tiny", Messages: user, N: openai.Int(2)}, 400, "n must be 1"},
		{"temperature", openai.ChatCompletionNewParams{Model: "tiny", Messages: user, Temperature: openai.Float(-1)}, 400, "temperature"},
		{"top_p", openai.ChatCompletionNewParams{Model: "tiny", Messages: user, TopP: openai.Float(0)}, 400, "top_p"},
		{"max_tokens", openai.ChatCompletionNewParams{Model: "tiny", Messages: user, MaxTokens: openai.Int(-5)}, 400, "max_tokens"},
		{"no messages", openai.ChatCompletionNewParams{Model: "tiny"}, 400, "messages"},
		{"image", openai.ChatCompletionNewParams{Model: "tiny", Messages: []openai.ChatCompletionMessageParamUnion{
			openai.UserMessage([]openai.ChatCompletionContentPartUnionParam{openai.ImageContentPart(openai.ChatCompletionContentPartImageImageURLParam{URL: "http://x/y.png"})})}},
			400, "images"},
	} {
		_, err := e.openai.Chat.Completions.New(ctx, c.p)
		var ae *openai.Error
		if !errors.As(err, &ae) || ae.StatusCode != c.code || !strings.Contains(ae.Message, c.msg) || ae.Type == "" {
			t.Errorf("%s: %v, want %d %q", c.name, err, c.code, c.msg)
		}
	}
}
