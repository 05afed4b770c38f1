package scheduler

import (
	"errors"
	"fmt"
	"math/bits"
	"slices"
)

// ErrKVFull is returned by a plan that needs more KV blocks than the pool
// can give now (free blocks plus cached blocks that may be evicted).
var ErrKVFull = errors.New("kv cache full")

const noBlock = -1

// BlockHash identifies the content of a full block together with every
// token before it: FNV-1a 128 over the parent block's hash (16 bytes, high
// word first, big-endian; zero for a sequence's first block) followed by
// the block's token ids (4 bytes each, little-endian). It is stable across
// processes, so it can name saved KV blocks on disk.
//
// The hash is only an index key. A hit is used only after the block's
// tokens are compared and its parent is found to be the very block matched
// before it, so a collision costs a cache miss, never wrong KV.
type BlockHash struct{ Hi, Lo uint64 }

func (h BlockHash) String() string { return fmt.Sprintf("%016x%016x", h.Hi, h.Lo) }

// FNV-1a 128 parameters (hash/fnv's New128a: same results, checked by a test).
const (
	fnvOffsetHi = 0x6c62272e07bb0142
	fnvOffsetLo = 0x62b821756295c58d
	fnvPrimeLo  = 0x13b // prime = 2^88 + 0x13b
	fnvPrimeSh  = 24    // 88 - 64
)

type fnv128 struct{ hi, lo uint64 }

func (s *fnv128) byte(c byte) {
	s.lo ^= uint64(c)
	hi, lo := bits.Mul64(fnvPrimeLo, s.lo)
	hi += s.lo<<fnvPrimeSh + fnvPrimeLo*s.hi
	s.hi, s.lo = hi, lo
}

func (s *fnv128) u64be(v uint64) {
	for sh := 56; sh >= 0; sh -= 8 {
		s.byte(byte(v >> sh))
	}
}

// SaltRoot is the parent hash of a sequence's first block under salt:
// the zero BlockHash for salt 0 (no salt), else the FNV-1a 128 of the
// salt's 8 bytes (big-endian). Sequences of different salts (KV computed
// with different LoRA adapters) never share a block: their hash chains
// differ from the first block on, and every hit's salt is verified.
func SaltRoot(salt uint64) BlockHash {
	if salt == 0 {
		return BlockHash{}
	}
	s := fnv128{fnvOffsetHi, fnvOffsetLo}
	s.u64be(salt)
	return BlockHash{s.hi, s.lo}
}

// HashBlock returns the hash of a full block of tokens whose prefix hashes
// to parent (the zero BlockHash for a sequence's first block).
func HashBlock(parent BlockHash, tokens []int32) BlockHash {
	s := fnv128{fnvOffsetHi, fnvOffsetLo}
	s.u64be(parent.Hi)
	s.u64be(parent.Lo)
	for _, t := range tokens {
		u := uint32(t)
		s.byte(byte(u))
		s.byte(byte(u >> 8))
		s.byte(byte(u >> 16))
		s.byte(byte(u >> 24))
	}
	return BlockHash{s.hi, s.lo}
}

// blockMeta is what the allocator knows of one block. A block is in
// exactly one state: free (ref 0, no hash, on the free stack), cached
// (ref 0, hashed, indexed, on the LRU list) or used (ref > 0).
type blockMeta struct {
	hash       BlockHash
	ref        int32
	prev, next int32  // LRU links while cached
	parent     int32  // for a hashed block: the indexed block holding the previous tokens, or noBlock
	parentGen  uint32 // parent's gen when this block was indexed
	gen        uint32 // bumped whenever the block's content identity ends (reuse, un-indexing)
	salt       uint64 // for a hashed block: its sequence's salt (Request.CacheSalt)
	hashed     bool
	snap       int32 // recurrent state snapshot at the block's end (SetSnapshotSlots), or noBlock
}

// BlockTable is one sequence's block table: Blocks()[i] holds the KV of
// positions [i·B, (i+1)·B). It is created by Apply and ended by Release;
// the allocator reuses released tables, so a table must not be used after
// Release.
type BlockTable struct {
	blocks   []int32
	hashed   int    // leading blocks committed to the prefix index (or known duplicates)
	canon    int32  // indexed block equal to blocks[hashed-1] (its content and prefix), noBlock when none
	canonGen uint32 // canon's gen when recorded
	broken   bool   // a hash collision with a block in use: later blocks stay out of the index
	salt     uint64 // the sequence's salt: its blocks are indexed under it
	live     bool
}

