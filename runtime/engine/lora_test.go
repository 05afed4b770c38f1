package engine

import (
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/hearth-llm/hearth/runtime/lora"
)

// addAdapters registers n random adapters (rank 4..16 on attention and
// FFN) on m as "a0", "a1", …
func addAdapters(t testing.TB, m *Model, n int, rank int, parts []string) []string {
	t.Helper()
	var names []string
	for i := range n {
		r := rank
		if r == 0 {
			r = 4 << (i % 3) // 4, 8, 16
		}
		w, err := lora.Random(m.File, lora.RandomOptions{Seed: uint64(100 + i), Rank: r, Alpha: float32(2 * r), Parts: parts, StdB: 0.03})
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), fmt.Sprintf("a%d.gguf", i))
		if err := w.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("a%d", i)
		if err := m.LoadAdapter(name, path, 1); err != nil {
			t.Fatal(err)
		}
		names = append(names, name)
	}
	return names
}

// greedyAlone runs prompt greedily for n tokens in a sequence of its own
// with adapter (""; none).
func greedyAlone(t *testing.T, m *Model, adapter string, prompt []int32, n int) []int32 {
	t.Helper()
	seq, err := m.NewSequence(256)
	if err != nil {
		t.Fatal(err)
	}
	defer seq.Close()
	if err := seq.UseAdapter(adapter); err != nil {
		t.Fatal(err)
	}
	logits, err := seq.Eval(prompt)
	if err != nil {
		t.Fatal(err)
	}
	var out []int32
	for range n {
		tok := argmaxTest(logits)
		out = append(out, tok)
		if logits, err = seq.Eval([]int32{tok}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestBatchedAdapters: 8 concurrent greedy requests over 4 adapters and
// the bare base (two pairs with the same prompt under different
// adapters) return exactly the tokens each returns alone.
func TestBatchedAdapters(t *testing.T) {
	m := loadModel(t, "stories260K-f32.gguf")
	names := append([]string{""}, addAdapters(t, m, 4, 0, lora.AttnFFN)...)
	prompts := []string{"Once upon a time", "Once upon a time", "Lily and Tom went to the park",
		"One day, a bird", "One day, a bird", "Mom said", "There was a big red ball", "Tim was sad because"}
	const n = 16
	alone := make([][]int32, len(prompts))
	for i, p := range prompts {
		alone[i] = greedyAlone(t, m, names[i%len(names)], m.Tok.Encode(p, true, false), n)
	}
	if slices.Equal(alone[0], alone[1]) || slices.Equal(alone[3], alone[4]) {
		t.Fatalf("the adapters do not change the output: %v %v, %v %v", alone[0], alone[1], alone[3], alone[4])
	}
	b := serveBatched(t, m, BatchConfig{KVBudget: 8 << 20, MaxBatchTokens: 64})
	got := make([][]int32, len(prompts))
	var wg sync.WaitGroup
	for i, p := range prompts {
		st, err := b.Submit(m.Tok.Encode(p, true, false), SeqOptions{NumPredict: n, Sample: greedy(), Adapter: names[i%len(names)]})
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() { defer wg.Done(); got[i] = collect(t, st) }()
	}
	wg.Wait()
	for i := range prompts {
		if !slices.Equal(got[i], alone[i]) {
			t.Errorf("prompt %d (adapter %q): batched %v, alone %v", i, names[i%len(names)], got[i], alone[i])
		}
	}
	if _, err := b.Submit([]int32{1, 2}, SeqOptions{Sample: greedy(), Adapter: "nope"}); !errors.Is(err, ErrUnknownAdapter) {
		t.Errorf("unknown adapter: %v", err)
	}
}

// TestBatchedAdapterPrefixCache: the same prompt under another adapter
// gets no cached block (its KV differs); under the same one it does.
func TestBatchedAdapterPrefixCache(t *testing.T) {
	m := loadModel(t, "stories260K-f32.gguf")
	names := addAdapters(t, m, 2, 8, lora.AttnFFN)
	b := serveBatched(t, m, BatchConfig{KVBudget: 8 << 20})
	prompt := m.Tok.Encode("Once upon a time, there was a little girl named Lily. She loved to play outside in the park with her friends every day.", true, false)
	run := func(ad string) []int32 {
		return collect(t, must(b.Submit(prompt, SeqOptions{NumPredict: 4, Sample: greedy(), Adapter: ad})))
	}
	base, a0 := run(""), run(names[0])
	if mt := b.Metrics(); mt.PrefixHits != 0 {
		t.Fatalf("an adapter reused the base's KV: %+v", mt)
	}
	a1 := run(names[1])
	if mt := b.Metrics(); mt.PrefixHits != 0 {
		t.Fatalf("an adapter reused another's KV: %+v", mt)
	}
	again := run(names[0])
	if mt := b.Metrics(); mt.PrefixHits != 1 {
		t.Errorf("the same adapter did not reuse its KV: %+v", mt)
	}
	for _, c := range []struct {
		name string
		got  []int32
		ad   string
	}{{"base", base, ""}, {"a0", a0, names[0]}, {"a1", a1, names[1]}, {"a0 again", again, names[0]}} {
		if want := greedyAlone(t, m, c.ad, prompt, 4); !slices.Equal(c.got, want) {
			t.Errorf("%s: %v, alone %v", c.name, c.got, want)
		}
	}
}
