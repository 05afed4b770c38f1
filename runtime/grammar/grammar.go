package grammar

import (
	"errors"
	"fmt"
	"slices"
	"sync"
)

// Sentinel errors of FromSchema, checked with errors.Is.
var (
	// ErrUnsupported wraps errors for valid schemas that use a keyword (or a
	// size) this package cannot enforce; the message names it.
	ErrUnsupported = errors.New("grammar: unsupported schema")
	// ErrInvalidSchema wraps errors for malformed schemas (not JSON, wrong
	// keyword types, dangling $ref) and schemas that accept no document.
	ErrInvalidSchema = errors.New("grammar: invalid schema")
)

// Limits. Every size that input can drive is bounded by one of these.
const (
	maxStates      = 1 << 18 // compiled graph nodes per grammar
	maxContent     = 1 << 18 // nodes of one string-content automaton (pattern × length)
	maxClosure     = 1 << 12 // configurations one node can expand to without reading
	maxStack       = 128     // call frames at run time (bounds recursive schemas)
	maxConfigs     = 1024    // configurations alive at once; more are dropped
	maxNest        = 32      // container nesting of free-form ("any") JSON values
	maxSchemaDepth = 64      // subschema nesting while compiling
	maxJSONDepth   = 256     // JSON nesting of the schema document itself
)

// Grammar is a compiled constraint: a byte-level pushdown automaton. It is
// immutable after construction and safe for concurrent use; matchers share
// it.
//
// Nodes are numbered densely. A node has byte edges (sorted by lo) and a
// precomputed closure: the configurations reachable from it without reading
// a byte, each a node with byte edges plus the return nodes to push, and
// whether the node's rule can end (pop a frame) without reading.
type Grammar struct {
	edgeOff []int32 // edges of node n: edges[edgeOff[n]:edgeOff[n+1]]
	edges   []bedge
	itemOff []int32 // closure of node n: items[itemOff[n]:itemOff[n+1]]
	items   []gitem
	pushes  []int32 // return nodes pushed by items, outermost first
	flags   []uint8
	height  []uint8 // frames node n needs above its own to finish its rule (see heights)
	start   int32   // root rule's start node

	triggers []string // a lazy grammar's triggers (see Lazy)
	maxTrig  int      // the longest trigger's length

	lexMu sync.Mutex
	lex   map[lexKeyID]lexSig // lexical-region signatures (see lexKey)
}

const (
	flagReturns = 1 << iota // the rule can end from this node without reading
	flagSelf                // closure is exactly the node itself, nothing pushed
)

// gitem is a closure item: node, with pushes[push:push+npush] pushed;
// taking it from stack depth d needs d+need <= maxStack (so that everything
// it starts can still finish).
type gitem struct {
	node, push, npush, need int32
}

// bedge is a byte-range edge: bytes lo..hi (inclusive) lead to node to.
type bedge struct {
	lo, hi byte
	to     int32
}

// bcall enters rule and continues at ret when the rule ends.
type bcall struct{ rule, ret int32 }

type bnode struct {
	edges []bedge
	eps   []int32
	calls []bcall
	final bool // the end node of its rule
}

// builder assembles a graph of rules. The first error sticks; after it every
// method is a no-op, so construction code checks b.err only around loops
// whose trip count comes from the input.
type builder struct {
	nodes []bnode
	start []int32 // rule id → start node
	limit int
	err   error
}

func newBuilder(limit int) *builder { return &builder{limit: limit} }

func (b *builder) fail(err error) {
	if b.err == nil {
		b.err = err
	}
}

// node adds a node. Past the limit it records an error and returns 0.
func (b *builder) node() int32 {
	if len(b.nodes) >= b.limit {
		b.fail(fmt.Errorf("%w: grammar needs more than %d states", ErrUnsupported, b.limit))
		if len(b.nodes) == 0 {
			b.nodes = append(b.nodes, bnode{})
		}
		return 0
	}
	b.nodes = append(b.nodes, bnode{})
	return int32(len(b.nodes) - 1)
}

func (b *builder) rng(from int32, lo, hi byte, to int32) {
	if b.err == nil {
		b.nodes[from].edges = append(b.nodes[from].edges, bedge{lo, hi, to})
	}
}

func (b *builder) eps(from, to int32) {
	if b.err == nil && from != to {
		b.nodes[from].eps = append(b.nodes[from].eps, to)
	}
}

