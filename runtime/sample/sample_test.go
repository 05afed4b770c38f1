package sample

import (
	"errors"
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

var inf = float32(math.Inf(1))

func mustNew(t testing.TB, o Options, n int) *Sampler {
	t.Helper()
	s, err := New(o, n)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// plain disables every filter and penalty: temperature 1, the raw softmax.
func plain() Options {
	return Options{Temperature: 1, TopP: 1, TypicalP: 1, RepeatPenalty: 1, Seed: 1}
}

func logitsOf(probs ...float64) []float32 {
	l := make([]float32, len(probs))
	for i, p := range probs {
		l[i] = float32(math.Log(p))
	}
	return l
}

// distribution returns the probabilities Sample draws from: the chain up to
// the draw, with the temperature applied.
func (s *Sampler) distribution(logits []float32) map[int32]float64 {
	w := s.penalize(logits)
	if cap(s.cand) < len(w) {
		s.cand = make([]cand, 0, len(w))
	}
	c, done := s.candidates(w)
	if s.opts.TypicalP < 1 && len(c) > 1 {
		c = typical(c, s.opts.TypicalP)
	}
	if s.opts.TopP < 1 && len(c) > 1 && !done {
		c = topP(c, s.opts.TopP)
	}
	if s.opts.MinP > 0 && len(c) > 1 {
		c = minP(c, s.opts.MinP)
	}
	m := maxLogit(c)
	var sum float64
	out := map[int32]float64{}
	for _, x := range c {
		e := math.Exp(float64((x.logit - m) / s.opts.Temperature))
		out[x.id] = e
		sum += e
	}
	for k := range out {
		out[k] /= sum
	}
	return out
}

func checkDist(t *testing.T, got map[int32]float64, want map[int32]float64) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("support %v, want %v", got, want)
	}
	for id, p := range want {
		if math.Abs(got[id]-p) > 1e-5 {
			t.Errorf("p(%d) = %.6f, want %.6f (all %v)", id, got[id], p, got)
		}
	}
}

func TestDefaultOptions(t *testing.T) {
	o := DefaultOptions()
	want := Options{Temperature: 0.8, TopK: 40, TopP: 0.9, MinP: 0, TypicalP: 1, RepeatPenalty: 1.1, RepeatLastN: 64, Seed: -1}
	if o != want {
		t.Errorf("DefaultOptions() = %+v, want %+v", o, want)
	}
	if err := o.Validate(); err != nil {
		t.Error(err)
	}
}

func TestValidate(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range []struct {
		name string
		mod  func(*Options)
	}{
		{"temperature NaN", func(o *Options) { o.Temperature = nan }},
		{"temperature -1", func(o *Options) { o.Temperature = -1 }},
		{"temperature Inf", func(o *Options) { o.Temperature = inf }},
		{"top_k -1", func(o *Options) { o.TopK = -1 }},
		{"top_p 0", func(o *Options) { o.TopP = 0 }},
		{"top_p 1.5", func(o *Options) { o.TopP = 1.5 }},
		{"top_p NaN", func(o *Options) { o.TopP = nan }},
		{"min_p -0.1", func(o *Options) { o.MinP = -0.1 }},
		{"min_p 2", func(o *Options) { o.MinP = 2 }},
		{"typical_p 0", func(o *Options) { o.TypicalP = 0 }},
		{"typical_p 1.01", func(o *Options) { o.TypicalP = 1.01 }},
		{"repeat_penalty 0", func(o *Options) { o.RepeatPenalty = 0 }},
		{"repeat_penalty -1", func(o *Options) { o.RepeatPenalty = -1 }},
		{"repeat_last_n -2", func(o *Options) { o.RepeatLastN = -2 }},
		{"presence NaN", func(o *Options) { o.PresencePenalty = nan }},
		{"frequency -Inf", func(o *Options) { o.FrequencyPenalty = -inf }},
	} {
		o := DefaultOptions()
		c.mod(&o)
		err := o.Validate()
		if !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: Validate() = %v, want ErrInvalid", c.name, err)
		}
		if _, err := New(o, 10); err == nil {
			t.Errorf("%s: New accepted it", c.name)
		}
	}
	for _, ok := range []func(*Options){
		func(o *Options) { o.Temperature = 0 },
		func(o *Options) { o.TopK = 0 },
		func(o *Options) { o.TopP = 1 },
		func(o *Options) { o.MinP = 1 },
		func(o *Options) { o.RepeatLastN = -1 },
		func(o *Options) { o.PresencePenalty, o.FrequencyPenalty = -2, 2 },
		func(o *Options) { o.Seed = 0 },
	} {
		o := DefaultOptions()
		ok(&o)
		if err := o.Validate(); err != nil {
			t.Errorf("%+v: %v", o, err)
		}
	}
	if _, err := New(DefaultOptions(), 0); err == nil {
		t.Error("New accepted an empty vocabulary")
	}
}

