package grammar

// TextUntil's automaton: the product of an Aho-Corasick automaton over the
// stops (its state is the longest suffix of the text that is a prefix of a
// stop; a state that completes a stop is forbidden) and a UTF-8 decoder
// (the text is valid UTF-8; it may end only between characters).

// acAuto is a complete Aho-Corasick DFA: next[q][c] is the state after byte
// c, out[q] the length of the longest stop ending at state q (0 if none).
type acAuto struct {
	next [][256]int32
	out  []int32
}

func newAC(stops []string) *acAuto {
	a := &acAuto{next: make([][256]int32, 1), out: make([]int32, 1)}
	depth := []int32{0}
	for i := range a.next[0] {
		a.next[0][i] = -1
	}
	for _, s := range stops {
		q := int32(0)
		for i := 0; i < len(s); i++ {
			c := s[i]
			if a.next[q][c] < 0 {
				var row [256]int32
				for k := range row {
					row[k] = -1
				}
				a.next = append(a.next, row)
				a.out = append(a.out, 0)
				depth = append(depth, depth[q]+1)
				a.next[q][c] = int32(len(a.next) - 1)
			}
			q = a.next[q][c]
		}
		a.out[q] = int32(len(s))
	}
	// Breadth-first: fail links become full transitions.
	fail := make([]int32, len(a.next))
	queue := []int32{}
	for c := range 256 {
		if t := a.next[0][c]; t < 0 {
			a.next[0][c] = 0
		} else {
			fail[t] = 0
			queue = append(queue, t)
		}
	}
	for k := 0; k < len(queue); k++ {
		q := queue[k]
		a.out[q] = max(a.out[q], a.out[fail[q]])
		for c := range 256 {
			if t := a.next[q][c]; t < 0 {
				a.next[q][c] = a.next[fail[q]][c]
			} else {
				fail[t] = a.next[fail[q]][c]
				queue = append(queue, t)
			}
		}
	}
	return a
}

// endOK reports whether text in state q may end before any of the stops:
// feeding a stop from q must not complete a stop that starts before it.
func (a *acAuto) endOK(q int32, stops []string) bool {
	for _, s := range stops {
		st := q
		for i := 0; i < len(s); i++ {
			st = a.next[st][s[i]]
			if a.out[st] > int32(i+1) {
				return false
			}
		}
	}
	return true
}

// UTF-8 decoder states: between characters, or the continuation bytes a
// character still needs (with the second byte's restricted ranges).
const (
	u8Start = iota
	u8C1
	u8C2
	u8C3
	u8E0
	u8ED
	u8F0
	u8F4
)

// utf8Next returns the decoder state after byte c, or -1 if c is invalid
// there.
func utf8Next(u int, c byte) int {
	switch u {
	case u8Start:
		switch {
		case c < 0x80:
			return u8Start
		case c < 0xC2:
			return -1
		case c < 0xE0:
			return u8C1
		case c == 0xE0:
			return u8E0
		case c == 0xED:
			return u8ED
		case c < 0xF0:
			return u8C2
		case c == 0xF0:
			return u8F0
		case c < 0xF4:
			return u8C3
		case c == 0xF4:
			return u8F4
		}
		return -1
	case u8E0:
		if c >= 0xA0 && c <= 0xBF {
			return u8C1
		}
	case u8ED:
		if c >= 0x80 && c <= 0x9F {
			return u8C1
		}
	case u8F0:
		if c >= 0x90 && c <= 0xBF {
			return u8C2
		}
	case u8F4:
		if c >= 0x80 && c <= 0x8F {
			return u8C2
		}
	default:
		if c >= 0x80 && c <= 0xBF {
			return u - 1 // C1 → start, C2 → C1, C3 → C2
		}
	}
	return -1
}

// maxTextLen bounds TextLen's max: its automaton has a copy of the text's
// states per character.
const maxTextLen = 4096

// textUntil adds TextLen(minLen, maxLen, stops...) from node start to node
// end (stops non-empty strings, sorted, distinct; maxLen < 0: unbounded).
// With a bound, the state also counts the characters read (capped at
// minLen when unbounded above).
func (b *builder) textUntil(start, end int32, stops []string, minLen, maxLen int) {
	a := newAC(stops)
	type pst struct {
		q    int32
		u, n int
	}
	ids := map[pst]int32{{0, u8Start, 0}: start}
	queue := []pst{{0, u8Start, 0}}
	for k := 0; k < len(queue) && b.err == nil; k++ {
		s := queue[k]
		from := ids[s]
		if s.u == u8Start && s.n >= minLen && a.endOK(s.q, stops) {
			b.eps(from, end)
		}
		lo, prev := 0, int32(-1)
		for c := 0; c <= 256; c++ {
			to := int32(-1)
			if c < 256 && (s.u != u8Start || maxLen < 0 || s.n < maxLen) {
				if u := utf8Next(s.u, byte(c)); u >= 0 {
					if q := a.next[s.q][c]; a.out[q] == 0 {
						cnt := s.n
						if u == u8Start && (maxLen >= 0 || cnt < minLen) {
							cnt++ // a character completed
						}
						t := pst{q, u, cnt}
						n, ok := ids[t]
						if !ok {
							n = b.node()
							ids[t] = n
							queue = append(queue, t)
						}
						to = n
					}
				}
			}
			if to != prev || c == 256 {
				if prev >= 0 {
					b.rng(from, byte(lo), byte(c-1), prev)
				}
				lo, prev = c, to
			}
		}
	}
}
