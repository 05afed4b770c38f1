package grammar

import (
	"crypto/sha256"
	"encoding/binary"
	"sync"
)

// The mask cache. Most tokens are sampled inside strings, where a mask walk
// visits nearly the whole vocabulary trie. But a string's characters form a
// lexical region: from a configuration there, until the string's rule ends
// (a pop), the automaton reads bytes without calls, whatever the stack
// below. So the tokens it accepts split, once per region and vocabulary,
// into those accepted without leaving the region (context-independent),
// those rejected inside it, and those that leave it (a '"' and what follows
// it): the entry records the trie nodes where the region can end, and Mask
// walks their subtrees from the caller's real state.
// Entries are keyed by a canonical signature of the region's automaton, so
// every grammar's string rule (and number rule, and each pattern's
// automaton) shares one entry per vocabulary.
//
// A token reads at most maxDepth bytes (the vocabulary's longest piece), so
// only the part of a region within maxDepth bytes of its start matters: the
// signature describes just that part. Positions of a long maxLength string
// far from its end then share one entry.

// maxLexNodes bounds the configuration nodes a signature describes.
const maxLexNodes = 4096

type lexKeyID struct{ node, depth int32 }

// lexSig is a region's signature and the largest height (see heights) of
// its nodes: the entry holds only for stacks at most maxStack-height deep.
type lexSig struct {
	key    string
	height int32
}

// lexKey returns the signature of the lexical region that starts at
// configuration node n, as far as tokens of at most depth bytes can read;
// the key is "" if that part makes calls or is too large.
func (g *Grammar) lexKey(n int32, depth int) lexSig {
	g.lexMu.Lock()
	defer g.lexMu.Unlock()
	id := lexKeyID{n, int32(depth)}
	if k, ok := g.lex[id]; ok {
		return k
	}
	if g.lex == nil {
		g.lex = map[lexKeyID]lexSig{}
	}
	k := g.signature(n, depth)
	g.lex[id] = k
	return k
}

// signature hashes, for the region's nodes in breadth-first order, each byte
// edge with the closure of its target (whether it pops, and the indices of
// its nodes); nodes depth bytes or more from the start are marked but not
// described. Equal signatures mean equal behaviour over pieces of at most
// depth bytes.
func (g *Grammar) signature(n int32, depth int) lexSig {
	var sig lexSig
	idx := map[int32]uint64{n: 0}
	order := []int32{n}
	dist := []int{0}
	var key []byte
	for k := 0; k < len(order); k++ {
		x := order[k]
		sig.height = max(sig.height, int32(g.height[x]))
		if dist[k] >= depth {
			key = append(key, 0, g.height[x])
			continue
		}
		es := g.edges[g.edgeOff[x]:g.edgeOff[x+1]]
		key = append(key, 1, g.height[x])
		key = binary.AppendUvarint(key, uint64(len(es)))
		for _, e := range es {
			items := g.items[g.itemOff[e.to]:g.itemOff[e.to+1]]
			key = append(key, e.lo, e.hi, g.flags[e.to]&flagReturns)
			key = binary.AppendUvarint(key, uint64(len(items)))
			for _, it := range items {
				if it.npush > 0 {
					return lexSig{}
				}
				j, ok := idx[it.node]
				if !ok {
					if len(order) >= maxLexNodes {
						return lexSig{}
					}
					j = uint64(len(order))
					idx[it.node] = j
					order = append(order, it.node)
					dist = append(dist, dist[k]+1)
				}
				key = binary.AppendUvarint(key, j)
			}
		}
	}
	sum := sha256.Sum256(key)
	sig.key = string(sum[:])
	return sig
}

// lexEntry is the cached mask of one lexical region over one vocabulary.
//
// The region's ends are kept by the byte that follows them: a token that
// ends the region after some prefix and goes on continues with the child of
// that trie node, so Mask only walks the children whose byte the caller's
// state accepts (a region that can end almost anywhere, like TextUntil's
// text, has an end at nearly every trie node, and only those followed by a
// '<' matter when a literal "</think>" comes next).
type lexEntry struct {
	dense    []uint64 // accepted tokens as a bitset, or
	sparse   []int32  // as a list when few
	popToks  []int32  // tokens whose piece ends exactly where the region can end,
	popDense []uint64 // or as a bitset when many
	popByte  []byte   // distinct bytes following an end, ascending
	popOff   []int32  // children for popByte[k]: popKids[popOff[k]:popOff[k+1]]
	popKids  []int32  // trie nodes (children of an end node), grouped by byte
}

