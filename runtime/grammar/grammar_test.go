package grammar

import (
	"errors"
	"strings"
	"testing"
)

// reject describes a document that must fail: at is the index of the first
// byte refused, or -1 when every byte is accepted but the document is not
// complete.
type reject struct {
	doc string
	at  int
}

// checkDocs feeds each document byte by byte.
func checkDocs(t *testing.T, g *Grammar, valid []string, invalid []reject) {
	t.Helper()
	v := NewVocab(nil, nil)
	for _, doc := range valid {
		m := g.NewMatcher(v)
		for i := range len(doc) {
			if err := m.AcceptBytes([]byte{doc[i]}); err != nil {
				t.Errorf("valid %q: byte %d (%q) refused", doc, i, doc[i])
				break
			}
		}
		if !m.Complete() {
			t.Errorf("valid %q: not complete", doc)
		}
	}
	for _, r := range invalid {
		m := g.NewMatcher(v)
		at := -1
		for i := range len(r.doc) {
			if m.AcceptBytes([]byte{r.doc[i]}) != nil {
				at = i
				break
			}
		}
		switch {
		case at != r.at:
			t.Errorf("invalid %q: refused at %d, want %d", r.doc, at, r.at)
		case at < 0 && m.Complete():
			t.Errorf("invalid %q: complete", r.doc)
		}
	}
}

func TestJSONBytes(t *testing.T) {
	deep := strings.Repeat(`{"a":`, 32) + "1" + strings.Repeat("}", 32)
	tooDeep := strings.Repeat(`{"a":`, 33)
	valid := []string{
		`{}`, `{"a":1}`, `{ "a" : [ 1 , 2 ] }`, `{"a":{"b":{"c":[]}}}`,
		`{"s":"\u00e9\n\"\\\/\b\f\r\t\uABCD"}`, `{"n":-0.5e+10}`, `{"n":1E-0}`, `{"u":"日本語 é 😀"}`,
		`{"t":true,"f":false,"z":null}`, "{}\n", "{} ", "{\n  \"a\": 1\n}", "{\n\t\t\"a\": [\n\t\t\t1]}",
		`{"a" : 1 , "b" :2 }`, deep, `{"n":1234567890123456}`, `{"s":"\uD7FF\ue000"}`, `{"n":0.1234567890123456}`,
		"{\"del\":\"\x7f\"}",
	}
	invalid := []reject{
		{`[]`, 0}, {` {}`, 0}, {`{"a":01}`, 6}, {`{"a":1,}`, 7}, {`{'a':1}`, 1},
		{"{\"a\":\"\x01\"}", 6}, {`{"a":"\q"}`, 7}, {`{"a":tru}`, 8}, {`{"a":1}}`, 7},
		{"{} \n", 3}, {"{}\n\n", 3}, {"{\"a\":\"\xff\"}", 6}, {"{\"a\":\"\xed\xa0\x80\"}", 7},
		{"{\"a\":\"\xc0\xaf\"}", 6}, {"{\"a\":\"\xf4\x90\x80\x80\"}", 7}, {`{"a":1.}`, 7},
		{`{"a":12345678901234567}`, 21}, {`{"a":1.12345678901234567}`, 23}, {tooDeep, len(tooDeep) - 5},
		{"{\n" + strings.Repeat(" ", 21) + "}", 22}, {`{  }`, 2}, {`{"a":1`, -1}, {`{"a"`, -1},
		{`{"a":"\u12G4"}`, 10}, {`{"a":"\uD800"}`, 9}, {`{"a":"\udfff"}`, 9}, {`{"a":-}`, 6}, {`{"a":1e}`, 7}, {`{"a" 1}`, 5}, {`{"a":[1 2]}`, 8},
	}
	checkDocs(t, JSON(), valid, invalid)
}

func TestJSONDone(t *testing.T) {
	v := NewVocab(nil, nil)
	for _, tc := range []struct {
		doc            string
		complete, done bool
	}{
		{`{`, false, false},
		{`{}`, true, false},
		{"{} ", true, true},
		{"{}\n", true, true},
	} {
		m := JSON().NewMatcher(v)
		if err := m.AcceptBytes([]byte(tc.doc)); err != nil {
			t.Fatal(err)
		}
		if m.Complete() != tc.complete || m.Done() != tc.done {
			t.Errorf("%q: complete %v done %v, want %v %v", tc.doc, m.Complete(), m.Done(), tc.complete, tc.done)
		}
	}
}

