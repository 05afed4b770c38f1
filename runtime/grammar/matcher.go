package grammar

import (
	"fmt"
	"math"
	"math/bits"
	"slices"
)

// A config is one thread of the recognizer: a node with byte edges and a
// call stack (an index into the frame arena, -1 when empty).
type config struct{ node, stack int32 }

// A frame is one entry of a persistent call stack: continue at node ret when
// the current rule ends, with parent below. Frames are never modified, so
// configurations share them.
type frame struct{ ret, parent, depth int32 }

// stepper advances configuration sets by one byte. Frames live in an arena
// that only grows while stepping; callers truncate it back (the mask walk
// does so on every backtrack) since a truncated frame is referenced only by
// configurations discarded with it.
type stepper struct {
	g        *Grammar
	frames   []frame
	out      []config // configurations produced; the current step's start at base
	base     int
	seen     []config // non-trivial expansions done in this step
	complete bool     // the root rule ended in this step
	popped   bool     // a configuration popped the bottom sentinel in this step
}

// bottom is the stack of a configuration standing for "any caller": the mask
// cache walks lexical regions from it, and popping it means the rest of the
// token depends on the real stack.
const bottom = -2

// step appends to s.out the configurations reached from src by byte c.
// src must not alias s.out[s.base:].
func (s *stepper) step(src []config, c byte) {
	s.begin()
	g := s.g
	for _, cf := range src {
		for _, e := range g.edges[g.edgeOff[cf.node]:g.edgeOff[cf.node+1]] {
			if c < e.lo {
				break
			}
			if c <= e.hi {
				s.expand(e.to, cf.stack)
			}
		}
	}
}

// begin starts a new set of configurations at the end of s.out.
func (s *stepper) begin() {
	s.base = len(s.out)
	s.seen = s.seen[:0]
	s.complete = false
	s.popped = false
}

// expand adds the closure of node n over stack.
func (s *stepper) expand(n, stack int32) {
	g := s.g
	fl := g.flags[n]
	if fl&flagSelf != 0 {
		if g.height[n] == 0 || s.depth(stack)+int32(g.height[n]) <= maxStack {
			s.add(n, stack)
		}
		return
	}
	for _, x := range s.seen {
		if x.node == n && x.stack == stack {
			return
		}
	}
	s.seen = append(s.seen, config{n, stack})
	depth := s.depth(stack)
	for _, it := range g.items[g.itemOff[n]:g.itemOff[n+1]] {
		if depth+it.need > maxStack {
			continue
		}
		st := stack
		for k, r := range g.pushes[it.push : it.push+it.npush] {
			s.frames = append(s.frames, frame{r, st, depth + int32(k) + 1})
			st = int32(len(s.frames) - 1)
		}
		s.add(it.node, st)
	}
	if fl&flagReturns != 0 {
		if stack < 0 {
			if stack == bottom {
				s.popped = true
			} else {
				s.complete = true
			}
			return
		}
		f := s.frames[stack]
		s.expand(f.ret, f.parent)
	}
}

// depth returns the number of frames of stack (the bottom sentinel counts
// as none).
func (s *stepper) depth(stack int32) int32 {
	if stack < 0 {
		return 0
	}
	return s.frames[stack].depth
}

func (s *stepper) add(n, stack int32) {
	for _, o := range s.out[s.base:] {
		if o.node == n && o.stack == stack {
			return
		}
	}
	if len(s.out)-s.base < maxConfigs {
		s.out = append(s.out, config{n, stack})
	}
}

// Matcher is the state of one sequence under a Grammar: the set of
// configurations the bytes so far lead to. It is not safe for concurrent
// use; Clone makes an independent copy (for speculative decoding or beam
// search).
type Matcher struct {
	g        *Grammar
	v        *Vocab
	cur      []config
	base     int // frames w.st.frames[:base] belong to cur
	complete bool
	ended    bool // an EOG token was accepted
	w        walker
	lz       *lazyState // lazy grammars only

	// scratch
	alt       [2][]config
	allowed   []uint64
	rest      []config
	after     []config
	compactAt int
}

