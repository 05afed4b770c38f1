package grammar

import (
	"errors"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// toolPieces is fakePieces plus the tokens of tool-call formats: control
// tokens given their text (as the engine does for preserved tokens),
// triggers split across tokens, and tokens that complete a trigger and go
// on with text a grammar refuses.
func toolPieces() ([][]byte, []int32) {
	pieces, eog := fakePieces()
	pieces = pieces[:len(pieces)-1] // <eos> last again below
	for _, s := range []string{
		"<tool_call>", "</tool_call>", "<tool", "_call>", "_call>\n", "_call>x", "ab<tool_call>\n{", "<tool_call>oops",
		"\n", "\n</tool_call>", `{"name": "`, "search", "get_weather", `", "arguments": `, `{"query": "`, `{"location": "`,
		"[TOOL_CALLS]", "[ARGS]", "[TOOL_CALLS]search[ARGS]{", "<|channel|>", "commentary", " to=functions.", "<|message|>",
		"<|call|>", " <|constrain|>json<|message|>", "<|channel|>analysis<|message|>", "Hello", " world", "<think>", "</think>",
		`{"name": "search", "parameters": `, "<<", "<",
	} {
		pieces = append(pieces, []byte(s))
	}
	pieces = append(pieces, []byte("<eos>"))
	_ = eog
	return pieces, []int32{int32(len(pieces) - 1)}
}

func tokenID(t testing.TB, v *Vocab, s string) int32 {
	t.Helper()
	for i, p := range v.pieces {
		if string(p) == s {
			return int32(i)
		}
	}
	t.Fatalf("no token %q", s)
	return 0
}

func mustLazy(t testing.TB, e Expr, triggers ...string) *Grammar {
	t.Helper()
	g, err := mustCompile(t, e).Lazy(triggers...)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestLazyErrors(t *testing.T) {
	g := mustCompile(t, hermesExpr())
	for _, trig := range [][]string{nil, {""}, {"<tool_call>", "[TOOL_CALLS]"}} {
		if _, err := g.Lazy(trig...); !errors.Is(err, ErrInvalidGrammar) {
			t.Errorf("Lazy(%q): %v", trig, err)
		}
	}
	if _, err := g.Lazy("<tool", "<tool_call>\n{"); err != nil {
		t.Error(err)
	}
}

// TestLazyTrigger feeds token sequences to a lazy Hermes grammar.
func TestLazyTrigger(t *testing.T) {
	pieces, eog := toolPieces()
	v := NewVocab(pieces, eog)
	g := mustLazy(t, hermesExpr(), "<tool_call>")
	for _, tc := range []struct {
		name   string
		toks   []string
		offset int      // TriggerOffset after all of toks (-1: never fired)
		masked []string // tokens Mask refuses next
		open   []string // tokens Mask allows next
	}{
		{"never", []string{"Hello", " world", "<", "<think>"}, -1, nil, []string{"<eos>", "", "_call>x", "<tool_call>"}},
		{"single-token", []string{"Hello", "<tool_call>"}, 5, []string{"<eos>", "x", "<tool_call>"}, []string{"\n"}},
		{"mid-token", []string{"Hi ", "ab<tool_call>\n{"}, 5, []string{"<eos>", "}"}, []string{`"`, `"name`}},
		{"split", []string{"Hi", "<tool", "_call>\n"}, 2, []string{"<eos>", "\n"}, []string{"{", `{"name": "`}},
		{"overlap", []string{"<<", "tool", "_call>"}, 1, nil, []string{"\n"}},
		{"dead-end-single", []string{"x"}, -1, []string{"<tool_call>oops"}, []string{"<tool_call>", "ab<tool_call>\n{"}},
		{"dead-end-split", []string{"<tool"}, -1, []string{"_call>x", "<tool_call>oops"}, []string{"_call>", "_call>\n", "<eos>", "x"}},
		{"complete", []string{"ok ", "<tool_call>", "\n", `{"name": "`, "search", `", "arguments": `, `{"query": "`, "x", `"}`, "}", "\n</tool_call>"}, 3, nil, []string{"<eos>", "\n"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := g.NewMatcher(v)
			for _, s := range tc.toks {
				tok := int32(-1)
				for i, p := range v.pieces {
					if string(p) == s {
						tok = int32(i)
						break
					}
				}
				var err error
				if tok >= 0 {
					err = m.Accept(tok)
				} else {
					err = m.AcceptText(s) // text that is no token of the vocabulary
				}
				if err != nil {
					t.Fatalf("%q: %v", s, err)
				}
			}
			if got := m.TriggerOffset(); got != tc.offset || m.Triggered() != (tc.offset >= 0) {
				t.Fatalf("offset %d triggered %v, want %d", got, m.Triggered(), tc.offset)
			}
			if tc.offset < 0 && (!m.Complete() || m.Done()) {
				t.Errorf("awaiting: complete %v done %v", m.Complete(), m.Done())
			}
			logits := make([]float32, v.size)
			m.Mask(logits)
			id := func(s string) int32 {
				if s == "" { // the empty (control) token
					for i, p := range pieces {
						if len(p) == 0 {
							return int32(i)
						}
					}
				}
				return tokenID(t, v, s)
			}
			for _, s := range tc.masked {
				if !math.IsInf(float64(logits[id(s)]), -1) || m.Clone().Accept(id(s)) == nil {
					t.Errorf("%q allowed", s)
				}
			}
			for _, s := range tc.open {
				if math.IsInf(float64(logits[id(s)]), -1) || m.Clone().Accept(id(s)) != nil {
					t.Errorf("%q refused", s)
				}
			}
			checkMask(t, m, v, nil)
		})
	}
}

// TestLazyMaskFakeVocab walks random allowed tokens through lazy grammars of
// every format, favouring the tokens of the format so that triggers fire:
// Mask agrees with Allowed and Accept at every step, some token is always
// allowed, and the text from the trigger on is what the grammar accepts.
func TestLazyMaskFakeVocab(t *testing.T) {
	pieces, eog := toolPieces()
	v := NewVocab(pieces, eog)
	rng := rand.New(rand.NewPCG(21, 22))
	for _, tc := range []struct {
		name     string
		e        Expr
		triggers []string
		favour   []string
	}{
		{"hermes", hermesExpr(), []string{"<tool_call>"}, []string{"<tool_call>", "<tool", "_call>\n", "_call>x", "\n", `{"name": "`, "search", `", "arguments": `, `{"query": "`, "\n</tool_call>"}},
		{"mistral", mistralArgsExpr(), []string{"[TOOL_CALLS]"}, []string{"[TOOL_CALLS]", "[TOOL_CALLS]search[ARGS]{", "search", "[ARGS]"}},
		{"harmony", harmonyExpr(), []string{"<|channel|>commentary to=functions."}, []string{"<|channel|>", "commentary", " to=functions.", "search", " <|constrain|>json<|message|>", "<|call|>", "<|channel|>analysis<|message|>"}},
		{"llama3", llama3Expr(), []string{`{"name": "`}, []string{`{"name": "`, "search", `{"name": "search", "parameters": `, `{"query": "`}},
		{"xml", xmlExpr(), []string{"<tool_call>"}, []string{"<tool_call>", "\n", "<tool", "_call>\n"}},
	} {
		g := mustLazy(t, tc.e, tc.triggers...)
		var fav []int32
		for _, s := range tc.favour {
			fav = append(fav, tokenID(t, v, s))
		}
		fired, favAt := 0, 0
		for walk := range 12 {
			m := g.NewMatcher(v)
			var out []byte
			for step := 0; step < 50 && !m.Done(); step++ {
				checkMask(t, m, v, out)
				var ok []int32
				for id := range int32(v.size) {
					if m.Allowed(id) && (!v.isEOG[id] || step > 40) {
						ok = append(ok, id)
					}
				}
				if len(ok) == 0 {
					t.Fatalf("%s: no token allowed after %q", tc.name, out)
				}
				tok := ok[rng.IntN(len(ok))]
				if rng.IntN(3) != 0 { // the format's tokens in order, often
					f := fav[favAt%len(fav)]
					favAt++
					if m.Allowed(f) {
						tok = f
					}
				}
				if err := m.Accept(tok); err != nil {
					t.Fatalf("%s: %v", tc.name, err)
				}
				if v.isEOG[tok] {
					break
				}
				out = append(out, v.pieces[tok]...)
			}
			if !m.Triggered() {
				if strings.Contains(string(out), tc.triggers[0]) {
					t.Fatalf("%s walk %d: %q contains the trigger but the matcher awaits", tc.name, walk, out)
				}
				continue
			}
			fired++
			rest := out[m.TriggerOffset():]
			if !strings.HasPrefix(string(rest), tc.triggers[0]) || strings.Contains(string(out[:m.TriggerOffset()]), tc.triggers[0]) {
				t.Fatalf("%s: trigger at %d of %q", tc.name, m.TriggerOffset(), out)
			}
			if err := mustCompile(t, tc.e).NewMatcher(v).AcceptBytes(rest); err != nil {
				t.Fatalf("%s: %q from the trigger: %v", tc.name, rest, err)
			}
		}
		if fired == 0 {
			t.Errorf("%s: no walk fired the trigger", tc.name)
		}
	}
}

// realToolVocab is a real 128k vocabulary with <tool_call> and
// </tool_call> appended as text-bearing control tokens (as Qwen's are).
func realToolVocab(t testing.TB) *Vocab {
	v := realVocab(t, realVocabs[0])
	pieces := append(v.pieces[:v.size:v.size], []byte("<tool_call>"), []byte("</tool_call>"))
	return NewVocab(pieces, v.eog)
}

// TestLazyRealVocab samples a lazy Hermes grammar over a real vocabulary:
// free text first, then the trigger token, then constrained arguments that
// must parse; Mask is compared with Allowed while awaiting (at a state that
// ends with the start of the trigger) and after.
func TestLazyRealVocab(t *testing.T) {
	v := realToolVocab(t)
	g := mustLazy(t, hermesExpr(), "<tool_call>")
	rng := rand.New(rand.NewPCG(31, 32))
	closers := closerTokens(v)
	trig := tokenID(t, v, "<tool_call>")
	logits := make([]float32, v.size)
	brute := func(m *Matcher, doc []byte) {
		clear(logits)
		m.Mask(logits)
		for i := range v.size {
			got := !math.IsInf(float64(logits[i]), -1)
			if want := m.Allowed(int32(i)); got != want {
				t.Fatalf("after %q: token %d %q: mask allows %v, want %v", doc, i, v.pieces[i], got, want)
			}
		}
	}
	for walk := range 3 {
		m := g.NewMatcher(v)
		var out []byte
		if err := m.AcceptText("Let me check. <tool"); err != nil {
			t.Fatal(err)
		}
		out = append(out, "Let me check. <tool"...)
		if walk == 0 && !testing.Short() {
			brute(m, out)
		}
		ended := false
		for step := 0; step < 300 && !m.Done(); step++ {
			for i := range logits {
				logits[i] = float32(rng.NormFloat64())
			}
			if step == 10 {
				logits[trig] += 100
			}
			if step > 30 {
				for _, id := range closers {
					logits[id] += 3
				}
				for _, id := range v.eog {
					logits[id] += 10
				}
			}
			m.Mask(logits)
			best := 0
			for i, l := range logits {
				if l > logits[best] {
					best = i
				}
			}
			tok := int32(best)
			if err := m.Accept(tok); err != nil {
				t.Fatalf("after %q: mask allowed a token Accept refuses: %v", out, err)
			}
			if v.isEOG[tok] {
				ended = true
				break
			}
			out = append(out, v.pieces[tok]...)
			if walk == 0 && step == 12 && !testing.Short() {
				brute(m, out)
			}
		}
		if !m.Triggered() || !(ended || m.Done()) {
			t.Fatalf("triggered %v ended %v: %q", m.Triggered(), ended, out)
		}
		if err := mustCompile(t, hermesExpr()).NewMatcher(v).AcceptText(string(out[m.TriggerOffset():])); err != nil {
			t.Fatalf("%q: %v", out, err)
		}
		t.Logf("%q", out)
	}
}