var schemaCases = []struct {
	name    string
	schema  string
	valid   []string
	invalid []reject
}{
	{
		"properties in order, optional skipped",
		`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"string"},"c":{"type":"boolean"}},"required":["b"]}`,
		[]string{`{"b":"x"}`, `{"a":1,"b":"x"}`, `{"a":1,"b":"x","c":true}`, `{"b":"x","c":false}`, `{ "a" : -3 , "b" : "" }`},
		[]reject{{`{}`, 1}, {`{"b":"x","a":1}`, 10}, {`{"a":1}`, 6}, {`{"b":"x","d":1}`, 10}, {`{"a":"x"}`, 5}, {`{"c":true,"b":"x"}`, 2}},
	},
	{
		"additional properties after declared, not repeating them",
		`{"properties":{"a":{"type":"integer"},"é":{"type":"null"}},"additionalProperties":{"type":"string"}}`,
		[]string{`{"a":1,"x":"y"}`, `{"x":"y"}`, `{"ab":"y"}`, `{"a":1,"a2":"q","":"z"}`, `{"\u0061":"y"}`, `{"\u00e9x":"y"}`, `{"é":null}`, `{"éé":"s"}`, `{"e":"s"}`},
		[]reject{{`{"a":1,"a":"s"}`, 9}, {`{"x":"y","a":1}`, 11}, {`{"x":1}`, 5}, {`{"é":"s"}`, 6}},
	},
	{
		"additionalProperties true",
		`{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"],"additionalProperties":true}`,
		[]string{`{"a":1}`, `{"a":1,"b":[1,{"c":null}]}`},
		[]reject{{`{"b":1}`, 2}},
	},
	{
		"any object",
		`{"type":"object"}`,
		[]string{`{}`, `{"a":[1,{"b":null}]}`},
		[]reject{{`[]`, 0}, {`"x"`, 0}},
	},
	{
		"closed empty objects",
		`{"type":"object","additionalProperties":false}`,
		[]string{`{}`, `{ }`},
		[]reject{{`{"a":1}`, 1}},
	},
	{
		"map of integers",
		`{"type":"object","additionalProperties":{"type":"integer"}}`,
		[]string{`{}`, `{"a":1,"b":2}`},
		[]reject{{`{"a":"x"}`, 5}},
	},
	{
		"required property not declared",
		`{"type":"object","properties":{"a":{"type":"integer"}},"required":["z"]}`,
		[]string{`{"z":[1]}`, `{"a":1,"z":2}`},
		[]reject{{`{"a":1}`, 6}},
	},
	{
		"required without properties",
		`{"type":"object","required":["a","b"]}`,
		[]string{`{"a":1,"b":[2]}`, `{"a":1,"b":2,"c":3}`},
		[]reject{{`{"b":1}`, 2}, {`{"a":1}`, 6}},
	},
	{
		"escaped property names",
		`{"properties":{"a\"b":{"type":"integer"}},"required":["a\"b"]}`,
		[]string{`{"a\"b":1}`},
		[]reject{{`{"ab":1}`, 3}},
	},
	{
		"array bounds",
		`{"type":"array","items":{"type":"integer"},"minItems":1,"maxItems":3}`,
		[]string{`[1]`, `[1,2,3]`, `[ 1 , 2 ]`},
		[]reject{{`[]`, 1}, {`[1,2,3,4]`, 6}, {`["a"]`, 1}, {`[1,]`, 3}},
	},
	{
		"any array",
		`{"type":"array"}`,
		[]string{`[]`, `[1,"a",[],{}]`},
		[]reject{{`{}`, 0}},
	},
	{
		"prefixItems",
		`{"prefixItems":[{"type":"string"},{"type":"integer"}]}`,
		[]string{`["a",1]`},
		[]reject{{`["a"]`, 4}, {`["a",1,2]`, 6}, {`[1,1]`, 1}},
	},
	{
		"prefixItems then items",
		`{"type":"array","prefixItems":[{"const":"x"}],"items":{"type":"boolean"},"minItems":1}`,
		[]string{`["x"]`, `["x",true,false]`},
		[]reject{{`[]`, 1}, {`["x",1]`, 5}},
	},
	{
		"enum",
		`{"enum":["red","green",1,null,{"a":[1]},"r\"q"]}`,
		[]string{`"red"`, `"green"`, `1`, `null`, `{"a":[1]}`, `"r\"q"`},
		[]reject{{`"blue"`, 1}, {`"re"`, 3}, {`2`, 0}, {`{"a": [1]}`, 5}},
	},
	{
		"enum filtered by type",
		`{"type":"string","enum":["a",1]}`,
		[]string{`"a"`},
		[]reject{{`1`, 0}},
	},
	{
		"const",
		`{"const":"x"}`,
		[]string{`"x"`},
		[]reject{{`"y"`, 1}},
	},
	{
		"anyOf",
		`{"anyOf":[{"type":"string"},{"type":"integer"}]}`,
		[]string{`"a"`, `12`, `-3`},
		[]reject{{`true`, 0}, {`1.5`, 1}},
	},
	{
		"oneOf as anyOf",
		`{"oneOf":[{"type":"object","properties":{"k":{"const":"a"},"x":{"type":"integer"}},"required":["k","x"]},{"type":"object","properties":{"k":{"const":"b"},"y":{"type":"string"}},"required":["k","y"]}]}`,
		[]string{`{"k":"a","x":1}`, `{"k":"b","y":"s"}`},
		[]reject{{`{"k":"a","y":"s"}`, 10}},
	},
	{
		"type list",
		`{"type":["string","null"]}`,
		[]string{`"a"`, `null`},
		[]reject{{`1`, 0}},
	},
	{
		"nullable",
		`{"type":"integer","nullable":true}`,
		[]string{`1`, `null`},
		[]reject{{`"1"`, 0}},
	},
	{
		"recursive $ref",
		`{"$defs":{"node":{"type":"object","properties":{"v":{"type":"integer"},"kids":{"type":"array","items":{"$ref":"#/$defs/node"}}},"required":["v"]}},"$ref":"#/$defs/node"}`,
		[]string{`{"v":1}`, `{"v":1,"kids":[{"v":2},{"v":3,"kids":[{"v":4,"kids":[]}]}]}`},
		[]reject{{`{"v":1,"kids":[{}]}`, 16}},
	},
	{
		"definitions and root ref",
		`{"definitions":{"a":{"type":"integer"}},"type":"object","properties":{"x":{"$ref":"#/definitions/a"},"self":{"$ref":"#"}}}`,
		[]string{`{"x":1}`, `{"self":{"x":2,"self":{}}}`},
		[]reject{{`{"x":"a"}`, 5}},
	},
	{
		"string length",
		`{"type":"string","minLength":2,"maxLength":3}`,
		[]string{`"ab"`, `"abc"`, `"é\n"`, `"\u0041b"`},
		[]reject{{`"a"`, 2}, {`"abcd"`, 4}},
	},
	{
		"integer range",
		`{"type":"integer","minimum":-5,"maximum":12}`,
		[]string{`-5`, `0`, `12`, `7`, `-1`, `10`},
		[]reject{{`13`, 1}, {`-6`, 1}, {`100`, 2}, {`-0`, 1}, {`01`, 1}},
	},
	{
		"integer exclusive range",
		`{"type":"integer","exclusiveMinimum":0,"exclusiveMaximum":100}`,
		[]string{`1`, `9`, `10`, `99`, `50`},
		[]reject{{`0`, 0}, {`100`, 2}, {`-1`, 0}},
	},
	{
		"integer draft-4 exclusive and large",
		`{"type":"integer","minimum":1000,"exclusiveMinimum":true,"maximum":1e20}`,
		[]string{`1001`, `9999`, `10000`, `9999999999999999`},
		[]reject{{`1000`, -1}, {`999`, -1}, {`10000000000000000`, 16}},
	},
	{
		"anchored pattern",
		`{"type":"string","pattern":"^[a-z]+-[0-9]{2}$"}`,
		[]string{`"ab-12"`, `"z-00"`},
		[]reject{{`"ab-1"`, 5}, {`"Ab-12"`, 1}, {`"ab-123"`, 6}},
	},
	{
		"unanchored pattern",
		`{"type":"string","pattern":"abc"}`,
		[]string{`"abc"`, `"xxabcyy"`, `"a\"abc"`},
		[]reject{{`"ab"`, 3}},
	},
	{
		"pattern with characters JSON escapes",
		`{"type":"string","pattern":"^a\"\\\\\\n\\u0001b$"}`,
		[]string{`"a\"\\\n\u0001b"`, `"a\"\\\n\u0001b"`},
		[]reject{{`"a\"\\` + "\n", 6}},
	},
	{
		"pattern alternation, classes, case folding",
		`{"type":"string","pattern":"^(?:foo|ba[rz]|\\d{2,3}|[^a-z\\s]x|é+)$"}`,
		[]string{`"foo"`, `"bar"`, `"baz"`, `"12"`, `"123"`, `"Ax"`, `"éé"`, `"\"x"`},
		[]reject{{`"ba"`, 3}, {`"1234"`, 4}, {`"ax"`, 1}, {`"bx"`, 2}},
	},
	{
		"pattern and maxLength",
		`{"type":"string","pattern":"^a+$","maxLength":3}`,
		[]string{`"aaa"`, `"a"`},
		[]reject{{`"aaaa"`, 4}, {`""`, 1}},
	},
	{
		"formats",
		`{"type":"object","properties":{"d":{"type":"string","format":"date"},"t":{"type":"string","format":"time"},"dt":{"type":"string","format":"date-time"},"u":{"type":"string","format":"uuid"},"e":{"type":"string","format":"email"}}}`,
		[]string{`{"d":"2024-01-31","t":"23:59:59.123+02:00","dt":"2024-02-29T12:00:00Z","u":"123e4567-e89b-12d3-a456-426614174000","e":"anything"}`},
		[]reject{{`{"d":"2024-13-01"}`, 12}, {`{"t":"24:00:00Z"}`, 7}, {`{"u":"123"}`, 9}},
	},
	{
		"allOf merges object schemas",
		`{"allOf":[{"type":"object","properties":{"a":{"type":"integer"}},"required":["a"]},{"properties":{"b":{"type":"string"}},"required":["b"]}]}`,
		[]string{`{"a":1,"b":"x"}`},
		[]reject{{`{"a":1}`, 6}, {`{"b":"x"}`, 2}},
	},
	{
		"allOf with $ref base and shared property",
		`{"$defs":{"base":{"type":"object","properties":{"id":{"type":"integer","minimum":0}},"required":["id"]}},"allOf":[{"$ref":"#/$defs/base"},{"properties":{"id":{"maximum":9},"n":{"type":"string"}}}]}`,
		[]string{`{"id":3}`, `{"id":9,"n":"x"}`},
		[]reject{{`{"id":10}`, 7}, {`{"id":-1}`, 6}},
	},
	{
		"anyOf distributes sibling keywords",
		`{"type":"object","properties":{"a":{"type":"integer"},"b":{"type":"integer"}},"anyOf":[{"required":["a"]},{"required":["b"]}]}`,
		[]string{`{"a":1}`, `{"b":2}`, `{"a":1,"b":2}`},
		[]reject{{`{}`, 1}},
	},
	{
		"empty schema",
		`{}`,
		[]string{`"x"`, `1`, `[1]`, `{"a":null}`, `true`, `null`},
		[]reject{{`x`, 0}},
	},
	{
		"true schema",
		`true`,
		[]string{`"x"`, `[{}]`},
		nil,
	},
	{
		"number",
		`{"type":"number","minimum":0}`,
		[]string{`-1.5e3`, `0`, `1E+2`, `3.25`},
		[]reject{{`1e`, -1}, {`.5`, 0}, {`+1`, 0}},
	},
	{
		"annotations ignored",
		`{"$schema":"https://json-schema.org/draft/2020-12/schema","$id":"x","title":"t","description":"d","examples":[1],"default":2,"type":"integer","deprecated":false,"unevaluatedProperties":false,"uniqueItems":false}`,
		[]string{`1`},
		nil,
	},
	{
		"properties false and items false",
		`{"type":"object","properties":{"a":false,"b":{"type":"array","prefixItems":[{"type":"integer"}],"items":false}}}`,
		[]string{`{"b":[1]}`, `{}`},
		[]reject{{`{"a":1}`, 2}, {`{"b":[1,2]}`, 7}},
	},
	{
		"empty properties closes the object",
		`{"type":"object","properties":{}}`,
		[]string{`{}`},
		[]reject{{`{"a":1}`, 1}},
	},
}