// Blocks returns the table's block ids. The slice is the table's own: read
// it, do not keep it past the next Apply or Release.
func (t *BlockTable) Blocks() []int32 { return t.blocks }

// AllocStats count prefix-cache lookups and evictions since the allocator
// was made.
type AllocStats struct {
	Queries     int64 // new tables planned with a prefix lookup and applied
	QueryTokens int64 // prompt tokens those lookups covered
	Hits        int64 // lookups that reused at least one block
	HitTokens   int64 // tokens whose KV was reused (not prefilled again)
	Evictions   int64 // cached blocks reused for other content

	SnapshotEvictions int64 // recurrent state snapshots dropped for new ones
}

// BlockAllocator is the metadata of a paged KV cache: NumBlocks blocks of
// BlockSize token positions each, per-sequence block tables, reference
// counts, and a prefix index from BlockHash to a cached block. It holds no
// KV: backends keep the storage, indexed by block id.
//
// Blocks shared by several tables are full, hashed prefix blocks and are
// only read; a sequence writes KV only into blocks it owns alone. Released
// blocks whose content is hashed stay cached (ref 0) and are evicted least
// recently used first, only when no free block remains.
//
// Plan methods (PlanNew, PlanGrow, Lookup, Available, Need) have no side
// effects; Apply, Release and Commit are the only mutators, and a plan must
// be applied before any other mutation (Apply panics on a stale plan).
//
// A BlockAllocator is not safe for concurrent use.
type BlockAllocator struct {
	bs      int
	meta    []blockMeta
	toks    []int32 // toks[id*bs:(id+1)*bs]: a hashed block's tokens, to verify hits
	free    []int32 // stack of free block ids
	lruHead int32   // least recently used cached block
	lruTail int32
	nCached int
	nUsed   int
	index   map[BlockHash]int32
	tables  map[*BlockTable]struct{}
	spare   []*BlockTable
	version uint64
	match   []int32 // Lookup's result, reused
	stats   AllocStats
	hash    func(parent BlockHash, tokens []int32) BlockHash // HashBlock; tests weaken it to force collisions

	// Recurrent state snapshots (SetSnapshotSlots): per slot the block it
	// is attached to (noBlock: free or reserved), whether a step holds it
	// reserved, and its last use for LRU eviction.
	snaps     []snapMeta
	freeSnaps []int32
	snapTick  uint64
}

type snapMeta struct {
	block    int32
	reserved bool
	used     uint64
}

// NewBlockAllocator makes a pool of numBlocks blocks of blockSize tokens.
func NewBlockAllocator(numBlocks, blockSize int) (*BlockAllocator, error) {
	if numBlocks <= 0 || numBlocks > 1<<30 {
		return nil, fmt.Errorf("kv cache: %d blocks: want 1..2^30", numBlocks)
	}
	if blockSize <= 0 || blockSize > 4096 {
		return nil, fmt.Errorf("kv cache: block size %d: want 1..4096", blockSize)
	}
	a := &BlockAllocator{
		bs:      blockSize,
		meta:    make([]blockMeta, numBlocks),
		toks:    make([]int32, numBlocks*blockSize),
		free:    make([]int32, numBlocks),
		lruHead: noBlock,
		lruTail: noBlock,
		index:   make(map[BlockHash]int32),
		tables:  make(map[*BlockTable]struct{}),
		hash:    HashBlock,
	}
	for i := range a.meta {
		a.meta[i] = blockMeta{prev: noBlock, next: noBlock, parent: noBlock, snap: noBlock}
		// Pop order 0, 1, 2, …: lowest ids first.
		a.free[i] = int32(numBlocks - 1 - i)
	}
	return a, nil
}

// BlockSize is the number of token positions per block.
func (a *BlockAllocator) BlockSize() int { return a.bs }

// NumBlocks is the pool size.
func (a *BlockAllocator) NumBlocks() int { return len(a.meta) }

