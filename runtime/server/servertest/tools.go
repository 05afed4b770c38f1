package servertest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openai/openai-go"
	"github.com/openai/openai-go/shared"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/chatfmt"
	"github.com/hearth-llm/hearth/runtime/grammar"
	"github.com/hearth-llm/hearth/runtime/sample"
	"github.com/hearth-llm/hearth/runtime/server"
)

// WithTemplate writes a copy of the GGUF file src whose chat template is
// template, into a test's temporary folder, and returns its path.
func WithTemplate(t testing.TB, src, template string) string {
	t.Helper()
	f, err := gguf.Open(src)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	w := gguf.NewWriter()
	w.CopyMetadata(f)
	w.Set("tokenizer.chat_template", gguf.String(template))
	if err := w.CopyTensors(f); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), filepath.Base(src))
	if err := w.WriteFile(out); err != nil {
		t.Fatal(err)
	}
	return out
}

// ToolTemplates are real models' chat templates, one per tool-call syntax
// Hearth parses (runtime/chatfmt/testdata/templates, from llama.cpp's
// models/templates).
var ToolTemplates = map[string]string{
	"hermes":       "Qwen-Qwen3-0.6B",
	"qwen-xml":     "Qwen3-Coder",
	"llama3":       "meta-llama-Llama-3.1-8B-Instruct",
	"mistral-json": "mistralai-Mistral-Nemo-Instruct-2407",
	"mistral-args": "Mistral-Small-3.2-24B-Instruct-2506",
	"harmony":      "openai-gpt-oss-120b",
	"deepseek-r1":  "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B",
	"generic":      "google-gemma-2-2b-it",
	"gemma4":       "google-gemma-4-31B-it",
}