func TestGreedy(t *testing.T) {
	nan := float32(math.NaN())
	for _, c := range []struct {
		logits []float32
		want   int32
	}{
		{nil, -1},
		{[]float32{1}, 0},
		{[]float32{1, 3, 3, 2}, 1},
		{[]float32{5, 5, 5}, 0},
		{[]float32{nan, 1, nan, 2}, 3},
		{[]float32{nan, nan}, 0},
		{[]float32{-inf, -inf, -inf}, 0},
		{[]float32{-inf, -3, nan}, 1},
		{[]float32{1, inf, inf}, 1},
	} {
		if got := Greedy(c.logits); got != c.want {
			t.Errorf("Greedy(%v) = %d, want %d", c.logits, got, c.want)
		}
	}
}

func TestSampleTemperatureZero(t *testing.T) {
	o := DefaultOptions()
	o.Temperature = 0
	s := mustNew(t, o, 4)
	if got := s.Sample([]float32{0, 2, 2, 1}); got != 1 {
		t.Errorf("tie: got %d, want 1", got)
	}
	// Penalties apply before the argmax: 2/1.1 - 1 < 1.5.
	o.RepeatPenalty, o.PresencePenalty = 1.1, 1
	s = mustNew(t, o, 4)
	s.Accept(1)
	if got := s.Sample([]float32{0, 2, 1.5, 1}); got != 2 {
		t.Errorf("penalised: got %d, want 2", got)
	}
}

func TestTemperatureLimit(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	logits := make([]float32, 1000)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 3)
	}
	want := Greedy(logits)
	o := plain()
	o.Temperature = 1e-3
	s := mustNew(t, o, len(logits))
	for range 200 {
		if got := s.Sample(logits); got != want {
			t.Fatalf("temperature 1e-3 drew %d, greedy is %d", got, want)
		}
	}
}

func TestDeterminism(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	logits := make([]float32, 5000)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64())
	}
	run := func(seed int64) []int32 {
		o := DefaultOptions()
		o.Seed = seed
		o.Temperature = 1.5
		s := mustNew(t, o, len(logits))
		var out []int32
		for range 100 {
			tok := s.Sample(logits)
			s.Accept(tok)
			out = append(out, tok)
		}
		return out
	}
	a, b, c := run(42), run(42), run(43)
	if !slices.Equal(a, b) {
		t.Error("the same seed gave different tokens")
	}
	if slices.Equal(a, c) {
		t.Error("seeds 42 and 43 gave the same 100 tokens")
	}
	// Reset replays the sequence.
	o := DefaultOptions()
	o.Seed, o.Temperature = 42, 1.5
	s := mustNew(t, o, len(logits))
	first := s.Sample(logits)
	s.Reset()
	if s.Sample(logits) != first {
		t.Error("Reset did not reseed")
	}
}

