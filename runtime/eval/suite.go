package eval

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
)

// Case is one line of a suite file (JSONL):
//
//	{"id": "greeting", "prompt": "Once upon a time", "max_tokens": 16,
//	 "check": {"type": "contains", "value": "Lily"}}
//
// A "prompt" goes to /v1/completions as it is; "messages" (OpenAI chat
// messages) go to /v1/chat/completions with "tools", "tool_choice" and
// "parallel_tool_calls" when given; "response_format" goes with either. Generation is greedy
// (temperature 0).
type Case struct {
	ID                string            `json:"id"`
	Prompt            string            `json:"prompt,omitempty"`
	Messages          []json.RawMessage `json:"messages,omitempty"`
	MaxTokens         int               `json:"max_tokens,omitempty"` // default 64
	Tools             json.RawMessage   `json:"tools,omitempty"`
	ToolChoice        json.RawMessage   `json:"tool_choice,omitempty"`
	ParallelToolCalls *bool             `json:"parallel_tool_calls,omitempty"`
	// ResponseFormat is OpenAI's response_format, passed on as it is.
	ResponseFormat json.RawMessage `json:"response_format,omitempty"`
	Check          Check           `json:"check"`
}

// Check is what a case's answer must satisfy:
//
//	exact        the answer, leading and trailing white space trimmed, is Value
//	contains     the answer contains Value
//	regex        the answer matches the regular expression Value (Go RE2 syntax)
//	json_schema  the answer, white space trimmed, is a JSON document of Schema
//	tool_call    the answer calls the function Name; with Schema, its
//	             arguments are a document of it
//
// Schemas are read as Hearth's constrained decoding reads them
// (runtime/grammar): object properties in any order, none the schema
// does not name unless additionalProperties allows it.
type Check struct {
	Type   string          `json:"type"`
	Value  string          `json:"value,omitempty"`
	Name   string          `json:"name,omitempty"`
	Schema json.RawMessage `json:"schema,omitempty"`

	re     *regexp.Regexp
	schema *schemaCheck
}

// ErrBadSuite is returned for a suite file that cannot be run.
var ErrBadSuite = errors.New("eval: bad suite")

// ReadCases reads and checks a JSONL suite; blank lines and lines
// starting with # or // are skipped.
func ReadCases(r io.Reader) ([]Case, error) {
	var cases []Case
	seen := map[string]bool{}
	sc := bufio.NewScanner(r)
	sc.Buffer(nil, 16<<20)
	for n := 1; sc.Scan(); n++ {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' || bytes.HasPrefix(line, []byte("//")) {
			continue
		}
		var c Case
		dec := json.NewDecoder(bytes.NewReader(line))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("%w: line %d: %v", ErrBadSuite, n, err)
		}
		if err := c.prepare(); err != nil {
			return nil, fmt.Errorf("%w: line %d (%q): %v", ErrBadSuite, n, c.ID, err)
		}
		if seen[c.ID] {
			return nil, fmt.Errorf("%w: line %d: id %q used twice", ErrBadSuite, n, c.ID)
		}
		seen[c.ID] = true
		cases = append(cases, c)
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	if len(cases) == 0 {
		return nil, fmt.Errorf("%w: no cases", ErrBadSuite)
	}
	return cases, nil
}

func (c *Case) prepare() error {
	switch {
	case c.ID == "":
		return errors.New("no id")
	case (c.Prompt == "") == (len(c.Messages) == 0):
		return errors.New(`want one of "prompt" and "messages"`)
	case c.Prompt != "" && (len(c.Tools) > 0 || len(c.ToolChoice) > 0):
		return errors.New(`"tools" need "messages" (a chat request)`)
	case c.MaxTokens < 0:
		return errors.New("negative max_tokens")
	}
	if c.MaxTokens == 0 {
		c.MaxTokens = 64
	}
	k := &c.Check
	var err error
	switch k.Type {
	case "exact", "contains":
	case "regex":
		if k.re, err = regexp.Compile(k.Value); err != nil {
			return err
		}
	case "json_schema":
		if len(k.Schema) == 0 {
			return errors.New(`json_schema check without "schema"`)
		}
	case "tool_call":
		if k.Name == "" {
			return errors.New(`tool_call check without "name"`)
		}
		if len(c.Messages) == 0 {
			return errors.New(`a tool_call check needs "messages"`)
		}
	default:
		return fmt.Errorf("check type %q: want exact, contains, regex, json_schema or tool_call", k.Type)
	}
	if len(k.Schema) > 0 {
		if k.schema, err = newSchemaCheck(k.Schema); err != nil {
			return fmt.Errorf("schema: %w", err)
		}
	}
	return nil
}

// ToolCall is a function call in a chat answer.
type ToolCall struct {
	Name      string `json:"name"`
	Arguments string `json:"arguments"`
}

// Answer is what the server returned for a case.
type Answer struct {
	Text      string     `json:"text"`
	ToolCalls []ToolCall `json:"tool_calls,omitempty"`
}

