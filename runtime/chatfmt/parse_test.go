package chatfmt

import (
	"encoding/json"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
)

// result is a whole generation's parse, call ids left out (they are
// random unless the model wrote one).
type result struct {
	Content, Reasoning string
	Calls              []string // name + " " + arguments
}

func collect(p Parser, chunks []string) result {
	var d Delta
	for _, c := range chunks {
		d.Add(p.Push(c))
	}
	d.Add(p.Finish())
	r := result{Content: d.Content, Reasoning: d.Reasoning}
	for _, c := range d.Calls {
		if !json.Valid([]byte(c.Arguments)) || c.ID == "" {
			r.Calls = append(r.Calls, "INVALID "+c.Arguments)
			continue
		}
		r.Calls = append(r.Calls, c.Name+" "+c.Arguments)
	}
	return r
}

// splits cuts s into pieces: whole, every byte, and random chunkings.
func splits(s string, rng *rand.Rand) [][]string {
	out := [][]string{{s}}
	var bytes []string
	for i := range len(s) {
		bytes = append(bytes, s[i:i+1])
	}
	out = append(out, bytes)
	for range 20 {
		var cs []string
		for rest := s; rest != ""; {
			n := min(len(rest), 1+rng.IntN(8))
			cs = append(cs, rest[:n])
			rest = rest[n:]
		}
		out = append(out, cs)
	}
	return out
}

var weatherTool = Tool{Name: "get_weather", Parameters: json.RawMessage(`{"type":"object","properties":{"city":{"type":"string"},"days":{"type":"integer"}},"required":["city"]}`)}