func TestDoesNotModifyLogits(t *testing.T) {
	logits := []float32{3, float32(math.NaN()), 1, -2, 0.5, 2}
	orig := slices.Clone(logits)
	o := DefaultOptions()
	o.TopK, o.TypicalP, o.MinP, o.PresencePenalty = 3, 0.9, 0.05, 0.3
	s := mustNew(t, o, len(logits))
	for _, tok := range []int32{0, 2, 5, 0} {
		s.Accept(tok)
	}
	for range 20 {
		s.Sample(logits)
	}
	for i := range logits {
		if math.Float32bits(logits[i]) != math.Float32bits(orig[i]) {
			t.Fatalf("logits changed: %v, was %v", logits, orig)
		}
	}
}

func TestTopK(t *testing.T) {
	o := plain()
	o.TopK = 2
	s := mustNew(t, o, 5)
	e := math.E
	checkDist(t, s.distribution([]float32{1, 2, 3, 4, 5}), map[int32]float64{4: e / (e + 1), 3: 1 / (e + 1)})
	// Ties at the cut go to the lower id.
	checkDist(t, s.distribution([]float32{1, 3, 3, 3, 0}), map[int32]float64{1: 0.5, 2: 0.5})
	// top_k 1 is greedy.
	o.TopK = 1
	s = mustNew(t, o, 5)
	for range 50 {
		if got := s.Sample([]float32{1, 2, 9, 4, 5}); got != 2 {
			t.Fatalf("top_k 1 drew %d", got)
		}
	}
}

func TestTopKSelection(t *testing.T) {
	// The heap selection agrees with a full sort on random logits with ties.
	rng := rand.New(rand.NewPCG(3, 4))
	for trial := range 200 {
		n := 1 + rng.IntN(500)
		w := make([]float32, n)
		for i := range w {
			w[i] = float32(rng.IntN(20)) // many ties
			if rng.IntN(10) == 0 {
				w[i] = -inf
			}
		}
		k := 1 + rng.IntN(n)
		got := selectTop(nil, w, k)
		slices.SortFunc(got, cmpBetter)
		var all []cand
		for i, v := range w {
			if v > -inf {
				all = append(all, cand{id: int32(i), logit: v})
			}
		}
		slices.SortFunc(all, cmpBetter)
		want := all[:min(k, len(all))]
		if !slices.Equal(got, want) {
			t.Fatalf("trial %d (n=%d k=%d): got %v, want %v", trial, n, k, got, want)
		}
	}
}

func TestTopP(t *testing.T) {
	o := plain()
	o.TopP = 0.75
	s := mustNew(t, o, 4)
	// 0.5 < 0.75 <= 0.5+0.3: two tokens, renormalised.
	checkDist(t, s.distribution(logitsOf(0.05, 0.5, 0.15, 0.3)), map[int32]float64{1: 0.625, 3: 0.375})
	o.TopP = 0.4
	s = mustNew(t, o, 4)
	checkDist(t, s.distribution(logitsOf(0.05, 0.5, 0.15, 0.3)), map[int32]float64{1: 1})
	// After top_k, top_p works on the renormalised survivors: top_k 2
	// leaves 0.625 and 0.375, so top_p 0.6 would keep one token and 0.7
	// keeps both.
	o.TopK, o.TopP = 2, 0.7
	s = mustNew(t, o, 4)
	checkDist(t, s.distribution(logitsOf(0.05, 0.5, 0.15, 0.3)), map[int32]float64{1: 0.625, 3: 0.375})
}

