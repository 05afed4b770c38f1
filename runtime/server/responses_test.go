package server

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"testing"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/responses"
	"github.com/openai/openai-go/shared"
)

func respInput(s string) responses.ResponseNewParamsInputUnion {
	return responses.ResponseNewParamsInputUnion{OfString: openai.String(s)}
}

func respWeatherTool() responses.ToolUnionParam {
	var params map[string]any
	json.Unmarshal(weatherParams, &params)
	return responses.ToolParamOfFunction("get_weather", params, true)
}

func TestResponsesText(t *testing.T) {
	f := newFake("Hello", " world")
	f.info.Template = testTemplate
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	ctx := context.Background()
	resp, err := e.openai.Responses.New(ctx, responses.ResponseNewParams{Model: "tiny", Input: respInput("Hi there"),
		Instructions: openai.String("Be brief."), Temperature: openai.Float(0.5), Metadata: shared.Metadata{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != "completed" || !strings.HasPrefix(resp.ID, "resp_") || resp.Object != "response" || resp.Model != "tiny" {
		t.Fatalf("response %s", resp.RawJSON())
	}
	if resp.OutputText() != "Hello world" || len(resp.Output) != 1 {
		t.Fatalf("output %s", resp.RawJSON())
	}
	msg := resp.Output[0].AsMessage()
	if msg.Type != "message" || msg.Role != "assistant" || msg.Status != "completed" || !strings.HasPrefix(msg.ID, "msg_") {
		t.Errorf("message %+v", msg)
	}
	if resp.Instructions.OfString != "Be brief." || resp.Temperature != 0.5 || resp.TopP != 1 || resp.Metadata["k"] != "v" ||
		resp.ToolChoice.OfToolChoiceMode != "auto" || !resp.ParallelToolCalls || resp.Text.Format.Type != "text" {
		t.Errorf("echo %s", resp.RawJSON())
	}
	u := resp.Usage
	if u.InputTokens == 0 || u.OutputTokens != 3 || u.TotalTokens != u.InputTokens+3 || u.OutputTokensDetails.ReasoningTokens != 0 {
		t.Errorf("usage %+v", u)
	}
	if p := detok(f.lastRequest(t).Prompt); !strings.Contains(p, "<system>Be brief.\n<user>Hi there\n<assistant>") {
		t.Errorf("prompt %q", p)
	}
	if r := f.lastRequest(t); r.Sampling.Temperature != 0.5 {
		t.Errorf("temperature %v", r.Sampling.Temperature)
	}

	// Stored: GET returns it, DELETE forgets it.
	got, err := e.openai.Responses.Get(ctx, resp.ID, responses.ResponseGetParams{})
	if err != nil || got.ID != resp.ID || got.OutputText() != "Hello world" {
		t.Fatalf("get: %v %+v", err, got)
	}
	if err := e.openai.Responses.Delete(ctx, resp.ID); err != nil {
		t.Fatal(err)
	}
	_, err = e.openai.Responses.Get(ctx, resp.ID, responses.ResponseGetParams{})
	var ae *openai.Error
	if !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound {
		t.Errorf("get after delete: %v", err)
	}
	if status, _, body := e.do("DELETE", "/v1/responses/"+resp.ID, ""); status != http.StatusNotFound || !json.Valid([]byte(body)) {
		t.Errorf("second delete: %d %s", status, body)
	}
}

func TestResponsesTools(t *testing.T) {
	f := templateFake(t, "Qwen-Qwen3-0.6B", qwenCall...)
	e := newEnv(t, map[string]*fakeRunner{"qwen": f}, nil)
	ctx := context.Background()
	params := responses.ResponseNewParams{Model: "qwen", Input: respInput("Weather in Paris?"), Tools: []responses.ToolUnionParam{respWeatherTool()}}
	resp, err := e.openai.Responses.New(ctx, params)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Output) != 2 {
		t.Fatalf("output %s", resp.RawJSON())
	}
	rs := resp.Output[0]
	var raw struct{ Content []respPart }
	json.Unmarshal([]byte(rs.RawJSON()), &raw)
	content := raw.Content
	if rs.Type != "reasoning" || !strings.HasPrefix(rs.ID, "rs_") || len(content) != 1 || content[0] != (respPart{Type: "reasoning_text", Text: "The user wants weather."}) {
		t.Errorf("reasoning item %s", rs.RawJSON())
	}
	call := resp.Output[1].AsFunctionCall()
	if call.Type != "function_call" || call.Name != "get_weather" || call.Arguments != `{"city":"Paris"}` ||
		!strings.HasPrefix(call.CallID, "call_") || !strings.HasPrefix(call.ID, "fc_") || call.Status != "completed" {
		t.Errorf("call %s", resp.Output[1].RawJSON())
	}
	if resp.Usage.OutputTokensDetails.ReasoningTokens == 0 || resp.Usage.OutputTokensDetails.ReasoningTokens >= resp.Usage.OutputTokens {
		t.Errorf("usage %+v", resp.Usage)
	}
	if len(resp.Tools) != 1 || resp.Tools[0].Name != "get_weather" || !resp.Tools[0].Strict {
		t.Errorf("tools echo %s", resp.RawJSON())
	}
	if g := f.lastRequest(t).Grammar; g == nil || len(g.Triggers()) == 0 {
		t.Errorf("auto: want a lazy grammar, got %v", g)
	}
	if p := detok(f.lastRequest(t).Prompt); !strings.Contains(p, `"name": "get_weather"`) || !strings.Contains(p, "<tools>") {
		t.Errorf("the tools are not in the prompt:\n%s", p)
	}

	// The call and its output go back into the template.
	params.Input = responses.ResponseNewParamsInputUnion{OfInputItemList: responses.ResponseInputParam{
		responses.ResponseInputItemParamOfMessage("Weather in Paris?", responses.EasyInputMessageRoleUser),
		responses.ResponseInputItemParamOfFunctionCall(`{"city": "Paris"}`, "call_1", "get_weather"),
		responses.ResponseInputItemParamOfFunctionCallOutput("call_1", "18C and sunny"),
	}}
	if _, err := e.openai.Responses.New(ctx, params); err != nil {
		t.Fatal(err)
	}
	prompt := detok(f.lastRequest(t).Prompt)
	for _, want := range []string{"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>", "<tool_response>\n18C and sunny\n</tool_response>"} {
		if !strings.Contains(prompt, want) {
			t.Errorf("history: prompt lacks %q:\n%s", want, prompt)
		}
	}

	// Forced: required and a named function constrain from the start.
	for _, choice := range []responses.ResponseNewParamsToolChoiceUnion{
		{OfToolChoiceMode: openai.Opt(responses.ToolChoiceOptionsRequired)},
		{OfFunctionTool: &responses.ToolChoiceFunctionParam{Name: "get_weather"}},
	} {
		params.ToolChoice = choice
		resp, err := e.openai.Responses.New(ctx, params)
		if err != nil {
			t.Fatal(err)
		}
		if g := f.lastRequest(t).Grammar; g == nil || len(g.Triggers()) != 0 {
			t.Errorf("%s: want a grammar from the start, got %v", resp.ToolChoice.RawJSON(), g)
		}
	}
	// none: the tools are not shown.
	params.ToolChoice = responses.ResponseNewParamsToolChoiceUnion{OfToolChoiceMode: openai.Opt(responses.ToolChoiceOptionsNone)}
	if _, err := e.openai.Responses.New(ctx, params); err != nil {
		t.Fatal(err)
	}
	if p := detok(f.lastRequest(t).Prompt); strings.Contains(p, "<tools>") || f.lastRequest(t).Grammar != nil {
		t.Errorf("tool_choice none: tools or grammar remain")
	}
}

// TestResponsesReasoningInput: reasoning items, assistant messages and
// the reasoning effort reach the template.
func TestResponsesReasoningInput(t *testing.T) {
	f := templateFake(t, "Qwen-Qwen3-0.6B", "ok")
	e := newEnv(t, map[string]*fakeRunner{"qwen": f}, nil)
	body := `{"model":"qwen","reasoning":{"effort":"none"},"input":[
		{"role":"developer","content":[{"type":"input_text","text":"Dev rules."}]},
		{"role":"user","content":"first"},
		{"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"pondering"}]},
		{"type":"message","role":"assistant","content":[{"type":"output_text","text":"answer one","annotations":[]}]},
		{"role":"user","content":"second"}]}`
	status, _, out := e.do("POST", "/v1/responses", body)
	if status != http.StatusOK {
		t.Fatalf("%d %s", status, out)
	}
	p := detok(f.lastRequest(t).Prompt)
	for _, want := range []string{"<|im_start|>system\nDev rules.", "<|im_start|>assistant\nanswer one", "<|im_start|>user\nsecond", "<think>\n\n</think>"} {
		if !strings.Contains(p, want) {
			t.Errorf("prompt lacks %q:\n%s", want, p)
		}
	}
	g := templateFake(t, "google-gemma-2-2b-it", "ok")
	e = newEnv(t, map[string]*fakeRunner{"gemma": g}, nil)
	status, _, out = e.do("POST", "/v1/responses", `{"model":"gemma","input":"x","reasoning":{"effort":"high"}}`)
	if status != http.StatusBadRequest || !strings.Contains(out, "does not support thinking") {
		t.Errorf("gemma effort high: %d %s", status, out)
	}
}

func TestResponsesFormat(t *testing.T) {
	f := newFake(`{"a":`, `1}`)
	f.info.Template = testTemplate
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	ctx := context.Background()
	schema := map[string]any{"type": "object", "properties": map[string]any{"a": map[string]any{"type": "integer"}}, "required": []string{"a"}}
	resp, err := e.openai.Responses.New(ctx, responses.ResponseNewParams{Model: "tiny", Input: respInput("x"),
		Text: responses.ResponseTextConfigParam{Format: responses.ResponseFormatTextConfigUnionParam{
			OfJSONSchema: &responses.ResponseFormatTextJSONSchemaConfigParam{Name: "obj", Schema: schema, Strict: openai.Bool(true)}}}})
	if err != nil {
		t.Fatal(err)
	}
	if g := f.lastRequest(t).Grammar; g == nil {
		t.Error("json_schema: no grammar")
	}
	if resp.OutputText() != `{"a":1}` || resp.Text.Format.Type != "json_schema" || resp.Text.Format.Name != "obj" {
		t.Errorf("response %s", resp.RawJSON())
	}
	status, _, out := e.do("POST", "/v1/responses", `{"model":"tiny","input":"x","text":{"format":{"type":"json_schema","name":"n","schema":{"type":"object","patternProperties":{"a":{}}}}}}`)
	if status != http.StatusBadRequest || !strings.Contains(out, "text.format.schema") {
		t.Errorf("unenforceable schema: %d %s", status, out)
	}
}

// respEvent is a stream event as the tests read it.
type respEvent struct {
	Type         string          `json:"type"`
	Seq          int             `json:"sequence_number"`
	OutputIndex  *int            `json:"output_index"`
	ItemID       string          `json:"item_id"`
	Item         json.RawMessage `json:"item"`
	Delta        string          `json:"delta"`
	Text         string          `json:"text"`
	Arguments    string          `json:"arguments"`
	Response     json.RawMessage `json:"response"`
	ContentIndex *int            `json:"content_index"`
}

func streamResponse(t *testing.T, e *env, params responses.ResponseNewParams) ([]respEvent, *responses.Response) {
	t.Helper()
	stream := e.openai.Responses.NewStreaming(context.Background(), params)
	var evs []respEvent
	var final *responses.Response
	for stream.Next() {
		cur := stream.Current()
		var ev respEvent
		if err := json.Unmarshal([]byte(cur.RawJSON()), &ev); err != nil {
			t.Fatal(err)
		}
		evs = append(evs, ev)
		switch cur.Type {
		case "response.completed", "response.incomplete", "response.failed":
			r := cur.Response
			final = &r
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatal(err)
	}
	if final == nil {
		t.Fatalf("no final event in %+v", evs)
	}
	return evs, final
}

func TestResponsesStreaming(t *testing.T) {
	pieces := append([]string{"<think>\nLet me", " think.</think>\n\nIt is", " sunny.\n\n<tool"}, qwenCall[4:]...)
	f := templateFake(t, "Qwen-Qwen3-0.6B", pieces...)
	e := newEnv(t, map[string]*fakeRunner{"qwen": f}, nil)
	params := responses.ResponseNewParams{Model: "qwen", Input: respInput("Weather?"), Tools: []responses.ToolUnionParam{respWeatherTool()}}
	evs, final := streamResponse(t, e, params)

	var types []string
	for i, ev := range evs {
		if ev.Seq != i {
			t.Errorf("event %d (%s) has sequence_number %d", i, ev.Type, ev.Seq)
		}
		if len(types) == 0 || types[len(types)-1] != ev.Type {
			types = append(types, ev.Type)
		}
	}
	want := []string{"response.created", "response.in_progress",
		"response.output_item.added", "response.content_part.added", "response.reasoning_text.delta",
		"response.reasoning_text.done", "response.content_part.done", "response.output_item.done",
		"response.output_item.added", "response.content_part.added", "response.output_text.delta",
		"response.output_text.done", "response.content_part.done", "response.output_item.done",
		"response.output_item.added", "response.function_call_arguments.delta", "response.function_call_arguments.done", "response.output_item.done",
		"response.completed"}
	if strings.Join(types, " ") != strings.Join(want, " ") {
		t.Fatalf("events:\n%s\nwant:\n%s", strings.Join(types, "\n"), strings.Join(want, "\n"))
	}

	// Rebuild the output from the events, as a client does, and check
	// ids and indexes agree.
	type item struct {
		id, typ, text, args string
		done                bool
	}
	var items []*item
	for _, ev := range evs {
		switch ev.Type {
		case "response.output_item.added":
			var it struct{ ID, Type string }
			json.Unmarshal(ev.Item, &it)
			if *ev.OutputIndex != len(items) {
				t.Errorf("added at %d, want %d", *ev.OutputIndex, len(items))
			}
			items = append(items, &item{id: it.ID, typ: it.Type})
		case "response.created", "response.in_progress", "response.completed":
		default:
			it := items[*ev.OutputIndex]
			if ev.ItemID != "" && ev.ItemID != it.id {
				t.Errorf("%s: item_id %s at output_index %d, which is %s", ev.Type, ev.ItemID, *ev.OutputIndex, it.id)
			}
			switch ev.Type {
			case "response.reasoning_text.delta", "response.output_text.delta":
				it.text += ev.Delta
			case "response.reasoning_text.done", "response.output_text.done":
				if ev.Text != it.text {
					t.Errorf("%s: text %q, deltas made %q", ev.Type, ev.Text, it.text)
				}
			case "response.function_call_arguments.delta":
				it.args += ev.Delta
			case "response.function_call_arguments.done":
				if ev.Arguments != it.args {
					t.Errorf("arguments %q, deltas made %q", ev.Arguments, it.args)
				}
			case "response.output_item.done":
				it.done = true
			}
		}
	}
	if len(items) != 3 || items[0].text != "Let me think." || items[1].text != "It is sunny." || items[2].args != `{"city":"Paris"}` {
		t.Errorf("items %+v %+v %+v", items[0], items[1], items[2])
	}
	if final.Status != "completed" || len(final.Output) != 3 || final.OutputText() != items[1].text ||
		final.Output[2].AsFunctionCall().Name != "get_weather" || final.Usage.OutputTokens == 0 {
		t.Errorf("final %s", final.RawJSON())
	}
	for i, it := range items {
		if !it.done || final.Output[i].ID != it.id {
			t.Errorf("item %d: done %v, id %s, final %s", i, it.done, it.id, final.Output[i].ID)
		}
	}

	// An unknown model is a plain 404 before any event.
	params.Model = "nope"
	stream := e.openai.Responses.NewStreaming(context.Background(), params)
	for stream.Next() {
	}
	var ae *openai.Error
	if err := stream.Err(); !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound {
		t.Errorf("unknown model: %v", stream.Err())
	}
}

func TestResponsesPrevious(t *testing.T) {
	f := newFake("Paris")
	f.info.Template = testTemplate
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	ctx := context.Background()
	first, err := e.openai.Responses.New(ctx, responses.ResponseNewParams{Model: "tiny", Input: respInput("Capital of France?"),
		Instructions: openai.String("FIRST RULES")})
	if err != nil {
		t.Fatal(err)
	}
	second, err := e.openai.Responses.New(ctx, responses.ResponseNewParams{Model: "tiny", Input: respInput("And of Italy?"),
		PreviousResponseID: openai.String(first.ID)})
	if err != nil {
		t.Fatal(err)
	}
	p := detok(f.lastRequest(t).Prompt)
	if !strings.Contains(p, "<user>Capital of France?\n<assistant>Paris\n<user>And of Italy?\n<assistant>") || strings.Contains(p, "FIRST RULES") {
		t.Errorf("continued prompt %q", p)
	}
	if second.PreviousResponseID != first.ID {
		t.Errorf("previous_response_id echo %q", second.PreviousResponseID)
	}
	// A chain: the third sees both turns.
	if _, err := e.openai.Responses.New(ctx, responses.ResponseNewParams{Model: "tiny", Input: respInput("Spain?"),
		PreviousResponseID: openai.String(second.ID)}); err != nil {
		t.Fatal(err)
	}
	if p := detok(f.lastRequest(t).Prompt); !strings.Contains(p, "France?\n<assistant>Paris\n<user>And of Italy?\n<assistant>Paris\n<user>Spain?") {
		t.Errorf("chained prompt %q", p)
	}

	// store=false is not kept; an unknown id is a 404 naming the field.
	unstored, err := e.openai.Responses.New(ctx, responses.ResponseNewParams{Model: "tiny", Input: respInput("x"), Store: openai.Bool(false)})
	if err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{unstored.ID, "resp_nope"} {
		_, err := e.openai.Responses.New(ctx, responses.ResponseNewParams{Model: "tiny", Input: respInput("y"), PreviousResponseID: openai.String(id)})
		var ae *openai.Error
		if !errors.As(err, &ae) || ae.StatusCode != http.StatusNotFound || ae.Code != "previous_response_not_found" ||
			ae.Param != "previous_response_id" || !strings.Contains(ae.Message, id) {
			t.Errorf("previous %s: %v", id, err)
		}
	}
}

func TestResponsesIncomplete(t *testing.T) {
	f := newFake("a", "b", "c", "d")
	f.info.Template = testTemplate
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	params := responses.ResponseNewParams{Model: "tiny", Input: respInput("x"), MaxOutputTokens: openai.Int(2)}
	resp, err := e.openai.Responses.New(context.Background(), params)
	if err != nil {
		t.Fatal(err)
	}
	if resp.Status != "incomplete" || resp.IncompleteDetails.Reason != "max_output_tokens" || resp.OutputText() != "ab" ||
		resp.Output[0].Status != "incomplete" || resp.MaxOutputTokens != 2 || f.lastRequest(t).NumPredict != 2 {
		t.Errorf("response %s", resp.RawJSON())
	}
	evs, final := streamResponse(t, e, params)
	if last := evs[len(evs)-1]; last.Type != "response.incomplete" || final.IncompleteDetails.Reason != "max_output_tokens" {
		t.Errorf("stream ends with %s: %s", last.Type, final.RawJSON())
	}
}

func TestRespStoreBounds(t *testing.T) {
	rs := newRespStore(2, 1000)
	rs.put("a", nil, []byte("{}"))
	rs.put("b", nil, []byte("{}"))
	rs.history("a") // a is now the most recent
	rs.put("c", nil, []byte("{}"))
	if _, ok := rs.body("b"); ok {
		t.Error("b survived: the least recently used goes first")
	}
	if _, ok := rs.body("a"); !ok {
		t.Error("a was evicted")
	}
	rs.put("big", nil, make([]byte, 2000))
	if _, ok := rs.body("big"); ok {
		t.Error("a response over the byte budget was kept")
	}
	rs.put("d", nil, make([]byte, 900))
	rs.put("e", nil, make([]byte, 900))
	if _, ok := rs.body("d"); ok || rs.bytes > rs.maxBytes || rs.lru.Len() != 1 {
		t.Errorf("%d bytes in %d responses", rs.bytes, rs.lru.Len())
	}
}
