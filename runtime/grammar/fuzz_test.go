package grammar

import (
	"math/rand/v2"
	"testing"
	"time"
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
