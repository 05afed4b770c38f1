package scheduler

import (
	"encoding/binary"
	"errors"
	"hash/fnv"
	"math/rand/v2"
	"testing"
)

func TestHashBlockIsFNV1a128(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 40 {
		parent := BlockHash{rng.Uint64(), rng.Uint64()}
		if n == 0 {
			parent = BlockHash{}
		}
		toks := make([]int32, n)
		buf := binary.BigEndian.AppendUint64(nil, parent.Hi)
		buf = binary.BigEndian.AppendUint64(buf, parent.Lo)
		for i := range toks {
			toks[i] = int32(rng.Uint32())
			buf = binary.LittleEndian.AppendUint32(buf, uint32(toks[i]))
		}
		f := fnv.New128a()
		f.Write(buf)
		sum := f.Sum(nil)
		want := BlockHash{binary.BigEndian.Uint64(sum[:8]), binary.BigEndian.Uint64(sum[8:])}
		if got := HashBlock(parent, toks); got != want {
			t.Fatalf("%d tokens: %v, hash/fnv says %v", n, got, want)
		}
	}
}

func newAlloc(t *testing.T, n, bs int) *BlockAllocator {
	t.Helper()
	a, err := NewBlockAllocator(n, bs)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func mustCheck(t *testing.T, a *BlockAllocator) {
	t.Helper()
	if err := a.Check(); err != nil {
		t.Fatal(err)
	}
}

// admit makes a table for tokens and commits all but the last token as
// computed, as a finished prefill would.
func admit(t *testing.T, a *BlockAllocator, tokens []int32) (*BlockTable, int) {
	t.Helper()
	h := a.Hashes(0, nil, tokens)
	p, err := a.PlanNew(0, tokens, h)
	if err != nil {
		t.Fatal(err)
	}
	tb := a.Apply(&p)
	a.Commit(tb, tokens, h, len(tokens))
	mustCheck(t, a)
	return tb, p.SharedBlocks()
}

func TestAllocatorPlanHasNoSideEffects(t *testing.T) {
	a := newAlloc(t, 4, 4)
	toks := seqTokens(1, 9)
	h := a.Hashes(0, nil, toks)
	before := *a
	for range 3 {
		if _, err := a.PlanNew(0, toks, h); err != nil {
			t.Fatal(err)
		}
	}
	if a.version != before.version || a.Free() != before.Free() || a.Used() != 0 {
		t.Error("PlanNew changed the allocator")
	}
	p, _ := a.PlanNew(0, toks, h)
	tb := a.Apply(&p)
	if len(tb.Blocks()) != 3 || a.Used() != 3 {
		t.Errorf("%d blocks, %d used", len(tb.Blocks()), a.Used())
	}
	mustPanic(t, "apply twice", func() { a.Apply(&p) })
	g, err := a.PlanGrow(tb, 40)
	if !errors.Is(err, ErrKVFull) || g.Cost() != 7 {
		t.Errorf("grow past the pool: %v, cost %d", err, g.Cost())
	}
	g, _ = a.PlanGrow(tb, 13)
	a.Release(tb)
	mustPanic(t, "stale plan", func() { a.Apply(&g) })
	mustPanic(t, "double release", func() { a.Release(tb) })
	mustCheck(t, a)
}

func TestAllocatorPrefixSharingAndLRU(t *testing.T) {
	a := newAlloc(t, 6, 4)
	p1 := seqTokens(10, 9) // blocks [10..13] [14..17] + 1 token
	t1, shared := admit(t, a, p1)
	if shared != 0 || a.Used() != 3 {
		t.Fatalf("shared %d used %d", shared, a.Used())
	}
	// Same first block, different second: shares one.
	p2 := cat(seqTokens(10, 4), seqTokens(50, 5))
	t2, shared := admit(t, a, p2)
	if shared != 1 || t2.Blocks()[0] != t1.Blocks()[0] || a.meta[t1.Blocks()[0]].ref != 2 {
		t.Errorf("p2 shared %d: %v vs %v", shared, t2.Blocks(), t1.Blocks())
	}
	first := t1.Blocks()[0]
	a.Release(t1)
	a.Release(t2)
	mustCheck(t, a)
	// Cached: p1's two full blocks and p2's second; the shared first block
	// was released last, so it is the most recently used.
	if a.Cached() != 3 || a.Free() != 3 {
		t.Fatalf("cached %d free %d", a.Cached(), a.Free())
	}
	if a.lruTail != first {
		t.Errorf("lru tail %d, want the shared block %d", a.lruTail, first)
	}
	// Fill the pool: 5 new blocks, 3 free, so the two least recently used
	// cached blocks go: p1's second block, then p2's second block.
	p3 := seqTokens(1000, 20)
	t3, _ := admit(t, a, p3)
	if a.Stats().Evictions != 2 || a.Cached() != 1 {
		t.Errorf("evictions %d cached %d", a.Stats().Evictions, a.Cached())
	}
	a.Release(t3)
	// The shared first block survived.
	t4, shared := admit(t, a, cat(seqTokens(10, 4), seqTokens(90, 2)))
	if shared != 1 {
		t.Errorf("first block evicted: shared %d", shared)
	}
	a.Release(t4)
	mustCheck(t, a)
}

// With a hash that collides on everything, lookups must still never return
// a block with other tokens or another prefix.
func TestAllocatorCollisionsAreMisses(t *testing.T) {
	a := newAlloc(t, 16, 2)
	a.hash = func(BlockHash, []int32) BlockHash { return BlockHash{1, 1} }
	x := []int32{1, 2, 3, 4, 5}
	tx, _ := admit(t, a, x)
	y := []int32{1, 2, 9, 9, 5}
	ty, shared := admit(t, a, y)
	if shared != 0 {
		// Block 0 {1,2} is indexed under the one hash: y's first block
		// matches it for real (same tokens, no parent).
		if shared != 1 || ty.Blocks()[0] != tx.Blocks()[0] {
			t.Errorf("y shares %d blocks: %v vs %v", shared, ty.Blocks(), tx.Blocks())
		}
	}
	// Same second block tokens after a different first block: a miss.
	z := []int32{7, 7, 3, 4, 5}
	tz, shared := admit(t, a, z)
	if shared != 0 {
		t.Errorf("z shares %d blocks with other prefixes", shared)
	}
	a.Release(tx)
	a.Release(ty)
	a.Release(tz)
	mustCheck(t, a)
}
