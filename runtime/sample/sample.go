package sample

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
)

// cand is one candidate token. key is scratch: the typical-sampling score.
type cand struct {
	id    int32
	logit float32
	key   float32
}

// better orders candidates by logit, highest first, ties to the lowest id.
func better(a, b cand) bool {
	return a.logit > b.logit || a.logit == b.logit && a.id < b.id
}

func cmpBetter(a, b cand) int {
	switch {
	case better(a, b):
		return -1
	case better(b, a):
		return 1
	}
	return 0
}

func cmpKey(a, b cand) int {
	switch {
	case a.key < b.key:
		return -1
	case a.key > b.key:
		return 1
	}
	return cmpBetter(a, b)
}

// Sampler draws tokens for one sequence. It is not safe for concurrent use;
// give each sequence its own. Its buffers grow to the vocabulary size on the
// first Sample and are reused: Sample does not allocate afterwards.
type Sampler struct {
	opts   Options
	nVocab int
	rng    *rand.Rand

	// Penalty history: ring holds the last RepeatLastN accepted tokens
	// (all of them when RepeatLastN is -1), count their occurrences, seen
	// the distinct tokens with a non-zero count (plus stale ones, pruned
	// as the list grows).
	ring  []int32
	head  int
	full  bool
	count []int32
	seen  []int32

	work []float32 // the penalised logits
	cand []cand
	hist [topPBuckets + 1]float64
}

// New returns a sampler for a vocabulary of nVocab tokens, or the error of
// o.Validate.
func New(o Options, nVocab int) (*Sampler, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	if nVocab <= 0 {
		return nil, fmt.Errorf("%w: vocabulary size %d", ErrInvalid, nVocab)
	}
	s := &Sampler{opts: o, nVocab: nVocab}
	s.Reset()
	return s, nil
}

// Options returns the sampler's options.
func (s *Sampler) Options() Options { return s.opts }

// Reset forgets the accepted history and reseeds the generator from
// Options.Seed (a fresh random seed when it is negative), making the sampler
// as New returned it.
func (s *Sampler) Reset() {
	seed := uint64(s.opts.Seed)
	if s.opts.Seed < 0 {
		seed = rand.Uint64()
	}
	s.rng = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	s.ring, s.head, s.full, s.seen = s.ring[:0], 0, false, s.seen[:0]
	clear(s.count)
}

// Accept records tok in the penalty history. Feed it the prompt's tokens and
// then every sampled token. Tokens outside [0, nVocab) are ignored.
func (s *Sampler) Accept(tok int32) {
	if !s.opts.penalties() || tok < 0 || int(tok) >= s.nVocab {
		return
	}
	if s.count == nil {
		s.count = make([]int32, s.nVocab)
		if n := s.opts.RepeatLastN; n > 0 {
			s.ring = make([]int32, 0, n)
		}
	}
	if n := s.opts.RepeatLastN; n > 0 {
		if len(s.ring) < n {
			s.ring = append(s.ring, tok)
		} else {
			old := s.ring[s.head]
			s.count[old]--
			s.ring[s.head] = tok
			s.head = (s.head + 1) % n
		}
	}
	if s.count[tok] == 0 {
		s.seen = append(s.seen, tok)
	}
	s.count[tok]++
	if n := s.opts.RepeatLastN; n > 0 && len(s.seen) > 2*n+16 {
		kept := s.seen[:0]
		for _, t := range s.seen {
			if s.count[t] > 0 {
				kept = append(kept, t)
				s.count[t] = -s.count[t] // mark: keep one copy
			}
		}
		for _, t := range kept {
			s.count[t] = -s.count[t]
		}
		s.seen = kept
	}
}

// penalize copies logits into s.work, NaN as -Inf, and applies the
// penalties. Each distinct token in the window is penalised once.
func (s *Sampler) penalize(logits []float32) []float32 {
	n := len(logits)
	if cap(s.work) < n {
		s.work = make([]float32, n)
	}
	w := s.work[:n]
	for i, v := range logits {
		if v != v {
			v = float32(math.Inf(-1))
		}
		w[i] = v
	}
	if !s.opts.penalties() {
		return w
	}
	rp, pp, fp := s.opts.RepeatPenalty, s.opts.PresencePenalty, s.opts.FrequencyPenalty
	for _, t := range s.seen {
		c := s.count[t]
		if c <= 0 || int(t) >= n {
			continue
		}
		s.count[t] = -c // visited: seen may hold a token twice
		v := w[t]
		if v <= 0 {
			v *= rp
		} else {
			v /= rp
		}
		w[t] = v - float32(c)*fp - pp
	}
	for _, t := range s.seen {
		if s.count[t] < 0 {
			s.count[t] = -s.count[t]
		}
	}
	return w
}