func (e *lexEntry) hasPops() bool {
	return len(e.popToks) > 0 || e.popDense != nil || len(e.popKids) > 0
}

// orPops sets in allowed the tokens ending where the region can end.
func (e *lexEntry) orPops(allowed []uint64) {
	if e.popDense != nil {
		for i, w := range e.popDense {
			allowed[i] |= w
		}
		return
	}
	for _, id := range e.popToks {
		allowed[id>>6] |= 1 << (id & 63)
	}
}

func (e *lexEntry) or(allowed []uint64) {
	if e.dense != nil {
		for i, w := range e.dense {
			allowed[i] |= w
		}
		return
	}
	for _, id := range e.sparse {
		allowed[id>>6] |= 1 << (id & 63)
	}
}

// buildLexEntry walks the trie of v from node n over the bottom sentinel.
func buildLexEntry(g *Grammar, v *Vocab, n int32) *lexEntry {
	words := (v.size + 63) / 64
	acc := make([]uint64, words)
	var pops []int32
	var w walker
	w.st.g = g
	w.run(v, []config{{n, bottom}}, 0, acc, &pops)
	e := &lexEntry{}
	var cnt [257]int32
	for _, i := range pops {
		e.popToks = append(e.popToks, v.toks[v.tokOff[i]:v.tokOff[i+1]]...)
		for j := i + 1; j < v.skip[i]; j = v.skip[j] {
			cnt[v.tb[j]+1]++
		}
	}
	for b := range 256 {
		if cnt[b+1] > 0 {
			e.popByte = append(e.popByte, byte(b))
		}
		cnt[b+1] += cnt[b]
	}
	e.popKids = make([]int32, cnt[256])
	fill := cnt
	for _, i := range pops {
		for j := i + 1; j < v.skip[i]; j = v.skip[j] {
			e.popKids[fill[v.tb[j]]] = j
			fill[v.tb[j]]++
		}
	}
	for _, b := range e.popByte {
		e.popOff = append(e.popOff, cnt[b])
	}
	e.popOff = append(e.popOff, cnt[256])
	if len(e.popToks)*32 >= v.size {
		e.popDense = make([]uint64, words)
		for _, id := range e.popToks {
			e.popDense[id>>6] |= 1 << (id & 63)
		}
		e.popToks = nil
	}
	count := 0
	for id := range v.size {
		if acc[id>>6]&(1<<(id&63)) != 0 {
			count++
		}
	}
	if count*32 >= v.size {
		e.dense = acc
	} else {
		e.sparse = make([]int32, 0, count)
		for id := range v.size {
			if acc[id>>6]&(1<<(id&63)) != 0 {
				e.sparse = append(e.sparse, int32(id))
			}
		}
	}
	return e
}

// lexCache holds a vocabulary's entries. A region's entry is built the
// second time it is asked for (a region seen once, like one position of an
// unrolled maxLength, is not worth a full walk and the memory); the cache
// holds at most maxLexEntries, evicting an arbitrary one when full.
type lexCache struct {
	mu      sync.Mutex
	entries map[string]*lexEntry
	seen    map[string]bool
}

const (
	maxLexEntries = 256
	maxLexSeen    = 4096
)

func (c *lexCache) get(key string, build func() *lexEntry) *lexEntry {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		c.mu.Unlock()
		return e
	}
	if !c.seen[key] {
		if c.seen == nil || len(c.seen) >= maxLexSeen {
			c.seen = map[string]bool{}
		}
		c.seen[key] = true
		c.mu.Unlock()
		return nil
	}
	c.mu.Unlock()
	e := build()
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]*lexEntry{}
	}
	if len(c.entries) >= maxLexEntries {
		for k := range c.entries {
			delete(c.entries, k)
			break
		}
	}
	c.entries[key] = e
	delete(c.seen, key)
	return e
}

// lexEntry returns the cache entry for configuration c, or nil when its
// region is not lexical, is too high for c's stack, or is not cached yet.
func (m *Matcher) lexEntry(c config) *lexEntry {
	if m.v.noCache {
		return nil
	}
	sig := m.g.lexKey(c.node, m.v.maxDepth)
	if sig.key == "" || m.w.st.depth(c.stack)+sig.height > maxStack {
		return nil
	}
	return m.v.cache.get(sig.key, func() *lexEntry { return buildLexEntry(m.g, m.v, c.node) })
}
