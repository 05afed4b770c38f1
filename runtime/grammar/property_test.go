package grammar

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// propertySchemas are compiled and sampled at random; every document must
// parse and validate.
var propertySchemas = []string{
	`{"type":"object","properties":{"name":{"type":"string","minLength":1,"maxLength":8},"age":{"type":"integer","minimum":0,"maximum":150},"email":{"type":"string","format":"email"},"tags":{"type":"array","items":{"type":"string"},"maxItems":3},"kind":{"enum":["person","company",null,3]}},"required":["name","age"]}`,
	`{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"},"maxItems":2}},"required":["v"]}},"$ref":"#/$defs/node"}`,
	`{"type":"array","items":{"anyOf":[{"type":"string","pattern":"^[a-c]{2}-\\d$"},{"type":"number"},{"type":"boolean"},{"type":"null"}]},"minItems":2,"maxItems":4}`,
	`{"type":"object","properties":{"a":{"type":"integer"}},"additionalProperties":{"type":"string","maxLength":3}}`,
	`{"type":"object","properties":{"d":{"type":"string","format":"date"},"t":{"type":"string","format":"date-time"},"u":{"type":"string","format":"uuid"}},"required":["d","t","u"]}`,
	`{"prefixItems":[{"const":"x"},{"type":"integer","exclusiveMinimum":-3,"exclusiveMaximum":1000}],"items":{"type":["string","integer"]}}`,
	`{"allOf":[{"type":"object","properties":{"a":{"type":"string","pattern":"q"}},"required":["a"]},{"properties":{"b":{"type":"object"}}}]}`,
	`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"anyOf":[{"required":["a"]},{"required":["b"]}]}`,
	`{"type":"object","properties":{"s":{"type":"string","pattern":"^[^\"\\\\]*\\\\[\\n\\t\"]$","minLength":2}},"required":["s"]}`,
	`{}`,
	`{"type":"string","pattern":"^(?i)(héllo|wörld)( (héllo|wörld))*$"}`,
	`{"type":"string","pattern":"^x[0-9]*y"}`,
	`{"type":"array","items":{"type":"string","minLength":3,"maxLength":40},"maxItems":3}`,
}

// randomDocBytes walks g byte by byte, choosing among the allowed bytes at
// random (structural bytes favoured), then closing bytes once past budget.
func randomDocBytes(t *testing.T, g *Grammar, rng *rand.Rand, budget int) string {
	t.Helper()
	return randomDocPrefer(t, g, rng, budget, `"{}[],:0123456789tfn-xyz`, false)
}

// randomDocPrefer is randomDocBytes favouring the bytes of prefer (in
// order) until the budget is spent.
func randomDocPrefer(t *testing.T, g *Grammar, rng *rand.Rand, budget int, early string, greedy bool) string {
	t.Helper()
	m := g.NewMatcher(NewVocab(nil, nil))
	var out []byte
	for steps := 0; ; steps++ {
		if m.Done() || m.Complete() && (len(out) > budget || rng.IntN(6) == 0) {
			return string(out)
		}
		if steps > 50*budget+2000 {
			t.Fatalf("no end after %d bytes: %q", steps, out)
		}
		var next []byte
		for b := range 256 {
			for _, c := range m.cur {
				if m.accepts(c, []byte{byte(b)}) {
					next = append(next, byte(b))
					break
				}
			}
		}
		if len(next) == 0 {
			t.Fatalf("dead end after %q", out)
		}
		pick := next[rng.IntN(len(next))]
		prefer := early
		if len(out) > budget {
			prefer = `"\}]0123456789nb`
		}
		if greedy || rng.IntN(2) == 0 {
			for _, c := range []byte(prefer) {
				if strings.IndexByte(string(next), c) >= 0 && (len(out) > budget || greedy || rng.IntN(3) == 0) {
					pick = c
					break
				}
			}
		}
		if err := m.AcceptBytes([]byte{pick}); err != nil {
			t.Fatalf("allowed byte %q refused after %q: %v", pick, out, err)
		}
		out = append(out, pick)
	}
}

func checkDoc(t *testing.T, schema *jv, doc string) {
	t.Helper()
	if !json.Valid([]byte(doc)) {
		t.Fatalf("invalid JSON: %q", doc)
	}
	d, err := parseJSONDup([]byte(doc), true)
	if err != nil {
		t.Fatalf("%q: %v", doc, err)
	}
	if schema != nil {
		if err := validate(schema, schema, d); err != nil {
			t.Fatalf("%q does not match the schema: %v", doc, err)
		}
	} else if d.kind != jobj {
		t.Fatalf("JSON() produced a non-object %q", doc)
	}
}

func TestRandomDocuments(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	n := 25
	if os.Getenv("GRAMMAR_SOAK") != "" {
		n = 500
	}
	if testing.Short() {
		n = 5
	}
	for i, src := range append([]string{""}, propertySchemas...) {
		g, schema := JSON(), (*jv)(nil)
		if src != "" {
			var err error
			if g, err = FromSchema([]byte(src)); err != nil {
				t.Fatalf("schema %d: %v", i, err)
			}
			schema, _ = parseJSON([]byte(src))
		}
		for range n {
			doc := randomDocBytes(t, g, rng, 60)
			checkDoc(t, schema, doc)
		}
	}
}

// TestDeepRandom drives recursive grammars towards deep nesting: the stack
// limit must bound it without ever leaving a state where no byte is
// allowed, and the documents must still close.
func TestDeepRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 3))
	for _, src := range []string{
		`{"$defs":{"n":{"type":"object","properties":{"k":{"type":"array","items":{"$ref":"#/$defs/n"}}},"required":["k"]}},"$ref":"#/$defs/n"}`,
		`{"$defs":{"n":{"type":"object","properties":{"a":{"$ref":"#/$defs/n"},"b":{"type":"null"}},"required":["b"]}},"$ref":"#/$defs/n"}`,
		`{"$defs":{"n":{"anyOf":[{"type":"array","items":{"$ref":"#/$defs/n"},"minItems":1},{"type":"object","properties":{"x":{"$ref":"#/$defs/n"}},"required":["x"]},{"type":"integer"}]}},"$ref":"#/$defs/n"}`,
		``,
	} {
		g, schema := JSON(), (*jv)(nil)
		if src != "" {
			var err error
			if g, err = FromSchema([]byte(src)); err != nil {
				t.Fatal(err)
			}
			schema, _ = parseJSON([]byte(src))
		}
		for range 10 {
			doc := randomDocPrefer(t, g, rng, 1500, `{["akx:`, true)
			checkDoc(t, schema, doc)
		}
	}
}