// Available is how many blocks a plan may take now: free plus cached.
func (a *BlockAllocator) Available() int { return len(a.free) + a.nCached }

// Free, Cached and Used count blocks in each state.
func (a *BlockAllocator) Free() int   { return len(a.free) }
func (a *BlockAllocator) Cached() int { return a.nCached }
func (a *BlockAllocator) Used() int   { return a.nUsed }

// Stats returns the lookup and eviction counters.
func (a *BlockAllocator) Stats() AllocStats { return a.stats }

// blocksFor is how many blocks hold n token positions.
func (a *BlockAllocator) blocksFor(n int) int { return (n + a.bs - 1) / a.bs }

// Need is how many new blocks t needs to cover tokens positions.
func (a *BlockAllocator) Need(t *BlockTable, tokens int) int {
	return max(0, a.blocksFor(tokens)-len(t.blocks))
}

// Hashes extends dst with the hashes of tokens' full blocks beyond
// len(dst) (each chained on the one before, the first on SaltRoot(salt))
// and returns it.
func (a *BlockAllocator) Hashes(salt uint64, dst []BlockHash, tokens []int32) []BlockHash {
	for i := len(dst); (i+1)*a.bs <= len(tokens); i++ {
		parent := SaltRoot(salt)
		if i > 0 {
			parent = dst[i-1]
		}
		dst = append(dst, a.hash(parent, tokens[i*a.bs:(i+1)*a.bs]))
	}
	return dst
}

// Lookup returns the ids of the cached blocks that hold the longest prefix
// of tokens, at most maxBlocks full blocks; hashes are tokens' block hashes
// (from Hashes with salt). Every hit is verified: the block's tokens
// equal, and its recorded parent is the block matched just before (the
// first block's salt is salt). The slice is reused by the next Lookup or
// PlanNew.
func (a *BlockAllocator) Lookup(salt uint64, tokens []int32, hashes []BlockHash, maxBlocks int) []int32 {
	a.match = a.match[:0]
	parent, pgen := int32(noBlock), uint32(0)
	for i := 0; i < min(maxBlocks, len(hashes)) && (i+1)*a.bs <= len(tokens); i++ {
		id, ok := a.index[hashes[i]]
		if !ok || !a.verify(id, tokens[i*a.bs:(i+1)*a.bs], parent, pgen, salt) {
			break
		}
		a.match = append(a.match, id)
		parent, pgen = id, a.meta[id].gen
	}
	return a.match
}

// verify reports whether indexed block id holds toks after the block
// (parent, pgen), under salt (a first block's; later blocks inherit their
// parent's).
func (a *BlockAllocator) verify(id int32, toks []int32, parent int32, pgen uint32, salt uint64) bool {
	m := &a.meta[id]
	if !m.hashed || m.parent != parent || (parent != noBlock && m.parentGen != pgen) || m.salt != salt {
		return false
	}
	return slices.Equal(a.toks[int(id)*a.bs:(int(id)+1)*a.bs], toks)
}

// AllocPlan is what a table would take: cached prefix blocks to share (a
// new table only) and a number of new blocks. Make it with PlanNew or
// PlanGrow, apply it with Apply before any other mutation.
type AllocPlan struct {
	table   *BlockTable // nil: a new table
	shared  []int32     // the allocator's Lookup slice
	n       int         // new blocks
	cost    int         // blocks taken out of Available (new + shared ones now cached)
	tokens  int         // prompt tokens the lookup covered (stats)
	salt    uint64      // a new table's salt
	version uint64
}

// NewBlocks is how many new blocks the plan takes.
func (p *AllocPlan) NewBlocks() int { return p.n }

// SharedBlocks is how many cached prefix blocks the plan reuses.
func (p *AllocPlan) SharedBlocks() int { return len(p.shared) }

// Cost is how many blocks the plan takes out of Available: new blocks plus
// shared blocks that are cached now (a shared block already in use costs
// nothing).
func (p *AllocPlan) Cost() int { return p.cost }

