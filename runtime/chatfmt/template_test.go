package chatfmt

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/hearth-llm/hearth/loader/chat"
)

// testdata/templates are chat templates of real models, as llama.cpp's
// models/templates keeps them (from the models' tokenizer_config.json).
var templateCases = []struct {
	file   string
	syntax Syntax
	think  bool
}{
	{"NousResearch-Hermes-3-Llama-3.1-8B-tool_use", Hermes, false},
	{"Qwen-Qwen2.5-7B-Instruct", Hermes, false},
	{"Qwen-Qwen3-0.6B", Hermes, true},
	{"Qwen3-Coder", QwenXML, false},
	{"Qwen3.5-4B", QwenXML, true},
	{"meta-llama-Llama-3.1-8B-Instruct", Llama3, false},
	{"mistralai-Mistral-Nemo-Instruct-2407", MistralJSON, false},
	{"Mistral-Small-3.2-24B-Instruct-2506", MistralArgs, false},
	{"mistralai-Ministral-3-14B-Reasoning-2512", MistralArgs, true},
	{"openai-gpt-oss-120b", Harmony, true},
	{"deepseek-ai-DeepSeek-R1-Distill-Qwen-32B", DeepSeekR1, true},
	{"google-gemma-2-2b-it", Generic, false},
	{"google-gemma-4-31B-it", Gemma4, true},
	{"microsoft-Phi-3.5-mini-instruct", Generic, false},
}

func loadTemplate(t *testing.T, name string) (*chat.Template, string) {
	t.Helper()
	src, err := os.ReadFile(filepath.Join("testdata", "templates", name+".jinja"))
	if err != nil {
		t.Fatal(err)
	}
	tmpl, err := chat.New(string(src))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return tmpl, string(src)
}

// render renders msgs as the server would.
func render(t *testing.T, tmpl *chat.Template, f Format, c *Conversation, genPrompt bool) string {
	t.Helper()
	p, err := f.Prepare(c)
	if err != nil {
		t.Fatal(err)
	}
	out, err := tmpl.Render(p.Messages, chat.Options{BOSToken: "<s>", EOSToken: "</s>", AddGenerationPrompt: genPrompt, Extra: p.Extra,
		Now: time.Date(2026, 12, 7, 0, 0, 0, 0, time.UTC)})
	if err != nil {
		t.Fatalf("render: %v", err)
	}
	return out
}

// turnEnds are end-of-turn texts templates write after an assistant turn:
// not part of what the model generates (they are its EOG tokens).
var turnEnds = []string{"<|im_end|>", "<|eot_id|>", "<|eom_id|>", "</s>", "<｜end▁of▁sentence｜>", "<|return|>", "<|call|>", "<|end|>", "<end_of_turn>", "<｜Assistant｜>", "<|tool_response>", "<turn|>"}

