package engine

import (
	"math"
	"testing"
)

// TestEvalAllEval: EvalAll in batches of 5 hands over the rows from index
// `from` on, in order, and each equals the last-token logits Eval gives
// for the same prefix.
func TestEvalAllEval(t *testing.T) {
	m := loadModel(t, "stories260K-f32.gguf")
	ids := m.Tok.Encode("Once upon a time, there was a little girl named Lily.", true, false)
	s, err := m.NewSequence(64)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const from = 7
	var got [][]float32
	err = s.EvalAll(ids, from, 5, func(i int, row []float32) error {
		if i != from+len(got) {
			t.Fatalf("row %d, want %d", i, from+len(got))
		}
		got = append(got, append([]float32(nil), row...))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(ids)-from || s.Len() != len(ids) {
		t.Fatalf("%d rows, length %d; want %d and %d", len(got), s.Len(), len(ids)-from, len(ids))
	}
	for i := from; i < len(ids); i++ {
		r, err := m.NewSequence(64)
		if err != nil {
			t.Fatal(err)
		}
		want, err := r.Eval(ids[:i+1])
		if err != nil {
			t.Fatal(err)
		}
		for k, v := range want {
			if d := math.Abs(float64(v - got[i-from][k])); d > 1e-4 {
				t.Fatalf("position %d, logit %d: %v, Eval %v", i, k, got[i-from][k], v)
			}
		}
		r.Close()
	}
}