// PlanNew plans a table for a sequence of tokens (with their block hashes)
// that will compute all of tokens: it reuses the longest verified cached
// prefix, but never the block holding the last token, whose logits must be
// computed, and takes new blocks for the rest. salt keys the table's
// prefix blocks (Request.CacheSalt; hashes from Hashes with it). It
// returns ErrKVFull (with the plan, so Cost can be read) when Cost exceeds
// Available.
func (a *BlockAllocator) PlanNew(salt uint64, tokens []int32, hashes []BlockHash) (AllocPlan, error) {
	shared := a.Lookup(salt, tokens, hashes, (len(tokens)-1)/a.bs)
	p := AllocPlan{shared: shared, n: a.blocksFor(len(tokens)) - len(shared), tokens: len(tokens), salt: salt, version: a.version}
	p.cost = p.n
	for _, id := range shared {
		if a.meta[id].ref == 0 {
			p.cost++
		}
	}
	if p.cost > a.Available() {
		return p, ErrKVFull
	}
	return p, nil
}

// PlanGrow plans t's growth to cover tokens positions.
func (a *BlockAllocator) PlanGrow(t *BlockTable, tokens int) (AllocPlan, error) {
	if !t.live {
		panic("scheduler: PlanGrow on a released block table")
	}
	n := a.Need(t, tokens)
	p := AllocPlan{table: t, n: n, cost: n, version: a.version}
	if n > a.Available() {
		return p, ErrKVFull
	}
	return p, nil
}

// Apply carries out p and returns the table it made or grew. It panics if
// the allocator changed since p was planned or p does not fit (programmer
// errors).
func (a *BlockAllocator) Apply(p *AllocPlan) *BlockTable {
	if p.version != a.version {
		panic("scheduler: stale AllocPlan")
	}
	if p.cost > a.Available() {
		panic("scheduler: Apply of an AllocPlan that does not fit")
	}
	a.version++
	t := p.table
	if t == nil {
		if n := len(a.spare); n > 0 {
			t = a.spare[n-1]
			a.spare = a.spare[:n-1]
		} else {
			t = &BlockTable{}
		}
		*t = BlockTable{blocks: t.blocks[:0], canon: noBlock, salt: p.salt, live: true}
		a.tables[t] = struct{}{}
		for _, id := range p.shared {
			a.ref(id)
			t.blocks = append(t.blocks, id)
		}
		t.hashed = len(p.shared)
		if t.hashed > 0 {
			t.canon = p.shared[t.hashed-1]
			t.canonGen = a.meta[t.canon].gen
		}
		a.stats.Queries++
		a.stats.QueryTokens += int64(p.tokens)
		if len(p.shared) > 0 {
			a.stats.Hits++
			a.stats.HitTokens += int64(len(p.shared) * a.bs)
		}
	}
	for range p.n {
		t.blocks = append(t.blocks, a.take())
	}
	return t
}

// ref adds a reference to block id (a cached one leaves the LRU list).
func (a *BlockAllocator) ref(id int32) {
	m := &a.meta[id]
	if m.ref == 0 {
		if !m.hashed {
			panic("scheduler: sharing a free block")
		}
		a.lruRemove(id)
		a.nCached--
		a.nUsed++
	}
	m.ref++
}

// take returns a block with ref 1 and no content: a free one, else the
// least recently used cached one, evicted from the index.
func (a *BlockAllocator) take() int32 {
	var id int32
	if n := len(a.free); n > 0 {
		id = a.free[n-1]
		a.free = a.free[:n-1]
	} else {
		id = a.lruHead
		if id == noBlock {
			panic("scheduler: kv pool exhausted") // Apply checked Available
		}
		a.lruRemove(id)
		a.nCached--
		a.unindex(id)
		a.stats.Evictions++
	}
	m := &a.meta[id]
	m.gen++
	m.ref = 1
	m.parent = noBlock
	a.nUsed++
	return id
}

// unindex drops id's hash; its content identity ends, and with it its
// state snapshot.
func (a *BlockAllocator) unindex(id int32) {
	m := &a.meta[id]
	if m.snap != noBlock {
		a.snaps[m.snap].block = noBlock
		a.freeSnaps = append(a.freeSnaps, m.snap)
		m.snap = noBlock
	}
	if a.index[m.hash] == id {
		delete(a.index, m.hash)
	}
	m.hashed = false
	m.hash = BlockHash{}
	m.gen++
}

