package server

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata/golden")

// volatile are response fields whose values change from run to run
// (clocks, random ids, file times); the golden files keep the key with
// "<volatile>" as the value.
var volatile = map[string]bool{
	"created_at": true, "created": true, "id": true, "total_duration": true, "load_duration": true,
	"modified_at": true, "expires_at": true, "digest": true, "version": true,
}

func scrub(v any) any {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if id, _ := x.(string); k == "id" && !strings.HasPrefix(id, "chatcmpl-") && !strings.HasPrefix(id, "cmpl-") && !strings.HasPrefix(id, "msg_") {
				continue // a model's id is not volatile
			}
			if volatile[k] {
				v[k] = "<volatile>"
			} else {
				v[k] = scrub(x)
			}
		}
	case []any:
		for i, x := range v {
			v[i] = scrub(x)
		}
	}
	return v
}

// normalize turns a response body (JSON, NDJSON or SSE, with or without
// event names) into indented, scrubbed JSON lines.
func normalizeBody(t *testing.T, body string) string {
	var out bytes.Buffer
	for _, line := range strings.Split(body, "\n") {
		line = strings.TrimSpace(line)
		prefix := ""
		if rest, ok := strings.CutPrefix(line, "data: "); ok {
			prefix, line = "data: ", rest
		}
		if line == "" {
			continue
		}
		if line == "[DONE]" || strings.HasPrefix(line, "event: ") {
			out.WriteString(prefix + line + "\n")
			continue
		}
		var v any
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("line %q: %v", line, err)
		}
		var b bytes.Buffer
		enc := json.NewEncoder(&b)
		enc.SetEscapeHTML(false)
		enc.SetIndent("", "  ")
		enc.Encode(scrub(v))
		out.WriteString(prefix + b.String())
	}
	return out.String()
}

// TestGoldenWire pins the wire format: each testdata/golden/NAME.request
// (first line METHOD PATH, then the body) is sent, and the response's
// status, content type and scrubbed body must equal NAME.response.
func TestGoldenWire(t *testing.T) {
	f := newFake("Hello", ",", " world")
	f.info.Template = testTemplate
	e := newEnv(t, map[string]*fakeRunner{"tiny": f}, nil)
	// Load the model first, so that no response but this one carries a
	// load_duration.
	if code, _, body := e.do("POST", "/api/generate", `{"model":"tiny"}`); code != 200 {
		t.Fatalf("load: %d %s", code, body)
	}
	reqs, err := filepath.Glob(filepath.Join("testdata", "golden", "*.request"))
	if err != nil || len(reqs) == 0 {
		t.Fatalf("no golden requests: %v", err)
	}
	for _, rp := range reqs {
		name := strings.TrimSuffix(filepath.Base(rp), ".request")
		t.Run(name, func(t *testing.T) {
			b, err := os.ReadFile(rp)
			if err != nil {
				t.Fatal(err)
			}
			head, body, _ := strings.Cut(string(b), "\n")
			method, path, _ := strings.Cut(head, " ")
			code, h, out := e.do(method, path, body)
			got := "status: " + itoa(code) + "\ncontent-type: " + h.Get("Content-Type") + "\n" + normalizeBody(t, out)
			gp := strings.TrimSuffix(rp, ".request") + ".response"
			if *update {
				if err := os.WriteFile(gp, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(gp)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if got != string(want) {
				t.Errorf("%s differs from %s:\n%s", name, gp, got)
			}
		})
	}
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}
