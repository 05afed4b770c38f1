package cpu

import (
	"runtime"
	"runtime/debug"
	"sync"
	"unsafe"

	"github.com/hearth-llm/hearth/quant"
)

// Tile kernels for prefill: one weight row against T tokens at a time (T
// up to 16), so that the work of unpacking a weight block (nibbles to
// bytes, scale decoding, transposition) is done once for T tokens instead
// of once per token. MatMul uses them for two tokens or more, and for one
// token where they are the level's only kernels (block lanes).
//
// Batch invariance: for a given type and level every kernel that computes a
// (row, token) result — the one-row kernel behind Dot, its four-row form and
// each tile kernel — performs the same float32 operations on the same
// values in the same order, so the bits do not depend on how many tokens
// are multiplied together or which kernel took them. The integer part (block
// dot products) is exact in every kernel and may be computed in any order.
//
// Three float orders are in use:
//
//   - The one-row order of the AVX2 K-quant kernels (Q4_K, Q6_K): a tile
//     keeps the one-row kernel's accumulator lanes, its per-super-block
//     scaling and its final reduction (_asm/gemmk.go).
//   - Sub-block lanes, for Q4_K and Q6_K at the avx512 level: the weights
//     are repacked once per matrix (gemmImpl.repack) and the activations
//     prepared (prepQ8_KQ4, prepQ8_KQ6) so that VPDPBUSD sums each
//     sub-block in its own dword lanes; the decode kernels and the tiles
//     scale and accumulate those lanes in the same float operations
//     (_asm/q4k512.go, _asm/q6k512.go).
//   - "Block lanes", for Q4_0 and Q8_0 weights: a row is cut into groups of
//     sixteen blocks (AVX-512; eight on AVX2); block 4i+j (2i+j) of a group
//     owns float32 lane 4j+i of the accumulator and adds to it, once per
//     group, float(its exact integer dot product) times dw·dx with one fused
//     multiply-add; the lanes are added at the end in hsum16's (hsum8's)
//     order. The float work is one convert, one multiply and one FMA per
//     group and token instead of per pair of blocks, which is what makes
//     these tiles fast (_asm/gemm512.go, _asm/gemm2.go); the one-row kernel
//     of the level is the T = 1 tile. The activations are first rearranged
//     into the lane order (prep), once per token for all rows.

// gemmTile computes, for one weight row w of nb blocks and T tokens, the
// dot products with token t's (prepared) activations at x + t·xs. flags&1:
// continue from the T×16 float32 accumulators at acc (else start from
// zero); flags&2: finish, writing token t's result to dst + t·ldd bytes
// (else store the accumulators to acc). A row may so be split into chunks
// of whole groups (block lanes) or super-blocks with the same result.
type gemmTile func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

const (
	gemmLoad   = 1
	gemmFinish = 2
)

// tileT is a tile kernel for T tokens.
type tileT struct {
	t  int
	fn gemmTile
}

// gemmImpl is a family of tile kernels of one type at one level.
type gemmImpl struct {
	tiles []tileT // T descending; the last one has T = 1
	// prep rearranges nb blocks of one quantized activation row into the
	// kernels' layout at dst (64-byte aligned), groupBytes per group of
	// group blocks; nil: the kernels read the quantized rows.
	prep       func(x *byte, nb int, dst *byte)
	group      int
	groupBytes int
	// single: the T = 1 tile is the level's one-row kernel (block lanes),
	// used for single tokens too; else one token takes the four-row
	// kernel, which shares its activations between rows.
	single bool
	// dec1, dec4: one-token (decode) kernels over prepared activations, one
	// row or four rows stride bytes apart, with the tiles' numerics. Where
	// set, MatMul prepares a single token once and runs them over the
	// rows, and they are the level's Dot and Dot4 (decDot).
	dec1 func(w, x *byte, nb int) float32
	dec4 func(w *byte, stride int, x *byte, nb int, dst *[4]float32)
	// pair, where set, turns the prepared activations of token a into
	// those of the tiles' token pair (a, b) (pairQ8_KQ4); MatMul pairs
	// tokens 2i and 2i+1 (the tiles start at even tokens), a last odd token
	// stays paired with itself.
	pair func(a, b *byte, nb int)
	// repack, where set, rewrites whole weight blocks from the file's
	// layout into the one the level's kernels read (same size, same
	// block boundaries); NewMatrix does it once per matrix (Matrix.packed),
	// the Dot wrappers per call.
	repack func(dst, src []byte)
	// amx, where set (the amx level), computes groups of 16 rows × 16
	// tokens with AMX tiles in the tiles' numerics (gemm_amx.go).
	amx *amxImpl
}

