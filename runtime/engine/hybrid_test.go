package engine

import (
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
)

// TestBatchedHybrid: Qwen 3.5 (Gated DeltaNet + attention, dense and
// MoE) under the batched engine: 8 concurrent greedy requests, with
// prompts split into prefill chunks across steps and a KV budget small
// enough to preempt (a preempted sequence recomputes, its recurrent state
// restarted), return exactly the tokens each returns alone; without state
// snapshots a repeated prompt is recomputed, not served from the prefix
// cache (whose KV blocks lack the recurrent state at their end), with the
// same tokens (TestBatchedHybridPrefix has the snapshots).
func TestBatchedHybrid(t *testing.T) {
	for _, name := range []string{"qwen35-h1001-Q8_0", "qwen35moe-h1001-Q8_0"} {
		t.Run(name, func(t *testing.T) {
			m, err := Load(filepath.Join(testdata.Dir(t, "arch-next/models"), name+".gguf"), Options{Threads: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			// Prompts whose greedy continuations run long (most of n
			// tokens before an end of generation), so that 8 at once
			// outgrow the blocks below and force preemptions: the first
			// family of prompts, by multiplier, that does.
			const n = 100
			var prompts, alone [][]int32
			for _, mul := range []int{37, 41, 53, 59, 61, 67} {
				prompts, alone = nil, nil
				total := 0
				for i := range 8 {
					p := []int32{1}
					for j := 1; j < 5+4*i; j++ {
						p = append(p, int32(3+(j*mul+i*101)%490))
					}
					prompts = append(prompts, p)
					seq, err := m.NewSequence(256)
					if err != nil {
						t.Fatal(err)
					}
					logits, err := seq.Eval(p)
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
					seq.Close()
					alone = append(alone, out)
					for k, tok := range out {
						if m.Tok.IsEOG(tok) || k == n-1 {
							total += k + 1
							break
						}
					}
				}
				if total >= 7*n {
					break
				}
			}
			// 8 state slots (~0.6 MiB, under half the budget) and 39 blocks
			// of 16 positions.
			b := serveBatched(t, m, BatchConfig{KVBudget: 1250 << 10, MaxBatchTokens: 32, PrefillChunk: 8, MaxRunning: 8, StateSnapshots: -1})
			got := make([][]int32, len(prompts))
			var wg sync.WaitGroup
			for i, p := range prompts {
				st, err := b.Submit(p, SeqOptions{NumPredict: n, Sample: greedy()})
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func() { defer wg.Done(); got[i] = collect(t, st) }()
			}
			wg.Wait()
			for i := range prompts {
				// Generation stops at an end-of-generation token.
				if k := len(got[i]); k == 0 || k < n && !m.Tok.IsEOG(got[i][k-1]) || k > n {
					t.Fatalf("prompt %d: %d tokens, want %d or up to an end of generation", i, k, n)
				}
				for k := range got[i] {
					if got[i][k] != alone[i][k] {
						t.Fatalf("prompt %d token %d: batched %d, alone %d", i, k, got[i][k], alone[i][k])
					}
				}
			}
			mt := b.Metrics()
			t.Logf("%d steps, %d preemptions, %d blocks", mt.Steps, mt.Preemptions, mt.BlocksTotal)
			if mt.Preemptions == 0 {
				t.Errorf("no preemption: the test does not exercise recomputation")
			}
			again := collect(t, must(b.Submit(prompts[7], SeqOptions{NumPredict: n, Sample: greedy()})))
			if len(again) != len(got[7]) {
				t.Fatalf("repeated prompt: %d tokens, first time %d", len(again), len(got[7]))
			}
			for k := range again {
				if again[k] != alone[7][k] {
					t.Fatalf("repeated prompt token %d: %d, alone %d", k, again[k], alone[7][k])
				}
			}
			if mt := b.Metrics(); mt.PrefixHits != 0 || mt.BlocksUsed != 0 || mt.Running != 0 {
				t.Errorf("after all finished: %+v", mt)
			}
		})
	}
}

// TestBatchedHybridPrefix: prefix reuse for Qwen 3.5 through recurrent
// state snapshots. Requests sharing a 896-token prefix (56 blocks, most
// of the file's 1,024-token context) with 24 tokens of their own: the
// first computes everything; the second finds the prefix's KV but no
// state at its end, recomputes and leaves a snapshot there; the others
// restore it and prefill only their own tokens; a repeated prompt
// restores up to its last block boundary. Every one returns exactly the
// greedy tokens it returns alone, without any cache.
func TestBatchedHybridPrefix(t *testing.T) {
	m, err := Load(filepath.Join(testdata.Dir(t, "arch-next/models"), "qwen35-h1001-Q8_0.gguf"), Options{Threads: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	prefix := []int32{1}
	for j := 1; j < 896; j++ {
		prefix = append(prefix, int32(3+(j*53)%490))
	}
	prompt := func(i int) []int32 {
		p := append([]int32(nil), prefix...)
		for j := range 24 {
			p = append(p, int32(3+(j*31+i*97)%490))
		}
		return p
	}
	const n = 16
	alone := func(p []int32) []int32 {
		seq, err := m.NewSequence(1024)
		if err != nil {
			t.Fatal(err)
		}
		defer seq.Close()
		logits, err := seq.Eval(p)
		if err != nil {
			t.Fatal(err)
		}
		var out []int32
		for range n {
			tok := argmaxTest(logits)
			out = append(out, tok)
			if m.Tok.IsEOG(tok) {
				break
			}
			if logits, err = seq.Eval([]int32{tok}); err != nil {
				t.Fatal(err)
			}
		}
		return out
	}
	b := serveBatched(t, m, BatchConfig{KVBudget: 16 << 20, MaxRunning: 2, StateSnapshots: 4})
	for i, c := range []struct {
		prompt []int32
		hit    int64
	}{
		{prompt(0), 0},
		{prompt(1), 0},
		{prompt(2), 896},
		{prompt(3), 896},
		{prompt(3), 912}, // (920-1)/16 blocks
	} {
		before := b.Metrics().PrefixHitTokens
		got := collect(t, must(b.Submit(c.prompt, SeqOptions{NumPredict: n, Sample: greedy()})))
		want := alone(c.prompt)
		if !slices.Equal(got, want) {
			t.Fatalf("request %d: %v, alone %v", i, got, want)
		}
		if hit := b.Metrics().PrefixHitTokens - before; hit != c.hit {
			t.Errorf("request %d: %d prefix hit tokens, want %d", i, hit, c.hit)
		}
	}
	if mt := b.Metrics(); mt.StateSnapshots == 0 || mt.BlocksUsed != 0 || mt.Running != 0 {
		t.Errorf("after all finished: %+v", mt)
	}
}