func TestTopPLargeVocab(t *testing.T) {
	// The fast path (best 256 first) and the full sort agree.
	rng := rand.New(rand.NewPCG(5, 6))
	for _, scale := range []float64{8, 0.1} { // peaked: fast path; flat: full sort
		logits := make([]float32, 20000)
		for i := range logits {
			logits[i] = float32(rng.NormFloat64() * scale)
		}
		o := plain()
		o.TopP = 0.9
		s := mustNew(t, o, len(logits))
		got := s.distribution(logits)
		// Reference: sort everything, cut at 0.9.
		idx := make([]int, len(logits))
		for i := range idx {
			idx[i] = i
		}
		slices.SortFunc(idx, func(a, b int) int {
			return cmpBetter(cand{id: int32(a), logit: logits[a]}, cand{id: int32(b), logit: logits[b]})
		})
		var total float64
		for _, v := range logits {
			total += math.Exp(float64(v))
		}
		var cum float64
		want := map[int32]float64{}
		for _, i := range idx {
			cum += math.Exp(float64(logits[i])) / total
			want[int32(i)] = 0
			if cum >= 0.9 {
				break
			}
		}
		if len(got) != len(want) {
			t.Errorf("scale %v: top_p kept %d tokens, want %d", scale, len(got), len(want))
		}
		for id := range want {
			if _, ok := got[id]; !ok {
				t.Errorf("scale %v: token %d missing", scale, id)
				break
			}
		}
	}
}

func TestMinP(t *testing.T) {
	o := plain()
	o.MinP = 0.2 // keeps p >= 0.1
	s := mustNew(t, o, 4)
	checkDist(t, s.distribution(logitsOf(0.5, 0.3, 0.15, 0.05)), map[int32]float64{0: 0.5 / 0.95, 1: 0.3 / 0.95, 2: 0.15 / 0.95})
	o.MinP = 1
	s = mustNew(t, o, 4)
	checkDist(t, s.distribution(logitsOf(0.5, 0.3, 0.15, 0.05)), map[int32]float64{0: 1})
}

func TestTypicalP(t *testing.T) {
	// p = .5 .3 .15 .05: H = 1.1422; |-ln p - H| = .449 .062 .755 1.854, so
	// the order is 1, 0, 2, 3.
	o := plain()
	o.TypicalP = 0.5 // 0.3 <= 0.5 < 0.8: tokens 1 and 0
	s := mustNew(t, o, 4)
	checkDist(t, s.distribution(logitsOf(0.5, 0.3, 0.15, 0.05)), map[int32]float64{0: 0.625, 1: 0.375})
	o.TypicalP = 0.2 // 0.3 > 0.2: token 1 alone, though 0 is likelier
	s = mustNew(t, o, 4)
	checkDist(t, s.distribution(logitsOf(0.5, 0.3, 0.15, 0.05)), map[int32]float64{1: 1})
}

func TestTemperature(t *testing.T) {
	o := plain()
	o.Temperature = 0.5
	s := mustNew(t, o, 2)
	checkDist(t, s.distribution([]float32{0, float32(math.Ln2)}), map[int32]float64{0: 0.2, 1: 0.8})
	o.Temperature = 2
	s = mustNew(t, o, 2)
	checkDist(t, s.distribution([]float32{0, float32(2 * math.Ln2)}), map[int32]float64{0: 1.0 / 3, 1: 2.0 / 3})
}