// NewMatcher starts matching g against the tokens of v from the beginning of
// the output.
func (g *Grammar) NewMatcher(v *Vocab) *Matcher {
	m := &Matcher{g: g, v: v, compactAt: 1024}
	st := &m.w.st
	st.g = g
	st.expand(g.start, -1)
	m.cur = slices.Clone(st.out)
	m.complete = st.complete
	m.base = len(st.frames)
	if g.triggers != nil {
		m.initLazy()
	}
	return m
}

// Clone returns an independent copy of m sharing its Grammar and Vocab.
func (m *Matcher) Clone() *Matcher {
	c := &Matcher{
		g: m.g, v: m.v, cur: slices.Clone(m.cur), base: m.base,
		complete: m.complete, ended: m.ended, compactAt: m.compactAt,
	}
	c.w.st.g = m.g
	c.w.st.frames = slices.Clone(m.w.st.frames[:m.base])
	if m.lz != nil {
		c.lz = m.lz.clone()
	}
	return c
}

// Complete reports whether the bytes accepted so far form a complete
// document (so an end-of-generation token is allowed). A lazy matcher
// awaiting its trigger is complete.
func (m *Matcher) Complete() bool { return m.complete || m.lz != nil && m.lz.awaiting }

// Done reports whether no further byte can be appended: the document is
// complete and its trailing whitespace allowance is used up (or an EOG token
// was accepted). The caller should stop the sequence even if the model would
// not sample EOG.
func (m *Matcher) Done() bool {
	return m.ended || m.complete && len(m.cur) == 0 && (m.lz == nil || !m.lz.awaiting)
}

// AcceptBytes advances by the bytes p. If some byte is not allowed it
// returns an error and leaves the matcher unchanged. A lazy matcher
// awaiting its trigger takes any bytes that do not complete a trigger into
// text the grammar refuses.
func (m *Matcher) AcceptBytes(p []byte) error {
	if m.lz != nil && m.lz.awaiting && !m.ended {
		return m.acceptLazy(p)
	}
	return m.acceptBytes(p)
}

// AcceptText is AcceptBytes for text the prompt already wrote into the
// output (prefill): a chat template whose generation prompt opens "<think>\n"
// makes the model continue after it, so the matcher must have read it too.
// It counts towards TriggerOffset.
func (m *Matcher) AcceptText(s string) error { return m.AcceptBytes([]byte(s)) }

func (m *Matcher) acceptBytes(p []byte) error {
	if m.ended {
		return fmt.Errorf("grammar: bytes %q after end of generation", p)
	}
	if len(p) == 0 {
		return nil
	}
	st := &m.w.st
	st.frames = st.frames[:m.base]
	cur := m.cur
	complete := m.complete
	for i, c := range p {
		st.out = st.out[:0]
		st.step(cur, c)
		if len(st.out) == 0 && !st.complete {
			st.frames = st.frames[:m.base]
			return fmt.Errorf("grammar: byte %d (%q) of %q not allowed", i, c, p)
		}
		buf := &m.alt[i&1]
		*buf = append((*buf)[:0], st.out...)
		cur = *buf
		complete = st.complete
	}
	m.cur = append(m.cur[:0:0], cur...)
	m.complete = complete
	m.base = len(st.frames)
	if m.base >= m.compactAt {
		m.compact()
	}
	return nil
}

// Accept advances by token tok. An end-of-generation token is accepted only
// when the document is complete; any other token only when its piece is
// non-empty and allowed. On error the matcher is unchanged.
func (m *Matcher) Accept(tok int32) error {
	if tok < 0 || int(tok) >= m.v.size {
		return fmt.Errorf("grammar: token %d out of range", tok)
	}
	if m.v.isEOG[tok] {
		if !m.Complete() {
			return fmt.Errorf("grammar: end-of-generation token %d before the document is complete", tok)
		}
		m.ended = true
		return nil
	}
	p := m.v.pieces[tok]
	if len(p) == 0 {
		if m.lz != nil && m.lz.awaiting && !m.ended {
			return nil
		}
		return fmt.Errorf("grammar: token %d has no text", tok)
	}
	if err := m.AcceptBytes(p); err != nil {
		return fmt.Errorf("token %d: %w", tok, err)
	}
	return nil
}