// Greedy returns the index of the largest logit, NaN counting as -Inf and
// ties going to the lowest index; -1 for no logits.
func Greedy(logits []float32) int32 {
	if len(logits) == 0 {
		return -1
	}
	best, bv := 0, float32(math.Inf(-1))
	for i, v := range logits {
		if v > bv { // false for NaN
			best, bv = i, v
		}
	}
	return int32(best)
}

// Sample draws the next token from logits (one per vocabulary entry; logits
// is only read). The chain is llama.cpp's as Ollama configures it:
// penalties, top_k, typical_p, top_p, min_p, temperature, softmax, draw. NaN
// logits count as -Inf; +Inf logits win outright (the lowest such id); when
// every logit is -Inf or NaN, token 0 is returned. It returns -1 only for
// empty logits.
func (s *Sampler) Sample(logits []float32) int32 {
	n := len(logits)
	if n == 0 {
		return -1
	}
	w := s.penalize(logits)
	best := Greedy(w)
	if s.opts.Temperature <= 0 || math.IsInf(float64(w[best]), 0) {
		return best // greedy, +Inf, or nothing finite
	}
	if cap(s.cand) < n {
		s.cand = make([]cand, 0, n)
	}
	c, topPDone := s.candidates(w)
	if p := s.opts.TypicalP; p < 1 && len(c) > 1 {
		c = typical(c, p)
	}
	if p := s.opts.TopP; p < 1 && len(c) > 1 && !topPDone {
		c = topP(c, p)
	}
	if p := s.opts.MinP; p > 0 && len(c) > 1 {
		c = minP(c, p)
	}
	return s.draw(c)
}

// candidates returns the finite logits that top_k keeps, sorted best first
// when a later stage needs the order: top_k selects with a heap (no sort of
// the vocabulary); without top_k, top_p alone goes through topPCut (no sort
// of the vocabulary either). topPDone reports that top_p has been applied.
func (s *Sampler) candidates(w []float32) (c []cand, topPDone bool) {
	k := s.opts.TopK
	if k <= 0 || k >= len(w) {
		k = 0
	}
	needSorted := s.opts.TopP < 1 || s.opts.TypicalP < 1
	if k == 0 && s.opts.TopP < 1 && s.opts.TypicalP >= 1 {
		return s.topPCut(w), true
	}
	if k > 0 {
		c = selectTop(s.cand[:0], w, k)
		slices.SortFunc(c, cmpBetter)
		return c, false
	}
	c = s.cand[:0]
	for i, v := range w {
		if v > float32(math.Inf(-1)) {
			c = append(c, cand{id: int32(i), logit: v})
		}
	}
	if needSorted {
		slices.SortFunc(c, cmpBetter)
	}
	return c, false
}

// selectTop appends to c the k best finite entries of w, unordered, using a
// heap whose root is the worst kept candidate.
func selectTop(c []cand, w []float32, k int) []cand {
	ninf := float32(math.Inf(-1))
	i := 0
	for ; i < len(w) && len(c) < k; i++ {
		if w[i] > ninf {
			c = append(c, cand{id: int32(i), logit: w[i]})
		}
	}
	for j := len(c)/2 - 1; j >= 0; j-- {
		siftDown(c, j)
	}
	if len(c) < k {
		return c
	}
	for ; i < len(w); i++ {
		if v := w[i]; v > c[0].logit { // ids only grow, so equal loses
			c[0] = cand{id: int32(i), logit: v}
			siftDown(c, 0)
		}
	}
	return c
}

// siftDown restores the heap property (root = worst) below i.
func siftDown(h []cand, i int) {
	for {
		l := 2*i + 1
		if l >= len(h) {
			return
		}
		worst := l
		if r := l + 1; r < len(h) && better(h[l], h[r]) {
			worst = r
		}
		if !better(h[i], h[worst]) {
			return
		}
		h[i], h[worst] = h[worst], h[i]
		i = worst
	}
}

// topPBuckets and topPSpan shape the histogram topPCut uses: logits within
// topPSpan of the best fall into topPBuckets equal buckets; the rest (each
// under e^-40 of the best) share one more.
const (
	topPBuckets = 1024
	topPSpan    = 40
)

