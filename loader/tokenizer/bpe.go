package tokenizer

import (
	"math"
	"strings"
	"sync"
	"unicode"
)

// simpleLower is llama.cpp's unicode_tolower: the simple lowercase mapping.
func simpleLower(r rune) rune {
	if r < 0 {
		return r
	}
	return unicode.ToLower(r)
}

// symbol is one piece of a word being merged: bytes [start, start+n) of the
// word, linked to its live neighbours. n == 0 marks a symbol merged away.
type symbol struct {
	start, n   int32
	prev, next int32
	id         int32 // BPE with merge ids: the token the symbol spells, or -1
}

// bigram is a candidate merge of the symbol at key's low 32 bits (left)
// with symbol right, adjacent when it was queued. size is their combined
// length then: a bigram whose symbols have changed since no longer adds up
// and is skipped. key orders the queue, smallest first: the priority (BPE
// merge rank, or SPM score inverted) in the high half, the left index in the
// low half, so ties go to the leftmost pair as in llama.cpp.
type bigram struct {
	key         uint64
	right, size int32
}

func (b bigram) left() int32 { return int32(uint32(b.key)) }

// bpeKey orders by merge rank, lower first.
func bpeKey(rank, left int32) uint64 { return uint64(uint32(rank))<<32 | uint64(uint32(left)) }

// spmKey orders by token score, higher first.
func spmKey(score float32, left int32) uint64 {
	if score == 0 {
		score = 0 // -0 ties with +0, as in C++
	}
	bits := math.Float32bits(score)
	if bits&(1<<31) != 0 {
		bits = ^bits
	} else {
		bits |= 1 << 31
	}
	// bits now increase with score; invert for highest first
	return uint64(^bits)<<32 | uint64(uint32(left))
}

// bigramHeap is a 4-ary min-heap of bigrams by key (shallower than a binary
// heap for the long queues of SPM text that cannot be merged word by word).
type bigramHeap []bigram

func (h *bigramHeap) push(b bigram) {
	*h = append(*h, b)
	items := *h
	i := len(items) - 1
	for i > 0 {
		p := (i - 1) / 4
		if items[p].key <= b.key {
			break
		}
		items[i] = items[p]
		i = p
	}
	items[i] = b
}

func (h *bigramHeap) pop() bigram {
	items := *h
	top := items[0]
	last := len(items) - 1
	x := items[last]
	items = items[:last]
	*h = items
	if last == 0 {
		return top
	}
	i := 0
	for {
		c := 4*i + 1
		if c >= last {
			break
		}
		m := c
		for j := c + 1; j < min(c+4, last); j++ {
			if items[j].key < items[m].key {
				m = j
			}
		}
		if x.key <= items[m].key {
			break
		}
		items[i] = items[m]
		i = m
	}
	items[i] = x
	return top
}

// scratch holds the per-call buffers of one Encode.
type scratch struct {
	cpts []rune
	word []byte
	key  []byte
	syms []symbol
	heap bigramHeap
}

var scratchPool = sync.Pool{New: func() any { return new(scratch) }}

// maxPooledScratch bounds what a pooled scratch keeps, so one huge input does
// not pin its buffers.
const maxPooledScratch = 1 << 20

func putScratch(s *scratch) {
	if cap(s.cpts) > maxPooledScratch || cap(s.word) > maxPooledScratch ||
		cap(s.syms) > maxPooledScratch || cap(s.heap) > maxPooledScratch {
		return
	}
	scratchPool.Put(s)
}

// splitSymbols splits word into UTF-8 characters as llama.cpp does (by lead
// byte only, clipped at the end).
func splitSymbols[T string | []byte](word T, syms []symbol) []symbol {
	syms = syms[:0]
	for off := 0; off < len(word); {
		n := min(utf8Len(word[off]), len(word)-off)
		i := int32(len(syms))
		next := i + 1
		if off+n == len(word) {
			next = -1
		}
		syms = append(syms, symbol{start: int32(off), n: int32(n), prev: i - 1, next: next})
		off += n
	}
	return syms
}

// encodeBPE tokenizes one raw text fragment with BPE
// (llm_tokenizer_bpe_session::tokenize): byte-level, or with spmStyle
// (gemma4) on UTF-8 with spaces as U+2581.
func (t *Tokenizer) encodeBPE(text string, out []int32, s *scratch) []int32 {
	s.cpts = decodeCpts(text, s.cpts[:0])
	if t.spmStyle {
		// llama.cpp escapes the bytes before decoding them; neither ' '
		// nor U+2581's lead byte continues a UTF-8 sequence, so escaping
		// the code points gives the same.
		for i, c := range s.cpts {
			if c == ' ' {
				s.cpts[i] = '\u2581'
			}
		}
	}
	offs := t.pre.split(s.cpts)
	start := 0
	for _, n := range offs {
		w := s.word[:0]
		var tmp [4]byte
		for _, c := range s.cpts[start : start+n] {
			if t.spmStyle {
				w = appendCpt(w, c)
				continue
			}
			for _, b := range appendCpt(tmp[:0], c) {
				w = appendByteEncoded(w, b)
			}
		}
		s.word = w
		start += n
		out = t.bpeWord(w, out, s)
	}
	return out
}

