package chatfmt

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hearth-llm/hearth/runtime/grammar"
)

// testVocab has every byte as a token, a few words, and the formats'
// markers as single tokens (as preserved special tokens are); token 0 is
// the end of generation.
func testVocab() (*grammar.Vocab, [][]byte) {
	pieces := [][]byte{nil}
	for b := range 256 {
		pieces = append(pieces, []byte{byte(b)})
	}
	words := []string{"<tool_call>", "</tool_call>", "<think>", "</think>", "<function=", "<parameter=", "</parameter>", "</function>",
		`{"name": "`, `"arguments": `, "get_weather", "get_time", "city", "Paris", " the", " weather", "\n\n", "[TOOL_CALLS]", "[ARGS]",
		hChannel, hMessage, hEnd, hStart, hConstrain, g4Call, g4CallEnd, g4Quote, g4Thought, g4Channel, "commentary", "analysis", " to=functions.", "json", dsCallsBegin, dsCallBegin, dsSep, dsCallEnd, dsCallsEnd}
	for _, w := range words {
		pieces = append(pieces, []byte(w))
	}
	return grammar.NewVocab(pieces, []int32{0}), pieces
}

// sample draws a token from random logits under m's mask, favouring the
// end token a little so walks finish.
func sample(rng *rand.Rand, m *grammar.Matcher, n int) int32 {
	logits := make([]float32, n)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64())
	}
	logits[0] += 2
	m.Mask(logits)
	best, bv := int32(-1), float32(math.Inf(-1))
	for i, v := range logits {
		// Gumbel-max: a sample at temperature 1.
		if math.IsInf(float64(v), -1) {
			continue
		}
		g := v - float32(math.Log(-math.Log(rng.Float64())))
		if g > bv {
			best, bv = int32(i), g
		}
	}
	return best
}

var constrainedTools = []Tool{
	weatherTool,
	{Name: "get_time", Parameters: json.RawMessage(`{"type":"object","properties":{"tz":{"type":"string","enum":["UTC","CET"]},"exact":{"type":"boolean"}},"required":["tz","exact"]}`)},
}

// validCall checks a call against constrainedTools' schemas.
func validCall(c Call) bool {
	var args map[string]any
	if json.Unmarshal([]byte(c.Arguments), &args) != nil {
		return false
	}
	switch c.Name {
	case "get_weather":
		city, ok := args["city"].(string)
		if !ok || city != city {
			return false
		}
		if d, ok := args["days"]; ok {
			f, isNum := d.(float64)
			return isNum && f == math.Trunc(f)
		}
		return len(args) <= 2
	case "get_time":
		tz, _ := args["tz"].(string)
		_, isBool := args["exact"].(bool)
		return (tz == "UTC" || tz == "CET") && isBool && len(args) == 2
	}
	return false
}