func TestParse(t *testing.T) {
	hermes := Format{Syntax: Hermes, ThinkStart: "<think>", ThinkEnd: "</think>", Thinks: true}
	cases := []struct {
		name string
		f    Format
		o    ParseOptions
		out  string
		want result
	}{
		{"plain", hermes, ParseOptions{ParseTools: true}, "Hello <b>there</b> <tool", result{Content: "Hello <b>there</b> <tool"}},
		{"hermes call", hermes, ParseOptions{ParseTools: true},
			"Let me check.<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>",
			result{Content: "Let me check.", Calls: []string{`get_weather {"city":"Paris"}`}}},
		{"hermes two calls and think", hermes, ParseOptions{ParseTools: true},
			"<think>\nuser wants weather\n</think>\n\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"city\": \"Paris\"}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": \"{\\\"city\\\": \\\"Rome\\\"}\"}\n</tool_call>",
			result{Reasoning: "user wants weather", Calls: []string{`get_weather {"city":"Paris"}`, `get_weather {"city":"Rome"}`}}},
		{"hermes tools off", hermes, ParseOptions{},
			"<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>",
			result{Content: "<tool_call>{\"name\": \"f\", \"arguments\": {}}</tool_call>"}},
		{"hermes malformed is content", hermes, ParseOptions{ParseTools: true},
			"<tool_call>{\"name\": oops}</tool_call>", result{Content: "<tool_call>{\"name\": oops}</tool_call>"}},
		{"hermes cut short is content", hermes, ParseOptions{ParseTools: true},
			"ok <tool_call>{\"name\": \"f\", \"argu", result{Content: "ok <tool_call>{\"name\": \"f\", \"argu"}},
		{"think opened by prompt", hermes, ParseOptions{InReasoning: true}, "hmm</think>\n\nAnswer.", result{Reasoning: "hmm", Content: "Answer."}},
		{"think unclosed", hermes, ParseOptions{}, "<think>still thinking", result{Reasoning: "still thinking"}},
		{"think not at start is content", hermes, ParseOptions{}, "a <think>b</think>", result{Content: "a <think>b</think>"}},
		{"no reasoning asked", hermes, ParseOptions{NoReasoning: true}, "<think>x</think>y", result{Content: "<think>x</think>y"}},
		{"call ends reasoning", Format{Syntax: QwenXML, ThinkStart: "<think>", ThinkEnd: "</think>"}, ParseOptions{ParseTools: true, InReasoning: true, Tools: []Tool{weatherTool}},
			"plan<tool_call>\n<function=get_weather>\n<parameter=city>\nNew York\n</parameter>\n<parameter=days>\n3\n</parameter>\n</function>\n</tool_call>",
			result{Reasoning: "plan", Calls: []string{`get_weather {"city":"New York","days":3}`}}},
		{"qwen xml without tool_call", Format{Syntax: QwenXML}, ParseOptions{ParseTools: true, Tools: []Tool{weatherTool}},
			"<function=get_weather>\n<parameter=city>\n42\n</parameter>\n</function>",
			result{Calls: []string{`get_weather {"city":"42"}`}}},
		{"llama3", Format{Syntax: Llama3}, ParseOptions{ParseTools: true},
			` {"name": "get_weather", "parameters": {"city": "Oslo"}}`, result{Calls: []string{`get_weather {"city":"Oslo"}`}}},
		{"llama3 python tag", Format{Syntax: Llama3}, ParseOptions{ParseTools: true},
			`<|python_tag|>{"name": "get_weather", "parameters": {"city": "Oslo"}}; {"name": "get_weather", "parameters": {"city": "Bergen"}}`,
			result{Calls: []string{`get_weather {"city":"Oslo"}`, `get_weather {"city":"Bergen"}`}}},
		{"llama3 json content", Format{Syntax: Llama3}, ParseOptions{ParseTools: true}, `{"answer": 42}`, result{Content: `{"answer": 42}`}},
		{"llama3 json with a name", Format{Syntax: Llama3}, ParseOptions{ParseTools: true, Tools: []Tool{weatherTool}}, `Here: {"name": "Bob", "age": 3}`, result{Content: `Here: {"name": "Bob", "age": 3}`}},
		{"llama3 unknown function", Format{Syntax: Llama3}, ParseOptions{ParseTools: true, Tools: []Tool{weatherTool}}, `{"name": "Bob", "parameters": {}}`, result{Content: `{"name": "Bob", "parameters": {}}`}},
		{"llama3 text", Format{Syntax: Llama3}, ParseOptions{ParseTools: true}, `It is {"a": 1}`, result{Content: `It is {"a": 1}`}},
		{"mistral json", Format{Syntax: MistralJSON}, ParseOptions{ParseTools: true},
			`[TOOL_CALLS][{"name": "get_weather", "arguments": {"city": "Lyon"}, "id": "abcdefghi"}, {"name": "get_weather", "arguments": {"city": "Nice"}}]`,
			result{Calls: []string{`get_weather {"city":"Lyon"}`, `get_weather {"city":"Nice"}`}}},
		{"mistral args", Format{Syntax: MistralArgs}, ParseOptions{ParseTools: true},
			`Sure.[TOOL_CALLS]get_weather[ARGS]{"city": "Lyon"}[TOOL_CALLS]get_weather[CALL_ID]a1b2c3d4e[ARGS]{"city": "Nice"}`,
			result{Content: "Sure.", Calls: []string{`get_weather {"city":"Lyon"}`, `get_weather {"city":"Nice"}`}}},
		{"mistral think", Format{Syntax: MistralArgs, ThinkStart: "[THINK]", ThinkEnd: "[/THINK]"}, ParseOptions{ParseTools: true},
			`[THINK]weather?[/THINK][TOOL_CALLS]get_weather[ARGS]{}`,
			result{Reasoning: "weather?", Calls: []string{`get_weather {}`}}},
		{"deepseek", Format{Syntax: DeepSeekR1, ThinkStart: "<think>", ThinkEnd: "</think>"}, ParseOptions{ParseTools: true, InReasoning: true},
			"ok</think>" + dsCallsBegin + dsCallBegin + "function" + dsSep + "get_weather\n```json\n{\"city\": \"Kyiv\"}\n```" + dsCallEnd + "\n" + dsCallBegin + "function" + dsSep + "get_weather\n```json\n{\"city\": \"Lviv\"}\n```" + dsCallEnd + dsCallsEnd,
			result{Reasoning: "ok", Calls: []string{`get_weather {"city":"Kyiv"}`, `get_weather {"city":"Lviv"}`}}},
		{"generic", Format{Syntax: Generic}, ParseOptions{ParseTools: true},
			`{"tool_calls": [{"name": "get_weather", "arguments": {"city": "Riga"}}]}`, result{Calls: []string{`get_weather {"city":"Riga"}`}}},
		{"generic other json", Format{Syntax: Generic}, ParseOptions{ParseTools: true}, `{"city": "Riga"}`, result{Content: `{"city": "Riga"}`}},
		{"harmony", Format{Syntax: Harmony}, ParseOptions{ParseTools: true},
			"<|channel|>analysis<|message|>Need weather.<|end|><|start|>assistant<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"city\": \"Oslo\"}",
			result{Reasoning: "Need weather.", Calls: []string{`get_weather {"city":"Oslo"}`}}},
		{"harmony final", Format{Syntax: Harmony}, ParseOptions{},
			"<|channel|>analysis<|message|>Think.<|end|><|start|>assistant<|channel|>final<|message|>Done <|end",
			result{Reasoning: "Think.", Content: "Done <|end"}},
		{"harmony recipient in role", Format{Syntax: Harmony}, ParseOptions{ParseTools: true},
			"<|start|>assistant to=functions.get_weather<|channel|>commentary json<|message|>{\"city\": \"Oslo\"}<|call|>",
			result{Calls: []string{`get_weather {"city":"Oslo"}`}}},
		{"gemma4", Format{Syntax: Gemma4, ThinkStart: g4Thought, ThinkEnd: g4Channel}, ParseOptions{ParseTools: true},
			g4Thought + "\nweather?\n" + g4Channel + "Sure." + g4CallHead + `get_weather{city:<|"|>Paris, "FR"<|"|>,days:3,opts:{<|"|>deep<|"|>:[true,null,-1.5e2]}}` + g4CallEnd,
			result{Reasoning: "weather?", Content: "Sure.", Calls: []string{`get_weather {"city":"Paris, \"FR\"","days":3,"opts":{"deep":[true,null,-1.5e2]}}`}}},
		{"harmony plain", Format{Syntax: Harmony}, ParseOptions{}, "Just text", result{Content: "Just text"}},
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			for _, chunks := range splits(c.out, rng) {
				got := collect(c.f.NewParser(c.o), chunks)
				if !reflect.DeepEqual(got, c.want) {
					t.Fatalf("chunks %q:\n got %+v\nwant %+v", chunks, got, c.want)
				}
			}
		})
	}
}

