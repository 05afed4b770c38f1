package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The avx512 level's Q4_K numerics (decode kernels dotQ4_KAVX512/x4 and the
// tiles gemmQ4_KAVX512x<T>, bit for bit the same per row and token). Per
// super-block and token:
//
//   - S_s = sc_s · Σ_{i∈s} q_i·x_i, an exact integer, and B_s = Σ_{i∈s} x_i,
//     for the eight 32-quant sub-blocks s;
//   - per sub-block lane: u = d·float(S_s); u −= (dmin·float(min_s))·B_s (one
//     FNMA, B_s in float32 from the activations' layout);
//     acc_s += dx·u (one FMA);
//
// and at the end the eight lanes in sub-block order reduced as hsum8 does.
//
// The integer sums: the activations are laid out by prepQ8_KQ4 so that
// 64-byte slice j holds, for every sub-block p, its quants 8j..8j+7 (qword
// p); the weights come in the same order, repacked once per matrix at load
// (repackQ4_K: two slices per 64 bytes, low and high nibbles, so a slice
// costs a load or shift and an AND), so that four VPDPBUSD (u8 nibbles × s8 quants) accumulate each sub-block in two dword
// lanes with no scale in between (|lane| ≤ 16·15·128 < 2^15). Two such
// accumulators (two tokens, or two rows in the decode kernel) are packed to
// words (VPACKSSDW, exact) and one VPMADDWD with the scale words gives S
// for both: 4 VPDPBUSD per 256 quants and token plus one VPACKSSDW and one
// VPMADDWD per pair, against 4 VPMADDUBSW + 4 VPDPWSSD of q4KAVX2's
// numerics. A pair's lanes: in every 128-bit lane k, dwords 0, 1 are
// sub-blocks 2k, 2k+1 of the first token (row), dwords 2, 3 of the second.
//
// The scales and mins are decoded by vector operations from one 16-byte
// broadcast per row (q4NScales: two VPSHUFB, two word shifts, an AND and
// two VPTERNLOGD give the eight 6-bit scales and eight 6-bit mins). The
// kernel is bound by the VPDPBUSD/VPMADDWD port: NOTES.md.

// q4KDecConsts are the constants of the scale decoding (q4NScales), in
// one table.
var q4KDecConsts Mem

// Offsets in the table: 16-byte patterns repeated in each 128-bit lane,
// so that they serve as zmm memory operands.
const (
	q4kcIdxA  = 0    // VPSHUFB: b0..3, b8..11, b4..7, b8..11
	q4kcIdxB  = 64   // VPSHUFB: -, b0..3, -, b4..7
	q4kcM1    = 128  // 3f×4 0f×4 3f×4 00×4
	q4kcM2    = 192  // 00×12 0f×4
	q4kcM3    = 256  // 00×4 30×4 00×4 30×4
	q4kcBytes = 320  // table size
	q4kcFill  = 0x80 // VPSHUFB: zero byte
)

func q4KDecData() Mem {
	if q4KDecConsts.Symbol.Name != "" {
		return q4KDecConsts
	}
	m := GLOBL("q4kDec512", RODATA|NOPTR)
	b := make([]byte, q4kcBytes)
	for l := 0; l < 64; l += 16 {
		for i := range 4 {
			b[q4kcIdxA+l+i], b[q4kcIdxA+l+4+i], b[q4kcIdxA+l+8+i], b[q4kcIdxA+l+12+i] = byte(i), byte(8+i), byte(4+i), byte(8+i)
			b[q4kcIdxB+l+i], b[q4kcIdxB+l+4+i], b[q4kcIdxB+l+8+i], b[q4kcIdxB+l+12+i] = q4kcFill, byte(i), q4kcFill, byte(4+i)
			b[q4kcM1+l+i], b[q4kcM1+l+4+i], b[q4kcM1+l+8+i] = 0x3f, 0x0f, 0x3f
			b[q4kcM2+l+12+i] = 0x0f
			b[q4kcM3+l+4+i], b[q4kcM3+l+12+i] = 0x30, 0x30
		}
	}
	for i, v := range b {
		DATA(i, U8(v))
	}
	q4KDecConsts = m
	return m
}

func putU32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
}

// q4KNConsts are the constants of these kernels.
var q4KNConsts Mem