func (b *builder) call(from, rule, to int32) {
	if b.err == nil {
		b.nodes[from].calls = append(b.nodes[from].calls, bcall{rule, to})
	}
}

// lit adds the bytes of s from node from and returns the node after them.
func (b *builder) lit(from int32, s string) int32 {
	for i := 0; i < len(s) && b.err == nil; i++ {
		n := b.node()
		b.rng(from, s[i], s[i], n)
		from = n
	}
	return from
}

// rule allocates a rule and returns its id and its start and end nodes.
func (b *builder) rule() (id, start, end int32) {
	start, end = b.node(), b.node()
	if b.err != nil {
		return 0, 0, 0
	}
	b.nodes[end].final = true
	b.start = append(b.start, start)
	return int32(len(b.start) - 1), start, end
}

// finish compiles the graph rooted at rule root: it removes every node from
// which no complete document can be reached (so a matcher never walks into a
// dead end), computes closures, rejects left recursion, and flattens.
func (b *builder) finish(root int32) (*Grammar, error) {
	if b.err != nil {
		return nil, b.err
	}
	h := b.heights()
	prod := make([]bool, len(h))
	for i, v := range h {
		prod[i] = v <= maxStack
	}
	if !prod[b.start[root]] {
		return nil, fmt.Errorf("%w: schema accepts no document (within %d levels of nesting)", ErrInvalidSchema, maxStack)
	}
	b.prune(prod)
	f := &finisher{b: b, state: make([]uint8, len(b.nodes)), clo: make([]closure, len(b.nodes))}
	g := &Grammar{start: b.start[root], height: h}
	n := len(b.nodes)
	g.edgeOff = make([]int32, n+1)
	g.itemOff = make([]int32, n+1)
	g.flags = make([]uint8, n)
	for i := range b.nodes {
		es := b.nodes[i].edges
		slices.SortFunc(es, func(x, y bedge) int {
			if x.lo != y.lo {
				return int(x.lo) - int(y.lo)
			}
			if x.hi != y.hi {
				return int(x.hi) - int(y.hi)
			}
			return int(x.to - y.to)
		})
		es = slices.Compact(es)
		g.edges = append(g.edges, es...)
		g.edgeOff[i+1] = int32(len(g.edges))
	}
	for i := range n {
		if !prod[i] {
			g.itemOff[i+1] = int32(len(g.items))
			continue
		}
		c, err := f.closure(int32(i))
		if err != nil {
			return nil, err
		}
		for _, it := range c.items {
			// The frames an item needs: its node finishing at its depth,
			// and each pushed return node finishing once popped.
			need := len(it.push) + int(h[it.node])
			for j, r := range it.push {
				need = max(need, j+int(h[r]))
			}
			g.items = append(g.items, gitem{it.node, int32(len(g.pushes)), int32(len(it.push)), int32(need)})
			g.pushes = append(g.pushes, it.push...)
		}
		g.itemOff[i+1] = int32(len(g.items))
		if c.returns {
			g.flags[i] |= flagReturns
		}
		if !c.returns && len(c.items) == 1 && c.items[0].node == int32(i) && len(c.items[0].push) == 0 {
			g.flags[i] |= flagSelf
		}
		if len(g.items) > maxStates*4 {
			return nil, fmt.Errorf("%w: grammar too ambiguous", ErrUnsupported)
		}
	}
	return g, nil
}

// hInf is the height of a node that cannot finish within maxStack frames.
const hInf = maxStack + 1

