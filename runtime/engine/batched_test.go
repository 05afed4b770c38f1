package engine

import (
	"context"
	"errors"
	"io"
	"sync"
	"testing"

	"github.com/hearth-llm/hearth/scheduler"
)

func serveBatched(t *testing.T, m *Model, c BatchConfig) *Batched {
	t.Helper()
	b, err := m.NewBatched(c)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { b.Serve(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return b
}

func collect(t *testing.T, st *scheduler.Stream) []int32 {
	t.Helper()
	var toks []int32
	for {
		var err error
		toks, err = st.Recv(context.Background(), toks)
		if errors.Is(err, io.EOF) {
			return toks
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestBatchedMatchesAlone: 8 concurrent greedy requests with different
// prompts return exactly the tokens each returns alone.
func TestBatchedMatchesAlone(t *testing.T) {
	m := loadModel(t, "stories260K-f32.gguf")
	prompts := []string{"Once upon a time", "The little dog", "Lily and Tom went to the park",
		"One day, a bird", "The sun was", "Mom said", "There was a big red ball", "Tim was sad because"}
	const n = 16
	alone := make([][]int32, len(prompts))
	for i, p := range prompts {
		seq, _ := m.NewSequence(0)
		ids := m.Tok.Encode(p, true, false)
		logits, err := seq.Eval(ids)
		if err != nil {
			t.Fatal(err)
		}
		for k := 0; k < n; k++ {
			tok := argmaxTest(logits)
			alone[i] = append(alone[i], tok)
			if logits, err = seq.Eval([]int32{tok}); err != nil {
				t.Fatal(err)
			}
		}
	}
	b := serveBatched(t, m, BatchConfig{KVBudget: 8 << 20, MaxBatchTokens: 64})
	got := make([][]int32, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		st, err := b.Submit(m.Tok.Encode(p, true, false), SeqOptions{NumPredict: n, Sample: greedy()})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = collect(t, st) }()
	}
	wg.Wait()
	for i := range prompts {
		if len(got[i]) != n {
			t.Fatalf("prompt %d: %d tokens, want %d", i, len(got[i]), n)
		}
		for k := range got[i] {
			if got[i][k] != alone[i][k] {
				t.Fatalf("prompt %d token %d: batched %d, alone %d", i, k, got[i][k], alone[i][k])
			}
		}
	}
	if mt := b.Metrics(); mt.BlocksUsed != 0 || mt.Running != 0 {
		t.Errorf("after all finished: %+v", mt)
	}
}

func argmaxTest(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}

// TestBatchedPrefixCache: a repeated prompt reuses cached blocks.
func TestBatchedPrefixCache(t *testing.T) {
	m := loadModel(t, "stories260K-f32.gguf")
	b := serveBatched(t, m, BatchConfig{KVBudget: 8 << 20})
	prompt := m.Tok.Encode("Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends every day.", true, false)
	first := collect(t, must(b.Submit(prompt, SeqOptions{NumPredict: 4, Sample: greedy()})))
	second := collect(t, must(b.Submit(prompt, SeqOptions{NumPredict: 4, Sample: greedy()})))
	if len(first) != 4 || len(second) != 4 {
		t.Fatalf("%v %v", first, second)
	}
	for i := range first {
		if first[i] != second[i] {
			t.Fatalf("cached run differs: %v vs %v", first, second)
		}
	}
	if mt := b.Metrics(); mt.PrefixHits != 1 || mt.PrefixHitTokens < 16 {
		t.Errorf("prefix cache: %+v", mt)
	}
}

func must(st *scheduler.Stream, err error) *scheduler.Stream {
	if err != nil {
		panic(err)
	}
	return st
}

// TestBatchedQ8KV: a Q8_0 KV cache holds about twice the tokens of an F16
// one in the same budget, and greedy output stays close to the F16 run
// (the cache is lossy: compare the first tokens only).
func TestBatchedQ8KV(t *testing.T) {
	m := loadModel(t, "tiny-llama-spm-Q8_0.gguf")
	f16 := serveBatched(t, m, BatchConfig{KVBudget: 4 << 20})
	prompt := m.Tok.Encode("The quick brown fox jumps over the lazy dog.", true, false)
	want := collect(t, must(f16.Submit(prompt, SeqOptions{NumPredict: 4, Sample: greedy()})))
	q8 := serveBatched(t, m, BatchConfig{KVBudget: 4 << 20, KVType: "q8_0"})
	got := collect(t, must(q8.Submit(prompt, SeqOptions{NumPredict: 4, Sample: greedy()})))
	if len(got) != 4 || got[0] != want[0] {
		t.Errorf("q8_0 KV: %v, f16 KV: %v", got, want)
	}
	if a, b := f16.Metrics().BlocksTotal, q8.Metrics().BlocksTotal; b < a*18/10 {
		t.Errorf("q8_0 pool %d blocks, f16 %d: want about twice", b, a)
	}
	if _, err := m.NewBatched(BatchConfig{KVType: "q4_k"}); err == nil {
		t.Error("a Q4_K KV cache was accepted")
	}
}