const (
	q4nSCt    = 0   // 64: VPSHUFB, scale words of a pair of tokens (one row in every lane of D)
	q4nMNt    = 64  // 64: VPSHUFB, min words (m, 0) of a pair of tokens
	q4nSCd    = 128 // 64: VPSHUFB, scale words of a pair of rows (scales of row a at 0..7, b at 8..15)
	q4nMNd    = 192 // 64: VPSHUFB, min words of a pair of rows
	q4nRows   = 256 // 4 × 64: VPERMQ indices: scales of rows 0|1, mins of rows 0|1, scales 2|3, mins 2|3
	q4nDIdx   = 512 // 4 × 64: VPERMPS indices: d of rows 0|1, dmin 0|1, d 2|3, dmin 2|3
	q4nPairIn = 768 // 64: VPERMI2Q: eight lanes of two tokens into a pair
	q4nOutA   = 832 // 64: VPERMQ: the first token's lanes out of a pair
	q4nOutB   = 896 // 64: the second's
	q4nBytes  = 960
)

func q4KNData() Mem {
	if q4KNConsts.Symbol.Name != "" {
		return q4KNConsts
	}
	m := GLOBL("q4kN512", RODATA|NOPTR)
	b := make([]byte, q4nBytes)
	q := func(off, i int, v uint64) {
		for k := range 8 {
			b[off+8*i+k] = byte(v >> (8 * k))
		}
	}
	const z = q4kcFill
	for k := range 4 {
		for h := range 2 { // the two halves of a 128-bit lane
			o := 16*k + 8*h
			sa, sb := 2*k, 2*k+1 // byte of the scale in D (tokens) or E (rows)
			if h == 1 {
				// rows: the second row's bytes at 8..15
				b[q4nSCd+o+0], b[q4nSCd+o+2], b[q4nSCd+o+4], b[q4nSCd+o+6] = byte(8+sa), byte(8+sa), byte(8+sb), byte(8+sb)
				b[q4nMNd+o+0], b[q4nMNd+o+4] = byte(8+sa), byte(8+sb)
			} else {
				b[q4nSCd+o+0], b[q4nSCd+o+2], b[q4nSCd+o+4], b[q4nSCd+o+6] = byte(sa), byte(sa), byte(sb), byte(sb)
				b[q4nMNd+o+0], b[q4nMNd+o+4] = byte(sa), byte(sb)
			}
			b[q4nSCd+o+1], b[q4nSCd+o+3], b[q4nSCd+o+5], b[q4nSCd+o+7] = z, z, z, z
			b[q4nMNd+o+1], b[q4nMNd+o+2], b[q4nMNd+o+3], b[q4nMNd+o+5], b[q4nMNd+o+6], b[q4nMNd+o+7] = z, z, z, z, z, z
			b[q4nSCt+o+0], b[q4nSCt+o+2], b[q4nSCt+o+4], b[q4nSCt+o+6] = byte(sa), byte(sa), byte(sb), byte(sb)
			b[q4nSCt+o+1], b[q4nSCt+o+3], b[q4nSCt+o+5], b[q4nSCt+o+7] = z, z, z, z
			b[q4nMNt+o+0], b[q4nMNt+o+4] = byte(8+sa), byte(8+sb)
			b[q4nMNt+o+1], b[q4nMNt+o+2], b[q4nMNt+o+3], b[q4nMNt+o+5], b[q4nMNt+o+6], b[q4nMNt+o+7] = z, z, z, z, z, z
		}
	}
	// D holds row r's scales in qword 2r, its mins in qword 2r+1.
	for v := range 4 {
		pair, isMin := v/2, v%2
		for i := range 8 {
			r := 2*pair + i%2
			q(q4nRows+64*v, i, uint64(2*r+isMin))
		}
	}
	// f: row r's d in float lane 2r, dmin in 2r+1; a pair's lane i belongs
	// to its row (i>>1)&1.
	for v := range 4 {
		pair, isMin := v/2, v%2
		for i := range 16 {
			r := 2*pair + (i>>1)&1
			putU32(b[q4nDIdx+64*v+4*i:], uint32(2*r+isMin))
		}
	}
	for i, v := range []uint64{0, 8, 1, 9, 2, 10, 3, 11} {
		q(q4nPairIn, i, v)
	}
	for i := range 8 {
		q(q4nOutA, i, uint64(2*(i%4)))
		q(q4nOutB, i, uint64(2*(i%4)+1))
	}
	for i, v := range b {
		DATA(i, U8(v))
	}
	q4KNConsts = m
	return m
}