// TestTemplateRoundTrip renders a conversation whose last assistant turn
// made two calls, cuts out what the template wrote for that turn (the text
// after the generation prompt), and parses it back: the calls must come out
// as they went in. This ties each parser to the syntax the real template
// writes.
func TestTemplateRoundTrip(t *testing.T) {
	tools := []Tool{weatherTool, {Name: "get_time", Description: "Current time", Parameters: []byte(`{"type":"object","properties":{"tz":{"type":"string"}}}`)}}
	for _, tc := range templateCases {
		t.Run(tc.file, func(t *testing.T) {
			tmpl, src := loadTemplate(t, tc.file)
			f := Detect(src)
			if f.Syntax != tc.syntax || f.Thinks != tc.think {
				t.Fatalf("Detect: syntax %v thinks %v; want %v %v", f.Syntax, f.Thinks, tc.syntax, tc.think)
			}
			user := []chat.Message{{Role: "system", Content: "You are helpful."}, {Role: "user", Content: "Weather in Paris and the time?"}}
			calls := []chat.ToolCall{
				{ID: "abcdefghi", Name: "get_weather", Arguments: map[string]any{"city": "Paris", "days": 2}},
				{ID: "jklmnopqr", Name: "get_time", Arguments: map[string]any{"tz": "Europe/Paris"}},
			}
			if tc.syntax == Llama3 || tc.syntax == Harmony {
				calls = calls[:1] // their templates write one call per turn
			}
			conv := &Conversation{Messages: user, Tools: tools, Parallel: true}
			head := render(t, tmpl, f, conv, true)
			if !strings.Contains(head, "get_weather") {
				t.Errorf("the prompt does not show the tools:\n%s", head)
			}
			withCalls := &Conversation{Messages: append(append([]chat.Message{}, user...), chat.Message{Role: "assistant", ToolCalls: calls}), Tools: tools, Parallel: true}
			full := render(t, tmpl, f, withCalls, false)
			// The generation prompt may differ from the history's header
			// (a think block opened or closed): cut at the longest common
			// prefix.
			n := 0
			for n < len(head) && n < len(full) && head[n] == full[n] {
				n++
			}
			for n > 0 && full[n-1] != '>' && full[n-1] != '\n' {
				n-- // not in the middle of a marker
			}
			turn := full[n:]
			if i := strings.LastIndex(turn, "[/INST]"); i >= 0 {
				turn = turn[i+len("[/INST]"):] // Mistral moves the tools to the last user turn
			}
			for changed := true; changed; {
				changed = false
				turn = strings.TrimRight(turn, " \n")
				for _, e := range turnEnds {
					if strings.HasSuffix(turn, e) {
						turn, changed = strings.TrimSuffix(turn, e), true
					}
				}
			}
			o := f.ParseOptions(conv, head)
			got := collect(f.NewParser(o), []string{turn})
			var want []string
			for _, c := range calls {
				want = append(want, c.Name+" "+map[string]string{"get_weather": `{"city":"Paris","days":2}`, "get_time": `{"tz":"Europe/Paris"}`}[c.Name])
			}
			if !sameCalls(got.Calls, want) || strings.TrimSpace(got.Content) != "" || got.Reasoning != "" {
				t.Errorf("turn %q parsed as %+v; want calls %q and no content", turn, got, want)
			}
		})
	}
}

// TestThinkSwitch: enable_thinking reaches templates that take it, and a
// model that cannot think refuses think=true.
func TestThinkSwitch(t *testing.T) {
	tmpl, src := loadTemplate(t, "Qwen-Qwen3-0.6B")
	f := Detect(src)
	msgs := []chat.Message{{Role: "user", Content: "hi"}}
	off := render(t, tmpl, f, &Conversation{Messages: msgs, Think: Think{Set: true}}, true)
	if !strings.HasSuffix(off, "<think>\n\n</think>\n\n") {
		t.Errorf("think off: prompt ends %q", off[max(0, len(off)-40):])
	}
	if o := f.ParseOptions(&Conversation{}, off); o.InReasoning {
		t.Error("think off: parser starts in reasoning")
	}
	on := render(t, tmpl, f, &Conversation{Messages: msgs, Think: Think{Set: true, On: true}}, true)
	if strings.Contains(on, "</think>") {
		t.Errorf("think on: prompt closes the think block: %q", on)
	}
	_, gsrc := loadTemplate(t, "google-gemma-2-2b-it")
	if _, err := Detect(gsrc).Prepare(&Conversation{Messages: msgs, Think: Think{Set: true, On: true}}); err != ErrNoThinking {
		t.Errorf("gemma2 think=true: %v, want ErrNoThinking", err)
	}
	r1, r1src := loadTemplate(t, "deepseek-ai-DeepSeek-R1-Distill-Qwen-32B")
	rf := Detect(r1src)
	p := render(t, r1, rf, &Conversation{Messages: msgs}, true)
	if o := rf.ParseOptions(&Conversation{}, p); !o.InReasoning {
		t.Errorf("R1 distill opens <think> in its prompt (%q): the parser must start in reasoning", p[max(0, len(p)-30):])
	}
	oss, osrc := loadTemplate(t, "openai-gpt-oss-120b")
	hp := render(t, oss, Detect(osrc), &Conversation{Messages: msgs, Think: Think{Set: true, Effort: "high"}}, true)
	if !strings.Contains(hp, "Reasoning: high") {
		t.Errorf("gpt-oss effort high not in the prompt:\n%s", hp)
	}
}

// sameCalls compares "name {json}" lists by the arguments' values, not
// their key order.
func sameCalls(got, want []string) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		gn, ga, _ := strings.Cut(got[i], " ")
		wn, wa, _ := strings.Cut(want[i], " ")
		var g, w any
		if gn != wn || json.Unmarshal([]byte(ga), &g) != nil || json.Unmarshal([]byte(wa), &w) != nil || !reflect.DeepEqual(g, w) {
			return false
		}
	}
	return true
}
