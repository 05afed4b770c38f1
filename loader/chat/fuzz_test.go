package chat

import (
	"os"
	"path/filepath"
	"testing"
	"time"
	"unicode/utf8"
)

// fuzzLimits keep each execution in the milliseconds.
var fuzzLimits = Limits{
	Timeout:        200 * time.Millisecond,
	MaxOutputBytes: 64 << 10,
	MaxValueBytes:  64 << 10,
	MaxSteps:       2000,
	MaxDepth:       16,
}

// FuzzRender parses and renders arbitrary templates with an arbitrary message:
// neither New nor Render may panic, hang or pass the limits. Seeds: every
// template under testdata/templates plus the hostile snippets of TestHostile;
// crashers go to testdata/fuzz/FuzzRender. Run with
//
//	go test ./loader/chat -run '^$' -fuzz FuzzRender -fuzztime 60s
func FuzzRender(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("testdata", "templates", "*.jinja"))
	for _, name := range files {
		b, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b), "Hello")
	}
	for _, src := range []string{
		"{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}",
		"{% for i in range(100) %}{% for j in range(100) %}{{ i * j }}{% endfor %}{% endfor %}",
		"{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}",
		"{% set ns = namespace() %}{% set ns.x = ns %}{{ ns|tojson }}",
		"{{ messages[0].content * 99999 }}{{ raise_exception('no') }}",
		"{{ (messages|first).content|replace('', 'xx')|tojson(indent=2) }}",
		"{% if messages[0]['role'] == 'system' %}{{ 1 % 0 }}{% endif %}",
		"{{ messages[0].content.split(' ')|map('upper')|join('-') }}",
	} {
		f.Add(src, "Hello world")
	}
	f.Fuzz(func(t *testing.T, src, content string) {
		start := time.Now()
		tmpl, err := New(src)
		if d := time.Since(start); d > time.Second {
			t.Errorf("New took %v", d)
		}
		if err != nil {
			return
		}
		msgs := []Message{{Role: "system", Content: "S"}, {Role: "user", Content: content}}
		start = time.Now()
		out, err := tmpl.Render(msgs, Options{BOSToken: "<s>", EOSToken: "</s>", AddGenerationPrompt: true, Limits: fuzzLimits})
		if err != nil {
			if len(err.Error()) > 2*maxErrorBytes {
				t.Errorf("error message of %d bytes", len(err.Error()))
			}
			return
		}
		if len(out) > fuzzLimits.MaxOutputBytes {
			t.Errorf("output of %d bytes passes the limit", len(out))
		}
		if d := time.Since(start); d > 10*fuzzLimits.Timeout {
			t.Errorf("render took %v", d)
		}
		_ = utf8.ValidString(out)
	})
}
