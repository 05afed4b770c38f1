package grammar

import (
	"encoding/json"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
	"unicode/utf8"
)

// Tool schemas of the format tests.
const (
	weatherSchema = `{"type":"object","properties":{"location":{"type":"string"},"unit":{"enum":["c","f"]}},"required":["location"]}`
	searchSchema  = `{"type":"object","properties":{"query":{"type":"string","maxLength":40},"n":{"type":"integer","minimum":1,"maximum":10}},"required":["query"]}`
)

type testTool struct{ name, schema string }

var testTools = []testTool{{"get_weather", weatherSchema}, {"search", searchSchema}}

// callObject is {"name": NAME, "<args>": ARGS} as a JSON schema: any
// whitespace, the members in this order.
func callObject(t testTool, args string) Expr {
	return Schema([]byte(`{"type":"object","properties":{"name":{"const":"` + t.name + `"},"` + args + `":` + t.schema + `},"required":["name","` + args + `"]}`))
}

// The grammars of the tool-call formats, as the integrator would spell them.
func hermesExpr() Expr {
	var calls []Expr
	for _, t := range testTools {
		calls = append(calls, callObject(t, "arguments"))
	}
	call := Seq(Lit("<tool_call>\n"), Alt(calls...), Lit("\n</tool_call>"))
	return Sep(call, Lit("\n"), 1)
}

func llama3Expr() Expr {
	var calls []Expr
	for _, t := range testTools {
		calls = append(calls, Seq(Lit(`{"name": "`+t.name+`", "parameters": `), Schema([]byte(t.schema)), Lit("}")))
	}
	return Alt(calls...)
}

func mistralArrayExpr() Expr {
	var calls []Expr
	for _, t := range testTools {
		calls = append(calls, callObject(t, "arguments"))
	}
	return Seq(Lit("[TOOL_CALLS]["), Sep(Alt(calls...), Lit(", "), 1), Lit("]"))
}

func mistralArgsExpr() Expr {
	var calls []Expr
	for _, t := range testTools {
		calls = append(calls, Seq(Lit(t.name+"[ARGS]"), Schema([]byte(t.schema))))
	}
	return Repeat(Seq(Lit("[TOOL_CALLS]"), Alt(calls...)), 1, -1)
}

// xmlExpr is Qwen3-Coder's XML: string parameters raw, others JSON;
// required parameters in order, then the optional ones.
func xmlExpr() Expr {
	param := func(name string, val Expr) Expr {
		return Seq(Lit("<parameter="+name+">\n"), val, Lit("\n</parameter>\n"))
	}
	raw := TextUntil("\n</parameter>")
	weather := Seq(Lit("<function=get_weather>\n"), param("location", raw), Opt(param("unit", Schema([]byte(`{"enum":["c","f"]}`)))))
	search := Seq(Lit("<function=search>\n"), param("query", raw), Opt(param("n", Schema([]byte(`{"type":"integer","minimum":1,"maximum":10}`)))))
	return Sep(Seq(Lit("<tool_call>\n"), Alt(weather, search), Lit("</function>\n</tool_call>")), Lit("\n"), 1)
}

func harmonyExpr() Expr {
	var calls []Expr
	for _, t := range testTools {
		calls = append(calls, Seq(Lit(t.name+" <|constrain|>json<|message|>"), Schema([]byte(t.schema))))
	}
	return Seq(Lit("<|channel|>commentary to=functions."), Alt(calls...), Lit("<|call|>"))
}

// thinkingExpr is reasoning, then content or Hermes tool calls (a
// non-lazy grammar for tool_choice "required" of a thinking model).
func thinkingExpr() Expr {
	return Seq(Lit("<think>"), TextUntil("</think>"), Lit("</think>"), Ws(), hermesExpr())
}