// topPCut applies top_p to the whole vocabulary without sorting it: one pass
// takes the softmax mass of each logit bucket, the buckets from the top that
// reach top_p (plus one, against rounding) bound a superset of the answer,
// and only that superset is sorted and cut.
func (s *Sampler) topPCut(w []float32) []cand {
	m := float32(math.Inf(-1))
	for _, v := range w {
		m = max(m, v)
	}
	scale := float32(topPBuckets) / topPSpan
	hist := &s.hist
	clear(hist[:])
	var total float64
	for _, v := range w {
		if v == float32(math.Inf(-1)) {
			continue
		}
		e := math.Exp(float64(v - m))
		total += e
		b := int((m - v) * scale)
		if b > topPBuckets || b < 0 {
			b = topPBuckets
		}
		hist[b] += e
	}
	p := float64(s.opts.TopP) * total
	last := topPBuckets
	var cum float64
	for b := range hist {
		cum += hist[b]
		if cum >= p {
			last = min(b+1, topPBuckets)
			break
		}
	}
	c := s.cand[:0]
	for i, v := range w {
		if v == float32(math.Inf(-1)) {
			continue
		}
		if b := int((m - v) * scale); b >= 0 && b <= last || last == topPBuckets {
			c = append(c, cand{id: int32(i), logit: v})
		}
	}
	slices.SortFunc(c, cmpBetter)
	cum = 0
	for i := range c {
		cum += math.Exp(float64(c[i].logit - m))
		if cum >= p {
			return c[:i+1]
		}
	}
	return c
}

// softmax returns exp(logit - max) for each candidate in key and their sum.
func softmax(c []cand) float64 {
	m := maxLogit(c)
	var sum float64
	for i := range c {
		e := math.Exp(float64(c[i].logit - m))
		c[i].key = float32(e)
		sum += e
	}
	return sum
}

// topP keeps the shortest prefix of c (sorted best first) whose probability
// reaches p (llama.cpp: cum >= p, the crossing token included).
func topP(c []cand, p float32) []cand {
	sum := softmax(c)
	var cum float64
	for i := range c {
		cum += float64(c[i].key) / sum
		if cum >= float64(p) {
			return c[:i+1]
		}
	}
	return c
}

// minP keeps the candidates whose probability is at least p times the
// largest (logit >= max + ln p).
func minP(c []cand, p float32) []cand {
	th := maxLogit(c) + float32(math.Log(float64(p)))
	kept := c[:0]
	for _, x := range c {
		if x.logit >= th {
			kept = append(kept, x)
		}
	}
	return kept
}

// typical is locally typical sampling (Meister et al. 2022, llama.cpp's
// typical_p): order by |-log p - H|, keep the shortest prefix whose mass
// exceeds p, then restore best-first order for the stages after it.
func typical(c []cand, p float32) []cand {
	m := maxLogit(c)
	sum := softmax(c)
	var h float64
	for _, x := range c {
		if pr := float64(x.key) / sum; pr > 0 {
			h -= pr * math.Log(pr)
		}
	}
	for i := range c {
		pr := float64(c[i].key) / sum
		c[i].key = float32(math.Abs(-math.Log(pr) - h))
	}
	slices.SortStableFunc(c, cmpKey)
	var cum float64
	for i := range c {
		cum += math.Exp(float64(c[i].logit-m)) / sum
		if cum > float64(p) {
			c = c[:i+1]
			break
		}
	}
	slices.SortFunc(c, cmpBetter)
	return c
}

func maxLogit(c []cand) float32 {
	m := c[0].logit
	for _, x := range c[1:] {
		m = max(m, x.logit)
	}
	return m
}

// draw applies the temperature and draws from the softmax of c.
func (s *Sampler) draw(c []cand) int32 {
	if len(c) == 1 {
		return c[0].id
	}
	t := s.opts.Temperature
	m := maxLogit(c)
	var sum float64
	for i := range c {
		e := math.Exp(float64((c[i].logit - m) / t))
		c[i].key = float32(e)
		sum += e
	}
	r := s.rng.Float64() * sum
	var cum float64
	for i := range c {
		cum += float64(c[i].key)
		if r < cum {
			return c[i].id
		}
	}
	for i := len(c) - 1; i >= 0; i-- { // rounding: the last with mass
		if c[i].key > 0 {
			return c[i].id
		}
	}
	return c[0].id
}