// compact copies the frames reachable from the current configurations to a
// fresh arena (accepted tokens leave garbage frames behind).
func (m *Matcher) compact() {
	old := m.w.st.frames[:m.base]
	remap := map[int32]int32{}
	var nf []frame
	var move func(i int32) int32
	move = func(i int32) int32 {
		if i < 0 {
			return i
		}
		if j, ok := remap[i]; ok {
			return j
		}
		f := old[i]
		f.parent = move(f.parent)
		nf = append(nf, f)
		j := int32(len(nf) - 1)
		remap[i] = j
		return j
	}
	for k := range m.cur {
		m.cur[k].stack = move(m.cur[k].stack)
	}
	m.w.st.frames = nf
	m.base = len(nf)
	m.compactAt = max(1024, 4*m.base)
}

// Mask sets logits[i] to -Inf for every token i that may not come next:
// tokens whose bytes cannot continue the document, tokens with empty
// pieces, ids past the vocabulary (padded logits), and end-of-generation
// tokens unless the document is complete. Allowed logits are left as they
// are. After an EOG token was accepted only EOG tokens stay allowed.
//
// Configurations inside a lexical region (a string's characters, a
// number's digits: no calls until the region ends) use the vocabulary's
// mask cache; the others walk the vocabulary trie.
//
// A lazy matcher awaiting its trigger allows every token (end of
// generation and empty pieces included) except those that would complete a
// trigger into text the grammar refuses.
func (m *Matcher) Mask(logits []float32) {
	if m.lz != nil && m.lz.awaiting && !m.ended {
		m.maskLazy(logits)
		return
	}
	v := m.v
	words := (v.size + 63) / 64
	if len(m.allowed) != words {
		m.allowed = make([]uint64, words)
	} else {
		clear(m.allowed)
	}
	allowed := m.allowed
	if !m.ended {
		m.rest = m.rest[:0]
		for _, c := range m.cur {
			e := m.lexEntry(c)
			if e == nil {
				m.rest = append(m.rest, c)
				continue
			}
			e.or(allowed)
			if e.hasPops() {
				m.afterPops(c, e)
			}
		}
		if len(m.rest) > 0 {
			m.w.run(v, m.rest, m.base, allowed, nil)
		}
		m.w.st.frames = m.w.st.frames[:m.base]
	}
	if m.complete || m.ended {
		for _, id := range v.eog {
			allowed[id>>6] |= 1 << (id & 63)
		}
	}
	ninf := float32(math.Inf(-1))
	n := min(len(logits), v.size)
	for w := 0; w*64 < n; w++ {
		rej := ^allowed[w]
		for rej != 0 {
			i := w*64 + bits.TrailingZeros64(rej)
			if i >= n {
				break
			}
			logits[i] = ninf
			rej &= rej - 1
		}
	}
	for i := n; i < len(logits); i++ {
		logits[i] = ninf
	}
}

// afterPops adds the tokens that leave configuration c's lexical region
// (c.node's cache entry e) and continue in the caller. Whatever the end
// point, the caller resumes in the same state P (the closure of c's return
// node over the rest of its stack): tokens ending exactly at an end are
// allowed, and for each byte P accepts, the subtrees of the end nodes'
// children with that byte are walked from P.
func (m *Matcher) afterPops(c config, e *lexEntry) {
	v, st := m.v, &m.w.st
	st.frames = st.frames[:m.base]
	st.out = st.out[:0]
	st.begin()
	if c.stack >= 0 {
		f := st.frames[c.stack]
		st.expand(f.ret, f.parent)
	} else {
		st.complete = true // the root rule ends with the region
	}
	m.after = append(m.after[:0], st.out...)
	complete, base := st.complete, len(st.frames)
	if len(m.after) == 0 && !complete {
		return
	}
	e.orPops(m.allowed)
	if len(m.after) == 0 {
		return
	}
	for k, b := range e.popByte {
		st.frames = st.frames[:base]
		st.out = st.out[:0]
		st.step(m.after, b)
		if len(st.out) == 0 && !st.complete {
			continue
		}
		for _, j := range e.popKids[e.popOff[k]:e.popOff[k+1]] {
			m.w.runFrom(v, m.after, base, m.allowed, nil, int(j), int(v.skip[j]), int(v.depth[j])-1)
		}
	}
}