func mustCompile(t testing.TB, e Expr) *Grammar {
	t.Helper()
	g, err := Compile(e)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestComposeBytes(t *testing.T) {
	for _, tc := range []struct {
		name    string
		e       Expr
		valid   []string
		invalid []reject
	}{
		{"lit", Lit("abc"), []string{"abc"}, []reject{{"ab", -1}, {"abd", 2}, {"abcd", 3}}},
		{"empty", Seq(), []string{""}, []reject{{"a", 0}}},
		{"alt", Alt(Lit("ab"), Lit("ac"), Lit("a")), []string{"ab", "ac", "a"}, []reject{{"ad", 1}}},
		{"repeat", Repeat(Lit("ab"), 2, 3), []string{"abab", "ababab"}, []reject{{"ab", -1}, {"abababab", 6}}},
		{"repeat-unbounded", Repeat(Alt(Lit("a"), Seq()), 1, -1), []string{"", "a", "aaaaaaaa"}, nil},
		{"sep", Sep(Lit("x"), Lit(","), 0), []string{"", "x", "x,x,x"}, []reject{{"x,", -1}, {",", 0}}},
		{"opt-ws", Seq(Lit("["), Ws(), Opt(JSONString()), Ws(), Lit("]")), []string{"[]", `[ "a" ]`, "[\n  \"b\"]"}, []reject{{`["a" "b"]`, 5}}},
		{"anyjson", Seq(AnyJSON(), Lit(";")), []string{`1;`, `"x";`, `[{"a":null}];`}, []reject{{`{a};`, 1}}},
		{"text", Seq(TextUntil("</think>"), Lit("</think>")), []string{"</think>", "a</think>", "é <b></thin</think>", "<</think>"}, []reject{{"a</think>b", 9}, {"a</thin", -1}, {"\xff", 0}}},
		{"text-border", Seq(TextUntil("abab"), Lit("abab")), []string{"abab", "aabab", "bbabab"[1:]}, []reject{{"ababab", 4}}},
		{"text-none", TextUntil(), []string{"", "anything </think> at all\x00"}, []reject{{"\xc3(", 1}}},
		{"schema-ref", Seq(Schema([]byte(`{"type":"array","items":{"$ref":"#"},"maxItems":1}`)), Lit(" "), Schema([]byte(`{"anyOf":[{"type":"null"},{"type":"object","properties":{"a":{"$ref":"#"}}}]}`))),
			[]string{`[[]] {"a":{"a":null}}`, `[] null`}, []reject{{`[[1]]`, 2}}},
		{"hermes", hermesExpr(), []string{
			"<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"Paris\"}}\n</tool_call>",
			"<tool_call>\n{\"name\":\"search\",\"arguments\":{\"query\":\"go\",\"n\":3}}\n</tool_call>\n<tool_call>\n{\"name\": \"get_weather\", \"arguments\": {\"location\": \"X\", \"unit\": \"c\"}}\n</tool_call>",
		}, []reject{
			{"<tool_call>\n{\"name\": \"other\"", 22},
			{"<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"go\", \"n\": 11", 66},
			{"<tool_call>\n{\"name\": \"search\", \"arguments\": {}}", 45},
		}},
		{"llama3", llama3Expr(), []string{`{"name": "get_weather", "parameters": {"location": "Paris", "unit": "f"}}`}, []reject{{`{"name": "get_weather", "arguments"`, 25}}},
		{"mistral-array", mistralArrayExpr(), []string{`[TOOL_CALLS][{"name": "search", "arguments": {"query": "x"}}, {"name":"get_weather","arguments":{"location":"y"}}]`}, []reject{{`[TOOL_CALLS][]`, 13}}},
		{"mistral-args", mistralArgsExpr(), []string{`[TOOL_CALLS]search[ARGS]{"query": "x"}[TOOL_CALLS]get_weather[ARGS]{"location":"y"}`}, []reject{{`[TOOL_CALLS]search[ARGS]{"location"`, 26}}},
		{"xml", xmlExpr(), []string{
			"<tool_call>\n<function=get_weather>\n<parameter=location>\nNew York, \"NY\"\n</parameter>\n<parameter=unit>\n\"f\"\n</parameter>\n</function>\n</tool_call>",
			"<tool_call>\n<function=search>\n<parameter=query>\nmulti\nline </param\n</parameter>\n</function>\n</tool_call>",
		}, []reject{
			{"<tool_call>\n<function=search>\n<parameter=n>\n", 41},
			{"<tool_call>\n<function=search>\n<parameter=query>\nq\n</parameter>\n<parameter=n>\n12", 78},
		}},
		{"harmony", harmonyExpr(), []string{`<|channel|>commentary to=functions.search <|constrain|>json<|message|>{"query":"weather"}<|call|>`}, []reject{{`<|channel|>commentary to=functions.search <|constrain|>json<|message|>{"q"`, 73}}},
		{"thinking", thinkingExpr(), []string{"<think>\nLet me call <tool_call> maybe.\n</think>\n<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"q\"}}\n</tool_call>"}, []reject{{"<think></think>hello", 15}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			checkDocs(t, mustCompile(t, tc.e), tc.valid, tc.invalid)
		})
	}
}

func TestComposeErrors(t *testing.T) {
	for _, tc := range []struct {
		e    Expr
		want error
	}{
		{Repeat(Lit("a"), 3, 2), ErrInvalidGrammar},
		{TextUntil("a", ""), ErrInvalidGrammar},
		{TextUntil(strings.Repeat("x", 2000)), ErrUnsupported},
		{Seq(Lit("a"), Schema([]byte(`{"type":"string","not":{}}`))), ErrUnsupported},
		{Schema([]byte(`{"type":`)), ErrInvalidSchema},
		{Alt(), ErrInvalidSchema}, // accepts nothing
	} {
		if _, err := Compile(tc.e); !errors.Is(err, tc.want) {
			t.Errorf("%+v: got %v, want %v", tc.e.x, err, tc.want)
		}
	}
}

// TestComposeDone checks Done and Complete at the end of composed grammars.
func TestComposeDone(t *testing.T) {
	v := NewVocab(nil, nil)
	m := mustCompile(t, hermesExpr()).NewMatcher(v)
	doc := "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"q\"}}\n</tool_call>"
	if err := m.AcceptText(doc); err != nil {
		t.Fatal(err)
	}
	if !m.Complete() || m.Done() {
		t.Fatalf("after one call: complete %v done %v (another call may follow)", m.Complete(), m.Done())
	}
	m = mustCompile(t, harmonyExpr()).NewMatcher(v)
	if err := m.AcceptText(`<|channel|>commentary to=functions.search <|constrain|>json<|message|>{"query":"x"}<|call|>`); err != nil {
		t.Fatal(err)
	}
	if !m.Done() {
		t.Error("harmony call not done after <|call|>")
	}
	// Prefill: the template opened the reasoning.
	m = mustCompile(t, thinkingExpr()).NewMatcher(v)
	if err := m.AcceptText("<think>\n"); err != nil {
		t.Fatal(err)
	}
	if err := m.AcceptText("</think>x"); err == nil {
		t.Error("content accepted where a tool call must follow")
	}
}

// walkBytes walks g byte by byte at random, favouring the bytes of
// alphabet; past budget it appends the first of finish the matcher
// accepts whole, until the text is complete. Every state must allow a byte
// or be complete.
func walkBytes(t *testing.T, g *Grammar, rng *rand.Rand, budget int, alphabet string, finish []string) string {
	t.Helper()
	m := g.NewMatcher(NewVocab(nil, nil))
	var out []byte
	for steps := 0; ; steps++ {
		if m.Done() || m.Complete() && (len(out) > budget || rng.IntN(20) == 0) {
			return string(out)
		}
		if steps > 20*budget+2000 {
			t.Fatalf("no end after %d steps: %q", steps, out)
		}
		if len(out) > budget {
			done := false
			for _, f := range finish {
				if c := m.Clone(); c.AcceptText(f) == nil {
					m, out, done = c, append(out, f...), true
					break
				}
			}
			if done {
				continue
			}
		}
		var next, pref []byte
		for b := range 256 {
			for _, c := range m.cur {
				if m.accepts(c, []byte{byte(b)}) {
					next = append(next, byte(b))
					if strings.IndexByte(alphabet, byte(b)) >= 0 {
						pref = append(pref, byte(b))
					}
					break
				}
			}
		}
		if len(next) == 0 {
			t.Fatalf("dead end after %q", out)
		}
		pick := next[rng.IntN(len(next))]
		if len(pref) > 0 && rng.IntN(4) != 0 {
			pick = pref[rng.IntN(len(pref))]
		}
		if err := m.AcceptBytes([]byte{pick}); err != nil {
			t.Fatalf("allowed byte %q refused after %q: %v", pick, out, err)
		}
		out = append(out, pick)
	}
}

// TestTextUntilRandom walks text grammars: the text never contains a stop
// (the first stop in the document is the one the grammar ends with) and
// is valid UTF-8.
func TestTextUntilRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	for _, stops := range [][]string{{"</think>"}, {"<tool_call>", "</think>"}, {"abab"}, {"\n</parameter>"}, {"aa", "ab"}} {
		var ends []Expr
		for _, s := range stops {
			ends = append(ends, Lit(s))
		}
		g := mustCompile(t, Seq(TextUntil(stops...), Alt(ends...)))
		alphabet := strings.Join(stops, "") + "\xc3\xa9\xe6\x97\xa5"
		for range 40 {
			doc := walkBytes(t, g, rng, 30, alphabet, stops)
			if !utf8.ValidString(doc) {
				t.Fatalf("%q: invalid UTF-8", doc)
			}
			first, at := "", len(doc)
			for _, s := range stops {
				if i := strings.Index(doc, s); i >= 0 && i < at {
					first, at = s, i
				}
			}
			if at+len(first) != len(doc) {
				t.Fatalf("stops %q: %q: first stop %q at %d is not the end", stops, doc, first, at)
			}
		}
	}
}