// weights returns the bytes m's tile and decode kernels read: m.Data, or
// its copy in the kernels' layout, made on first use (NewMatrix makes it
// at once, so that concurrent MatMuls only read it).
func (m *Matrix) weights() []byte {
	g := m.gemm
	if g.repack == nil {
		return m.Data
	}
	if m.packedFor != g {
		m.packed = make([]byte, len(m.Data))
		repackParallel(g.repack, m.packed, m.Data, m.Type.BlockBytes())
		m.packedFor = g
		releaseSource(m.Data)
	}
	return m.packed
}

// repackParallel runs repack over src in pieces of whole blocks of bb
// bytes, one per CPU (it runs once per matrix, at load: a Q4_K_M 8B model
// repacks about 4 GB, at 1-6 GB/s per core).
func repackParallel(repack func(dst, src []byte), dst, src []byte, bb int) {
	blocks := len(src) / bb
	parts := min(runtime.GOMAXPROCS(0), max(1, blocks/4096))
	if parts <= 1 {
		repack(dst, src)
		return
	}
	var wg sync.WaitGroup
	var once sync.Once
	var fault any
	per := (blocks + parts - 1) / parts
	for b0 := 0; b0 < blocks; b0 += per {
		b1 := min(blocks, b0+per)
		wg.Go(func() {
			// A fault reading mapped weights comes back to the caller
			// (NewMatrix's readGuard) instead of killing the process.
			debug.SetPanicOnFault(true)
			defer func() {
				if r := recover(); r != nil {
					once.Do(func() { fault = r })
				}
			}()
			repack(dst[b0*bb:b1*bb], src[b0*bb:b1*bb])
		})
	}
	wg.Wait()
	if fault != nil {
		panic(fault)
	}
}

// prepBytes is the size of one prepared activation row of nb blocks.
func (g *gemmImpl) prepBytes(nb int) int {
	return (nb + g.group - 1) / g.group * g.groupBytes
}

// prepChunk is the number of groups the Dot wrappers of prepared kernels
// rearrange at a time.
const prepChunk = 8

// prepBuf holds prepared activations for the Dot wrappers; pooled, since a
// stack array would be zeroed on every call.
type prepBuf [prepChunk*640 + 64]byte

var prepBufs = sync.Pool{New: func() any { return new(prepBuf) }}

// prepDot returns the one-row DotFunc and Dot4Func of a prepared kernel
// family for weight type t: the activations are prepared prepChunk groups
// at a time into a pooled buffer and the T = 1 kernel runs over each chunk.
func prepDot(t quant.Type, g *gemmImpl) (DotFunc, Dot4Func) {
	name := t.String()
	bs, wb, xb := t.BlockSize(), t.BlockBytes(), t.VecDotType().BlockBytes()
	one := g.tiles[len(g.tiles)-1].fn
	chunk := prepChunk * g.group
	if g.groupBytes > 640 {
		panic("cpu: prepared group larger than prepBuf allows")
	}
	dot := func(n int, w, x []byte) float32 {
		nb := checkDot(name, n, bs, wb, xb, len(w), len(x))
		if nb == 0 {
			return 0
		}
		buf := prepBufs.Get().(*prepBuf)
		defer prepBufs.Put(buf)
		xp := align64(buf[:])
		var acc [16]float32
		var out float32
		for b0 := 0; b0 < nb; b0 += chunk {
			c := min(nb-b0, chunk)
			g.prep(&x[b0*xb], c, xp)
			flags := 0
			if b0 > 0 {
				flags |= gemmLoad
			}
			if b0+c == nb {
				flags |= gemmFinish
			}
			one(&w[b0*wb], c, xp, 0, &acc[0], &out, 0, flags)
		}
		return out
	}
	dot4 := func(n int, w []byte, stride int, x []byte, dst *[4]float32) {
		nb := checkDot(name, n, bs, wb, xb, len(w), len(x))
		checkRows4(n, nb*wb, len(w), stride)
		if nb == 0 {
			*dst = [4]float32{}
			return
		}
		buf := prepBufs.Get().(*prepBuf)
		defer prepBufs.Put(buf)
		xp := align64(buf[:])
		var acc [4][16]float32
		for b0 := 0; b0 < nb; b0 += chunk {
			c := min(nb-b0, chunk)
			g.prep(&x[b0*xb], c, xp)
			flags := 0
			if b0 > 0 {
				flags |= gemmLoad
			}
			if b0+c == nb {
				flags |= gemmFinish
			}
			for r := range 4 {
				one(&w[r*stride+b0*wb], c, xp, 0, &acc[r][0], &dst[r], 0, flags)
			}
		}
	}
	return dot, dot4
}

