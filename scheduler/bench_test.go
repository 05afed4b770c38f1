package scheduler

import (
	"fmt"
	"testing"
)

// benchLoop runs Step → trivial engine → Complete → Events, resubmitting
// sequences as they end, so the running set stays full.
func benchLoop(b *testing.B, cfg Config, seqs, prompt, numCtx int, shared bool) {
	s, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	req := func(i int) Request {
		base := i * 1000
		if shared {
			base = 0 // the same system prompt: prefix-cache hits
		}
		p := seqTokens(base, prompt)
		p[len(p)-1] = int32(i) // distinct last token
		return Request{Prompt: p, NumCtx: numCtx}
	}
	for i := range seqs {
		if _, err := s.Submit(req(i)); err != nil {
			b.Fatal(err)
		}
	}
	results := make([]Result, 0, seqs)
	run := func() int {
		p := s.Step()
		if p == nil {
			b.Fatal("idle")
		}
		results = results[:0]
		for range p.Outputs {
			results = append(results, Result{Token: 7})
		}
		s.Complete(p, results)
		for _, ev := range s.Events() {
			if ev.Done {
				if _, err := s.Submit(req(int(ev.ID) % seqs)); err != nil {
					b.Fatal(err)
				}
			}
		}
		return len(p.Tokens)
	}
	// Reach the steady state: every sequence decoding.
	for range 4 * (prompt*seqs/cfg.MaxBatchTokens + 1) {
		run()
	}
	rows := 0
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		rows += run()
	}
	b.ReportMetric(float64(rows)/float64(b.N), "rows/step")
	if err := s.Check(); err != nil {
		b.Fatal(err)
	}
}

// A decode step of running sequences whose limits fit their preallocated
// token buffers allocates nothing.
func TestDecodeStepAllocs(t *testing.T) {
	s, err := New(Config{NumBlocks: 2048, BlockSize: 16})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 64 {
		if _, err := s.Submit(Request{Prompt: seqTokens(i*1000, 100), NumPredict: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	results := make([]Result, 64)
	step := func() {
		p := s.Step()
		for i := range results[:len(p.Outputs)] {
			results[i] = Result{Token: int32(i)}
		}
		s.Complete(p, results[:len(p.Outputs)])
		s.Events()
	}
	for range 40 { // past prefill, and past the first growth of every buffer
		step()
	}
	if n := testing.AllocsPerRun(200, step); n != 0 {
		t.Errorf("%v allocations per decode step of 64 sequences", n)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

func BenchmarkStep(b *testing.B) {
	for _, n := range []int{1, 64, 256} {
		b.Run(fmt.Sprintf("decode/seqs=%d", n), func(b *testing.B) {
			benchLoop(b, Config{NumBlocks: n * 4096 / 16, BlockSize: 16, MaxBatchTokens: max(512, n), MaxRunning: n}, n, 128, 4096, false)
		})
	}
	// Short sequences that end and restart: admissions, prefill chunks and
	// prefix-cache hits mixed with decodes.
	b.Run("mixed/seqs=64", func(b *testing.B) {
		benchLoop(b, Config{NumBlocks: 2048, BlockSize: 16, MaxBatchTokens: 512, MaxRunning: 64}, 64, 200, 264, true)
	})
}
