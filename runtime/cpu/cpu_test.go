package cpu

import (
	"errors"
	"math"
	"testing"

	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// TestRecordedErrors: a bad token id, a position past the cache and a
// sequence outside the batch's caches are recorded (backend.Backend's
// error channel) with their messages; while one is pending the operations
// do nothing (no KV row stored, no tensor written); Err takes it once.
func TestRecordedErrors(t *testing.T) {
	b := New(1)
	defer b.Close()
	const cols = 8
	table := make([]float32, 4*cols)
	for i := range table {
		table[i] = float32(i + 1)
	}
	w, err := b.Weight("t", quant.F32, 4, cols, f32Bytes(table))
	if err != nil {
		t.Fatal(err)
	}
	x := b.NewTensor(2, cols)
	b.Embed(x, w, []int32{1, 4})
	b.Embed(x, w, []int32{2, 3}) // skipped: the first error is pending
	b.Add(x, x)
	for _, v := range Data(x) {
		if v != 0 {
			t.Fatalf("tensor written with an error pending: %v", Data(x))
		}
	}
	if err := b.Err(); err == nil || err.Error() != "token id 4 out of range [0, 4)" {
		t.Errorf("Err after a bad token id: %v", err)
	}
	if err := b.Err(); err != nil {
		t.Errorf("Err did not clear: %v", err)
	}

	kv, err := b.NewKV(1, 2, cols)
	if err != nil {
		t.Fatal(err)
	}
	p := backend.AttentionParams{Heads: 1, KVHeads: 1, HeadDim: cols, Scale: 1}
	b.Embed(x, w, []int32{2, 3})
	// Token 0 at a valid position, token 1 past the cache: nothing stored.
	b.Attention(x, x, x, x, []backend.KV{kv}, []int32{0, 0}, 0, []int32{1, 2}, p)
	if err := b.Err(); !errors.Is(err, backend.ErrContextFull) || err.Error() != "position 2: context window is full (2 positions)" {
		t.Errorf("Err after a position past the cache: %v", err)
	}
	pool := kv.(*backend.PagedKV).Pool.(*kvPool)
	for _, c := range pool.k[0] {
		if c != 0 {
			t.Fatal("a KV row was stored by an attention that failed")
		}
	}
	b.Attention(x, x, x, x, []backend.KV{kv}, []int32{0, 1}, 0, []int32{0, 1}, p)
	if err := b.Err(); err == nil || err.Error() != "token 1: sequence 1 out of range" {
		t.Errorf("Err after a sequence outside the caches: %v", err)
	}
	b.Attention(x, x, x, x, []backend.KV{kv}, []int32{0, 0}, 0, []int32{0, 1}, p)
	if err := b.Err(); err != nil {
		t.Error(err)
	}
}

func f32Bytes(v []float32) []byte {
	out := make([]byte, 0, 4*len(v))
	for _, f := range v {
		u := math.Float32bits(f)
		out = append(out, byte(u), byte(u>>8), byte(u>>16), byte(u>>24))
	}
	return out
}
