package chat

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLlama3FromGGUF(t *testing.T) {
	// The template of shared/models/tiny-llama-bpe-Q4_0.gguf, as copied to
	// testdata/templates/llama3.jinja.
	tmpl := loadTemplate(t, "llama3")
	got, err := tmpl.Render([]Message{
		{Role: "system", Content: "{sys}"},
		{Role: "user", Content: "{user}"},
	}, Options{BOSToken: "<|begin_of_text|>", EOSToken: "<|eot_id|>", AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\n{sys}<|eot_id|><|start_header_id|>user<|end_header_id|>\n\n{user}<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n"
	if got != want {
		t.Errorf("got  %q\nwant %q", got, want)
	}
}

func TestFallback(t *testing.T) {
	got, err := Fallback().Render([]Message{
		{Role: "system", Content: "S"}, {Role: "user", Content: "U"},
	}, Options{BOSToken: "<s>", AddGenerationPrompt: true})
	if err != nil {
		t.Fatal(err)
	}
	want := "<|im_start|>system\nS<|im_end|>\n<|im_start|>user\nU<|im_end|>\n<|im_start|>assistant\n"
	if got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	if Fallback().EmitsBOS("<s>") {
		t.Error("the fallback must not emit BOS")
	}
}

func TestEmitsBOS(t *testing.T) {
	for _, c := range []struct {
		name, bos string
		want      bool
	}{
		{"llama3", "<|begin_of_text|>", true},
		{"llama3.2", "<|begin_of_text|>", true},
		{"gemma", "<bos>", true}, // the user-only probe renders; the system one would raise
		{"mistral-v0.2", "<s>", true},
		{"llama2", "<s>", true},
		{"chatml", "<s>", false},
		{"qwen2", "<|endoftext|>", false},
		{"phi3", "<s>", false},
		{"llama3", "", false},
	} {
		if got := loadTemplate(t, c.name).EmitsBOS(c.bos); got != c.want {
			t.Errorf("%s.EmitsBOS(%q) = %v, want %v", c.name, c.bos, got, c.want)
		}
	}
}

func TestSyntaxErrors(t *testing.T) {
	for _, src := range []string{
		"{% if %}",
		"{{ ",
		"{% for %}{% endfor %}",
		"{% for x in y %}",
		"{% endfor %}",
		"{{ 'unclosed }}",
		"{% set %}",
		"{% macro %}{% endmacro %}",
		"{{ a b }}",
		"{% include 'x.jinja' %}",
		"{% import 'x.jinja' as x %}",
		"{% extends 'base.jinja' %}",
		"{% do x.append(1) %}",
		"{% filter upper %}x{% endfilter %}",
		"{% set d['k'] = 1 %}",
	} {
		if tmpl, err := New(src); err == nil {
			t.Errorf("New(%q) = %v, want an error", src, tmpl)
		}
	}
}

func TestUnsupported(t *testing.T) {
	for _, src := range []string{
		"{% for x in [1] recursive %}{{ loop([1]) }}{% endfor %}",
		"{{ __hearth_state }}",
		"{% set __hearth_mul = 1 %}",
		"{% for __hearth_x in [1] %}{% endfor %}",
		"{% macro m(__hearth_a) %}{% endmacro %}",
		strings.Repeat("(", 1000) + strings.Repeat(")", 1000),
		"{{" + strings.Repeat("[", 500) + strings.Repeat("]", 500) + "}}",
		strings.Repeat("{% if true %}", 300) + strings.Repeat("{% endif %}", 300),
		strings.Repeat("x", maxTemplateBytes+1),
	} {
		_, err := New(src)
		if !errors.Is(err, ErrUnsupported) {
			name := src
			if len(name) > 60 {
				name = name[:60] + "..."
			}
			t.Errorf("New(%q): %v, want ErrUnsupported", name, err)
		}
	}
}

// TestHostile renders templates built to hang or exhaust memory; each must
// fail with ErrLimit quickly.
func TestHostile(t *testing.T) {
	small := Limits{Timeout: 5 * time.Second, MaxOutputBytes: 1 << 20, MaxValueBytes: 1 << 20, MaxSteps: 20000, MaxDepth: 32}
	for _, c := range []struct{ name, src string }{
		{"recursive macro", "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"},
		{"mutual recursion", "{% macro a() %}{{ b() }}{% endmacro %}{% macro b() %}{{ a() }}{% endmacro %}{{ a() }}"},
		{"doubling recursion", "{% macro f(s) %}{{ f(s ~ s) }}{% endmacro %}{{ f('ab') }}"},
		{"nested loops", "{% for i in range(10000) %}{% for j in range(10000) %}{% endfor %}{% endfor %}"},
		{"loop over string", "{% set s = 'x' * 10000 %}{% for a in s %}{% for b in s %}{% endfor %}{% endfor %}"},
		{"huge range", "{% for i in range(1000000000) %}{% endfor %}"},
		{"huge repeat", "{{ 'a' * 1000000000000 }}"},
		{"repeat overflow", "{{ 'abc' * 9223372036854775807 }}"},
		{"list repeat", "{{ [1, 2] * 100000000 }}"},
		{"doubling string", "{% set ns = namespace(s='ab') %}{% for i in range(64) %}{% set ns.s = ns.s + ns.s %}{% endfor %}{{ ns.s }}"},
		{"doubling list", "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = ns.l + ns.l %}{% endfor %}{{ ns.l|length }}"},
		{"nested lists", "{% set ns = namespace(l=[1]) %}{% for i in range(64) %}{% set ns.l = [ns.l, ns.l] %}{% endfor %}{{ ns.l }}"},
		{"cycle", "{% set ns = namespace() %}{% set ns.x = ns %}{{ ns }}"},
		{"output", "{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}"},
		{"set block", "{% set x %}{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}{% endset %}"},
		{"macro buffer", "{% macro m() %}{% for i in range(100000) %}{{ 'y' * 1000 }}{% endfor %}{% endmacro %}{{ m() }}"},
		{"replace squaring", "{% set s = 'x' * 1000 %}{{ s.replace('', s).replace('', s) }}"},
		{"replace filter", "{% set s = 'x' * 1000 %}{{ s|replace('', s)|replace('', s) }}"},
		{"indent width", "{{ 'a\nb'|indent(100000000) }}"},
		{"tojson indent", "{{ [1]|tojson(indent=100000000) }}"},
		{"tojson cycle", "{% set ns = namespace() %}{% set ns.a = [ns] %}{{ ns|tojson }}"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tmpl, err := New(c.src)
			if err != nil {
				t.Fatalf("New: %v", err)
			}
			start := time.Now()
			out, err := tmpl.Render(nil, Options{Limits: small})
			if !errors.Is(err, ErrLimit) {
				t.Fatalf("Render = (%d bytes, %v), want ErrLimit", len(out), err)
			}
			if d := time.Since(start); d > 3*time.Second {
				t.Errorf("took %v", d)
			}
		})
	}
}

func TestTimeoutAndCancel(t *testing.T) {
	tmpl, err := New("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}")
	if err != nil {
		t.Fatal(err)
	}
	_, err = tmpl.Render(nil, Options{Limits: Limits{Timeout: 20 * time.Millisecond, MaxSteps: 1 << 40}})
	if !errors.Is(err, ErrLimit) || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("timeout: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = tmpl.RenderContext(ctx, nil, Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

// TestRenderErrors: runtime failures are errors, never panics.
func TestRenderErrors(t *testing.T) {
	for _, src := range []string{
		"{{ 1 % 0 }}",
		"{{ [].append(1) }}",
		"{{ {'a': 1}.update({}) }}",
		"{% set d = {'a': 1} %}{% set d.a = 2 %}",
		"{% set m = messages[0] %}{% set m.role = 'x' %}",
		"{{ messages[0].content.zfill(100000000) }}",
		"{{ 'x'|center(1000000000) }}",
		"{{ lipsum(1000000) }}",
		"{{ raise_exception() }}",
		"{{ undefined_function() }}",
		"{{ range(1, 2, 0) }}",
		"{{ 'a' * 'b' }}",
		"{{ strftime_now() }}",
		"{{ [1]|tojson(bogus=1) }}",
	} {
		tmpl, err := New(src)
		if err != nil {
			continue // refusing at parse time is fine too
		}
		out, err := tmpl.Render([]Message{{Role: "user", Content: "hi"}}, Options{})
		if err == nil {
			t.Errorf("%q rendered %q, want an error", src, out)
		}
	}
}

func TestSemantics(t *testing.T) {
	msgs := []Message{{Role: "user", Content: "  Hi  "}, {Role: "assistant", Content: "Yo"}}
	for _, c := range []struct{ src, want string }{
		{"{{ 'ab' * 3 }}|{{ 3 * 'ab' }}|{{ 2 * 3 }}|{{ 1.5 * 2 }}|{{ 'a' * 0 }}|{{ 'a' * -2 }}", "ababab|ababab|6|3.0||"},
		{"{{ ([1] * 3)|length }}", "3"},
		{"{{ messages[0].content|trim }}|{{ messages[0]['content'].strip() }}|{{ messages|length }}", "Hi|Hi|2"},
		{"{% for m in messages %}{{ loop.index0 }}{{ m.role[0] }}{% if not loop.last %},{% endif %}{% endfor %}", "0u,1a"},
		{"{% set ns = namespace(n=0) %}{% for m in messages %}{% set ns.n = ns.n + 1 %}{% endfor %}{{ ns.n }}", "2"},
		{"{% for i in range(5) %}{% if i == 3 %}{% break %}{% endif %}{% if i == 1 %}{% continue %}{% endif %}{{ i }}{% endfor %}", "02"},
		{"{{ range(3)|list }}|{{ range(1, 7, 2)|join(',') }}|{{ range(3, 0, -1)|join(',') }}", "[0, 1, 2]|1,3,5|3,2,1"},
		{"{{ {'b': 1, 'a': [true, none, 1.5, 'x\"y']}|tojson }}", `{"b": 1, "a": [true, null, 1.5, "x\"y"]}`},
		{"{{ {'b': 1, 'a': 2}|tojson(sort_keys=true) }}", `{"a": 2, "b": 1}`},
		{"{{ {'k': [1, {'x': 'é'}]}|tojson(indent=2) }}", "{\n  \"k\": [\n    1,\n    {\n      \"x\": \"é\"\n    }\n  ]\n}"},
		{"{{ 'é\n'|tojson(ensure_ascii=true) }}", `"\u00e9\n"`},
		{"{{ [1e20, 0.0001, 0.00001, 2.0, -0.0]|tojson }}", "[1e+20, 0.0001, 1e-05, 2.0, -0.0]"},
		{"{{ 'a\nb\n\nc'|indent(2) }}", "a\n  b\n\n  c"},
		{"{{ 'a\nb'|indent(2, true) }}", "  a\n  b"},
		{"{{ 'aXbXc'.replace('X', '-') }}|{{ 'aXbXc'|replace('X', '-', 1) }}", "a-b-c|a-bXc"},
		{"{% set x = 'yes' if messages else 'no' %}{{ x }}", "yes"},
		{"{% set b %}[{{ messages[1].content }}]{% endset %}{{ b }}", "[Yo]"},
		{"{% macro m(a, b='B') %}{{ a }}{{ b }}{% endmacro %}{{ m('A') }}{{ m('a', b='c') }}", "ABac"},
		{"{{ strftime_now('%Y-%m-%d %H:%M:%S %a %b %-d %j') }}", "2025-03-04 05:06:07 Tue Mar 4 063"},
		{"{{ dict(a=1).a }}{{ namespace({'z': 2}).z }}", "12"},
	} {
		tmpl, err := New(c.src)
		if err != nil {
			t.Errorf("New(%q): %v", c.src, err)
			continue
		}
		got, err := tmpl.Render(msgs, Options{Now: time.Date(2025, 3, 4, 5, 6, 7, 0, time.UTC)})
		if err != nil {
			t.Errorf("%q: %v", c.src, err)
			continue
		}
		if got != c.want {
			t.Errorf("%q\n got %q\nwant %q", c.src, got, c.want)
		}
	}
}

func TestExtra(t *testing.T) {
	tmpl, err := New("{{ tools|tojson }}|{{ flag }}|{{ n + 1 }}")
	if err != nil {
		t.Fatal(err)
	}
	type param struct {
		Name string `json:"name"`
	}
	got, err := tmpl.Render(nil, Options{Extra: map[string]any{
		"tools": []param{{"a"}, {"b"}},
		"flag":  true,
		"n":     int32(41),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if want := `[{"name": "a"}, {"name": "b"}]|True|42`; got != want {
		t.Errorf("got %q, want %q", got, want)
	}
	for _, k := range []string{"messages", "bos_token", "raise_exception", "__hearth_state"} {
		if _, err := tmpl.Render(nil, Options{Extra: map[string]any{k: 1}}); err == nil {
			t.Errorf("Extra[%q] accepted", k)
		}
	}
}

func TestConcurrentRender(t *testing.T) {
	tmpl := loadTemplate(t, "llama3.2")
	msgs := []Message{{Role: "system", Content: "S"}, {Role: "user", Content: "U"}}
	want, err := tmpl.Render(msgs, Options{BOSToken: "<b>", AddGenerationPrompt: true, Now: time.Unix(0, 0).UTC()})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 50 {
				got, err := tmpl.Render(msgs, Options{BOSToken: "<b>", AddGenerationPrompt: true, Now: time.Unix(0, 0).UTC()})
				if err != nil || got != want {
					t.Errorf("concurrent render: %q, %v", got, err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// TestSystemFolded: a template that raises on a system message (Gemma's)
// gets it prepended to the next message, as llama.cpp does; alone, it is
// dropped; a raise for another reason is still an error.
func TestSystemFolded(t *testing.T) {
	tmpl, err := New(`{% if messages and messages[0]['role'] == 'system' %}{{ raise_exception('System role not supported') }}{% endif %}` +
		`{% for m in messages %}{% if m['role'] == 'assistant' %}{{ raise_exception('no assistant') }}{% endif %}<{{ m['role'] }}>{{ m['content'] }}{% endfor %}`)
	if err != nil {
		t.Fatal(err)
	}
	got, err := tmpl.Render([]Message{{Role: "system", Content: "Be brief."}, {Role: "user", Content: "Hi"}}, Options{})
	if want := "<user>Be brief.\nHi"; err != nil || got != want {
		t.Errorf("folded: %q, %v; want %q", got, err, want)
	}
	got, err = tmpl.Render([]Message{{Role: "system", Content: "Be brief."}}, Options{})
	if err != nil || got != "" {
		t.Errorf("system alone: %q, %v; want it dropped", got, err)
	}
	var re *RaiseError
	if _, err = tmpl.Render([]Message{{Role: "system", Content: "x"}, {Role: "assistant", Content: "y"}}, Options{}); !errors.As(err, &re) {
		t.Errorf("other raise: %v, want a RaiseError", err)
	}
}

// TestConditionalGroups: a parenthesized conditional used as an operand
// (which gonja's parser refuses there) renders as Jinja does, strings and
// calls around it untouched.
func TestConditionalGroups(t *testing.T) {
	for src, want := range map[string]string{
		`{{ 'a' + ('b' if x else 'c') + 'd' }}`:                               "abd",
		`{{ ('yes' if not x else 'no') | upper }}`:                            "NO",
		`{% set s = 'p' ~ ('q' if x and (y or x) else 'r') %}{{ s }}`:         "pq",
		`{{ "(" + ('x' if x else 'y') + ") if" }}`:                            "(x) if",
		`{{ [1, 2] | join(('-' if x else '+')) }}`:                            "1-2",
		`{{ (1, 2) | length }}{{ (3) }}`:                                      "23",
		`{# ('a' if x else 'b') #}{% raw %}{{ (a if b else c) }}{% endraw %}`: "{{ (a if b else c) }}",
	} {
		tmpl, err := New(src)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		got, err := tmpl.Render(nil, Options{Extra: map[string]any{"x": true, "y": false}, Now: time.Unix(0, 0)})
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", src, got, err, want)
		}
	}
}

// TestNegativeIndex: x[-k] as Python reads it, including the first item
// (gonja's own bound misses -len(x): a one-piece split()[-1] came back
// undefined, which broke QwQ's template).
func TestNegativeIndex(t *testing.T) {
	for src, want := range map[string]string{
		`{% for m in messages %}{{ m.content.split('</think>')[-1].lstrip('\n') }}{% endfor %}`: "Hi!",
		`{{ [1, 2, 3][-1] }}{{ [1, 2, 3][-3] }}{{ [1][-1] }}|{{ [1][-2] }}|`:                    "311||",
		`{{ 'héllo'[-4] }}{{ 'x'[-1] }}{{ {'a': 1}['a'] }}`:                                     "éx1",
	} {
		tmpl, err := New(src)
		if err != nil {
			t.Errorf("%s: %v", src, err)
			continue
		}
		got, err := tmpl.Render([]Message{{Role: "assistant", Content: "Hi!"}}, Options{})
		if err != nil || got != want {
			t.Errorf("%s: %q, %v; want %q", src, got, err, want)
		}
	}
}

// TestItemsDeterministic: dict|items renders in one order every time (Go's
// map order must not leak into prompts: the prefix cache keys on them).
func TestItemsDeterministic(t *testing.T) {
	tmpl, err := New(`{% for k, v in d|items %}{{ k }}={{ v }};{% endfor %}|{% for k, v in d.items() %}{{ k }};{% endfor %}`)
	if err != nil {
		t.Fatal(err)
	}
	d := map[string]any{}
	for _, k := range []string{"zeta", "alpha", "mid", "Beta", "gamma", "delta", "eps"} {
		d[k] = len(k)
	}
	want := ""
	for i := range 30 {
		got, err := tmpl.Render(nil, Options{Extra: map[string]any{"d": d}})
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			want = got
		} else if got != want {
			t.Fatalf("render %d: %q, first %q", i, got, want)
		}
	}
	if !strings.HasPrefix(want, "alpha=5;Beta=4;") {
		t.Errorf("items order %q, want sorted keys", want)
	}
}