// TestForcedCallsAlwaysParse: with tool_choice required, random sampling
// under the grammar always yields calls that parse and satisfy their
// schemas, in every syntax, thinking or not, parallel or not.
func TestForcedCallsAlwaysParse(t *testing.T) {
	v, pieces := testVocab()
	rng := rand.New(rand.NewPCG(7, 8))
	formats := []Format{
		{Syntax: Hermes, ThinkStart: "<think>", ThinkEnd: "</think>", Thinks: true},
		{Syntax: QwenXML, ThinkStart: "<think>", ThinkEnd: "</think>", Thinks: true},
		{Syntax: Llama3}, {Syntax: MistralJSON}, {Syntax: MistralArgs, ThinkStart: "[THINK]", ThinkEnd: "[/THINK]"},
		{Syntax: DeepSeekR1, ThinkStart: "<think>", ThinkEnd: "</think>"}, {Syntax: Harmony}, {Syntax: Generic},
		{Syntax: Gemma4, ThinkStart: g4Thought, ThinkEnd: g4Channel, Thinks: true},
	}
	for _, f := range formats {
		for _, choice := range []Choice{ChoiceRequired, ChoiceFunction} {
			for _, parallel := range []bool{false, true} {
				c := &Conversation{Tools: constrainedTools, Choice: choice, Function: "get_time", Parallel: parallel}
				o := ParseOptions{Tools: c.Tools, ParseTools: true, InReasoning: f.Syntax == DeepSeekR1}
				g, err := f.Grammar(c, o, nil)
				if err != nil {
					t.Fatalf("%v: %v", f.Syntax, err)
				}
				for walk := range 40 {
					m := g.NewMatcher(v)
					p := f.NewParser(o)
					var d Delta
					text := ""
					for steps := 0; !m.Done() && steps < 400; steps++ {
						tok := sample(rng, m, len(pieces))
						if tok < 0 {
							t.Fatalf("%v: every token masked after %q", f.Syntax, text)
						}
						if err := m.Accept(tok); err != nil {
							t.Fatalf("%v: Accept(%q) after %q: %v", f.Syntax, pieces[tok], text, err)
						}
						if tok == 0 {
							break
						}
						text += string(pieces[tok])
						d.Add(p.Push(string(pieces[tok])))
					}
					d.Add(p.Finish())
					if !m.Complete() {
						continue // cut at the step bound: a prefix, not a document
					}
					if len(d.Calls) == 0 || (!parallel && len(d.Calls) != 1) {
						t.Fatalf("%v choice %d parallel %v walk %d: %d calls from %q (content %q)", f.Syntax, choice, parallel, walk, len(d.Calls), text, d.Content)
					}
					for _, call := range d.Calls {
						if !validCall(call) || (choice == ChoiceFunction && call.Name != "get_time") {
							t.Fatalf("%v: invalid call %+v from %q", f.Syntax, call, text)
						}
					}
					if f.Syntax != Harmony && slices.ContainsFunc([]string{d.Content}, func(s string) bool { return len(s) > 0 && s != "\n" }) {
						t.Errorf("%v: content %q beside forced calls in %q", f.Syntax, d.Content, text)
					}
				}
			}
		}
	}
}

// TestLazyCallsParse: with tool_choice auto, text before the trigger is
// free, and a call, once triggered, parses.
func TestLazyCallsParse(t *testing.T) {
	v, pieces := testVocab()
	rng := rand.New(rand.NewPCG(9, 10))
	for _, f := range []Format{{Syntax: Hermes}, {Syntax: MistralArgs}, {Syntax: QwenXML}, {Syntax: Harmony}} {
		c := &Conversation{Tools: constrainedTools, Choice: ChoiceAuto, Parallel: true}
		o := ParseOptions{Tools: c.Tools, ParseTools: true}
		g, err := f.Grammar(c, o, nil)
		if err != nil {
			t.Fatal(err)
		}
		trigger := map[Syntax]string{Hermes: "<tool_call>", MistralArgs: "[TOOL_CALLS]", QwenXML: "<tool_call>", Harmony: hChannel + "commentary to=functions."}[f.Syntax]
		for range 30 {
			m := g.NewMatcher(v)
			p := f.NewParser(o)
			var d Delta
			text := "Let me look that up." + trigger
			for _, b := range []byte(text) {
				tok := int32(b) + 1
				if err := m.Accept(tok); err != nil {
					t.Fatalf("%v: Accept %q: %v", f.Syntax, b, err)
				}
			}
			d.Add(p.Push(text))
			for steps := 0; !m.Done() && steps < 400; steps++ {
				tok := sample(rng, m, len(pieces))
				if err := m.Accept(tok); err != nil {
					t.Fatal(err)
				}
				if tok == 0 {
					break
				}
				d.Add(p.Push(string(pieces[tok])))
			}
			d.Add(p.Finish())
			if !m.Complete() {
				continue
			}
			if d.Content != "Let me look that up." || len(d.Calls) == 0 {
				t.Fatalf("%v: content %q, %d calls", f.Syntax, d.Content, len(d.Calls))
			}
			for _, call := range d.Calls {
				if !validCall(call) {
					t.Fatalf("%v: invalid call %+v", f.Syntax, call)
				}
			}
		}
	}
}