// Release drops t's references, last block first so that a sequence's
// tail is evicted before its prefix; hashed blocks left without owners are
// cached, the others freed. t must not be used afterwards.
func (a *BlockAllocator) Release(t *BlockTable) {
	if !t.live {
		panic("scheduler: double Release of a block table")
	}
	a.version++
	for i := len(t.blocks) - 1; i >= 0; i-- {
		id := t.blocks[i]
		m := &a.meta[id]
		m.ref--
		if m.ref > 0 {
			continue
		}
		a.nUsed--
		if m.hashed {
			a.lruPush(id)
			a.nCached++
		} else {
			a.free = append(a.free, id)
		}
	}
	t.live = false
	t.blocks = t.blocks[:0]
	delete(a.tables, t)
	a.spare = append(a.spare, t)
}

// Commit offers t's blocks that are now full of computed KV to the prefix
// index: computed is how many leading positions of tokens have their KV
// written, hashes are tokens' block hashes (at least computed/B of them).
// A block whose hash is already indexed with the same content stays
// private (a duplicate); a block whose hash collides with other content in
// use stays out of the index, and so do the blocks after it.
func (a *BlockAllocator) Commit(t *BlockTable, tokens []int32, hashes []BlockHash, computed int) {
	full := min(computed/a.bs, len(t.blocks))
	if full <= t.hashed {
		return
	}
	a.version++
	for i := t.hashed; i < full; i++ {
		t.hashed = i + 1
		if t.broken {
			continue
		}
		id := t.blocks[i]
		m := &a.meta[id]
		if m.hashed { // a shared prefix block from Lookup
			t.canon, t.canonGen = id, m.gen
			continue
		}
		h := hashes[i]
		toks := tokens[i*a.bs : (i+1)*a.bs]
		if e, ok := a.index[h]; ok {
			if a.verify(e, toks, t.canon, t.canonGen, t.salt) {
				t.canon, t.canonGen = e, a.meta[e].gen // duplicate content: keep ours private
				continue
			}
			if a.meta[e].ref > 0 { // a collision with content in use
				t.broken = true
				continue
			}
			// A stale or colliding cached entry: drop it, index ours.
			a.lruRemove(e)
			a.nCached--
			a.unindex(e)
			a.free = append(a.free, e)
		}
		m.hashed = true
		m.hash = h
		m.parent, m.parentGen, m.salt = t.canon, t.canonGen, t.salt
		copy(a.toks[int(id)*a.bs:], toks)
		a.index[h] = id
		t.canon, t.canonGen = id, m.gen
	}
}

// SetSnapshotSlots gives the allocator n recurrent state snapshot slots
// 0..n-1, for hybrid models' prefix reuse. A snapshot holds a sequence's
// recurrent state at the end of one indexed block (after all the positions
// up to and including it), so a sequence whose cached prefix ends with
// that block can continue from it; it lives as long as the block stays
// indexed, or until it is evicted (least recently used first) for a new
// one. The allocator only keeps the books; the engine copies the states.
// Call it before any other use.
func (a *BlockAllocator) SetSnapshotSlots(n int) {
	a.snaps = make([]snapMeta, n)
	a.freeSnaps = a.freeSnaps[:0]
	for i := n - 1; i >= 0; i-- {
		a.snaps[i] = snapMeta{block: noBlock}
		a.freeSnaps = append(a.freeSnaps, int32(i))
	}
}

// SnapshotSlots is the number of snapshot slots.
func (a *BlockAllocator) SnapshotSlots() int { return len(a.snaps) }

// Snapshots counts the snapshot slots attached to blocks.
func (a *BlockAllocator) Snapshots() int {
	n := 0
	for i := range a.snaps {
		if a.snaps[i].block != noBlock {
			n++
		}
	}
	return n
}

// SnapshotOf returns the snapshot slot attached to block id, or -1.
func (a *BlockAllocator) SnapshotOf(id int32) int { return int(a.meta[id].snap) }

// UseSnapshot marks slot as just used (a sequence restores it), for the
// LRU order.
func (a *BlockAllocator) UseSnapshot(slot int) {
	a.snapTick++
	a.snaps[slot].used = a.snapTick
}

