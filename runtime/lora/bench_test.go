package lora_test

import (
	"fmt"
	"testing"
	"time"

	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
	"github.com/hearth-llm/hearth/runtime/lora"
)

// BenchmarkBatchedDecode8 is x8 batched decode on tiny-llama-spm-Q8_0:
// each iteration runs one step of 8 base sequences and one step of 8
// sequences each with its own adapter (rank 16 on q/k/v/o and the FFN),
// interleaved so both see the same machine, and reports both rates and
// their ratio (lora8/base; the target is ≥ 0.8).
func BenchmarkBatchedDecode8(b *testing.B) {
	base := openModel(b, "tiny-llama-spm-Q8_0.gguf")
	be := cpu.New(2)
	defer be.Close()
	m, err := arch.Load(base, be)
	if err != nil {
		b.Fatal(err)
	}
	const seqs, ctx = 8, 128
	ads := make([]arch.Adapter, seqs)
	for i := range ads {
		f := writeAdapter(b, base, lora.RandomOptions{Seed: uint64(i + 1), Rank: 16, Alpha: 32, Parts: lora.AttnFFN, F16: true})
		c, err := lora.Check(f, base)
		if err != nil {
			b.Fatal(err)
		}
		if ads[i], err = lora.Bind(fmt.Sprint(i), c, m, be, 1); err != nil {
			b.Fatal(err)
		}
	}
	// Each sequence holds a 64-token prompt; every step decodes position
	// 64 again (the same work each time).
	kvs := make([]backend.KV, seqs)
	for i := range kvs {
		if kvs[i], err = m.NewKV(ctx); err != nil {
			b.Fatal(err)
		}
		prompt := make([]int32, 64)
		for j := range prompt {
			prompt[j] = int32(100 + 37*i + j)
		}
		bt := arch.Single(prompt, 0, kvs[i], false)
		bt.Adapters = []arch.Adapter{ads[i]}
		if _, err := m.Forward(bt); err != nil {
			b.Fatal(err)
		}
	}
	step := &arch.Batch{KVs: kvs, Outputs: make([]int, seqs)}
	for i := range seqs {
		step.IDs = append(step.IDs, int32(500+i))
		step.Pos = append(step.Pos, 64)
		step.Seq = append(step.Seq, int32(i))
		step.Outputs[i] = i
	}
	run := func(adapters []arch.Adapter) time.Duration {
		step.Adapters = adapters
		t0 := time.Now()
		if _, err := m.Forward(step); err != nil {
			b.Fatal(err)
		}
		return time.Since(t0)
	}
	run(nil)
	run(ads)
	var tBase, tLoRA time.Duration
	for b.Loop() {
		tBase += run(nil)
		tLoRA += run(ads)
	}
	n := float64(b.N * seqs)
	b.ReportMetric(n/tBase.Seconds(), "base_tok/s")
	b.ReportMetric(n/tLoRA.Seconds(), "lora8_tok/s")
	b.ReportMetric(tBase.Seconds()/tLoRA.Seconds(), "ratio")
}
