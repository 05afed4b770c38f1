package grammar

import (
	"bytes"
	"math"
	"math/rand/v2"
	"os"
	"testing"
)

// fakePieces is a small vocabulary with the awkward tokens of real ones:
// punctuation fused with quotes, whitespace runs, UTF-8 characters split
// across tokens, escapes split, an empty (control) token and an EOG token.
func fakePieces() ([][]byte, []int32) {
	var pieces [][]byte
	for c := range 256 { // byte fallback, as real vocabularies have
		pieces = append(pieces, []byte{byte(c)})
	}
	for _, s := range []string{
		`{"`, `":`, `" `, `},`, `"}`, `",`, `","`, `":"`, "\n\t", "  ", "\n  ", `true`, `false`, `null`,
		`12`, `.5`, `e+`, "é", "\xc3", "\xa9x", "日本", "\xe6\x97", "\xa5\"", "\xf0\x9f", "\x98\x80", `\u`, `00e9`,
		`\n`, `\"`, `abc`, `"a"`, `"v"`, `"kids"`, `[1`, `]}`, "}\n", "}\n\n", ` {`, `0,`, `"name`, `age`,
		`20`, `24-01-3`, `T12:00:00Z`, `-`, `"x"`, `x1`, "\x7f", "\x01",
	} {
		pieces = append(pieces, []byte(s))
	}
	pieces = append(pieces, nil, []byte("<eos>"))
	return pieces, []int32{int32(len(pieces) - 1)}
}

// checkMask compares Mask with accepting each token on a copy of m.
func checkMask(t *testing.T, m *Matcher, v *Vocab, prefix []byte) {
	t.Helper()
	logits := make([]float32, v.size+7)
	m.Mask(logits)
	for i := range logits {
		want := i < v.size && m.Allowed(int32(i))
		if i < v.size && want && !v.isEOG[i] {
			if m.Clone().AcceptBytes(v.pieces[i]) != nil {
				t.Fatalf("Allowed(%d) but AcceptBytes refuses", i)
			}
		}
		if got := !math.IsInf(float64(logits[i]), -1); got != want {
			var p []byte
			if i < v.size {
				p = v.pieces[i]
			}
			t.Fatalf("after %q: token %d %q: mask allows %v, want %v", prefix, i, p, got, want)
		}
	}
}

// TestMaskFakeVocab walks random allowed tokens through several grammars,
// comparing the mask with brute force at every step (three times, so the
// trie walk, the cache build and the cached path all run).
func TestMaskFakeVocab(t *testing.T) {
	pieces, eog := fakePieces()
	v := NewVocab(pieces, eog)
	rng := rand.New(rand.NewPCG(7, 8))
	grammars := []*Grammar{JSON()}
	for _, s := range propertySchemas {
		g, err := FromSchema([]byte(s))
		if err != nil {
			t.Fatal(err)
		}
		grammars = append(grammars, g)
	}
	walks := 6
	if os.Getenv("GRAMMAR_SOAK") != "" {
		walks = 60
	}
	for gi, g := range grammars {
		for range walks {
			m := g.NewMatcher(v)
			var out []byte
			for step := 0; step < 60 && !m.Done(); step++ {
				for range 3 {
					checkMask(t, m, v, out)
				}
				var ok []int32
				for id := range int32(v.size) {
					if m.Allowed(id) {
						ok = append(ok, id)
					}
				}
				if len(ok) == 0 {
					t.Fatalf("grammar %d: no token allowed after %q", gi, out)
				}
				tok := ok[rng.IntN(len(ok))]
				if err := m.Accept(tok); err != nil {
					t.Fatalf("grammar %d: %v", gi, err)
				}
				if v.isEOG[tok] {
					break
				}
				out = append(out, v.pieces[tok]...)
			}
		}
	}
}

func TestAcceptErrors(t *testing.T) {
	pieces, eog := fakePieces()
	v := NewVocab(pieces, eog)
	id := func(s string) int32 {
		for i, p := range pieces {
			if string(p) == s {
				return int32(i)
			}
		}
		t.Fatalf("no token %q", s)
		return 0
	}
	m := JSON().NewMatcher(v)
	if err := m.Accept(id("}")); err == nil {
		t.Error("accepted } at the start")
	}
	if err := m.Accept(eog[0]); err == nil {
		t.Error("accepted EOG at the start")
	}
	if err := m.Accept(int32(len(pieces) - 2)); err == nil {
		t.Error("accepted an empty token")
	}
	if err := m.Accept(int32(len(pieces) + 5)); err == nil {
		t.Error("accepted an out-of-range token")
	}
	for _, s := range []string{`{"`, "a", `":`, "1", "}"} {
		if err := m.Accept(id(s)); err != nil {
			t.Fatal(err)
		}
	}
	// A rejected token leaves the matcher as it was.
	if err := m.Accept(id("]}")); err == nil {
		t.Error("accepted ]}")
	}
	if !m.Complete() || m.Done() {
		t.Fatalf("complete %v done %v", m.Complete(), m.Done())
	}
	if err := m.Accept(eog[0]); err != nil {
		t.Fatal(err)
	}
	if !m.Done() {
		t.Error("not done after EOG")
	}
	logits := make([]float32, len(pieces))
	m.Mask(logits)
	for i, l := range logits {
		if allowed := !math.IsInf(float64(l), -1); allowed != (int32(i) == eog[0]) {
			t.Errorf("after EOG token %d allowed %v", i, allowed)
		}
	}
}

