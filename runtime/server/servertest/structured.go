package servertest

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	"github.com/ollama/ollama/api"
	"github.com/openai/openai-go"
	"github.com/openai/openai-go/shared"

	"github.com/hearth-llm/hearth/runtime/server"
)

// personSchema is bounded (enum, boolean, integer): whatever the model
// would say, a complete document fits in a few dozen tokens.
const personSchema = `{"type":"object","properties":{
	"happy":{"type":"boolean"},
	"age":{"type":"integer"},
	"color":{"enum":["red","green","blue"]},
	"pets":{"type":"array","items":{"enum":["cat","dog"]},"maxItems":3}
},"required":["happy","age","color","pets"]}`

type person struct {
	Happy *bool    `json:"happy"`
	Age   *int64   `json:"age"`
	Color string   `json:"color"`
	Pets  []string `json:"pets"`
}

// checkPerson fails unless text is one complete document of personSchema
// (nothing else), with its keys in the schema's order when ordered.
func checkPerson(t *testing.T, where, text string, ordered bool) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(text))
	dec.DisallowUnknownFields()
	var p person
	if err := dec.Decode(&p); err != nil {
		t.Errorf("%s: %q is not a person: %v", where, text, err)
		return
	}
	if p.Happy == nil || p.Age == nil || !slices.Contains([]string{"red", "green", "blue"}, p.Color) || p.Pets == nil || len(p.Pets) > 3 {
		t.Errorf("%s: %q does not satisfy the schema", where, text)
	}
	for _, pet := range p.Pets {
		if pet != "cat" && pet != "dog" {
			t.Errorf("%s: pet %q", where, pet)
		}
	}
	h, a, c := strings.Index(text, `"happy"`), strings.Index(text, `"age"`), strings.Index(text, `"color"`)
	if ordered && (h > a || a > c) {
		t.Errorf("%s: %q: keys out of the schema's order", where, text)
	}
}

// StructuredOutputs drives format (Ollama) and response_format (OpenAI)
// through both clients against a server started by Stories: the output is
// constrained to the schema whatever the model would have said, "json"
// gives a JSON object, and bad schemas are 400s.
func StructuredOutputs(t *testing.T, load server.Loader) {
	ol, oa, base := Stories(t, load)
	ctx := context.Background()
	stream := false

	// Ollama generate with a JSON schema, greedy and sampled.
	for _, opts := range []map[string]any{{"temperature": 0}, {"temperature": 1.5, "seed": 7}, {"temperature": 1, "seed": 3, "top_k": 0}} {
		opts["num_predict"] = 200
		var resp api.GenerateResponse
		err := ol.Generate(ctx, &api.GenerateRequest{Model: "stories", Prompt: "Once upon a time", Stream: &stream,
			Format: json.RawMessage(personSchema), Options: opts}, func(r api.GenerateResponse) error { resp = r; return nil })
		if err != nil {
			t.Fatal(err)
		}
		checkPerson(t, "generate", resp.Response, true)
		if resp.DoneReason != "stop" {
			t.Errorf("generate: done_reason %q", resp.DoneReason)
		}
	}

	// Ollama chat, streamed, with format "json": one JSON object.
	var text strings.Builder
	var last api.ChatResponse
	err := ol.Chat(ctx, &api.ChatRequest{Model: "stories", Messages: []api.Message{{Role: "user", Content: "Tell me about Lily"}},
		Format: json.RawMessage(`"json"`), Options: map[string]any{"num_predict": 300, "seed": 1, "temperature": 0.7}},
		func(r api.ChatResponse) error { text.WriteString(r.Message.Content); last = r; return nil })
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(text.String(), "{") {
		t.Errorf(`chat format "json": %q does not start an object`, text.String())
	}
	if last.DoneReason == "stop" {
		var obj map[string]any
		if err := json.Unmarshal([]byte(text.String()), &obj); err != nil {
			t.Errorf(`chat format "json": %q: %v`, text.String(), err)
		}
	}

	// OpenAI chat with response_format json_schema.
	var schema map[string]any
	if err := json.Unmarshal([]byte(personSchema), &schema); err != nil {
		t.Fatal(err)
	}
	cc, err := oa.Chat.Completions.New(ctx, openai.ChatCompletionNewParams{
		Model:     "stories",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("Describe a person")},
		MaxTokens: openai.Int(200), Seed: openai.Int(5),
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONSchema: &shared.ResponseFormatJSONSchemaParam{
			JSONSchema: shared.ResponseFormatJSONSchemaJSONSchemaParam{Name: "person", Schema: schema, Strict: openai.Bool(true)}}},
	})
	if err != nil {
		t.Fatal(err)
	}
	// openai-go sends the schema as a map, whose keys encoding/json sorts:
	// the order of the properties is not the one written above.
	checkPerson(t, "openai json_schema", cc.Choices[0].Message.Content, false)
	if cc.Choices[0].FinishReason != "stop" {
		t.Errorf("openai json_schema: finish_reason %q", cc.Choices[0].FinishReason)
	}

	// OpenAI json_object, streamed.
	st := oa.Chat.Completions.NewStreaming(ctx, openai.ChatCompletionNewParams{
		Model:     "stories",
		Messages:  []openai.ChatCompletionMessageParamUnion{openai.UserMessage("hi")},
		MaxTokens: openai.Int(300), Seed: openai.Int(9), Temperature: openai.Float(0.8),
		ResponseFormat: openai.ChatCompletionNewParamsResponseFormatUnion{OfJSONObject: &shared.ResponseFormatJSONObjectParam{}},
	})
	var acc openai.ChatCompletionAccumulator
	for st.Next() {
		acc.AddChunk(st.Current())
	}
	if err := st.Err(); err != nil {
		t.Fatal(err)
	}
	if out := acc.Choices[0].Message.Content; !strings.HasPrefix(out, "{") {
		t.Errorf("openai json_object: %q does not start an object", out)
	} else if acc.Choices[0].FinishReason == "stop" && !json.Valid([]byte(out)) {
		t.Errorf("openai json_object: %q is not JSON", out)
	}

	// Bad formats: 400 with the problem named, in each API's shape.
	for _, c := range []struct{ path, body, want string }{
		{"/api/generate", `{"model":"stories","prompt":"x","format":{"type":"strange"}}`, "strange"},
		{"/api/generate", `{"model":"stories","prompt":"x","format":{"type":"object","properties":{"a":{"$ref":"#/$defs/missing"}}}}`, "missing"},
		{"/api/chat", `{"model":"stories","messages":[{"role":"user","content":"x"}],"format":"yaml"}`, "format"},
		{"/v1/chat/completions", `{"model":"stories","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema"}}`, "json_schema"},
		{"/v1/chat/completions", `{"model":"stories","messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"name":"x","schema":{"type":7}}}}`, "type"},
	} {
		resp, err := http.Post(base+c.path, "application/json", bytes.NewReader([]byte(c.body)))
		if err != nil {
			t.Fatal(err)
		}
		var e struct {
			Error json.RawMessage `json:"error"`
		}
		json.NewDecoder(resp.Body).Decode(&e)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(e.Error), c.want) {
			t.Errorf("%s %s: %d %s, want 400 naming %q", c.path, c.body, resp.StatusCode, e.Error, c.want)
		}
	}
}
