package eval

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

const testSuite = `
# a comment
{"id":"exact","prompt":"p","check":{"type":"exact","value":"yes"}}
{"id":"contains","prompt":"p","check":{"type":"contains","value":"Lily"}}
{"id":"regex","prompt":"p","check":{"type":"regex","value":"^\\s*\\d+$"}}
{"id":"schema","messages":[{"role":"user","content":"json"}],"check":{"type":"json_schema","schema":{"type":"object","properties":{"name":{"type":"string"},"age":{"type":"integer"}},"required":["name","age"]}}}
{"id":"tool","messages":[{"role":"user","content":"weather?"}],"tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object"}}}],"tool_choice":"required","check":{"type":"tool_call","name":"get_weather","schema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}}}
`

func TestEvalSuiteVerdicts(t *testing.T) {
	cases, err := ReadCases(strings.NewReader(testSuite))
	if err != nil {
		t.Fatal(err)
	}
	by := map[string]*Case{}
	for i := range cases {
		by[cases[i].ID] = &cases[i]
	}
	for _, c := range []struct {
		id   string
		ans  Answer
		pass bool
	}{
		{"exact", Answer{Text: " yes\n"}, true},
		{"exact", Answer{Text: "yes!"}, false},
		{"contains", Answer{Text: "a girl named Lily."}, true},
		{"contains", Answer{Text: "a boy named Tim."}, false},
		{"regex", Answer{Text: " 42"}, true},
		{"regex", Answer{Text: "42 cats"}, false},
		{"schema", Answer{Text: `{"name":"Ann","age":7}`}, true},
		{"schema", Answer{Text: "{\n  \"age\": 7,\n  \"name\": \"Ann\"\n}"}, true}, // another key order
		{"schema", Answer{Text: `{"name":"Ann","age":"7"}`}, false},
		{"schema", Answer{Text: `{"name":"Ann"}`}, false},
		{"schema", Answer{Text: `not json`}, false},
		{"tool", Answer{ToolCalls: []ToolCall{{"get_weather", `{"city":"Oslo"}`}}}, true},
		{"tool", Answer{ToolCalls: []ToolCall{{"get_weather", `{"town":"Oslo"}`}}}, false},
		{"tool", Answer{ToolCalls: []ToolCall{{"get_time", `{}`}}}, false},
		{"tool", Answer{Text: "It is sunny."}, false},
	} {
		pass, why := by[c.id].Verdict(c.ans)
		if pass != c.pass {
			t.Errorf("%s %+v: pass %v (%s), want %v", c.id, c.ans, pass, why, c.pass)
		}
		if !pass && why == "" {
			t.Errorf("%s: failed without a reason", c.id)
		}
	}
}

func TestEvalSuiteBadFiles(t *testing.T) {
	for _, bad := range []string{
		``,
		`{"id":"a","check":{"type":"exact","value":"x"}}`,                                                              // no prompt
		`{"id":"a","prompt":"p","messages":[{}],"check":{"type":"exact"}}`,                                             // both
		`{"id":"a","prompt":"p","check":{"type":"fuzzy"}}`,                                                             // unknown check
		`{"id":"a","prompt":"p","check":{"type":"regex","value":"("}}`,                                                 // bad regex
		`{"id":"a","prompt":"p","check":{"type":"tool_call","name":"f"}}`,                                              // tool call on a completion
		`{"id":"a","prompt":"p","check":{"type":"exact"}}` + "\n" + `{"id":"a","prompt":"q","check":{"type":"exact"}}`, // duplicate id
		`{"id":"a","prompt":"p","chek":{"type":"exact"}}`,                                                              // unknown field
		`{"id":`,
	} {
		if _, err := ReadCases(strings.NewReader(bad)); !errors.Is(err, ErrBadSuite) {
			t.Errorf("%q: %v", bad, err)
		}
	}
}

// TestEvalSuiteClient: the requests a suite sends (greedy, the endpoint
// by the case's kind, tools passed on) and the answers it reads.
func TestEvalSuiteClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var req map[string]any
		b, _ := io.ReadAll(r.Body)
		json.Unmarshal(b, &req)
		if req["temperature"] != float64(0) || req["model"] != "m" || r.Header.Get("Authorization") != "Bearer k" {
			http.Error(w, "bad request "+string(b), 400)
			return
		}
		switch r.URL.Path {
		case "/v1/completions":
			io.WriteString(w, `{"choices":[{"text":" yes"}]}`)
		case "/v1/chat/completions":
			if req["tools"] != nil && req["tool_choice"] == "required" {
				io.WriteString(w, `{"choices":[{"message":{"content":null,"tool_calls":[{"id":"c","type":"function","function":{"name":"get_weather","arguments":"{\"city\":\"Oslo\"}"}}]}}]}`)
				return
			}
			io.WriteString(w, `{"choices":[{"message":{"content":"{\"age\":3,\"name\":\"Bo\"}"}}]}`)
		default:
			http.NotFound(w, r)
		}
	}))
	defer srv.Close()
	cases, err := ReadCases(strings.NewReader(testSuite))
	if err != nil {
		t.Fatal(err)
	}
	r, err := RunSuite(context.Background(), &Client{URL: srv.URL + "/v1/", Model: "m", APIKey: "k"}, cases, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"exact": true, "contains": false, "regex": false, "schema": true, "tool": true}
	for _, c := range r.Cases {
		if c.Pass != want[c.ID] || c.Error != "" {
			t.Errorf("%s: %+v", c.ID, c)
		}
	}
	if r.Passed != 3 || r.Total != 5 || r.PassRate != 60 {
		t.Errorf("%d/%d passed (%.1f%%)", r.Passed, r.Total, r.PassRate)
	}
}