func TestClone(t *testing.T) {
	v := NewVocab(nil, nil)
	m := JSON().NewMatcher(v)
	if err := m.AcceptBytes([]byte(`{"a":[`)); err != nil {
		t.Fatal(err)
	}
	c := m.Clone()
	if err := c.AcceptBytes([]byte(`1]}`)); err != nil || !c.Complete() {
		t.Fatal(err, c.Complete())
	}
	if m.Complete() || m.AcceptBytes([]byte(`"x"]}`)) != nil || !m.Complete() {
		t.Fatal("original changed by its clone")
	}
}

// TestLongDocument checks frame compaction: a long document with deep
// nesting repeated many times keeps a small arena and stays correct.
func TestLongDocument(t *testing.T) {
	v := NewVocab(nil, nil)
	g, err := FromSchema([]byte(propertySchemas[1]))
	if err != nil {
		t.Fatal(err)
	}
	m := g.NewMatcher(v)
	// maxItems 2 on kids.
	if err := m.AcceptBytes([]byte(`{"v":1,"kids":[{"v":2},{"v":3},`)); err == nil {
		t.Fatal("maxItems not enforced")
	}
	var doc bytes.Buffer
	m = JSON().NewMatcher(v)
	doc.WriteString(`{"a":[`)
	for i := range 5000 {
		if i > 0 {
			doc.WriteString(`,`)
		}
		doc.WriteString(`{"b":[{"c":[1,{"d":"x"}]}]}`)
	}
	doc.WriteString(`]}`)
	for i := range doc.Len() {
		if err := m.AcceptBytes(doc.Bytes()[i : i+1]); err != nil {
			t.Fatalf("byte %d: %v", i, err)
		}
	}
	if !m.Complete() {
		t.Fatal("not complete")
	}
	if m.base > 4096 {
		t.Errorf("frame arena holds %d frames", m.base)
	}
}

// TestDeepNesting opens recursive structures as deep as the matcher allows:
// nesting stops at a bound, and every state reached can still be closed
// (the stack limit never leaves a dead end).
func TestDeepNesting(t *testing.T) {
	v := NewVocab(nil, nil)
	for _, tc := range []struct {
		schema, open, leaf, close string
	}{
		{`{"$defs":{"n":{"type":"object","properties":{"k":{"type":"array","items":{"$ref":"#/$defs/n"}}},"required":["k"]}},"$ref":"#/$defs/n"}`, `{"k":[`, ``, `]}`},
		{`{"$defs":{"n":{"type":"object","properties":{"a":{"$ref":"#/$defs/n"},"b":{"type":"null"}},"required":["b"]}},"$ref":"#/$defs/n"}`, `{"a":`, `{"b":null}`, `,"b":null}`},
		{``, `{"a":[`, ``, `]}`},
	} {
		g := JSON()
		if tc.schema != "" {
			var err error
			if g, err = FromSchema([]byte(tc.schema)); err != nil {
				t.Fatal(err)
			}
		}
		m := g.NewMatcher(v)
		depth := 0
		for m.AcceptBytes([]byte(tc.open)) == nil {
			depth++
			if depth > 1000 {
				t.Fatalf("%s: nesting unbounded", tc.open)
			}
		}
		if depth < 16 {
			t.Errorf("%s: only %d levels", tc.open, depth)
		}
		// Close what was opened: the last, partial opening first.
		for i := 1; i <= len(tc.open); i++ {
			c := m.Clone()
			if c.AcceptBytes([]byte(tc.open[:i])) != nil {
				break
			}
			if _, ok := anyNextByte(c); !ok {
				t.Fatalf("%s: dead end after %d levels and %q", tc.open, depth, tc.open[:i])
			}
		}
		if err := m.AcceptBytes([]byte(tc.leaf)); err != nil {
			t.Fatalf("%s: leaf at %d levels: %v", tc.open, depth, err)
		}
		for range depth {
			if err := m.AcceptBytes([]byte(tc.close)); err != nil {
				t.Fatalf("%s: closing: %v", tc.open, err)
			}
		}
		if !m.Complete() {
			t.Errorf("%s: not complete after closing %d levels", tc.open, depth)
		}
		t.Logf("%s: %d levels", tc.open, depth)
	}
}

// anyNextByte returns a byte m accepts next, if any.
func anyNextByte(m *Matcher) (byte, bool) {
	for b := range 256 {
		for _, c := range m.cur {
			if m.accepts(c, []byte{byte(b)}) {
				return byte(b), true
			}
		}
	}
	return 0, false
}