// decBufs holds prepared activation rows for the Dot wrappers of decode
// kernels (decDot), which need a whole row prepared.
var decBufs = sync.Pool{New: func() any { return new([]byte) }}

// decDot returns the DotFunc and Dot4Func of a family with decode kernels:
// the activations are prepared into a pooled buffer, then dec1 or dec4 runs.
func decDot(t quant.Type, g *gemmImpl) (DotFunc, Dot4Func) {
	name := t.String()
	bs, wb, xb := t.BlockSize(), t.BlockBytes(), t.VecDotType().BlockBytes()
	prep := func(x []byte, nb int) (*[]byte, *byte) {
		buf := decBufs.Get().(*[]byte)
		if need := g.prepBytes(nb) + 64; cap(*buf) < need {
			*buf = make([]byte, need)
		}
		xp := align64((*buf)[:cap(*buf)])
		g.prep(&x[0], nb, xp)
		return buf, xp
	}
	dot := func(n int, w, x []byte) float32 {
		nb := checkDot(name, n, bs, wb, xb, len(w), len(x))
		if nb == 0 {
			return 0
		}
		buf, xp := prep(x, nb)
		defer decBufs.Put(buf)
		if g.repack != nil {
			wp := repacked(g, w[:nb*wb])
			defer decBufs.Put(wp)
			return g.dec1(&(*wp)[0], xp, nb)
		}
		return g.dec1(&w[0], xp, nb)
	}
	dot4 := func(n int, w []byte, stride int, x []byte, dst *[4]float32) {
		nb := checkDot(name, n, bs, wb, xb, len(w), len(x))
		checkRows4(n, nb*wb, len(w), stride)
		if nb == 0 {
			*dst = [4]float32{}
			return
		}
		buf, xp := prep(x, nb)
		defer decBufs.Put(buf)
		if g.repack != nil {
			// The four rows, repacked next to each other.
			wp := decBufs.Get().(*[]byte)
			defer decBufs.Put(wp)
			rb := nb * wb
			if cap(*wp) < 4*rb {
				*wp = make([]byte, 4*rb)
			}
			for r := range 4 {
				g.repack((*wp)[r*rb:(r+1)*rb], w[r*stride:r*stride+rb])
			}
			g.dec4(&(*wp)[0], rb, xp, nb, dst)
			return
		}
		g.dec4(&w[0], stride, xp, nb, dst)
	}
	return dot, dot4
}

// repacked returns w in g's layout, in a buffer of decBufs.
func repacked(g *gemmImpl, w []byte) *[]byte {
	buf := decBufs.Get().(*[]byte)
	if cap(*buf) < len(w) {
		*buf = make([]byte, len(w))
	}
	*buf = (*buf)[:len(w)]
	g.repack(*buf, w)
	return buf
}

// align64 returns a pointer into b at the first 64-byte boundary; b must
// have 63 bytes to spare.
func align64(b []byte) *byte {
	off := (64 - int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))%64)) % 64
	return &b[off]
}

// Blocking of the tile path: a thread walks its rows in blocks of about
// gemmRowBytes of weights (kept in L2 while every token tile passes over
// them); within a block, each row meets T tokens at a time. When a tile's
// activations for whole rows exceed 5/3·gemmChunkBytes (40 KiB, most of
// L1), rows are cut into chunks of whole groups of about gemmChunkBytes of
// activations (k-blocking: a chunk of the tile's activations stays in L1
// for all the rows of the block), the accumulators passed from chunk to
// chunk through a buffer of gemmAccFloats. Chunking never changes a
// result.
const gemmRowBytes = 256 << 10