// templateSource reads one of ToolTemplates.
func templateSource(t testing.TB, name string) string {
	t.Helper()
	_, file, _, _ := runtime.Caller(0)
	b, err := os.ReadFile(filepath.Join(filepath.Dir(file), "..", "..", "chatfmt", "testdata", "templates", name+".jinja"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// The tools of ForcedToolCalls: bounded schemas (enum, integer range,
// short strings) so that random weights finish a call in a few dozen
// tokens.
var forcedTools = []openai.ChatCompletionToolParam{
	{Function: shared.FunctionDefinitionParam{Name: "get_weather", Parameters: shared.FunctionParameters{
		"type": "object", "required": []string{"city", "unit"},
		"properties": map[string]any{
			"city": map[string]any{"type": "string", "maxLength": 12},
			"unit": map[string]any{"enum": []string{"C", "F"}},
			"days": map[string]any{"type": "integer", "minimum": 1, "maximum": 7},
		}}}},
	{Function: shared.FunctionDefinitionParam{Name: "set_alarm", Parameters: shared.FunctionParameters{
		"type": "object", "required": []string{"hour", "loud"},
		"properties": map[string]any{
			"hour": map[string]any{"type": "integer", "minimum": 0, "maximum": 23},
			"loud": map[string]any{"type": "boolean"},
		}}}},
}

// validForcedCall checks a call's name and arguments against forcedTools.
func validForcedCall(name, args string) error {
	dec := json.NewDecoder(strings.NewReader(args))
	dec.DisallowUnknownFields()
	switch name {
	case "get_weather":
		var a struct {
			City *string `json:"city"`
			Unit string  `json:"unit"`
			Days *int    `json:"days"`
		}
		if err := dec.Decode(&a); err != nil {
			return err
		}
		if a.City == nil || len([]rune(*a.City)) > 12 || (a.Unit != "C" && a.Unit != "F") || (a.Days != nil && (*a.Days < 1 || *a.Days > 7)) {
			return fmt.Errorf("arguments %s break the schema", args)
		}
	case "set_alarm":
		var a struct {
			Hour *int  `json:"hour"`
			Loud *bool `json:"loud"`
		}
		if err := dec.Decode(&a); err != nil {
			return err
		}
		if a.Hour == nil || *a.Hour < 0 || *a.Hour > 23 || a.Loud == nil {
			return fmt.Errorf("arguments %s break the schema", args)
		}
	default:
		return fmt.Errorf("unknown function %q", name)
	}
	return nil
}

// ForcedToolCalls serves the tiny Llama (SPM vocabulary) model under each of ToolTemplates
// and asks, n times per template at temperature 1 with tool_choice
// required (every third request naming set_alarm), for a call: random
// weights never write one unaided, so each valid call is the grammar's
// doing. Every answer must be exactly one call (parallel_tool_calls
// false) that parses and satisfies its function's schema.
func ForcedToolCalls(t *testing.T, load server.Loader, n int) {
	src := filepath.Join(testdata.Dir(t, "models"), "tiny-llama-spm-Q4_0.gguf")
	files := map[string]string{}
	for syntax, tmpl := range ToolTemplates {
		files[syntax] = WithTemplate(t, src, templateSource(t, tmpl))
	}
	_, oa, _ := Serve(t, load, files)
	for syntax := range ToolTemplates {
		t.Run(syntax, func(t *testing.T) {
			var wg sync.WaitGroup
			var mu sync.Mutex
			valid := 0
			work := make(chan int)
			for range 8 {
				wg.Go(func() {
					for i := range work {
						params := openai.ChatCompletionNewParams{
							Model: syntax, Tools: forcedTools, ParallelToolCalls: openai.Bool(false),
							Messages:    []openai.ChatCompletionMessageParamUnion{openai.UserMessage("What is the weather in Paris?")},
							Temperature: openai.Float(1), Seed: openai.Int(int64(i)), MaxTokens: openai.Int(400),
							ReasoningEffort: "none",
							ToolChoice:      openai.ChatCompletionToolChoiceOptionUnionParam{OfAuto: openai.String("required")},
						}
						want := ""
						if i%3 == 2 {
							want = "set_alarm"
							params.ToolChoice = openai.ChatCompletionToolChoiceOptionUnionParam{OfChatCompletionNamedToolChoice: &openai.ChatCompletionNamedToolChoiceParam{
								Function: openai.ChatCompletionNamedToolChoiceFunctionParam{Name: want}}}
						}
						resp, err := oa.Chat.Completions.New(context.Background(), params)
						if err != nil {
							t.Errorf("request %d: %v", i, err)
							continue
						}
						ch := resp.Choices[0]
						if len(ch.Message.ToolCalls) != 1 || ch.FinishReason != "tool_calls" {
							t.Errorf("request %d: finish %q, %d calls, content %q", i, ch.FinishReason, len(ch.Message.ToolCalls), ch.Message.Content)
							continue
						}
						call := ch.Message.ToolCalls[0].Function
						if err := validForcedCall(call.Name, call.Arguments); err != nil || (want != "" && call.Name != want) {
							t.Errorf("request %d: call %s(%s): %v", i, call.Name, call.Arguments, err)
							continue
						}
						mu.Lock()
						valid++
						mu.Unlock()
					}
				})
			}
			for i := range n {
				work <- i
			}
			close(work)
			wg.Wait()
			t.Logf("%s: %d/%d forced calls valid", syntax, valid, n)
		})
	}
}

// ToolCallOverhead measures what a forced call's grammar costs a decode
// step: the tiny Llama 3 model (128k vocabulary, so masking walks a real
// vocabulary while the model itself is nearly free) generates with no
// grammar and under a Hermes call grammar, and the benchmark reports each
// one's time per generated token and the difference.
func ToolCallOverhead(b *testing.B, load server.Loader) {
	r, err := load(context.Background(), filepath.Join(testdata.Dir(b, "models"), "tiny-llama-bpe-Q4_0.gguf"))
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var tools []chatfmt.Tool
	for _, t := range forcedTools {
		params, _ := json.Marshal(t.Function.Parameters)
		tools = append(tools, chatfmt.Tool{Name: t.Function.Name, Parameters: params})
	}
	conv := &chatfmt.Conversation{Tools: tools, Choice: chatfmt.ChoiceRequired}
	g, err := chatfmt.Format{Syntax: chatfmt.Hermes}.Grammar(conv, chatfmt.ParseOptions{ParseTools: true}, nil)
	if err != nil {
		b.Fatal(err)
	}
	prompt, _ := r.Tokenize("<|start_header_id|>user<|end_header_id|>\n\nWeather?<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", true, true)
	perToken := func(gr *grammar.Grammar, seed int64) (time.Duration, int) {
		o := sample.DefaultOptions()
		o.Temperature, o.Seed = 1, seed
		res, err := r.Generate(context.Background(), &server.Request{Prompt: prompt, NumPredict: 48, Sampling: o, Grammar: gr},
			func(server.Piece) error { return nil })
		if err != nil {
			b.Fatal(err)
		}
		return res.GenDuration, len(res.Tokens)
	}
	var free, constrained time.Duration
	var nFree, nConstrained int
	for i := range b.N {
		d, n := perToken(nil, int64(i))
		free, nFree = free+d, nFree+n
		d, n = perToken(g, int64(i))
		constrained, nConstrained = constrained+d, nConstrained+n
	}
	fu := float64(free.Microseconds()) / float64(max(nFree, 1))
	cu := float64(constrained.Microseconds()) / float64(max(nConstrained, 1))
	b.ReportMetric(fu, "µs/token-free")
	b.ReportMetric(cu, "µs/token-tool-grammar")
	b.ReportMetric(cu-fu, "µs/token-overhead")
}
