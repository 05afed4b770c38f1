package grammar

import (
	"math/rand/v2"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzFromSchema compiles arbitrary schema bytes; when they compile, it
// walks a few random allowed bytes and checks Mask against brute force on a
// small vocabulary. Nothing may panic or hang.
func FuzzFromSchema(f *testing.F) {
	for _, s := range propertySchemas {
		f.Add([]byte(s))
	}
	for _, tc := range schemaCases {
		f.Add([]byte(tc.schema))
	}
	for _, s := range []string{
		`{"type":"string","pattern":"^(a|b)*c{2,4}[^x]?$"}`,
		`{"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/b"},{"type":"null"}]},"b":{"type":"array","items":{"$ref":"#/$defs/a"}}},"$ref":"#/$defs/a"}`,
		`{"allOf":[{"$ref":"#"}]}`,
		`{"type":["object","array"],"properties":{"x":{}},"items":{"enum":[1,"a",[{}]]},"maxItems":2}`,
		`{"type":"integer","minimum":-1e300,"maximum":1e300}`,
		`{"oneOf":[{"const":{"a":[1,{"b":null}]}},{"type":"boolean"}]}`,
	} {
		f.Add([]byte(s))
	}
	pieces, eog := fakePieces()
	v := NewVocab(pieces, eog)
	f.Fuzz(func(t *testing.T, schema []byte) {
		start := time.Now()
		g, err := FromSchema(schema)
		if d := time.Since(start); d > 5*time.Second {
			t.Fatalf("compiling took %v", d)
		}
		if err != nil {
			return
		}
		rng := rand.New(rand.NewPCG(uint64(len(schema)), 1))
		m := g.NewMatcher(v)
		logits := make([]float32, v.size)
		for range 8 {
			if m.Done() {
				return
			}
			clear(logits)
			m.Mask(logits)
			var ok []int32
			for id := range int32(v.size) {
				allowed := logits[id] == 0
				if allowed != m.Allowed(id) {
					t.Fatalf("token %d %q: mask %v, brute force %v", id, v.pieces[id], allowed, !allowed)
				}
				if allowed {
					ok = append(ok, id)
				}
			}
			if len(ok) == 0 {
				t.Fatal("dead end: no token allowed")
			}
			tok := ok[rng.IntN(len(ok))]
			if err := m.Accept(tok); err != nil {
				t.Fatal(err)
			}
		}
	})
}

// FuzzTextUntil checks Seq(TextUntil(stop), Lit(stop)) against its
// definition: valid UTF-8, then stop, whose first occurrence is at the end.
func FuzzTextUntil(f *testing.F) {
	for _, s := range [][2]string{
		{"</think>", "a</think>"}, {"abab", "ababab"}, {"abab", "aabab"}, {"aa", "aaa"},
		{"\n</parameter>", "x\n\n</parameter>"}, {"é", "\xc3\xa9"}, {"<", "\xe6\x97\xa5<"},
	} {
		f.Add(s[0], s[1])
	}
	v := NewVocab(nil, nil)
	f.Fuzz(func(t *testing.T, stop, text string) {
		if stop == "" || len(stop) > 16 || len(text) > 64 {
			return
		}
		g, err := Compile(Seq(TextUntil(stop), Lit(stop)))
		if err != nil {
			t.Fatal(err)
		}
		m := g.NewMatcher(v)
		got := m.AcceptText(text) == nil && m.Complete()
		n := len(text) - len(stop)
		want := n >= 0 && utf8.ValidString(text[:n]) && strings.Index(text, stop) == n
		if got != want {
			t.Fatalf("stop %q text %q: accepted %v, want %v", stop, text, got, want)
		}
	})
}