// q4NScales decodes the eight scales and eight mins of the rows whose
// scale bytes are in the 128-bit lanes of D (q4KDecode512's decoding): row
// r's scales at bytes 0..7 of lane r, mins at 8..15.
func q4NScales(c Mem, D VecVirtual) {
	A, B := ZMM(), ZMM()
	VPSHUFB(c.Offset(q4kcIdxA), D, A)
	VPSHUFB(c.Offset(q4kcIdxB), D, B)
	VPANDD(c.Offset(q4kcM1), A, D)
	VPSRLW(U8(4), A, A)
	VPTERNLOGD(U8(0xf8), c.Offset(q4kcM2), A, D)
	VPSRLW(U8(2), B, B)
	VPTERNLOGD(U8(0xf8), c.Offset(q4kcM3), B, D)
}

// q4NWeights returns the four nibble slices of the Q4_K block at w, whose
// quants repackQ4_K has laid out in prepQ8_KQ4's order: the 64 bytes at 16
// hold slice 0 in their low nibbles and slice 1 in their high nibbles, the
// 64 at 80 slices 2 and 3. Three operations per pair of slices.
func q4NWeights(w Mem, m0f VecVirtual) [4]VecVirtual {
	var W [4]VecVirtual
	for h := range 2 {
		src := w.Offset(16 + 64*h)
		W[2*h], W[2*h+1] = ZMM(), ZMM()
		VPANDD(src, m0f, W[2*h])
		VPSRLW(U8(4), src, W[2*h+1])
		VPANDD(m0f, W[2*h+1], W[2*h+1])
	}
	return W
}

// q4NSums returns the sub-block sums of one token (64-byte slices at
// x(0..3)): four VPDPBUSD.
func q4NSums(W [4]VecVirtual, x func(j int) Mem, zero VecVirtual) VecVirtual {
	a := ZMM()
	VPXORD(zero, zero, a)
	for j := range W {
		VPDPBUSD(x(j), W[j], a)
	}
	return a
}

func genQ4KN() {
	q4KDecodeN(1)
	q4KDecodeN(4)
	for _, T := range []int{16, 8, 4, 2, 1} {
		q4KTileN(T)
	}
}

// q4KDecodeN emits dotQ4_KAVX512 (rows = 1),
//
//	func(w, x *byte, nb int) float32
//
// or dotQ4_KAVX512x4 (rows = 4),
//
//	func(w *byte, stride int, x *byte, nb int, dst *[4]float32)
//
// with x in prepQ8_KQ4's layout.
func q4KDecodeN(rows int) {
	name := "dotQ4_KAVX512"
	if rows == 1 {
		text(name, NOSPLIT, "func(w, x *byte, nb int) float32")
	} else {
		name += "x4"
		text(name, NOSPLIT, "func(w *byte, stride int, x *byte, nb int, dst *[4]float32)")
	}
	Doc(name+" is the dot product of nb blocks of Q4_K weights with Q8_K",
		"activations laid out by prepQ8_KQ4 (quant.dotQ4_KQ8_K), in the avx512",
		"level's Q4_K numerics; "+map[bool]string{true: "one row.", false: "rows w + r·stride, r = 0..3."}[rows == 1])
	c := q4KDecData()
	n := q4KNData()
	wp, pf := rowPointers(rows)
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())

	m0f := bcastDZ(0x0f0f0f0f)
	npair := (rows + 1) / 2
	acc := make([]VecVirtual, npair)
	for p := range acc {
		acc[p] = ZMM()
		VPXORD(m0f, m0f, acc[p])
	}

	loop(name, nb, func() {
		if rows > 1 {
			prefetchNext(pf, 4*144)
		}
		xm := Mem{Base: x}
		D := ZMM()
		VBROADCASTI32X4(Mem{Base: wp[0], Disp: 4}, D)
		for r := 1; r < rows; r++ {
			VINSERTI32X4(U8(r), Mem{Base: wp[r], Disp: 4}, D, D)
		}
		q4NScales(c, D)
		sums := make([]VecVirtual, rows)
		for r := range rows {
			W := q4NWeights(Mem{Base: wp[r]}, m0f)
			sums[r] = q4NSums(W, func(j int) Mem { return xm.Offset(64 * j) }, m0f)
		}
		dx := ZMM()
		VBROADCASTSS(xm.Offset(320), dx)
		var f VecVirtual
		if rows > 1 {
			h := XMM()
			VMOVD(Mem{Base: wp[0]}, h)
			for r := 1; r < rows; r++ {
				VPINSRD(U8(r), Mem{Base: wp[r]}, h, h)
			}
			f = ZMM()
			VPXORD(m0f, m0f, f) // whole register defined (see main.go)
			VCVTPH2PS(h, f.AsY())
		}
		for p := range npair {
			a, b := sums[0], sums[0]
			if rows > 1 {
				a, b = sums[2*p], sums[2*p+1]
			}
			P := ZMM()
			VPACKSSDW(b, a, P)
			SC, MN := ZMM(), ZMM()
			var dd, dm VecVirtual
			if rows == 1 {
				VPSHUFB(n.Offset(q4nSCt), D, SC)
				VPSHUFB(n.Offset(q4nMNt), D, MN)
				h := XMM()
				VCVTPH2PS(Mem{Base: wp[0]}, h)
				dd, dm = ZMM(), ZMM()
				VBROADCASTSS(h, dd)
				VMOVSHDUP(h, h)
				VBROADCASTSS(h, dm)
			} else {
				ix := ZMM()
				VMOVDQU64(n.Offset(q4nRows+128*p), ix)
				VPERMQ(D, ix, SC)
				VPSHUFB(n.Offset(q4nSCd), SC, SC)
				VMOVDQU64(n.Offset(q4nRows+128*p+64), ix)
				VPERMQ(D, ix, MN)
				VPSHUFB(n.Offset(q4nMNd), MN, MN)
				dd, dm = ZMM(), ZMM()
				VMOVDQU64(n.Offset(q4nDIdx+128*p), ix)
				VPERMPS(f, ix, dd)
				VMOVDQU64(n.Offset(q4nDIdx+128*p+64), ix)
				VPERMPS(f, ix, dm)
			}
			VPMADDWD(SC, P, P)
			q4NMins(MN, dm)
			bf := ZMM()
			VMOVUPS(xm.Offset(256), bf)
			q4NFloat(P, dd, MN, bf, dx, acc[p])
		}
		for r := range rows {
			ADDQ(U32(144), wp[r])
		}
		ADDQ(U32(q4nBlock), x)
	})

	out := func(a VecVirtual, off int) VecVirtual {
		ix, y := ZMM(), ZMM()
		VMOVDQU64(n.Offset(off), ix)
		VPERMQ(a, ix, y)
		yy := YMM()
		VEXTRACTF64X4(U8(0), y, yy)
		return reduce8(yy, true)
	}
	if rows == 1 {
		s := out(acc[0], q4nOutA)
		VZEROUPPER()
		Store(s, ReturnIndex(0))
		RET()
		return
	}
	dst := Load(Param("dst"), GP64())
	for p := range acc {
		VMOVSS(out(acc[p], q4nOutA), Mem{Base: dst, Disp: 8 * p})
		VMOVSS(out(acc[p], q4nOutB), Mem{Base: dst, Disp: 8*p + 4})
	}
	VZEROUPPER()
	RET()
}

