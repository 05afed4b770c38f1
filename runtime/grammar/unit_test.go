package grammar

import (
	"math/rand/v2"
	"sync"
	"testing"
	"unicode/utf8"
)

// TestUTF8Seqs checks the range splitter against every code point of random
// ranges (and a few edge ranges): a rune is covered iff it is in range and
// not a surrogate, and no invalid encoding matches.
func TestUTF8Seqs(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	ranges := [][2]rune{{0, 0x10FFFF}, {0x7F, 0x80}, {0x7FF, 0x800}, {0xD7FF, 0xE000}, {0xFFFF, 0x10000}, {0x10FFFF, 0x10FFFF}, {0x41, 0x41}}
	for range 300 {
		a := rune(rng.IntN(0x110000))
		b := a + rune(rng.IntN(0x3000))
		if rng.IntN(3) == 0 {
			b = a + rune(rng.IntN(0x40000))
		}
		ranges = append(ranges, [2]rune{a, min(b, 0x10FFFF)})
	}
	for _, r := range ranges {
		var seqs [][][2]byte
		utf8Seqs(r[0], r[1], func(s [][2]byte) { seqs = append(seqs, s) })
		matches := func(p []byte) int {
			n := 0
			for _, s := range seqs {
				if len(s) != len(p) {
					continue
				}
				ok := true
				for i := range s {
					ok = ok && p[i] >= s[i][0] && p[i] <= s[i][1]
				}
				if ok {
					n++
				}
			}
			return n
		}
		// Every rune near the ends and a sample inside.
		check := func(c rune) {
			want := c >= r[0] && c <= r[1] && (c < 0xD800 || c > 0xDFFF)
			var buf [4]byte
			n := utf8.EncodeRune(buf[:], c)
			if c >= 0xD800 && c <= 0xDFFF { // the would-be encoding
				buf[0], buf[1], buf[2], n = 0xED, byte(0x80|(c>>6)&0x3F), byte(0x80|c&0x3F), 3
			}
			if got := matches(buf[:n]); got != map[bool]int{true: 1, false: 0}[want] {
				t.Fatalf("range %x-%x: rune %x matched %d times, want in=%v", r[0], r[1], c, got, want)
			}
		}
		for c := r[0]; c <= r[1] && c < r[0]+300; c++ {
			check(c)
		}
		for c := max(r[0], r[1]-300); c <= r[1]; c++ {
			check(c)
		}
		for range 300 {
			check(r[0] + rune(rng.IntN(int(r[1]-r[0])+1)))
		}
		if r[0] > 0 {
			check(r[0] - 1)
		}
		if r[1] < 0x10FFFF {
			check(r[1] + 1)
		}
		// Overlong and out-of-range encodings never match.
		for _, p := range [][]byte{{0xC0, 0x80}, {0xC1, 0xBF}, {0xE0, 0x80, 0x80}, {0xF0, 0x80, 0x80, 0x80}, {0xF4, 0x90, 0x80, 0x80}, {0xF5, 0x80, 0x80, 0x80}} {
			if matches(p) != 0 {
				t.Fatalf("range %x-%x matches invalid % x", r[0], r[1], p)
			}
		}
	}
}

func TestECMAToRE2(t *testing.T) {
	for _, tc := range [][2]string{
		{`\u0041`, `\x{41}`},
		{`\\u0041`, `\\u0041`},
		{`\uD83D\uDE00`, `\x{1f600}`},
		{`\u{1F600}`, `\x{1F600}`},
		{`a\d\/`, `a\d\/`},
		{`\u12`, `\u12`},
	} {
		if got := ecmaToRE2(tc[0]); got != tc[1] {
			t.Errorf("%q: got %q, want %q", tc[0], got, tc[1])
		}
	}
}

func TestNewVocab(t *testing.T) {
	pieces := [][]byte{[]byte("ab"), []byte("a"), nil, []byte("ab"), []byte("b"), []byte("<eos>"), []byte("abc")}
	v := NewVocab(pieces, []int32{5, 5, 99})
	if v.Size() != 7 || !v.IsEOG(5) || v.IsEOG(0) || len(v.eog) != 1 {
		t.Fatalf("size %d eog %v", v.Size(), v.eog)
	}
	// Trie: a(1) ab(0,3) abc(6) b(4), in preorder.
	if string(v.tb) != "abcb" {
		t.Fatalf("trie bytes %q", v.tb)
	}
	got := map[string][]int32{}
	var walk func(lo, hi int, prefix string)
	walk = func(lo, hi int, prefix string) {
		for i := lo; i < hi; i = int(v.skip[i]) {
			p := prefix + string(v.tb[i])
			got[p] = append(got[p], v.toks[v.tokOff[i]:v.tokOff[i+1]]...)
			walk(i+1, int(v.skip[i]), p)
		}
	}
	walk(0, len(v.tb), "")
	want := map[string][]int32{"a": {1}, "ab": {0, 3}, "abc": {6}, "b": {4}}
	for k, w := range want {
		if g := got[k]; len(g) != len(w) || g[0] != w[0] || g[len(g)-1] != w[len(w)-1] {
			t.Errorf("%q: tokens %v, want %v", k, g, w)
		}
	}
	pieces[0][0] = 'z' // NewVocab copies
	if string(v.Piece(0)) != "ab" {
		t.Error("vocab shares the caller's bytes")
	}
}

// TestConcurrentMatchers runs matchers of shared grammars over one vocabulary
// from several goroutines (run with -race): the mask cache is shared.
func TestConcurrentMatchers(t *testing.T) {
	pieces, eog := fakePieces()
	v := NewVocab(pieces, eog)
	g, err := FromSchema([]byte(propertySchemas[0]))
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 9))
			logits := make([]float32, v.size)
			for _, gr := range []*Grammar{g, JSON()} {
				m := gr.NewMatcher(v)
				for range 40 {
					if m.Done() {
						break
					}
					clear(logits)
					m.Mask(logits)
					var ok []int32
					for id, l := range logits {
						if l == 0 {
							ok = append(ok, int32(id))
						}
					}
					if len(ok) == 0 {
						t.Error("no token allowed")
						return
					}
					if err := m.Accept(ok[rng.IntN(len(ok))]); err != nil {
						t.Error(err)
						return
					}
				}
			}
		})
	}
	wg.Wait()
}