// TestParseNeverLeaksMarkers: whatever the output, content never holds a
// whole tool-call marker once calls were parsed from it, and pushing in
// pieces gives what pushing at once gives.
func TestParseChunkingInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	atoms := []string{"<tool_call>", "</tool_call>", "<think>", "</think>", `{"name": "f", "arguments": {}}`, "x", " ", "\n", "{", "}", "<", "[TOOL_CALLS]", "[ARGS]", "<|channel|>", "<|message|>", "<|end|>", "analysis", "final"}
	for _, f := range []Format{{Syntax: Hermes, ThinkStart: "<think>", ThinkEnd: "</think>"}, {Syntax: MistralArgs}, {Syntax: Harmony}, {Syntax: Llama3}, {Syntax: QwenXML}} {
		for range 300 {
			var b strings.Builder
			for range 1 + rng.IntN(12) {
				b.WriteString(atoms[rng.IntN(len(atoms))])
			}
			out := b.String()
			o := ParseOptions{ParseTools: true}
			want := collect(f.NewParser(o), []string{out})
			for _, chunks := range splits(out, rng)[1:3] {
				if got := collect(f.NewParser(o), chunks); !reflect.DeepEqual(got, want) {
					t.Fatalf("%v %q: chunked %+v, whole %+v", f.Syntax, out, got, want)
				}
			}
		}
	}
}