func TestSchemaBytes(t *testing.T) {
	for _, tc := range schemaCases {
		t.Run(tc.name, func(t *testing.T) {
			g, err := FromSchema([]byte(tc.schema))
			if err != nil {
				t.Fatal(err)
			}
			checkDocs(t, g, tc.valid, tc.invalid)
		})
	}
}

func TestSchemaErrors(t *testing.T) {
	deep := strings.Repeat(`{"items":`, 70) + `{}` + strings.Repeat(`}`, 70)
	deepJSON := strings.Repeat(`[`, 300) + strings.Repeat(`]`, 300)
	for _, tc := range []struct {
		schema string
		want   error
		msg    string // a part of the message
	}{
		{`{"not":{}}`, ErrUnsupported, `"not"`},
		{`{"type":"array","uniqueItems":true}`, ErrUnsupported, `"uniqueItems"`},
		{`{"type":"integer","multipleOf":2}`, ErrUnsupported, `"multipleOf"`},
		{`{"if":{},"then":{}}`, ErrUnsupported, `"if"`},
		{`{"properties":{"a":{"patternProperties":{}}}}`, ErrUnsupported, `/properties/a`},
		{`{"type":"object","minProperties":1}`, ErrUnsupported, `"minProperties"`},
		{`{"$ref":"http://example.com/s.json"}`, ErrUnsupported, `$ref`},
		{`{"type":"string","pattern":"(?=a)"}`, ErrUnsupported, `pattern`},
		{`{"type":"string","pattern":"a\\bb"}`, ErrUnsupported, `pattern`},
		{`{"type":"string","pattern":"(a)\\1"}`, ErrUnsupported, `pattern`},
		{`{"type":"string","maxLength":100000000}`, ErrUnsupported, `maxLength`},
		{`{"allOf":[{"type":"string","pattern":"a"},{"pattern":"b"}]}`, ErrUnsupported, `"pattern"`},
		{`{"anyOf":[{}],"oneOf":[{}]}`, ErrUnsupported, `oneOf`},
		{deep, ErrUnsupported, `deeper`},
		{`not json`, ErrInvalidSchema, ``},
		{``, ErrInvalidSchema, ``},
		{`{"type":5}`, ErrInvalidSchema, `type`},
		{`{"type":"strin"}`, ErrInvalidSchema, `strin`},
		{`{"type":[]}`, ErrInvalidSchema, `type`},
		{`{"required":"a"}`, ErrInvalidSchema, `required`},
		{`{"required":[1]}`, ErrInvalidSchema, `required`},
		{`{"$ref":"#/$defs/missing"}`, ErrInvalidSchema, `missing`},
		{`{"$ref":5}`, ErrInvalidSchema, `$ref`},
		{`{"$ref":"#"}`, ErrInvalidSchema, `circular`},
		{`{"$defs":{"a":{"$ref":"#/$defs/b"},"b":{"$ref":"#/$defs/a"}},"$ref":"#/$defs/a"}`, ErrInvalidSchema, `circular`},
		{`{"enum":[]}`, ErrInvalidSchema, `enum`},
		{`{"enum":5}`, ErrInvalidSchema, `enum`},
		{`[]`, ErrInvalidSchema, `schema`},
		{`false`, ErrInvalidSchema, `false`},
		{`{"type":"string","minLength":-1}`, ErrInvalidSchema, `minLength`},
		{`{"type":"string","minLength":1.5}`, ErrInvalidSchema, `minLength`},
		{`{"type":"string","minLength":5,"maxLength":2}`, ErrInvalidSchema, `minLength`},
		{`{"type":"array","minItems":5,"maxItems":2}`, ErrInvalidSchema, `minItems`},
		{`{"anyOf":[]}`, ErrInvalidSchema, `anyOf`},
		{`{"properties":[]}`, ErrInvalidSchema, `properties`},
		{`{"type":"object","properties":{"a":false},"required":["a"]}`, ErrInvalidSchema, `"a"`},
		{`{"type":"object","additionalProperties":false,"properties":{},"required":["a"]}`, ErrInvalidSchema, `"a"`},
		{`{} x`, ErrInvalidSchema, `after`},
		{`{"type":"string","type":"integer"}`, ErrInvalidSchema, `duplicate`},
		{`{"type":"integer","minimum":5,"maximum":1}`, ErrInvalidSchema, `minimum`},
		{`{"type":"integer","minimum":1e17}`, ErrUnsupported, `16 digits`},
		{`{"allOf":[{"type":"string"},{"type":"integer"}]}`, ErrInvalidSchema, `type`},
		{`{"$defs":{"a":{"anyOf":[{"$ref":"#/$defs/a"},{"type":"string"}]}},"$ref":"#/$defs/a"}`, ErrInvalidSchema, `recursion`},
		{`{"$defs":{"n":{"type":"object","properties":{"x":{"$ref":"#/$defs/n"}},"required":["x"]}},"$ref":"#/$defs/n"}`, ErrInvalidSchema, `no document`},
		{`{"type":"string","pattern":"[^\\x00-\\x{10FFFF}]"}`, ErrInvalidSchema, `no document`},
		{deepJSON, ErrInvalidSchema, `nested`},
	} {
		_, err := FromSchema([]byte(tc.schema))
		if !errors.Is(err, tc.want) || !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("%.60s: got %v, want %v containing %q", tc.schema, err, tc.want, tc.msg)
		}
	}
}