func TestPenalties(t *testing.T) {
	o := plain()
	o.RepeatPenalty, o.PresencePenalty, o.FrequencyPenalty, o.RepeatLastN = 2, 0.5, 0.25, 64
	s := mustNew(t, o, 5)
	for _, tok := range []int32{0, 1, 0, 3, -1, 99} { // -1 and 99 ignored
		s.Accept(tok)
	}
	got := s.penalize([]float32{2, -2, 1, 0.5, 0})
	// 0: 2/2 - 2*0.25 - 0.5; 1: -2*2 - 0.25 - 0.5; 3: 0.5/2 - 0.25 - 0.5.
	want := []float32{0, -4.75, 1, -0.5, 0}
	if !slices.Equal(got, want) {
		t.Errorf("penalised %v, want %v", got, want)
	}

	// The window: with repeat_last_n 2 only the last two tokens count.
	o.RepeatLastN = 2
	s = mustNew(t, o, 5)
	for _, tok := range []int32{0, 1, 2, 1} {
		s.Accept(tok)
	}
	got = s.penalize([]float32{2, 2, 2, 2, 2})
	want = []float32{2, 2/2.0 - 0.25 - 0.5, 2/2.0 - 0.25 - 0.5, 2, 2}
	if !slices.Equal(got, want) {
		t.Errorf("window 2: %v, want %v", got, want)
	}
	// A long history through a short window prunes its bookkeeping and stays
	// exact.
	for i := range 1000 {
		s.Accept(int32(i % 5))
	}
	if len(s.seen) > 2*2+16 {
		t.Errorf("seen grew to %d", len(s.seen))
	}
	got = s.penalize([]float32{2, 2, 2, 2, 2}) // last two: 3, 4
	want = []float32{2, 2, 2, 2/2.0 - 0.25 - 0.5, 2/2.0 - 0.25 - 0.5}
	if !slices.Equal(got, want) {
		t.Errorf("after 1000: %v, want %v", got, want)
	}

	// repeat_last_n -1: the whole history.
	o.RepeatLastN = -1
	s = mustNew(t, o, 3)
	for range 10 {
		s.Accept(2)
	}
	s.Accept(0)
	got = s.penalize([]float32{1, 1, 1})
	want = []float32{1/2.0 - 0.25 - 0.5, 1, 1/2.0 - 10*0.25 - 0.5}
	if !slices.Equal(got, want) {
		t.Errorf("whole history: %v, want %v", got, want)
	}

	// repeat_last_n 0 disables all three.
	o.RepeatLastN = 0
	s = mustNew(t, o, 3)
	s.Accept(0)
	if got := s.penalize([]float32{1, 1, 1}); !slices.Equal(got, []float32{1, 1, 1}) {
		t.Errorf("disabled: %v", got)
	}
}

func TestNaNLogits(t *testing.T) {
	nan := float32(math.NaN())
	o := DefaultOptions()
	o.Seed = 3
	o.PresencePenalty = 0.5
	s := mustNew(t, o, 6)
	s.Accept(1)
	logits := []float32{nan, 1, nan, 2, nan, 0.5}
	for range 500 {
		switch tok := s.Sample(logits); tok {
		case 0, 2, 4:
			t.Fatalf("drew NaN token %d", tok)
		}
	}
	if got := s.Sample([]float32{nan, nan, nan}); got != 0 {
		t.Errorf("all NaN: %d, want 0", got)
	}
	if got := s.Sample([]float32{-inf, -inf}); got != 0 {
		t.Errorf("all -Inf: %d, want 0", got)
	}
	if got := s.Sample([]float32{0, inf, 1, inf}); got != 1 {
		t.Errorf("+Inf: %d, want 1", got)
	}
	if got := s.Sample(nil); got != -1 {
		t.Errorf("empty: %d, want -1", got)
	}
	o.TopK, o.TopP, o.TypicalP, o.MinP = 0, 0.5, 0.5, 0.1
	s = mustNew(t, o, 6)
	for range 100 {
		if tok := s.Sample(logits); tok%2 == 0 {
			t.Fatalf("drew NaN token %d", tok)
		}
	}
}