// Allowed reports whether token tok may come next (Mask for one token,
// without the cache).
func (m *Matcher) Allowed(tok int32) bool {
	if tok < 0 || int(tok) >= m.v.size {
		return false
	}
	if m.v.isEOG[tok] {
		return m.Complete() || m.ended
	}
	p := m.v.pieces[tok]
	if m.lz != nil && m.lz.awaiting && !m.ended {
		return len(p) <= maxPiece && m.lazyOK(p)
	}
	if m.ended || len(p) == 0 || len(p) > maxPiece {
		return false
	}
	return m.Clone().AcceptBytes(p) == nil
}

// walker walks the vocabulary trie from a set of configurations.
type walker struct {
	st                    stepper
	lvlOff, lvlEnd, frEnd []int32
}

// run sets in allowed the tokens of v the configurations start accept (their
// frames are w.st.frames[:base]): a depth-first walk of the trie, one step
// per trie node, skipping a node's subtree as soon as its byte is rejected.
// Level d's configurations (the state after the first d bytes of the current
// path) are st.out[lvlOff[d]:lvlEnd[d]], their frames st.frames[:frEnd[d]].
// When pops is non-nil it receives the trie nodes at which a configuration
// popped the bottom sentinel.
func (w *walker) run(v *Vocab, start []config, base int, allowed []uint64, pops *[]int32) {
	w.runFrom(v, start, base, allowed, pops, 0, len(v.tb), 0)
}

// runFrom walks the trie nodes lo..hi-1, a subtree (or the whole trie)
// whose nodes are deeper than d0, from the configurations start standing at
// depth d0.
func (w *walker) runFrom(v *Vocab, start []config, base int, allowed []uint64, pops *[]int32, lo, hi, d0 int) {
	if len(w.lvlOff) < v.maxDepth+1 {
		w.lvlOff = make([]int32, v.maxDepth+1)
		w.lvlEnd = make([]int32, v.maxDepth+1)
		w.frEnd = make([]int32, v.maxDepth+1)
	}
	st := &w.st
	st.frames = st.frames[:base]
	st.out = append(st.out[:0], start...)
	lvlOff, lvlEnd, frEnd := w.lvlOff, w.lvlEnd, w.frEnd
	lvlOff[d0], lvlEnd[d0], frEnd[d0] = 0, int32(len(start)), int32(base)
	tb, depth, skip, tokOff, toks := v.tb, v.depth, v.skip, v.tokOff, v.toks
	g := st.g
	for i := lo; i < hi; {
		d := int(depth[i])
		pe := lvlEnd[d-1]
		src := st.out[lvlOff[d-1]:pe]
		st.out = st.out[:pe]
		st.frames = st.frames[:frEnd[d-1]]
		if len(src) == 1 {
			// Fast path: one configuration and one edge to a node whose
			// closure is itself (string characters, digits).
			cf, c := src[0], tb[i]
			to, n := int32(0), 0
			for _, e := range g.edges[g.edgeOff[cf.node]:g.edgeOff[cf.node+1]] {
				if c < e.lo {
					break
				}
				if c <= e.hi {
					to = e.to
					n++
				}
			}
			if n == 0 {
				i = int(skip[i])
				continue
			}
			if n == 1 && g.flags[to]&flagSelf != 0 && (g.height[to] == 0 || st.depth(cf.stack)+int32(g.height[to]) <= maxStack) {
				st.out = append(st.out, config{to, cf.stack})
				lvlOff[d], lvlEnd[d], frEnd[d] = pe, pe+1, frEnd[d-1]
				for _, id := range toks[tokOff[i]:tokOff[i+1]] {
					allowed[id>>6] |= 1 << (id & 63)
				}
				i++
				continue
			}
		}
		st.step(src, tb[i])
		if st.popped && pops != nil {
			*pops = append(*pops, int32(i))
		}
		if len(st.out) == int(pe) {
			if st.complete {
				for _, id := range toks[tokOff[i]:tokOff[i+1]] {
					allowed[id>>6] |= 1 << (id & 63)
				}
			}
			i = int(skip[i])
			continue
		}
		lvlOff[d], lvlEnd[d], frEnd[d] = pe, int32(len(st.out)), int32(len(st.frames))
		for _, id := range toks[tokOff[i]:tokOff[i+1]] {
			allowed[id>>6] |= 1 << (id & 63)
		}
		i++
	}
	st.frames = st.frames[:base]
}