// Verdict is whether ans passes the case's check, and why not.
func (c *Case) Verdict(ans Answer) (bool, string) {
	k := &c.Check
	out := ans.Text
	switch k.Type {
	case "exact":
		if strings.TrimSpace(out) != k.Value {
			return false, fmt.Sprintf("answer %q is not %q", clip(out), k.Value)
		}
	case "contains":
		if !strings.Contains(out, k.Value) {
			return false, fmt.Sprintf("answer %q does not contain %q", clip(out), k.Value)
		}
	case "regex":
		if !k.re.MatchString(out) {
			return false, fmt.Sprintf("answer %q does not match %s", clip(out), k.Value)
		}
	case "json_schema":
		if err := k.schema.validate(strings.TrimSpace(out)); err != nil {
			return false, fmt.Sprintf("answer %q: %v", clip(out), err)
		}
	case "tool_call":
		var names []string
		for _, tc := range ans.ToolCalls {
			if tc.Name != k.Name {
				names = append(names, tc.Name)
				continue
			}
			if k.schema != nil {
				if err := k.schema.validate(tc.Arguments); err != nil {
					return false, fmt.Sprintf("call of %s: arguments %s: %v", k.Name, clip(tc.Arguments), err)
				}
			}
			return true, ""
		}
		if len(names) > 0 {
			return false, fmt.Sprintf("no call of %s (calls: %s)", k.Name, strings.Join(names, ", "))
		}
		return false, fmt.Sprintf("no call of %s; answer %q", k.Name, clip(out))
	}
	return true, ""
}

func clip(s string) string {
	if r := []rune(s); len(r) > 120 {
		return string(r[:120]) + "…"
	}
	return s
}

// Client asks an OpenAI-compatible server for the answers.
type Client struct {
	URL    string // the server's base URL, with or without /v1
	Model  string
	APIKey string       // sent as a bearer token when set
	HTTP   *http.Client // nil: http.DefaultClient
}

// Ask sends c's request (greedy) and returns the answer.
func (cl *Client) Ask(ctx context.Context, c *Case) (Answer, error) {
	req := map[string]any{"model": cl.Model, "max_tokens": c.MaxTokens, "temperature": 0, "stream": false}
	path := "/completions"
	if c.Prompt != "" {
		req["prompt"] = c.Prompt
	} else {
		path = "/chat/completions"
		req["messages"] = c.Messages
		if len(c.Tools) > 0 {
			req["tools"] = c.Tools
		}
		if len(c.ToolChoice) > 0 {
			req["tool_choice"] = c.ToolChoice
		}
		if c.ParallelToolCalls != nil {
			req["parallel_tool_calls"] = *c.ParallelToolCalls
		}
	}
	if len(c.ResponseFormat) > 0 {
		req["response_format"] = c.ResponseFormat
	}
	body, err := json.Marshal(req)
	if err != nil {
		return Answer{}, err
	}
	base := strings.TrimSuffix(strings.TrimSuffix(cl.URL, "/"), "/v1")
	hr, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/v1"+path, bytes.NewReader(body))
	if err != nil {
		return Answer{}, err
	}
	hr.Header.Set("Content-Type", "application/json")
	if cl.APIKey != "" {
		hr.Header.Set("Authorization", "Bearer "+cl.APIKey)
	}
	hc := cl.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(hr)
	if err != nil {
		return Answer{}, err
	}
	defer resp.Body.Close()
	raw, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return Answer{}, err
	}
	if resp.StatusCode != http.StatusOK {
		return Answer{}, fmt.Errorf("%s: %s: %s", path, resp.Status, clip(string(bytes.TrimSpace(raw))))
	}
	var r struct {
		Choices []struct {
			Text    string `json:"text"`
			Message struct {
				Content   *string `json:"content"`
				ToolCalls []struct {
					Function ToolCall `json:"function"`
				} `json:"tool_calls"`
			} `json:"message"`
		} `json:"choices"`
	}
	if err := json.Unmarshal(raw, &r); err != nil {
		return Answer{}, fmt.Errorf("%s: %w", path, err)
	}
	if len(r.Choices) == 0 {
		return Answer{}, fmt.Errorf("%s: no choices", path)
	}
	ch := r.Choices[0]
	a := Answer{Text: ch.Text}
	if c.Prompt == "" {
		a.Text = ""
		if ch.Message.Content != nil {
			a.Text = *ch.Message.Content
		}
		for _, tc := range ch.Message.ToolCalls {
			a.ToolCalls = append(a.ToolCalls, tc.Function)
		}
	}
	return a, nil
}

// CaseResult is one case's outcome.
type CaseResult struct {
	ID     string  `json:"id"`
	Pass   bool    `json:"pass"`
	Why    string  `json:"why,omitempty"` // why it failed
	Answer *Answer `json:"answer,omitempty"`
	Error  string  `json:"error,omitempty"` // the request failed
}

// SuiteResult is a suite's outcome.
type SuiteResult struct {
	Cases    []CaseResult `json:"cases"`
	Passed   int          `json:"passed"`
	Total    int          `json:"total"`
	PassRate float64      `json:"pass_rate"` // percent
}

// RunSuite asks cl each case in turn; a failed request fails its case
// (and the suite goes on) unless ctx ends. done, when set, is called
// after each case.
func RunSuite(ctx context.Context, cl *Client, cases []Case, done func(CaseResult)) (*SuiteResult, error) {
	r := &SuiteResult{Total: len(cases)}
	for i := range cases {
		c := &cases[i]
		cr := CaseResult{ID: c.ID}
		ans, err := cl.Ask(ctx, c)
		if err != nil {
			if ctx.Err() != nil {
				return nil, ctx.Err()
			}
			cr.Error = err.Error()
			cr.Why = "request failed: " + err.Error()
		} else {
			cr.Answer = &ans
			cr.Pass, cr.Why = c.Verdict(ans)
		}
		if cr.Pass {
			r.Passed++
		}
		r.Cases = append(r.Cases, cr)
		if done != nil {
			done(cr)
		}
	}
	r.PassRate = 100 * float64(r.Passed) / float64(r.Total)
	return r, nil
}