// heights computes, for each node, how many frames above its rule's own
// finishing the rule needs at least (calls nest); hInf when the rule cannot
// finish from there at all, or not within maxStack frames. It is a
// worklist over reverse edges: h(final) = 0, h(x) = min over byte and
// epsilon edges of h(target) and over calls of max(1+h(callee start),
// h(return node)); values only decrease.
func (b *builder) heights() []uint8 {
	n := len(b.nodes)
	h := make([]uint8, n)
	for i := range h {
		h[i] = hInf
	}
	cnt := make([]int32, n+1)
	each := func(i int, fn func(dep int32)) {
		nd := &b.nodes[i]
		for _, e := range nd.edges {
			fn(e.to)
		}
		for _, t := range nd.eps {
			fn(t)
		}
		for _, c := range nd.calls {
			fn(c.ret)
			fn(b.start[c.rule])
		}
	}
	for i := range n {
		each(i, func(t int32) { cnt[t+1]++ })
	}
	for i := range n {
		cnt[i+1] += cnt[i]
	}
	rdep := make([]int32, cnt[n])
	fill := slices.Clone(cnt[:n])
	for i := range n {
		each(i, func(t int32) { rdep[fill[t]] = int32(i); fill[t]++ })
	}
	eval := func(i int32) uint8 {
		nd := &b.nodes[i]
		if nd.final {
			return 0
		}
		v := uint8(hInf)
		for _, e := range nd.edges {
			v = min(v, h[e.to])
		}
		for _, t := range nd.eps {
			v = min(v, h[t])
		}
		for _, c := range nd.calls {
			v = min(v, max(min(1+h[b.start[c.rule]], hInf), h[c.ret]))
		}
		return v
	}
	var work []int32
	for i := range n {
		if b.nodes[i].final {
			h[i] = 0
			work = append(work, int32(i))
		}
	}
	for len(work) > 0 {
		t := work[len(work)-1]
		work = work[:len(work)-1]
		for _, d := range rdep[cnt[t]:cnt[t+1]] {
			if v := eval(d); v < h[d] {
				h[d] = v
				work = append(work, d)
			}
		}
	}
	return h
}

// prune drops every edge into an unproductive node (one that cannot reach
// the end of its rule within the stack limit).
func (b *builder) prune(prod []bool) {
	for i := range b.nodes {
		nd := &b.nodes[i]
		nd.edges = slices.DeleteFunc(nd.edges, func(e bedge) bool { return !prod[e.to] })
		nd.eps = slices.DeleteFunc(nd.eps, func(t int32) bool { return !prod[t] })
		nd.calls = slices.DeleteFunc(nd.calls, func(c bcall) bool { return !prod[c.ret] || !prod[b.start[c.rule]] })
	}
}

type citem struct {
	node int32
	push []int32
}

type closure struct {
	items   []citem
	returns bool
}

type finisher struct {
	b     *builder
	state []uint8 // 0 new, 1 in progress, 2 done
	clo   []closure
}

// closure computes the configurations node n reaches without reading. Calls
// are entered through the callee's own closure; a callee whose closure is in
// progress means the rule reaches itself without reading: left recursion.
func (f *finisher) closure(n int32) (*closure, error) {
	switch f.state[n] {
	case 2:
		return &f.clo[n], nil
	case 1:
		return nil, fmt.Errorf("%w: recursive reference without progress (left recursion)", ErrInvalidSchema)
	}
	nd := &f.b.nodes[n]
	if len(nd.eps) == 0 && len(nd.calls) == 0 {
		c := closure{returns: nd.final}
		if len(nd.edges) > 0 {
			c.items = []citem{{node: n}}
		}
		f.clo[n], f.state[n] = c, 2
		return &f.clo[n], nil
	}
	f.state[n] = 1
	var c closure
	visited := map[int32]bool{}
	var walk func(x int32) error
	add := func(it citem) error {
		for _, o := range c.items {
			if o.node == it.node && slices.Equal(o.push, it.push) {
				return nil
			}
		}
		if len(c.items) >= maxClosure {
			return fmt.Errorf("%w: grammar too ambiguous", ErrUnsupported)
		}
		c.items = append(c.items, it)
		return nil
	}
	walk = func(x int32) error {
		if visited[x] {
			return nil
		}
		visited[x] = true
		xn := &f.b.nodes[x]
		if len(xn.edges) > 0 {
			if err := add(citem{node: x}); err != nil {
				return err
			}
		}
		if xn.final {
			c.returns = true
		}
		for _, t := range xn.eps {
			if err := walk(t); err != nil {
				return err
			}
		}
		for _, cl := range xn.calls {
			sub, err := f.closure(f.b.start[cl.rule])
			if err != nil {
				return err
			}
			for _, it := range sub.items {
				if len(it.push) >= maxStack {
					continue
				}
				push := append([]int32{cl.ret}, it.push...)
				if err := add(citem{it.node, push}); err != nil {
					return err
				}
			}
			if sub.returns {
				if err := walk(cl.ret); err != nil {
					return err
				}
			}
		}
		return nil
	}
	if err := walk(n); err != nil {
		return nil, err
	}
	f.clo[n], f.state[n] = c, 2
	return &f.clo[n], nil
}