// ReserveSnapshot takes a snapshot slot for a state to be copied in: a
// free one, else the least recently used one not reserved, detached from
// its block (an eviction). It returns -1 when every slot is reserved.
// The slot stays reserved until AttachSnapshot or FreeSnapshot.
func (a *BlockAllocator) ReserveSnapshot() int {
	slot := int32(noBlock)
	if n := len(a.freeSnaps); n > 0 {
		slot = a.freeSnaps[n-1]
		a.freeSnaps = a.freeSnaps[:n-1]
	} else {
		for i := range a.snaps {
			if !a.snaps[i].reserved && (slot == noBlock || a.snaps[i].used < a.snaps[slot].used) {
				slot = int32(i)
			}
		}
		if slot == noBlock {
			return -1
		}
		a.meta[a.snaps[slot].block].snap = noBlock
		a.snaps[slot].block = noBlock
		a.stats.SnapshotEvictions++
	}
	a.snaps[slot].reserved = true
	return int(slot)
}

// FreeSnapshot returns a reserved slot unused.
func (a *BlockAllocator) FreeSnapshot(slot int) {
	sm := &a.snaps[slot]
	if !sm.reserved {
		panic("scheduler: FreeSnapshot of a slot not reserved")
	}
	sm.reserved = false
	a.freeSnaps = append(a.freeSnaps, int32(slot))
}

// AttachSnapshot ties reserved slot, which now holds t's recurrent state
// after its first nblocks blocks, to the indexed block those blocks end
// with (t's own, or the equal block indexed before, which Commit found).
// It reports false, and frees the slot, when there is no such block (the
// blocks are not all committed, or a collision kept them out of the index)
// or that block has a snapshot already.
func (a *BlockAllocator) AttachSnapshot(slot int, t *BlockTable, nblocks int) bool {
	sm := &a.snaps[slot]
	if !sm.reserved {
		panic("scheduler: AttachSnapshot of a slot not reserved")
	}
	id := t.canon
	if nblocks <= 0 || t.hashed != nblocks || t.broken || id == noBlock || !a.meta[id].hashed || a.meta[id].gen != t.canonGen || a.meta[id].snap != noBlock {
		a.FreeSnapshot(slot)
		return false
	}
	sm.reserved = false
	sm.block = id
	a.meta[id].snap = int32(slot)
	a.UseSnapshot(slot)
	return true
}

func (a *BlockAllocator) lruPush(id int32) {
	m := &a.meta[id]
	m.prev, m.next = a.lruTail, noBlock
	if a.lruTail != noBlock {
		a.meta[a.lruTail].next = id
	} else {
		a.lruHead = id
	}
	a.lruTail = id
}

func (a *BlockAllocator) lruRemove(id int32) {
	m := &a.meta[id]
	if m.prev != noBlock {
		a.meta[m.prev].next = m.next
	} else {
		a.lruHead = m.next
	}
	if m.next != noBlock {
		a.meta[m.next].prev = m.prev
	} else {
		a.lruTail = m.prev
	}
	m.prev, m.next = noBlock, noBlock
}

