package grammar

import (
	"bytes"
	"fmt"
	"math"
	"slices"
	"strings"
)

// Lazy grammars: a Matcher that lets the model write freely until the text
// contains a trigger, then constrains the rest (see the package
// documentation, "Lazy grammars").

// Lazy returns a copy of g whose matchers start unconstrained and turn into
// ordinary matchers of g at the first occurrence of one of triggers in the
// output, positioned as if g had read the output from the trigger's first
// byte. g must accept each trigger's bytes from its start (its root begins
// with the trigger, or with an alternative of them): otherwise Lazy fails
// with ErrInvalidGrammar, as it does for an empty trigger or none. The copy
// shares g's automaton.
func (g *Grammar) Lazy(triggers ...string) (*Grammar, error) {
	if len(triggers) == 0 {
		return nil, fmt.Errorf("%w: Lazy without triggers", ErrInvalidGrammar)
	}
	l := &Grammar{
		edgeOff: g.edgeOff, edges: g.edges, itemOff: g.itemOff, items: g.items,
		pushes: g.pushes, flags: g.flags, height: g.height, start: g.start,
		triggers: slices.Clone(triggers),
	}
	m := g.NewMatcher(NewVocab(nil, nil))
	for _, t := range triggers {
		if t == "" {
			return nil, fmt.Errorf("%w: empty trigger", ErrInvalidGrammar)
		}
		if err := m.Clone().AcceptBytes([]byte(t)); err != nil {
			return nil, fmt.Errorf("%w: the grammar does not start with trigger %q", ErrInvalidGrammar, t)
		}
		l.maxTrig = max(l.maxTrig, len(t))
	}
	return l, nil
}

// Triggers returns the triggers of a lazy grammar (nil for others).
func (g *Grammar) Triggers() []string { return slices.Clone(g.triggers) }

// lazyState is a lazy Matcher's state while it awaits a trigger.
type lazyState struct {
	awaiting bool
	tail     []byte // the last maxTrig-1 bytes of the output (no trigger in it)
	n        int    // bytes of output so far
	at       int    // offset of the trigger that fired, -1 before
	rejected []int32
	memo     bool // rejected computed
	st       stepper
	base     int      // frames of st that the start configurations use
	start    []config // the grammar's start configurations
	text     []byte   // scratch
	dyn      []uint64 // scratch: tokens checked against the tail
}

func (m *Matcher) initLazy() {
	lz := &lazyState{awaiting: true, at: -1}
	lz.st.g = m.g
	lz.st.frames = slices.Clone(m.w.st.frames[:m.base])
	lz.base = m.base
	lz.start = slices.Clone(m.cur)
	m.lz = lz
}

func (lz *lazyState) clone() *lazyState {
	c := *lz
	c.tail = slices.Clone(lz.tail)
	c.st = stepper{g: lz.st.g, frames: slices.Clone(lz.st.frames[:lz.base])}
	c.text, c.dyn = nil, nil
	return &c
}

// Triggered reports whether the matcher constrains the output: always for a
// grammar that is not lazy, after the first trigger for a lazy one.
func (m *Matcher) Triggered() bool { return m.lz == nil || !m.lz.awaiting }

// TriggerOffset returns the byte offset in the output (everything accepted,
// prefill included) where the constrained text begins: 0 for a grammar that
// is not lazy, the first byte of the trigger that fired for a lazy one, -1
// while a lazy matcher still awaits its trigger.
func (m *Matcher) TriggerOffset() int {
	if m.lz == nil {
		return 0
	}
	return m.lz.at
}

// findTrigger returns the start in text of the earliest trigger occurrence
// (the longest trigger on a tie), or -1.
func (g *Grammar) findTrigger(text []byte) int {
	best, blen := -1, 0
	for _, t := range g.triggers {
		if i := bytes.Index(text, []byte(t)); i >= 0 && (best < 0 || i < best || i == best && len(t) > blen) {
			best, blen = i, len(t)
		}
	}
	return best
}

// lazyOK reports whether a lazy matcher awaiting its trigger may take piece
// p: when p completes a trigger, the grammar must accept the text from the
// trigger on.
func (m *Matcher) lazyOK(p []byte) bool {
	lz := m.lz
	lz.text = append(append(lz.text[:0], lz.tail...), p...)
	i := m.g.findTrigger(lz.text)
	return i < 0 || lz.st.accepts(lz.start, lz.base, lz.text[i:])
}

