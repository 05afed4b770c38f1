package server

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestHostileRequests: malformed, oversized and out-of-range requests get
// a 4xx with a JSON error body in the API's shape, never a 500, and never
// reach the runner.
func TestHostileRequests(t *testing.T) {
	f := newFake("a")
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, func(c *Config) { c.MaxBodyBytes = 256 << 10 })
	stops := `["` + strings.Repeat(`a","`, 5000) + `b"]`
	gen := func(extra string) string { return `{"model":"tiny","prompt":"x"` + extra + `}` }
	opt := func(o string) string { return gen(`,"options":{` + o + `}`) }
	chat := func(extra string) string {
		return `{"model":"tiny","messages":[{"role":"user","content":"x"}]` + extra + `}`
	}
	ant := func(extra string) string {
		return `{"model":"tiny","max_tokens":10,"messages":[{"role":"user","content":"x"}]` + extra + `}`
	}
	antTool := `"tools":[{"name":"f","input_schema":{"type":"object"}}]`
	for _, c := range []struct {
		name, method, path, body string
		code                     int
	}{
		{"empty body", "POST", "/api/generate", "", 400},
		{"whitespace body", "POST", "/api/chat", "  \n", 400},
		{"truncated JSON", "POST", "/api/generate", `{"model":"tiny",`, 400},
		{"array body", "POST", "/api/generate", `[1,2]`, 400},
		{"trailing data", "POST", "/api/generate", gen("") + `{"x":1}`, 400},
		{"oversized body", "POST", "/api/generate", gen(`,"system":"` + strings.Repeat("a", 300<<10) + `"`), 413},
		{"invalid UTF-8", "POST", "/api/generate", `{"model":"tiny","prompt":"` + "\xff\xfe" + `"}`, 400},
		{"NaN literal", "POST", "/api/generate", opt(`"temperature":NaN`), 400},
		{"string temperature", "POST", "/api/generate", opt(`"temperature":"hot"`), 400},
		{"negative temperature", "POST", "/api/generate", opt(`"temperature":-1`), 400},
		{"huge temperature", "POST", "/api/generate", opt(`"temperature":1e39`), 400},
		{"huge top_p", "POST", "/api/generate", opt(`"top_p":1e300`), 400},
		{"negative top_k", "POST", "/api/generate", opt(`"top_k":-1`), 400},
		{"num_predict -5", "POST", "/api/generate", opt(`"num_predict":-5`), 400},
		{"num_ctx 1e12", "POST", "/api/generate", opt(`"num_ctx":1e12`), 400},
		{"num_ctx past the model", "POST", "/api/generate", opt(`"num_ctx":1048576`), 400},
		{"negative num_ctx", "POST", "/api/generate", opt(`"num_ctx":-4`), 400},
		{"seed 1e300", "POST", "/api/generate", opt(`"seed":1e300`), 400},
		{"repeat_penalty 0", "POST", "/api/generate", opt(`"repeat_penalty":0`), 400},
		{"bool option", "POST", "/api/generate", opt(`"num_ctx":true`), 400},
		{"thousands of stops", "POST", "/api/generate", opt(`"stop":` + stops), 400},
		{"empty stop", "POST", "/api/generate", opt(`"stop":[""]`), 400},
		{"numeric stop", "POST", "/api/generate", opt(`"stop":[1]`), 400},
		{"long stop", "POST", "/api/generate", opt(`"stop":["` + strings.Repeat("x", 1000) + `"]`), 400},
		{"no model", "POST", "/api/generate", `{"prompt":"x"}`, 400},
		{"traversal model", "POST", "/api/generate", `{"model":"../../etc/passwd","prompt":"x"}`, 400},
		{"absolute model", "POST", "/api/chat", `{"model":"/etc/passwd","messages":[{"role":"user","content":"x"}]}`, 400},
		{"NUL in model", "POST", "/api/generate", `{"model":"tiny\u0000","prompt":"x"}`, 400},
		{"unknown model", "POST", "/api/generate", `{"model":"nope","prompt":"x"}`, 404},
		{"bad keep_alive", "POST", "/api/generate", gen(`,"keep_alive":"forever"`), 400},
		{"object keep_alive", "POST", "/api/generate", gen(`,"keep_alive":{}`), 400},
		{"negative context", "POST", "/api/generate", gen(`,"context":[-1]`), 400},
		{"string context", "POST", "/api/generate", gen(`,"context":"abc"`), 400},
		{"role missing", "POST", "/api/chat", `{"model":"tiny","messages":[{"content":"x"}]}`, 400},
		{"messages not array", "POST", "/api/chat", `{"model":"tiny","messages":"x"}`, 400},
		{"chat bad format", "POST", "/api/chat", chat(`,"format":5`), 400},
		{"embed object input", "POST", "/api/embed", `{"model":"tiny","input":{}}`, 400},
		{"embed negative dims", "POST", "/api/embed", `{"model":"tiny","input":"x","dimensions":-1}`, 400},
		{"show no model", "POST", "/api/show", `{}`, 400},
		{"show traversal", "POST", "/api/show", `{"model":"..\\..\\x"}`, 400},
		{"delete no model", "DELETE", "/api/delete", `{}`, 400},
		{"copy no destination", "POST", "/api/copy", `{"source":"tiny"}`, 400},
		{"copy traversal", "POST", "/api/copy", `{"source":"tiny","destination":"a/../../b"}`, 400},
		{"pull traversal", "POST", "/api/pull", `{"model":"../x"}`, 400},
		{"wrong method", "GET", "/api/generate", ``, 405},
		{"no route", "POST", "/api/nothing", `{}`, 404},
		{"oai empty", "POST", "/v1/chat/completions", ``, 400},
		{"oai content number", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":5}]}`, 400},
		{"oai stops", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"x"}],"stop":` + stops + `}`, 400},
		{"oai temperature string", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":"x"}`, 400},
		{"oai max_tokens overflow", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":1e30}`, 400},
		{"oai seed huge", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"x"}],"seed":9007199254740993}`, 400},
		{"oai NaN", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"x"}],"top_p":NaN}`, 400},
		{"oai bad response_format", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"user","content":"x"}],"response_format":{"type":"xml"}}`, 400},
		{"oai tools not array", "POST", "/v1/chat/completions", chat(`,"tools":{"type":"function"}`), 400},
		{"oai tool without name", "POST", "/v1/chat/completions", chat(`,"tools":[{"type":"function","function":{}}]`), 400},
		{"oai non-function tool", "POST", "/v1/chat/completions", chat(`,"tools":[{"type":"web_search"}]`), 400},
		{"oai duplicate tools", "POST", "/v1/chat/completions", chat(`,"tools":[{"type":"function","function":{"name":"f"}},{"type":"function","function":{"name":"f"}}]`), 400},
		{"oai tool parameters array", "POST", "/v1/chat/completions", chat(`,"tools":[{"type":"function","function":{"name":"f","parameters":[1]}}]`), 400},
		{"oai tool unsupported schema", "POST", "/v1/chat/completions", chat(`,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"string","pattern":"(?=x)"}}}}}]`), 400},
		{"oai tool_choice bad word", "POST", "/v1/chat/completions", chat(`,"tool_choice":"always"`), 400},
		{"oai tool_choice number", "POST", "/v1/chat/completions", chat(`,"tool_choice":3`), 400},
		{"oai tool_choice unknown function", "POST", "/v1/chat/completions", chat(`,"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"g"}}}`), 400},
		{"oai tool_choice required without tools", "POST", "/v1/chat/completions", chat(`,"tool_choice":"required"`), 400},
		{"oai history call bad arguments", "POST", "/v1/chat/completions", `{"model":"tiny","messages":[{"role":"assistant","tool_calls":[{"id":"a","type":"function","function":{"name":"f","arguments":"{oops"}}]}]}`, 400},
		{"oai bad reasoning_effort", "POST", "/v1/chat/completions", chat(`,"reasoning_effort":"extreme"`), 400},
		{"chat think bad string", "POST", "/api/chat", chat(`,"think":"maximum"`), 400},
		{"chat tools not array", "POST", "/api/chat", chat(`,"tools":"x"`), 400},
		{"chat tool without name", "POST", "/api/chat", chat(`,"tools":[{"type":"function","function":{"parameters":{"type":"object"}}}]`), 400},
		{"chat tool unsupported schema", "POST", "/api/chat", chat(`,"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"strange"}}}}}]`), 400},
		{"oai traversal", "POST", "/v1/chat/completions", `{"model":"../x","messages":[{"role":"user","content":"x"}]}`, 400},
		{"oai token prompt", "POST", "/v1/completions", `{"model":"tiny","prompt":[1,2,3]}`, 400},
		{"oai two prompts", "POST", "/v1/completions", `{"model":"tiny","prompt":["a","b"]}`, 400},
		{"oai token embeddings", "POST", "/v1/embeddings", `{"model":"tiny","input":[[1,2]]}`, 400},
		{"oai empty embedding input", "POST", "/v1/embeddings", `{"model":"tiny","input":[]}`, 400},
		{"oai model traversal", "GET", "/v1/models/..%2f..%2fetc", ``, 400},
		{"oai wrong method", "DELETE", "/v1/models", ``, 405},
		{"top_logprobs 21", "POST", "/api/generate", gen(`,"logprobs":true,"top_logprobs":21`), 400},
		{"negative top_logprobs", "POST", "/api/generate", gen(`,"logprobs":true,"top_logprobs":-1`), 400},
		{"string top_logprobs", "POST", "/api/generate", gen(`,"top_logprobs":"5"`), 400},
		{"chat top_logprobs 1e9", "POST", "/api/chat", chat(`,"logprobs":true,"top_logprobs":1000000000`), 400},
		{"chat string logprobs", "POST", "/api/chat", chat(`,"logprobs":"yes"`), 400},
		{"oai top_logprobs 21", "POST", "/v1/chat/completions", chat(`,"logprobs":true,"top_logprobs":21`), 400},
		{"oai negative top_logprobs", "POST", "/v1/chat/completions", chat(`,"logprobs":true,"top_logprobs":-3`), 400},
		{"oai top_logprobs without logprobs", "POST", "/v1/chat/completions", chat(`,"top_logprobs":2`), 400},
		{"oai float top_logprobs", "POST", "/v1/chat/completions", chat(`,"logprobs":true,"top_logprobs":2.5`), 400},
		{"oai completions logprobs 21", "POST", "/v1/completions", `{"model":"tiny","prompt":"x","logprobs":21}`, 400},
		{"oai completions logprobs -1", "POST", "/v1/completions", `{"model":"tiny","prompt":"x","logprobs":-1}`, 400},
		{"oai completions logprobs true", "POST", "/v1/completions", `{"model":"tiny","prompt":"x","logprobs":true}`, 400},
		{"responses no model", "POST", "/v1/responses", `{"input":"x"}`, 400},
		{"responses no input", "POST", "/v1/responses", `{"model":"tiny"}`, 400},
		{"responses numeric input", "POST", "/v1/responses", `{"model":"tiny","input":5}`, 400},
		{"responses unknown item type", "POST", "/v1/responses", `{"model":"tiny","input":[{"type":"computer_call","id":"c"}]}`, 400},
		{"responses item without role", "POST", "/v1/responses", `{"model":"tiny","input":[{"content":"x"}]}`, 400},
		{"responses bad role", "POST", "/v1/responses", `{"model":"tiny","input":[{"role":"tool","content":"x"}]}`, 400},
		{"responses item not object", "POST", "/v1/responses", `{"model":"tiny","input":["x"]}`, 400},
		{"responses bad call arguments", "POST", "/v1/responses", `{"model":"tiny","input":[{"type":"function_call","call_id":"c","name":"f","arguments":"{"}]}`, 400},
		{"responses call without call_id", "POST", "/v1/responses", `{"model":"tiny","input":[{"type":"function_call_output","output":"x"}]}`, 400},
		{"responses image", "POST", "/v1/responses", `{"model":"tiny","input":[{"role":"user","content":[{"type":"input_image","image_url":"data:,"}]}]}`, 400},
		{"responses file part", "POST", "/v1/responses", `{"model":"tiny","input":[{"role":"user","content":[{"type":"input_file","file_id":"f"}]}]}`, 400},
		{"responses unknown tool type", "POST", "/v1/responses", `{"model":"tiny","input":"x","tools":[{"type":"web_search_preview"}]}`, 400},
		{"responses tools object", "POST", "/v1/responses", `{"model":"tiny","input":"x","tools":{"type":"function"}}`, 400},
		{"responses nameless tool", "POST", "/v1/responses", `{"model":"tiny","input":"x","tools":[{"type":"function"}]}`, 400},
		{"responses bad text.format", "POST", "/v1/responses", `{"model":"tiny","input":"x","text":{"format":{"type":"xml"}}}`, 400},
		{"responses string text.format", "POST", "/v1/responses", `{"model":"tiny","input":"x","text":{"format":"json"}}`, 400},
		{"responses bad schema", "POST", "/v1/responses", `{"model":"tiny","input":"x","text":{"format":{"type":"json_schema","name":"n","schema":{"type":5}}}}`, 400},
		{"responses bad tool_choice", "POST", "/v1/responses", `{"model":"tiny","input":"x","tool_choice":"sometimes"}`, 400},
		{"responses hosted tool_choice", "POST", "/v1/responses", `{"model":"tiny","input":"x","tool_choice":{"type":"file_search"}}`, 400},
		{"responses tool_choice not a tool", "POST", "/v1/responses", `{"model":"tiny","input":"x","tools":[{"type":"function","name":"f"}],"tool_choice":{"type":"function","name":"g"}}`, 400},
		{"responses required without tools", "POST", "/v1/responses", `{"model":"tiny","input":"x","tool_choice":"required"}`, 400},
		{"responses bad effort", "POST", "/v1/responses", `{"model":"tiny","input":"x","reasoning":{"effort":"extreme"}}`, 400},
		{"responses max_output_tokens 0", "POST", "/v1/responses", `{"model":"tiny","input":"x","max_output_tokens":0}`, 400},
		{"responses instructions number", "POST", "/v1/responses", `{"model":"tiny","input":"x","instructions":5}`, 400},
		{"responses background", "POST", "/v1/responses", `{"model":"tiny","input":"x","background":true}`, 400},
		{"responses unknown previous", "POST", "/v1/responses", `{"model":"tiny","input":"x","previous_response_id":"resp_nope"}`, 404},
		{"responses get unknown", "GET", "/v1/responses/resp_nope", ``, 404},
		{"responses delete unknown", "DELETE", "/v1/responses/resp_nope", ``, 404},
		{"ant empty", "POST", "/v1/messages", ``, 400},
		{"ant truncated", "POST", "/v1/messages", `{"model":"tiny",`, 400},
		{"ant no max_tokens", "POST", "/v1/messages", `{"model":"tiny","messages":[{"role":"user","content":"x"}]}`, 400},
		{"ant no model", "POST", "/v1/messages", `{"max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, 400},
		{"ant no messages", "POST", "/v1/messages", `{"model":"tiny","max_tokens":5,"messages":[]}`, 400},
		{"ant max_tokens 0", "POST", "/v1/messages", ant(`,"max_tokens":0`), 400},
		{"ant max_tokens overflow", "POST", "/v1/messages", `{"model":"tiny","max_tokens":1e30,"messages":[{"role":"user","content":"x"}]}`, 400},
		{"ant max_tokens huge", "POST", "/v1/messages", `{"model":"tiny","max_tokens":4294967296,"messages":[{"role":"user","content":"x"}]}`, 400},
		{"ant huge top_k", "POST", "/v1/messages", ant(`,"top_k":1e15`), 400},
		{"ant negative top_k", "POST", "/v1/messages", ant(`,"top_k":-1`), 400},
		{"ant huge temperature", "POST", "/v1/messages", ant(`,"temperature":1e39`), 400},
		{"ant NaN top_p", "POST", "/v1/messages", ant(`,"top_p":NaN`), 400},
		{"ant huge budget_tokens", "POST", "/v1/messages", ant(`,"thinking":{"type":"enabled","budget_tokens":1e18}`), 400},
		{"ant thinking no budget", "POST", "/v1/messages", ant(`,"thinking":{"type":"enabled"}`), 400},
		{"ant thinking bad type", "POST", "/v1/messages", ant(`,"thinking":{"type":"maybe"}`), 400},
		{"ant stops", "POST", "/v1/messages", ant(`,"stop_sequences":` + stops), 400},
		{"ant string stop_sequences", "POST", "/v1/messages", ant(`,"stop_sequences":"x"`), 400},
		{"ant system role", "POST", "/v1/messages", `{"model":"tiny","max_tokens":5,"messages":[{"role":"system","content":"x"}]}`, 400},
		{"ant system image", "POST", "/v1/messages", ant(`,"system":[{"type":"image"}]`), 400},
		{"ant system number", "POST", "/v1/messages", ant(`,"system":5`), 400},
		{"ant content number", "POST", "/v1/messages", `{"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":5}]}`, 400},
		{"ant content null", "POST", "/v1/messages", `{"model":"tiny","max_tokens":5,"messages":[{"role":"user"}]}`, 400},
		{"ant unknown block", "POST", "/v1/messages", `{"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":[{"type":"hologram"}]}]}`, 400},
		{"ant block without type", "POST", "/v1/messages", `{"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":[{"text":"x"}]}]}`, 400},
		{"ant document", "POST", "/v1/messages", `{"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":[{"type":"document","source":{}}]}]}`, 400},
		{"ant image", "POST", "/v1/messages", `{"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":[{"type":"image","source":{"type":"base64","media_type":"image/png","data":"AA=="}}]}]}`, 400},
		{"ant user tool_use", "POST", "/v1/messages", `{"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_use","id":"a","name":"f","input":{}}]}]}`, 400},
		{"ant tool_use input array", "POST", "/v1/messages", `{"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"f","input":[1]}]}]}`, 400},
		{"ant orphan tool_result", "POST", "/v1/messages", `{"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"nope","content":"x"}]}]}`, 400},
		{"ant tool_result image", "POST", "/v1/messages", `{"model":"tiny","max_tokens":5,"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"tool_use","id":"a","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":[{"type":"image","source":{}}]}]}]}`, 400},
		{"ant tools not array", "POST", "/v1/messages", ant(`,"tools":{"name":"f"}`), 400},
		{"ant tool no schema", "POST", "/v1/messages", ant(`,"tools":[{"name":"f"}]`), 400},
		{"ant tool schema string", "POST", "/v1/messages", ant(`,"tools":[{"name":"f","input_schema":"object"}]`), 400},
		{"ant tool schema bad type", "POST", "/v1/messages", ant(`,"tools":[{"name":"f","input_schema":{"type":"object","properties":{"a":{"type":5}}}}]`), 400},
		{"ant tool no name", "POST", "/v1/messages", ant(`,"tools":[{"input_schema":{"type":"object"}}]`), 400},
		{"ant server tool", "POST", "/v1/messages", ant(`,"tools":[{"type":"web_search_20250305","name":"web_search"}]`), 400},
		{"ant tool_choice string", "POST", "/v1/messages", ant(`,` + antTool + `,"tool_choice":"auto"`), 400},
		{"ant tool_choice bad type", "POST", "/v1/messages", ant(`,` + antTool + `,"tool_choice":{"type":"required"}`), 400},
		{"ant tool_choice tool no name", "POST", "/v1/messages", ant(`,` + antTool + `,"tool_choice":{"type":"tool"}`), 400},
		{"ant tool_choice unknown tool", "POST", "/v1/messages", ant(`,` + antTool + `,"tool_choice":{"type":"tool","name":"g"}`), 400},
		{"ant tool_choice any without tools", "POST", "/v1/messages", ant(`,"tool_choice":{"type":"any"}`), 400},
		{"ant traversal", "POST", "/v1/messages", `{"model":"../x","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, 400},
		{"ant unknown model", "POST", "/v1/messages", `{"model":"nope","max_tokens":5,"messages":[{"role":"user","content":"x"}]}`, 404},
		{"ant wrong method", "GET", "/v1/messages", ``, 405},
		{"ant count empty", "POST", "/v1/messages/count_tokens", ``, 400},
		{"ant count unknown block", "POST", "/v1/messages/count_tokens", `{"model":"tiny","messages":[{"role":"user","content":[{"type":"x"}]}]}`, 400},
		{"ant count bad tool_choice", "POST", "/v1/messages/count_tokens", `{"model":"tiny","messages":[{"role":"user","content":"x"}],"tool_choice":{"type":1}}`, 400},
		{"ant count unknown model", "POST", "/v1/messages/count_tokens", `{"model":"nope","messages":[{"role":"user","content":"x"}]}`, 404},
	} {
		code, h, body := e.do(c.method, c.path, c.body)
		if code != c.code {
			t.Errorf("%s: status %d, want %d (%s)", c.name, code, c.code, body)
			continue
		}
		if ct := h.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: Content-Type %q", c.name, ct)
		}
		var v map[string]any
		if err := json.Unmarshal([]byte(body), &v); err != nil {
			t.Errorf("%s: body is not JSON: %q", c.name, body)
			continue
		}
		if strings.HasPrefix(c.path, "/v1/messages") {
			inner, ok := v["error"].(map[string]any)
			if typ, _ := inner["type"].(string); !ok || v["type"] != "error" || inner["message"] == "" || typ == "" {
				t.Errorf("%s: not an Anthropic error: %s", c.name, body)
			}
		} else if strings.HasPrefix(c.path, "/v1/") {
			inner, ok := v["error"].(map[string]any)
			if !ok || inner["message"] == "" || inner["type"] == nil {
				t.Errorf("%s: not an OpenAI error: %s", c.name, body)
			}
		} else if msg, ok := v["error"].(string); !ok || msg == "" {
			t.Errorf("%s: not an Ollama error: %s", c.name, body)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.reqs) != 0 {
		t.Errorf("%d hostile requests reached the runner", len(f.reqs))
	}
}

// FuzzHandlers throws arbitrary bodies at every POST route: the answer is
// never a 5xx and always JSON.
func FuzzHandlers(f *testing.F) {
	for _, s := range []string{`{"model":"tiny","prompt":"x"}`, `{"model":"tiny","messages":[{"role":"user","content":"x"}]}`,
		`{"model":"tiny","options":{"stop":["a"],"num_ctx":8}}`, `{`, `{"model":"../x"}`,
		`{"model":"tiny","prompt":"x","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":3,"options":{"stop":["b"]}}`,
		`{"model":"tiny","prompt":"x","logprobs":5,"stream":true}`,
		`{"model":"tiny","messages":[{"role":"user","content":"x"},{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f","arguments":"{}"}}]},{"role":"tool","tool_call_id":"c","content":"1"}],"tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{"a":{"type":"integer"}}}}}],"tool_choice":"required","stream":true}`,
		`{"model":"tiny","messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f"}}],"tool_choice":{"type":"function","function":{"name":"f"}},"think":true,"reasoning_effort":"high"}`,
		`{"model":"tiny","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":20,"stream":true,"stop":"b"}`,
		`{"model":"tiny","input":[{"role":"user","content":"x"},{"type":"function_call","call_id":"c","name":"f","arguments":"{}"},{"type":"function_call_output","call_id":"c","output":"y"}],"tools":[{"type":"function","name":"f"}],"stream":true}`,
		`{"model":"tiny","input":"x","instructions":"i","text":{"format":{"type":"json_schema","name":"n","schema":{"type":"object"}}},"max_output_tokens":1,"store":false}`,
		`{"model":"tiny","max_tokens":4,"system":[{"type":"text","text":"s"}],"messages":[{"role":"user","content":"x"},{"role":"assistant","content":[{"type":"thinking","thinking":"t"},{"type":"tool_use","id":"a","name":"f","input":{}}]},{"role":"user","content":[{"type":"tool_result","tool_use_id":"a","content":"r"}]}],"tools":[{"name":"f","input_schema":{"type":"object"}}],"tool_choice":{"type":"any"},"stop_sequences":["b"],"stream":true}}`} {
		f.Add(s)
	}
	routes := []string{"/api/generate", "/api/chat", "/api/embed", "/api/embeddings", "/api/show",
		"/v1/chat/completions", "/v1/completions", "/v1/embeddings", "/v1/responses", "/v1/messages", "/v1/messages/count_tokens"}
	fk := newFake("a", "b")
	fk.info.Template = testTemplate
	e := newEnv(f, map[string]*fakeRunner{"tiny": fk}, nil)
	f.Fuzz(func(t *testing.T, body string) {
		e.t = t
		// A request that never ends is a bug too; the panic makes the
		// fuzzer keep the input.
		hang := time.AfterFunc(20*time.Second, func() { panic(fmt.Sprintf("request hangs: %q", body)) })
		defer hang.Stop()
		for _, p := range routes {
			code, _, out := e.do("POST", p, body)
			if code >= 500 && code != 501 {
				t.Fatalf("%s %q: %d %s", p, body, code, out)
			}
			if code >= 400 && !json.Valid([]byte(out)) {
				t.Fatalf("%s %q: %d, body not JSON: %q", p, body, code, out)
			}
		}
	})
}

func TestHTTPServerTimeouts(t *testing.T) {
	e := newEnv(t, map[string]*fakeRunner{}, nil)
	hs := e.srv.HTTPServer("127.0.0.1:0", nil)
	if hs.ReadHeaderTimeout <= 0 || hs.ReadTimeout <= 0 || hs.IdleTimeout <= 0 || hs.MaxHeaderBytes <= 0 || hs.WriteTimeout != 0 {
		t.Errorf("timeouts %v %v %v %d %v", hs.ReadHeaderTimeout, hs.ReadTimeout, hs.IdleTimeout, hs.MaxHeaderBytes, hs.WriteTimeout)
	}
}

func TestCheckBind(t *testing.T) {
	for _, c := range []struct {
		host, key string
		insecure  bool
		ok        bool
	}{
		{"127.0.0.1", "", false, true}, {"localhost", "", false, true}, {"::1", "", false, true}, {"[::1]", "", false, true},
		{"127.0.0.2", "", false, true}, {"0.0.0.0", "", false, false}, {"192.168.1.5", "", false, false}, {"", "", false, false},
		{"example.com", "", false, false}, {"0.0.0.0", "k", false, true}, {"0.0.0.0", "", true, true},
	} {
		if err := CheckBind(c.host, c.key, c.insecure); (err == nil) != c.ok {
			t.Errorf("CheckBind(%q, %q, %v) = %v", c.host, c.key, c.insecure, err)
		}
	}
}

func TestAuthCORSLogs(t *testing.T) {
	f := newFake("GENERATED", "TEXT")
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, func(c *Config) {
		c.APIKey = "sekret-key-123"
		c.Origins = []string{"https://app.example.com"}
	})
	body := `{"model":"tiny","prompt":"TOPSECRETPROMPT","stream":false}`
	for _, c := range []struct {
		name, method, path string
		header             []string
		code               int
	}{
		{"no key", "POST", "/api/generate", nil, 401},
		{"wrong key", "POST", "/api/generate", []string{"Authorization", "Bearer nope"}, 401},
		{"not bearer", "POST", "/api/generate", []string{"Authorization", "sekret-key-123"}, 401},
		{"openai no key", "GET", "/v1/models", nil, 401},
		{"metrics need the key", "GET", "/metrics", nil, 401},
		{"root is open", "GET", "/", nil, 200},
		{"health is open", "GET", "/health", nil, 200},
		{"key", "POST", "/api/generate", []string{"Authorization", "Bearer sekret-key-123"}, 200},
		{"local origin", "GET", "/api/version", []string{"Authorization", "Bearer sekret-key-123", "Origin", "http://localhost:3000"}, 200},
		{"configured origin", "GET", "/api/version", []string{"Authorization", "Bearer sekret-key-123", "Origin", "https://app.example.com"}, 200},
		{"foreign origin", "GET", "/api/version", []string{"Authorization", "Bearer sekret-key-123", "Origin", "https://evil.example"}, 403},
		{"lookalike origin", "GET", "/api/version", []string{"Authorization", "Bearer sekret-key-123", "Origin", "http://localhost.evil.example"}, 403},
		{"preflight", "OPTIONS", "/api/chat", []string{"Origin", "http://127.0.0.1:8080", "Access-Control-Request-Method", "POST"}, 204},
		{"foreign preflight", "OPTIONS", "/api/chat", []string{"Origin", "https://evil.example"}, 403},
	} {
		code, h, out := e.do(c.method, c.path, body, c.header...)
		if code != c.code {
			t.Errorf("%s: %d, want %d: %s", c.name, code, c.code, out)
		}
		origin := ""
		for i := 0; i+1 < len(c.header); i += 2 {
			if c.header[i] == "Origin" {
				origin = c.header[i+1]
			}
		}
		if allowed := h.Get("Access-Control-Allow-Origin"); code < 400 && origin != "" && allowed != origin {
			t.Errorf("%s: Access-Control-Allow-Origin %q", c.name, allowed)
		}
		if code >= 400 && !json.Valid([]byte(out)) {
			t.Errorf("%s: body %q", c.name, out)
		}
		if h.Get("X-Request-Id") == "" {
			t.Errorf("%s: no X-Request-Id", c.name)
		}
	}
	// The clients, with the key.
	if _, err := e.ollama.List(t.Context()); err != nil {
		t.Error(err)
	}
	if _, err := e.openai.Models.List(t.Context()); err != nil {
		t.Error(err)
	}
	logs := e.logs.String()
	for _, secret := range []string{"TOPSECRETPROMPT", "GENERATED", "sekret-key-123"} {
		if strings.Contains(logs, secret) {
			t.Errorf("the log holds %q:\n%s", secret, logs)
		}
	}
	if !strings.Contains(logs, "path=/api/generate") || !strings.Contains(logs, "req=") || !strings.Contains(logs, "model=tiny") {
		t.Errorf("access log lacks route, request id or model:\n%s", logs)
	}
}
