package sample

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

// refLogprobs is the float64 reference: log-softmax over every finite
// logit, computed the naive way in float64 after a max-subtraction.
func refLogprobs(logits []float32) []float64 {
	m := math.Inf(-1)
	for _, v := range logits {
		if float64(v) > m {
			m = float64(v)
		}
	}
	var sum float64
	for _, v := range logits {
		if !math.IsNaN(float64(v)) {
			sum += math.Exp(float64(v) - m)
		}
	}
	out := make([]float64, len(logits))
	for i, v := range logits {
		if math.IsNaN(float64(v)) {
			out[i] = math.Inf(-1)
			continue
		}
		out[i] = float64(v) - m - math.Log(sum)
	}
	return out
}

func TestLogprobsMatchReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, n := range []int{1, 2, 7, 1000, 32000} {
		for _, scale := range []float32{0.01, 1, 30, 1000} {
			logits := make([]float32, n)
			for i := range logits {
				logits[i] = float32(rng.NormFloat64()) * scale
			}
			if n > 3 {
				logits[1] = float32(math.NaN())
				logits[2] = float32(math.Inf(-1))
			}
			want := refLogprobs(logits)
			for i := range logits {
				got := Logprobs(logits, int32(i), 0)
				if got.ID != int32(i) || got.Top != nil {
					t.Fatalf("n=%d: %+v", n, got)
				}
				if d := math.Abs(got.Logprob - want[i]); d > 1e-9 && !(math.IsInf(want[i], -1) && math.IsInf(got.Logprob, -1)) {
					t.Fatalf("n=%d scale %v token %d: %v, reference %v", n, scale, i, got.Logprob, want[i])
				}
				if i > 50 {
					break
				}
			}
			all := Logprobs(logits, 0, MaxTopLogprobs)
			if math.Exp(all.Top[0].Logprob) > 1+1e-12 || len(all.Top) == 0 {
				t.Fatalf("top %+v", all.Top)
			}
			// Top is the reference's best, in order.
			ids := make([]int, n)
			for i := range ids {
				ids[i] = i
			}
			slices.SortStableFunc(ids, func(a, b int) int {
				switch {
				case want[a] > want[b]:
					return -1
				case want[a] < want[b]:
					return 1
				}
				return 0
			})
			finite := 0
			for _, v := range want {
				if !math.IsInf(v, -1) {
					finite++
				}
			}
			if len(all.Top) != min(MaxTopLogprobs, finite) {
				t.Fatalf("n=%d: %d alternatives", n, len(all.Top))
			}
			for k, x := range all.Top {
				if x.ID != int32(ids[k]) || math.Abs(x.Logprob-want[ids[k]]) > 1e-9 {
					t.Fatalf("n=%d: top[%d] = %+v, want %d (%v)", n, k, x, ids[k], want[ids[k]])
				}
			}
		}
	}
}

// TestLogprobsTies: equal logits come lowest id first; the list is capped
// at MaxTopLogprobs and at the finite entries; greedy's token is the first.
func TestLogprobsTies(t *testing.T) {
	logits := []float32{1, 3, 3, 2, 3, float32(math.Inf(-1)), 0}
	got := Logprobs(logits, Greedy(logits), 50)
	var ids []int32
	for _, x := range got.Top {
		ids = append(ids, x.ID)
	}
	if !slices.Equal(ids, []int32{1, 2, 4, 3, 0, 6}) {
		t.Errorf("order %v", ids)
	}
	if got.ID != 1 || got.Logprob != got.Top[0].Logprob {
		t.Errorf("greedy token %+v, best %+v", got.Logprob, got.Top[0])
	}
	if got.Top[0].Logprob != got.Top[1].Logprob {
		t.Errorf("tied logits differ: %v", got.Top)
	}
	want := 3 - math.Log(math.Exp(1)+3*math.Exp(3)+math.Exp(2)+1)
	if math.Abs(got.Logprob-want) > 1e-12 {
		t.Errorf("logprob %v, want %v", got.Logprob, want)
	}
	if lp := Logprobs(logits, 5, 2); !math.IsInf(lp.Logprob, -1) || len(lp.Top) != 2 {
		t.Errorf("masked token %+v", lp)
	}
	// Huge logits: no overflow (float32 exp would give Inf).
	big := []float32{3e38, 3e38 - 1e32, -3e38}
	if lp := Logprobs(big, 0, 3); math.IsNaN(lp.Logprob) || lp.Logprob > 0 || len(lp.Top) != 3 || math.IsNaN(lp.Top[2].Logprob) {
		t.Errorf("huge logits %+v", lp)
	}
	// +Inf takes all the mass; nothing finite gives -Inf everywhere.
	if lp := Logprobs([]float32{0, float32(math.Inf(1)), 1}, 1, 3); lp.Logprob != 0 || !math.IsInf(lp.Top[1].Logprob, -1) {
		t.Errorf("+Inf %+v", lp)
	}
	nan := float32(math.NaN())
	if lp := Logprobs([]float32{nan, nan}, 0, 3); !math.IsInf(lp.Logprob, -1) || len(lp.Top) != 0 {
		t.Errorf("all NaN %+v", lp)
	}
}

// BenchmarkLogprobs is the cost of one step's logprobs over a 128k
// vocabulary (paid only by requests that ask).
func BenchmarkLogprobs(b *testing.B) {
	rng := rand.New(rand.NewPCG(1, 2))
	logits := make([]float32, 128256)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64()) * 3
	}
	for _, top := range []int{0, 20} {
		b.Run(map[int]string{0: "top0", 20: "top20"}[top], func(b *testing.B) {
			for b.Loop() {
				Logprobs(logits, 7, top)
			}
		})
	}
}