// TestToolCallRandom walks the tool-call grammars: each call's arguments
// must be valid JSON matching the tool's schema.
func TestToolCallRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 9))
	schemas := map[string]*jv{}
	for _, tl := range testTools {
		schemas[tl.name], _ = parseJSON([]byte(tl.schema))
	}
	checkArgs := func(doc, name, args string) {
		t.Helper()
		checkDoc(t, schemas[name], args)
	}
	finish := []string{"\n</parameter>\n", "</function>\n</tool_call>", "\n</tool_call>", `"`, "}", "]", "0", "<|call|>"}
	for _, tc := range []struct {
		name  string
		e     Expr
		check func(doc string)
	}{
		{"hermes", hermesExpr(), func(doc string) {
			for _, part := range strings.Split(doc, "\n</tool_call>") {
				if part == "" {
					continue
				}
				js := strings.TrimPrefix(strings.TrimPrefix(part, "\n"), "<tool_call>\n")
				var call struct {
					Name      string
					Arguments json.RawMessage
				}
				if err := json.Unmarshal([]byte(js), &call); err != nil {
					t.Fatalf("%q: %v", doc, err)
				}
				checkArgs(doc, call.Name, string(call.Arguments))
			}
		}},
		{"llama3", llama3Expr(), func(doc string) {
			var call struct {
				Name       string
				Parameters json.RawMessage
			}
			if err := json.Unmarshal([]byte(doc), &call); err != nil {
				t.Fatalf("%q: %v", doc, err)
			}
			checkArgs(doc, call.Name, string(call.Parameters))
		}},
		{"mistral-args", mistralArgsExpr(), func(doc string) {
			for _, part := range strings.Split(doc, "[TOOL_CALLS]")[1:] {
				name, args, _ := strings.Cut(part, "[ARGS]")
				checkArgs(doc, name, args)
			}
		}},
		{"harmony", harmonyExpr(), func(doc string) {
			rest := strings.TrimPrefix(doc, "<|channel|>commentary to=functions.")
			name, rest, _ := strings.Cut(rest, " <|constrain|>json<|message|>")
			checkArgs(doc, name, strings.TrimSuffix(rest, "<|call|>"))
		}},
		{"xml", xmlExpr(), func(doc string) {
			if !strings.HasSuffix(doc, "</function>\n</tool_call>") {
				t.Fatalf("%q: unterminated", doc)
			}
			if _, v, ok := strings.Cut(doc, "<parameter=n>\n"); ok {
				v, _, _ = strings.Cut(v, "\n</parameter>")
				checkDoc(t, nil, `{"n":`+v+`}`)
			}
		}},
	} {
		g := mustCompile(t, tc.e)
		for range 15 {
			doc := walkBytes(t, g, rng, 80, `{}"[]:, abcnlqu`, finish)
			tc.check(doc)
		}
	}
}

// TestTextLen: TextLen counts characters (not bytes) and still stops at
// its stops.
func TestTextLen(t *testing.T) {
	g, err := Compile(Seq(Lit("<"), TextLen(2, 4, ">"), Lit(">")))
	if err != nil {
		t.Fatal(err)
	}
	for in, ok := range map[string]bool{"<ab>": true, "<abcd>": true, "<éüßa>": true, "<a>": false, "<abcde>": false, "<a>b>": false, "<>": false} {
		m := g.NewMatcher(NewVocab(nil, nil))
		err := m.AcceptText(in)
		if got := err == nil && m.Complete(); got != ok {
			t.Errorf("%q: accepted %v, want %v (%v)", in, got, ok, err)
		}
	}
	if _, err := Compile(TextLen(3, 2)); err == nil {
		t.Error("TextLen(3, 2) compiled")
	}
	if g, err := Compile(TextLen(1, -1, "x")); err != nil {
		t.Error(err)
	} else if m := g.NewMatcher(NewVocab(nil, nil)); m.Complete() {
		t.Error("TextLen(1, -1) complete on empty text")
	}
}
