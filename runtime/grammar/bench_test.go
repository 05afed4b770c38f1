package grammar

import (
	"testing"
)

// benchSchema is a typical structured-output schema.
const benchSchema = `{
  "type": "object",
  "properties": {
    "name": {"type": "string"},
    "age": {"type": "integer", "minimum": 0, "maximum": 150},
    "email": {"type": "string", "format": "email"},
    "tags": {"type": "array", "items": {"type": "string"}, "maxItems": 5},
    "address": {"type": "object", "properties": {"city": {"type": "string"}, "zip": {"type": "string", "pattern": "^[0-9]{5}$"}}, "required": ["city"]},
    "kind": {"enum": ["person", "company", "other"]},
    "bio": {"type": "string", "maxLength": 300},
    "when": {"type": "string", "format": "date-time"}
  },
  "required": ["name", "age"]
}`

func BenchmarkMask(b *testing.B) {
	v := realVocab(b, "ggml-vocab-llama-bpe-reconstructed.gguf")
	sg, err := FromSchema([]byte(benchSchema))
	if err != nil {
		b.Fatal(err)
	}
	cases := []struct {
		name   string
		g      *Grammar
		prefix string
	}{
		{"json/start", JSON(), ``},
		{"json/key", JSON(), `{"`},
		{"json/string", JSON(), `{"text": "Once upon a time`},
		{"json/after-value", JSON(), `{"a": 1`},
		{"json/number", JSON(), `{"a": 12`},
		{"json/value", JSON(), `{"a": `},
		{"schema/string", sg, `{"name": "Jo`},
		{"schema/after-name", sg, `{"name": "Jo"`},
		{"schema/integer", sg, `{"name": "Jo", "age": 4`},
		{"schema/zip", sg, `{"name": "Jo", "age": 4, "address": {"city": "X", "zip": "12`},
		{"schema/tags", sg, `{"name": "Jo", "age": 4, "email": "a@b.c", "tags": ["x", `},
		{"schema/maxLength", sg, `{"name": "Jo", "age": 4, "bio": "Born in`},
		{"schema/date-time", sg, `{"name": "Jo", "age": 4, "when": "2024-01-`},
	}
	cold := NewVocab(v.pieces, v.eog)
	cold.noCache = true
	logits := make([]float32, v.Size()+256)
	for _, tc := range cases {
		for _, c := range []struct {
			name string
			v    *Vocab
		}{{"cached", v}, {"walk", cold}} {
			b.Run(tc.name+"/"+c.name, func(b *testing.B) {
				m := tc.g.NewMatcher(c.v)
				if err := m.AcceptBytes([]byte(tc.prefix)); err != nil {
					b.Fatal(err)
				}
				m.Mask(logits) // the cache builds an entry the second time
				m.Mask(logits)
				for b.Loop() {
					m.Mask(logits)
				}
			})
		}
	}
}

func BenchmarkFromSchema(b *testing.B) {
	for b.Loop() {
		if _, err := FromSchema([]byte(benchSchema)); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkAcceptToken is the cost of advancing the state by one token.
func BenchmarkAcceptToken(b *testing.B) {
	v := NewVocab([][]byte{[]byte(`{"text": "`), []byte(" upon"), []byte(`"}`)}, nil)
	for b.Loop() {
		m := JSON().NewMatcher(v)
		if err := m.Accept(0); err != nil {
			b.Fatal(err)
		}
		for range 50 {
			if err := m.Accept(1); err != nil {
				b.Fatal(err)
			}
		}
		if err := m.Accept(2); err != nil || !m.Complete() {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*52), "ns/token")
}

// BenchmarkToolCallMask is the cost per token of Mask plus Accept for a lazy
// Hermes tool-call grammar over a 128k vocabulary: while awaiting the
// trigger (free text, the tail ending or not with the start of the
// trigger), and once constrained (inside an argument string, where the
// mask cache serves, and between JSON members). TextUntil measures a
// thinking block, Seq(TextUntil("</think>"), Lit("</think>"), ...).
func BenchmarkToolCallMask(b *testing.B) {
	v := realToolVocab(b)
	lazy, err := mustCompile(b, hermesExpr()).Lazy("<tool_call>")
	if err != nil {
		b.Fatal(err)
	}
	think := mustCompile(b, thinkingExpr())
	logits := make([]float32, v.Size())
	for _, tc := range []struct {
		name   string
		g      *Grammar
		prefix string
		tok    string // accepted after each Mask (on a clone: the state stays put)
	}{
		{"awaiting", lazy, "Sure, I will look that up", " the"},
		{"awaiting-partial", lazy, "Sure <tool", "_call"},
		{"constrained-string", lazy, "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"weather in", " the"},
		{"constrained-member", lazy, "<tool_call>\n{\"name\": \"search\", \"arguments\": {\"query\": \"x\"", ","},
		{"textuntil", think, "<think>\nThe user wants", " the"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			m := tc.g.NewMatcher(v)
			if err := m.AcceptText(tc.prefix); err != nil {
				b.Fatal(err)
			}
			tok := int32(-1)
			for i, p := range v.pieces {
				if string(p) == tc.tok {
					tok = int32(i)
				}
			}
			if tok < 0 {
				b.Fatalf("no token %q", tc.tok)
			}
			m.Mask(logits) // the cache builds an entry the second time
			m.Mask(logits)
			for b.Loop() {
				m.Mask(logits)
				if err := m.Clone().Accept(tok); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N)/1e3, "µs/token")
		})
	}
}