var gemmChunkBytes = 24 << 10 // a variable for the tests

// gemmAccFloats bounds the accumulators of a block of rows when chunking
// (16 float32 per row and token): 32 KiB.
const gemmAccFloats = 8 << 10

// chunkBlocks returns the blocks per chunk for rows of nb blocks and
// activations of xbb bytes per block (prepared or not), for tiles of up to
// tmax tokens: a multiple of the group (prepared) or 1.
func (g *gemmImpl) chunkBlocks(nb, xbb, tmax int) int {
	step := 1
	if g.prep != nil {
		step = g.group
	}
	if tmax*nb*xbb <= gemmChunkBytes*5/3 {
		return nb // the tile's whole rows fit in L1 (48 KiB)
	}
	kc := gemmChunkBytes / (tmax * xbb) / step * step
	return min(nb, max(step, kc))
}

// matMulGemm is MatMul with m's tile kernels.
func matMulGemm(p *Pool, s *Scratch, dst []float32, m *Matrix, x []float32, n int) {
	a := gemmActs(p, s, m, x, n)
	units, fn := gemmLoop(dst, m, n, a)
	p.Run(units, 4, fn)
}

// gemmActs quantizes the n tokens of x for m (and prepares them, where m's
// tile kernels read a prepared layout) into s's buffers: token t's at
// xb[t·xs:]; where m's kernels include an AMX kernel and there are enough
// tokens, it also lays out the whole groups of 16 tokens for it (xa).
func gemmActs(p *Pool, s *Scratch, m *Matrix, x []float32, n int) preparedActs {
	g := m.gemm
	cols := m.Cols
	vt := m.Type.VecDotType()
	xrb, err := vt.RowBytes(cols)
	if err != nil {
		panic(err)
	}
	nb := cols / m.Type.BlockSize()
	if cap(s.xq) < n*xrb {
		s.xq = make([]byte, n*xrb)
	}
	xq := s.xq[:n*xrb]
	xb, xs := xq, xrb
	quantize := m.quant
	if g.prep != nil {
		xs = g.prepBytes(nb)
		if cap(s.xp) < n*xs+64 {
			s.xp = make([]byte, n*xs+64)
		}
		xp := s.xp[:n*xs+64]
		off := (64 - int(uintptr(unsafe.Pointer(unsafe.SliceData(xp)))%64)) % 64
		xb = xp[off : off+n*xs]
	}
	// Tokens go by pairs, so that a pair is prepared before it is paired.
	p.Run((n+1)/2, 2, func(u0, u1 int) {
		for t := 2 * u0; t < min(n, 2*u1); t++ {
			xt := xq[t*xrb : (t+1)*xrb]
			quantize(x[t*cols:(t+1)*cols], xt)
			if g.prep != nil && nb > 0 {
				g.prep(&xt[0], nb, &xb[t*xs])
			}
			if g.pair != nil && nb > 0 && t%2 == 1 {
				g.pair(&xb[(t-1)*xs], &xb[t*xs], nb)
			}
		}
	})
	a := preparedActs{xb: xb, xs: xs}
	if am := g.amx; am != nil && n >= am.minFor() && nb > 0 {
		size := am.actsBytes(n, nb)
		if cap(s.xa) < size+64 {
			s.xa = make([]byte, size+64)
		}
		a.xa = aligned64(s.xa[:cap(s.xa)])[:size]
		gx := nb * am.xBytes
		p.Run(n/16, 1, func(u0, u1 int) {
			for tg := u0; tg < u1; tg++ {
				am.acts(a.xa[tg*gx:(tg+1)*gx], xq[16*tg*xrb:], xrb, nb)
			}
		})
	}
	return a
}