// Check verifies the allocator's invariants: every block is exactly one of
// free, cached or used; reference counts equal the number of live tables
// holding the block; no table holds a block twice; only hashed blocks are
// shared; the index and the LRU list agree with the blocks' states; the
// counters add up. Tests call it after every operation.
func (a *BlockAllocator) Check() error {
	n := len(a.meta)
	owners := make([]int32, n)
	for t := range a.tables {
		if !t.live {
			return errors.New("released table still registered")
		}
		if t.hashed > len(t.blocks) {
			return fmt.Errorf("table commits %d of %d blocks", t.hashed, len(t.blocks))
		}
		seen := make(map[int32]bool, len(t.blocks))
		for i, id := range t.blocks {
			if id < 0 || int(id) >= n {
				return fmt.Errorf("table block %d: id %d out of range", i, id)
			}
			if seen[id] {
				return fmt.Errorf("table holds block %d twice", id)
			}
			seen[id] = true
			owners[id]++
		}
	}
	onFree := make([]bool, n)
	for _, id := range a.free {
		if id < 0 || int(id) >= n || onFree[id] {
			return fmt.Errorf("free list: bad or repeated block %d", id)
		}
		onFree[id] = true
	}
	onLRU := make([]bool, n)
	cnt := 0
	prev := int32(noBlock)
	for id := a.lruHead; id != noBlock; id = a.meta[id].next {
		if onLRU[id] || cnt > n {
			return errors.New("lru list has a cycle")
		}
		if a.meta[id].prev != prev {
			return fmt.Errorf("lru list: block %d prev %d, want %d", id, a.meta[id].prev, prev)
		}
		onLRU[id] = true
		prev = id
		cnt++
	}
	if prev != a.lruTail {
		return fmt.Errorf("lru tail %d, walk ends at %d", a.lruTail, prev)
	}
	if cnt != a.nCached {
		return fmt.Errorf("lru holds %d blocks, counter says %d", cnt, a.nCached)
	}
	used := 0
	for i := range a.meta {
		id := int32(i)
		m := &a.meta[i]
		if m.ref != owners[i] {
			return fmt.Errorf("block %d: ref %d, owned by %d tables", i, m.ref, owners[i])
		}
		switch {
		case m.ref > 0:
			used++
			if onFree[i] || onLRU[i] {
				return fmt.Errorf("block %d in use and free (free list %v, lru %v)", i, onFree[i], onLRU[i])
			}
			if m.ref > 1 && !m.hashed {
				return fmt.Errorf("block %d shared by %d tables but not a hashed prefix block", i, m.ref)
			}
		case m.hashed:
			if !onLRU[i] || onFree[i] {
				return fmt.Errorf("cached block %d: lru %v, free list %v", i, onLRU[i], onFree[i])
			}
		default:
			if !onFree[i] || onLRU[i] {
				return fmt.Errorf("unowned block %d: free list %v, lru %v (leaked)", i, onFree[i], onLRU[i])
			}
		}
		if m.hashed && a.index[m.hash] != id {
			return fmt.Errorf("hashed block %d not indexed under its hash", i)
		}
	}
	if used != a.nUsed {
		return fmt.Errorf("%d blocks used, counter says %d", used, a.nUsed)
	}
	if len(a.free)+a.nCached+a.nUsed != n {
		return fmt.Errorf("free %d + cached %d + used %d != %d blocks", len(a.free), a.nCached, a.nUsed, n)
	}
	for h, id := range a.index {
		if id < 0 || int(id) >= n || !a.meta[id].hashed || a.meta[id].hash != h {
			return fmt.Errorf("index entry %v -> block %d does not match the block", h, id)
		}
	}
	return a.checkSnapshots()
}

// checkSnapshots: every snapshot slot is exactly one of free (on the free
// list), reserved, or attached to one indexed block that points back at it.
func (a *BlockAllocator) checkSnapshots() error {
	onFree := make([]bool, len(a.snaps))
	for _, s := range a.freeSnaps {
		if s < 0 || int(s) >= len(a.snaps) || onFree[s] {
			return fmt.Errorf("snapshot free list: bad or repeated slot %d", s)
		}
		onFree[s] = true
	}
	attached := 0
	for i, sm := range a.snaps {
		states := 0
		if onFree[i] {
			states++
		}
		if sm.reserved {
			states++
		}
		if sm.block != noBlock {
			states++
			attached++
			if int(sm.block) >= len(a.meta) || a.meta[sm.block].snap != int32(i) || !a.meta[sm.block].hashed {
				return fmt.Errorf("snapshot slot %d on block %d, which does not hold it or is not indexed", i, sm.block)
			}
		}
		if states != 1 {
			return fmt.Errorf("snapshot slot %d: free %v, reserved %v, block %d", i, onFree[i], sm.reserved, sm.block)
		}
	}
	for i := range a.meta {
		if s := a.meta[i].snap; s != noBlock {
			attached--
			if int(s) >= len(a.snaps) || a.snaps[s].block != int32(i) {
				return fmt.Errorf("block %d holds snapshot slot %d, which is not its", i, s)
			}
		}
	}
	if attached != 0 {
		return errors.New("snapshot slots and blocks disagree")
	}
	return nil
}