// bpeWord merges one byte-encoded word and appends its tokens.
func (t *Tokenizer) bpeWord(word []byte, out []int32, s *scratch) []int32 {
	if t.ignoreMerges || t.nlWords && onlyNewlines(word) {
		if id, ok := t.ids[string(word)]; ok {
			return append(out, id)
		}
	}
	syms := splitSymbols(word, s.syms)
	if t.mergeIDs != nil {
		for i := range syms {
			sy := &syms[i]
			sy.id = -1
			if id, ok := t.ids[string(word[sy.start:sy.start+sy.n])]; ok {
				sy.id = id
			}
		}
	}
	h := &s.heap
	*h = (*h)[:0]
	for i := 1; i < len(syms); i++ {
		t.addBPEBigram(word, syms, int32(i-1), int32(i), s)
	}
	for len(*h) > 0 {
		b := h.pop()
		left := b.left()
		l, r := &syms[left], &syms[b.right]
		if l.n == 0 || r.n == 0 || l.n+r.n != b.size {
			continue // outdated
		}
		l.n += r.n
		r.n = 0
		l.next = r.next
		if r.next >= 0 {
			syms[r.next].prev = left
		}
		if t.mergeIDs != nil {
			l.id = int32(uint32(t.mergeIDs[uint64(uint32(l.id))<<32|uint64(uint32(r.id))]))
		}
		t.addBPEBigram(word, syms, l.prev, left, s)
		t.addBPEBigram(word, syms, left, l.next, s)
	}
	s.syms = syms
	for i := range syms {
		sy := &syms[i]
		if sy.n == 0 {
			continue
		}
		piece := word[sy.start : sy.start+sy.n]
		if t.mergeIDs != nil {
			if sy.id >= 0 {
				out = append(out, sy.id)
				continue
			}
		} else if id, ok := t.ids[string(piece)]; ok {
			out = append(out, id)
			continue
		}
		// No token for the piece: each byte's fallback token, if any.
		for _, b := range piece {
			if id := t.byteTokens[b]; id >= 0 {
				out = append(out, id)
			}
		}
	}
	return out
}

// onlyNewlines reports whether word is made only of '\n' (an empty word
// counts, as with llama.cpp's find_first_not_of).
func onlyNewlines(word []byte) bool {
	for _, b := range word {
		if b != '\n' {
			return false
		}
	}
	return true
}

func (t *Tokenizer) addBPEBigram(word []byte, syms []symbol, left, right int32, s *scratch) {
	if left < 0 || right < 0 {
		return
	}
	l, r := syms[left], syms[right]
	var rank int32
	if t.mergeIDs != nil {
		if l.id < 0 || r.id < 0 {
			return
		}
		m, ok := t.mergeIDs[uint64(uint32(l.id))<<32|uint64(uint32(r.id))]
		if !ok {
			return
		}
		rank = int32(m >> 32)
	} else {
		k := append(s.key[:0], word[l.start:l.start+l.n]...)
		k = append(k, ' ')
		k = append(k, word[r.start:r.start+r.n]...)
		s.key = k
		var ok bool
		if rank, ok = t.ranks[string(k)]; !ok {
			return
		}
	}
	s.heap.push(bigram{key: bpeKey(rank, left), right: right, size: l.n + r.n})
}

// buildMergeIDs indexes the merges by token ids when every merge joins two
// tokens into a token (true of real vocabularies): then symbols carry ids and
// a merge is one integer-keyed lookup. The key is left<<32|right, the value
// rank<<32|result. Otherwise it leaves t.mergeIDs nil and merges are looked
// up by text, as llama.cpp does.
func (t *Tokenizer) buildMergeIDs() {
	m := make(map[uint64]uint64, len(t.ranks))
	for merge, rank := range t.ranks {
		sp := 1 + strings.IndexByte(merge[1:], ' ')
		left, right := merge[:sp], merge[sp+1:]
		lid, ok1 := t.ids[left]
		rid, ok2 := t.ids[right]
		res, ok3 := t.ids[left+right]
		if !ok1 || !ok2 || !ok3 {
			return
		}
		m[uint64(uint32(lid))<<32|uint64(uint32(rid))] = uint64(uint32(rank))<<32 | uint64(uint32(res))
	}
	t.mergeIDs = m
	t.ranks = nil
}