// gemmLoop returns the product of m with the n tokens of a (as gemmActs
// leaves them) as a loop for Pool.Run: fn(u0, u1) computes work units u0..u1
// of units (four-row groups for one token with decode kernels, groups of
// 16 rows with an AMX kernel, else rows).
func gemmLoop(dst []float32, m *Matrix, n int, a preparedActs) (units int, fn func(u0, u1 int)) {
	xb, xs := a.xb, a.xs
	g := m.gemm
	rows := m.Rows
	nb := m.Cols / m.Type.BlockSize()
	if nb == 0 {
		clear(dst[:n*rows])
		return 0, func(int, int) {}
	}
	xbb := m.Type.VecDotType().BlockBytes() // activation bytes per weight block
	if g.prep != nil {
		xbb = g.groupBytes / g.group
	}
	rb := m.RowBytes
	if n == 1 && g.dec4 != nil {
		return (rows + 3) / 4, matVecDec(dst, m, nb, &xb[0])
	}
	tmax := min(g.tiles[0].t, n)
	kc := g.chunkBlocks(nb, xbb, tmax)
	blockRows := max(1, gemmRowBytes/rb)
	if kc < nb {
		blockRows = min(blockRows, gemmAccFloats/(16*tmax))
	}
	ldd := rows * 4
	wd := m.weights()
	// tiles runs rows r0..r1 against tokens t0..n with the tile kernels.
	tiles := func(r0, r1, t0 int) {
		for b0 := r0; b0 < r1; b0 += blockRows {
			b1 := min(r1, b0+blockRows)
			for t0 := t0; t0 < n; {
				k := g.tiles[len(g.tiles)-1]
				for _, c := range g.tiles {
					if c.t <= n-t0 {
						k = c
						break
					}
				}
				if kc == nb {
					xt := &xb[t0*xs]
					for r := b0; r < b1; r++ {
						k.fn(&wd[r*rb], nb, xt, xs, nil, &dst[t0*rows+r], ldd, gemmFinish)
					}
				} else {
					gemmChunks(k, m, b0, b1, nb, kc, xb[t0*xs:], xs, xbb, dst[t0*rows:], ldd)
				}
				t0 += k.t
			}
		}
	}
	if a.xa != nil {
		return amxLoop(dst, m, n, nb, a.xa, tiles)
	}
	return rows, func(r0, r1 int) { tiles(r0, r1, 0) }
}

// accBufs holds gemmChunks' accumulator areas. A local array would do, but
// it escapes through the kernel's function value: the compiler would put
// 32 KiB on the heap, zeroed, at every call (3-4% of a batched decode step
// went to allocating and clearing them).
var accBufs = sync.Pool{New: func() any { return new([gemmAccFloats]float32) }}

// gemmChunks runs tile k over rows b0..b1 of m in chunks of kc blocks, the
// accumulators kept in between (at most gemmAccFloats; the kernels load or
// initialize them as flags say, so the buffer needs no clearing).
func gemmChunks(k tileT, m *Matrix, b0, b1, nb, kc int, xb []byte, xs, xbb int, dst []float32, ldd int) {
	acc := accBufs.Get().(*[gemmAccFloats]float32)
	defer accBufs.Put(acc)
	rb, wbb, wd := m.RowBytes, m.Type.BlockBytes(), m.weights()
	for c0 := 0; c0 < nb; c0 += kc {
		c := min(kc, nb-c0)
		flags := 0
		if c0 > 0 {
			flags |= gemmLoad
		}
		if c0+c == nb {
			flags |= gemmFinish
		}
		xt := &xb[c0*xbb]
		for r := b0; r < b1; r++ {
			k.fn(&wd[r*rb+c0*wbb], c, xt, xs, &acc[(r-b0)*16*k.t], &dst[r], ldd, flags)
		}
	}
}

// matVecDec is one token (prepared at x) against every row of m with the
// decode kernels, as a loop over groups of four rows: four rows per call,
// in contiguous ranges per thread.
func matVecDec(dst []float32, m *Matrix, nb int, x *byte) func(g0, g1 int) {
	g, rb, rows, wd := m.gemm, m.RowBytes, m.Rows, m.weights()
	return func(g0, g1 int) {
		r, r1 := 4*g0, min(rows, 4*g1)
		for ; r+4 <= r1; r += 4 {
			g.dec4(&wd[r*rb], rb, x, nb, (*[4]float32)(dst[r:r+4]))
		}
		for ; r < r1; r++ {
			dst[r] = g.dec1(&wd[r*rb], x, nb)
		}
	}
}