// accepts reports whether the configurations start (frames
// s.frames[:base]) accept all of p, stepping on scratch.
func (s *stepper) accepts(start []config, base int, p []byte) bool {
	s.frames = s.frames[:base]
	s.out = append(s.out[:0], start...)
	lo, hi := 0, len(start)
	for k, c := range p {
		s.step(s.out[lo:hi], c)
		if len(s.out) == hi {
			return s.complete && k == len(p)-1
		}
		lo, hi = hi, len(s.out)
	}
	return true
}

// acceptLazy takes bytes p while awaiting a trigger; when they complete
// one, the matcher turns constrained.
func (m *Matcher) acceptLazy(p []byte) error {
	lz := m.lz
	lz.text = append(append(lz.text[:0], lz.tail...), p...)
	if i := m.g.findTrigger(lz.text); i >= 0 {
		if err := m.acceptBytes(lz.text[i:]); err != nil {
			return fmt.Errorf("grammar: text after trigger: %w", err)
		}
		lz.awaiting = false
		lz.at = lz.n - len(lz.tail) + i
		lz.n += len(p)
		return nil
	}
	lz.n += len(p)
	keep := min(len(lz.text), m.g.maxTrig-1)
	lz.tail = append(lz.tail[:0], lz.text[len(lz.text)-keep:]...)
	return nil
}

// maskLazy is Mask while awaiting a trigger: every token is allowed except
// those that would complete a trigger into text the grammar refuses (and
// pieces too long for the vocabulary's trie, which Mask never allows). Only
// two kinds of tokens can complete a trigger: those containing one (a list
// per vocabulary and trigger, checked once per matcher) and those starting
// with the rest of a trigger whose beginning ends the output (a subtree of
// the vocabulary's trie, checked at each step).
func (m *Matcher) maskLazy(logits []float32) {
	v, lz := m.v, m.lz
	if !lz.memo {
		lz.memo = true
		saved := lz.tail
		lz.tail = nil
		var cand []int32
		for _, t := range m.g.triggers {
			cand = append(cand, v.containing(t)...)
		}
		slices.Sort(cand)
		for _, id := range slices.Compact(cand) {
			if !m.lazyOK(v.pieces[id]) {
				lz.rejected = append(lz.rejected, id)
			}
		}
		lz.rejected = append(lz.rejected, v.long...)
		lz.tail = saved
	}
	words := (v.size + 63) / 64
	if len(lz.dyn) != words {
		lz.dyn = make([]uint64, words)
	}
	ninf := float32(math.Inf(-1))
	n := min(len(logits), v.size)
	var dyn []int32
	for _, t := range m.g.triggers {
		for j := 1; j < len(t); j++ {
			if !bytes.HasSuffix(lz.tail, []byte(t[:j])) {
				continue
			}
			for _, id := range v.withPrefix(t[j:]) {
				if lz.dyn[id>>6]&(1<<(id&63)) == 0 {
					lz.dyn[id>>6] |= 1 << (id & 63)
					dyn = append(dyn, id)
				}
			}
		}
	}
	for _, id := range lz.rejected {
		if int(id) < n && lz.dyn[id>>6]&(1<<(id&63)) == 0 {
			logits[id] = ninf
		}
	}
	for _, id := range dyn {
		lz.dyn[id>>6] &^= 1 << (id & 63)
		if int(id) < n && !m.lazyOK(v.pieces[id]) {
			logits[id] = ninf
		}
	}
	for i := n; i < len(logits); i++ {
		logits[i] = ninf
	}
}

// containing returns the tokens (not EOG) whose piece contains t, computed
// once per vocabulary and trigger.
func (v *Vocab) containing(t string) []int32 {
	v.trigMu.Lock()
	defer v.trigMu.Unlock()
	if ids, ok := v.trig[t]; ok {
		return ids
	}
	if v.trig == nil || len(v.trig) >= 64 {
		v.trig = map[string][]int32{}
	}
	ids := []int32{}
	for id, p := range v.pieces {
		if !v.isEOG[id] && len(p) <= maxPiece && strings.Contains(string(p), t) {
			ids = append(ids, int32(id))
		}
	}
	v.trig[t] = ids
	return ids
}

// withPrefix returns the tokens (not EOG) whose piece starts with s: one
// subtree of the trie, a contiguous run of toks.
func (v *Vocab) withPrefix(s string) []int32 {
	lo, hi := 0, len(v.tb)
	node := -1
	for k := 0; k < len(s); k++ {
		c, found := s[k], -1
		for j := lo; j < hi; j = int(v.skip[j]) {
			if v.tb[j] == c {
				found = j
				break
			}
			if v.tb[j] > c {
				break
			}
		}
		if found < 0 {
			return nil
		}
		node, lo, hi = found, found+1, int(v.skip[found])
	}
	if node < 0 {
		return nil
	}
	return v.toks[v.tokOff[node]:v.tokOff[v.skip[node]]]
}
