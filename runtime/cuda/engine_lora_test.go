package cuda_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/runtime/cuda"
	"github.com/hearth-llm/hearth/runtime/engine"
	"github.com/hearth-llm/hearth/runtime/lora"
	"github.com/hearth-llm/hearth/runtime/sample"
	"github.com/hearth-llm/hearth/scheduler"
)

// TestEngineLoRAFake runs the engine on the CUDA backend over the fake
// driver with four registered adapters (rank 4 to 16, F16 and F32 pairs,
// attention, FFN, output and token embedding) and the bare base: each
// adapter's greedy continuation alone equals the CPU engine's, token for
// token, and 8 concurrent requests over the adapters and the base in the
// batched server equal each alone on the device, with decode steps as
// CUDA graphs (HEARTH_CUDA_GRAPH=1) and without.
func TestEngineLoRAFake(t *testing.T) {
	path := filepath.Join(testdata.Dir(t, "models"), "stories260K-f32.gguf")
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	load := func(o engine.Options) *engine.Model {
		o.Log = quiet
		m, err := engine.Load(path, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { m.Close() })
		return m
	}
	t.Setenv(cuda.EnvGraphs, "0")
	dev := load(engine.Options{Device: "cuda", CUDADriver: cuda.NewFakeDriver(), Threads: 1})
	t.Setenv(cuda.EnvGraphs, "1")
	withGraphs := load(engine.Options{Device: "cuda", CUDADriver: cuda.NewFakeDriver(), Threads: 1})
	host := load(engine.Options{Device: "cpu", Threads: 2})
	if dev.Backend() != "cuda" || withGraphs.Backend() != "cuda" {
		t.Fatalf("backends %s, %s", dev.Backend(), withGraphs.Backend())
	}
	names := []string{""}
	parts := append([]string{"token_embd.weight", "output.weight"}, lora.AttnFFN...)
	for i := range 4 {
		r := 4 << (i % 3)
		w, err := lora.Random(dev.File, lora.RandomOptions{Seed: uint64(100 + i), Rank: r, Alpha: float32(2 * r), Parts: parts, StdB: 0.03, F16: i%2 == 1})
		if err != nil {
			t.Fatal(err)
		}
		file := filepath.Join(t.TempDir(), fmt.Sprintf("a%d.gguf", i))
		if err := w.WriteFile(file); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("a%d", i)
		for _, m := range []*engine.Model{dev, withGraphs, host} {
			if err := m.LoadAdapter(name, file, 1); err != nil {
				t.Fatal(err)
			}
		}
		names = append(names, name)
	}
	prompts := []string{"Once upon a time", "Once upon a time", "Lily and Tom went to the park",
		"One day, a bird", "One day, a bird", "Mom said", "There was a big red ball", "Tim was sad because"}
	const n = 12
	alone := make([][]int32, len(prompts))
	for i, p := range prompts {
		ad := names[i%len(names)]
		ids := dev.Tok.Encode(p, true, false)
		alone[i] = greedyAlone(t, dev, ad, ids, n)
		if want := greedyAlone(t, host, ad, ids, n); !slices.Equal(alone[i], want) {
			t.Errorf("prompt %d (adapter %q): device %v, CPU %v", i, ad, alone[i], want)
		}
	}
	if slices.Equal(alone[0], alone[1]) || slices.Equal(alone[3], alone[4]) {
		t.Fatalf("the adapters do not change the output: %v %v, %v %v", alone[0], alone[1], alone[3], alone[4])
	}
	for _, m := range []*engine.Model{dev, withGraphs} {
		b, err := m.NewBatched(engine.BatchConfig{KVBudget: 8 << 20, MaxBatchTokens: 64})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { b.Serve(ctx); close(done) }()
		got := make([][]int32, len(prompts))
		var wg sync.WaitGroup
		for i, p := range prompts {
			st, err := b.Submit(m.Tok.Encode(p, true, false), engine.SeqOptions{NumPredict: n, Sample: greedy(), Adapter: names[i%len(names)]})
			if err != nil {
				t.Fatal(err)
			}
			wg.Add(1)
			go func() { defer wg.Done(); got[i] = collect(t, st) }()
		}
		wg.Wait()
		cancel()
		<-done
		for i := range prompts {
			if !slices.Equal(got[i], alone[i]) {
				t.Errorf("graphs %v, prompt %d (adapter %q): batched %v, alone %v", m == withGraphs, i, names[i%len(names)], got[i], alone[i])
			}
		}
	}
}

func greedy() sample.Options {
	o := sample.DefaultOptions()
	o.Temperature, o.RepeatPenalty = 0, 1
	return o
}

// greedyAlone runs prompt greedily for n tokens in a sequence of its own
// with adapter ("": none).
func greedyAlone(t *testing.T, m *engine.Model, adapter string, prompt []int32, n int) []int32 {
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
		tok := int32(0)
		for i, v := range logits {
			if v > logits[tok] {
				tok = int32(i)
			}
		}
		out = append(out, tok)
		if logits, err = seq.Eval([]int32{tok}); err != nil {
			t.Fatal(err)
		}
	}
	return out
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
			t.Error(err)
			return toks
		}
	}
}