// q4nBlock is prepQ8_KQ4's block: the 256 quants in slices at 0, the
// sub-block sums at 256 (sixteen float32: lane 4k+i holds B_{2k+(i&1)}), d
// at 320 (sixteen lanes); the tiles read a pair's sums and d from its first
// token's block (pairQ8_KQ4).
const q4nBlock = 384

// q4KTileN emits gemmQ4_KAVX512x<T> (the signature of the block-lanes
// tiles; the acc area holds each token's eight lanes in sub-block order).
// Tokens go in pairs (the last one alone when T is odd, paired with
// itself); the pair accumulators stay in registers for the whole row.
func q4KTileN(T int) {
	name := fmt.Sprintf("gemmQ4_KAVX512x%d", T)
	text(name, NOSPLIT, "func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)")
	Doc(name+fmt.Sprintf(" is the dot product of one weight row with %d tokens:", T),
		"Q4_K weights × Q8_K activations (quant.dotQ4_KQ8_K) laid out by prepQ8_KQ4, in the avx512",
		"level's Q4_K numerics (dotQ4_KAVX512's bits per token).")
	c := q4KDecData()
	n := q4KNData()
	w := Load(Param("w"), GP64())
	nb := Load(Param("nb"), GP64())
	xt := newTokAddr(T)
	npair := (T + 1) / 2
	loc := AllocLocal(64 * npair)
	m0f := bcastDZ(0x0f0f0f0f)
	second := func(p int) int {
		if 2*p+1 < T {
			return 2*p + 1
		}
		return 2 * p
	}

	flags := Load(Param("flags"), GP64())
	accp := Load(Param("acc"), GP64())
	TESTQ(U32(1), flags)
	JZ(LabelRef(name + "_zero"))
	for p := range npair {
		z, ix := ZMM(), ZMM()
		VMOVUPS(Mem{Base: accp, Disp: 128 * p}, z)
		VMOVDQU64(n.Offset(q4nPairIn), ix)
		VPERMI2Q(Mem{Base: accp, Disp: 64 * second(p)}, z, ix)
		VMOVUPS(ix, loc.Offset(64*p))
	}
	JMP(LabelRef(name + "_start"))
	Label(name + "_zero")
	gz := GP64()
	XORQ(gz, gz)
	for o := 0; o < 64*npair; o += 8 {
		MOVQ(gz, loc.Offset(o))
	}
	Label(name + "_start")
	acc := make([]VecVirtual, npair)
	for p := range acc {
		acc[p] = ZMM()
		VMOVUPS(loc.Offset(64*p), acc[p])
	}
	loop(name, nb, func() {
		wm := Mem{Base: w}
		if T <= tilePrefetchT {
			for o := 0; o < 144; o += 64 {
				PREFETCHT0(wm.Offset(rowPrefetch + o))
			}
		}
		D := ZMM()
		VBROADCASTI32X4(wm.Offset(4), D)
		q4NScales(c, D)
		SC, MN := ZMM(), ZMM()
		VPSHUFB(n.Offset(q4nSCt), D, SC)
		VPSHUFB(n.Offset(q4nMNt), D, MN)
		h := XMM()
		VCVTPH2PS(wm, h)
		dd, dm := ZMM(), ZMM()
		VBROADCASTSS(h, dd)
		VMOVSHDUP(h, h)
		VBROADCASTSS(h, dm)
		q4NMins(MN, dm)
		W := q4NWeights(wm, m0f)
		// Integer sums of up to eight tokens at a time, slice by slice
		// (independent chains next to each other).
		sums := make([]VecVirtual, T)
		for p := range npair {
			if p%4 == 0 {
				for t := 2 * p; t < min(T, 2*p+8); t++ {
					sums[t] = ZMM()
					VPXORD(m0f, m0f, sums[t])
				}
				for j := range W {
					for t := 2 * p; t < min(T, 2*p+8); t++ {
						VPDPBUSD(xt.at(t, 64*j), W[j], sums[t])
					}
				}
			}
			t, t1 := 2*p, second(p)
			a, b := sums[t], sums[t1]
			P := ZMM()
			VPACKSSDW(b, a, P)
			VPMADDWD(SC, P, P)
			bp := ZMM()
			VMOVUPS(xt.at(t, 256), bp)
			bx := ZMM()
			VMOVUPS(xt.at(t, 320), bx) // the pair's (pairQ8_KQ4)
			q4NFloat(P, dd, MN, bp, bx, acc[p])
		}
		ADDQ(U32(144), w)
		xt.advance(q4nBlock)
	})
	for p := range acc {
		VMOVUPS(acc[p], loc.Offset(64*p))
	}
	lanes := func(p, off int) VecVirtual {
		ix, y := ZMM(), ZMM()
		VMOVDQU64(n.Offset(off), ix)
		VPERMQ(loc.Offset(64*p), ix, y)
		return y
	}
	flags2 := Load(Param("flags"), GP64())
	TESTQ(U32(2), flags2)
	JNZ(LabelRef(name + "_final"))
	accp2 := Load(Param("acc"), GP64())
	for t := range T {
		off := q4nOutA
		if t%2 == 1 {
			off = q4nOutB
		}
		VMOVUPS(lanes(t/2, off).AsY(), Mem{Base: accp2, Disp: 64 * t})
	}
	VZEROUPPER()
	RET()
	Label(name + "_final")
	dst := Load(Param("dst"), GP64())
	ldd := Load(Param("ldd"), GP64())
	d := GP64()
	MOVQ(dst, d)
	for t := range T {
		off := q4nOutA
		if t%2 == 1 {
			off = q4nOutB
		}
		yy := YMM()
		VEXTRACTF64X4(U8(0), lanes(t/2, off), yy)
		s := reduce8(yy, true)
		VMOVSS(s, Mem{Base: d})
		if t+1 < T {
			ADDQ(ldd, d)
		}
	}
	VZEROUPPER()
	RET()
}

// q4NMins turns the min words (m, 0) of MN into dmin·float(m), in place.
func q4NMins(MN, dm VecVirtual) {
	VCVTDQ2PS(MN, MN)
	VMULPS(dm, MN, MN)
}

// q4NFloat ends a super-block of a pair: S the integer sums (sc·Σq·x),
// lane by lane u = d·float(S); u −= (dmin·m)·B; acc += dx·u.
func q4NFloat(S, dd, dmn, bf, dx, acc VecVirtual) {
	VCVTDQ2PS(S, S)
	VMULPS(dd, S, S)
	VFNMADD231PS(dmn, bf, S)
	VFMADD231PS(dx, S, acc)
}