// TestDistribution draws many tokens and compares the counts with the
// softmax by Pearson's chi-square. With 4 degrees of freedom the 1e-4 tail
// starts at 23.5; a fixed seed makes the test deterministic. The same counts
// against a slightly wrong distribution must fail, so the test has power.
func TestDistribution(t *testing.T) {
	probs := []float64{0.4, 0.25, 0.2, 0.1, 0.05}
	o := plain()
	o.Seed = 12345
	s := mustNew(t, o, len(probs))
	logits := logitsOf(probs...)
	const draws = 200000
	counts := make([]float64, len(probs))
	for range draws {
		counts[s.Sample(logits)]++
	}
	chi2 := func(p []float64) float64 {
		var x float64
		for i := range p {
			e := p[i] * draws
			x += (counts[i] - e) * (counts[i] - e) / e
		}
		return x
	}
	if x := chi2(probs); x > 23.5 {
		t.Errorf("chi-square %.1f against the softmax (counts %v)", x, counts)
	}
	wrong := []float64{0.41, 0.245, 0.195, 0.1, 0.05}
	if x := chi2(wrong); x < 23.5 {
		t.Errorf("chi-square %.1f against a wrong distribution: the test cannot tell", x)
	}

	// With temperature 2 the softmax flattens to p^(1/2), renormalised.
	o.Temperature = 2
	s = mustNew(t, o, len(probs))
	clear(counts)
	for range draws {
		counts[s.Sample(logits)]++
	}
	flat := make([]float64, len(probs))
	var sum float64
	for i, p := range probs {
		flat[i] = math.Sqrt(p)
		sum += flat[i]
	}
	for i := range flat {
		flat[i] /= sum
	}
	if x := chi2(flat); x > 23.5 {
		t.Errorf("temperature 2: chi-square %.1f (counts %v)", x, counts)
	}
}

func TestNoAllocs(t *testing.T) {
	const n = 128256
	rng := rand.New(rand.NewPCG(9, 9))
	logits := make([]float32, n)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64() * 2)
	}
	for _, c := range []struct {
		name string
		mod  func(*Options)
	}{
		{"defaults", func(*Options) {}},
		{"top_p only", func(o *Options) { o.TopK = 0 }},
		{"typical", func(o *Options) { o.TopK, o.TypicalP, o.MinP = 0, 0.9, 0.05 }},
		{"greedy", func(o *Options) { o.Temperature = 0 }},
	} {
		o := DefaultOptions()
		o.Seed = 1
		c.mod(&o)
		s := mustNew(t, o, n)
		for i := range 100 {
			s.Accept(int32(i * 7))
		}
		s.Sample(logits) // warm-up: buffers grow here
		allocs := testing.AllocsPerRun(5, func() {
			s.Accept(s.Sample(logits))
		})
		if allocs != 0 {
			t.Errorf("%s: %v allocations per Sample", c.name, allocs)
		}
	}
}

// BenchmarkSample runs the chain on a 128k vocabulary with two shapes of
// logits: flat (N(0, 2), the worst case for top_p: most of the vocabulary
// holds the mass) and peaked (a few dozen tokens far above the rest, as a
// trained model's logits usually are).
func BenchmarkSample(b *testing.B) {
	const n = 128256
	rng := rand.New(rand.NewPCG(9, 9))
	flat := make([]float32, n)
	for i := range flat {
		flat[i] = float32(rng.NormFloat64() * 2)
	}
	peaked := slices.Clone(flat)
	for range 30 {
		peaked[rng.IntN(n)] += 12 + float32(rng.NormFloat64())
	}
	for _, c := range []struct {
		name   string
		logits []float32
		mod    func(*Options)
	}{
		{"vocab=128k/flat/defaults", flat, func(*Options) {}},
		{"vocab=128k/flat/top_p=0.9", flat, func(o *Options) { o.TopK = 0 }},
		{"vocab=128k/peaked/top_p=0.9", peaked, func(o *Options) { o.TopK = 0 }},
		{"vocab=128k/flat/typical=0.9", flat, func(o *Options) { o.TopK, o.TypicalP = 0, 0.9 }},
		{"vocab=128k/flat/greedy", flat, func(o *Options) { o.Temperature = 0 }},
	} {
		logits := c.logits
		b.Run(c.name, func(b *testing.B) {
			o := DefaultOptions()
			o.Seed = 1
			c.mod(&o)
			s, _ := New(o, n)
			for i := range 64 {
				s.Accept(int32(i * 13))
			}
			b.SetBytes(4 * n)
			for b.Loop() {
				s.Accept(s.Sample(logits))
			}
		})
	}
}
