package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// AVX-512 decode kernels of Q4_K (one token: a matrix-vector product
// streaming the weights from memory). They give dotQ4_KAVX2's bits: per
// super-block the same exact integer sums in the same eight lanes (here
// computed 64 quants at a time, sub-blocks 2j and 2j+1 in the two halves of
// a zmm, the halves added at the end), the same two products d·dx and
// dmin·dx, the same FMA and FNMA per super-block and the same final
// reduction. What differs from the AVX2 kernel (and from the earlier
// AVX-512 attempt, which was slower than it):
//
//   - The scale decoding is vectorized, for four rows at once: the twelve
//     scale bytes of each row in one 128-bit lane of a zmm, two VPSHUFB, two
//     word shifts, an AND and two VPTERNLOGD give the eight 6-bit scales and
//     eight 6-bit mins of every row (the AVX2 kernel spends ~25 scalar
//     instructions and a trip through the stack per row and super-block).
//   - The scale vectors of VPDPWSSD come from one VPSHUFB each (no VPERMW).
//   - The activations are read as prepQ8_KPadded lays them out, quants
//     64-byte aligned, so that no 512-bit load splits a cache line (the
//     Q8_K block is 292 bytes, its quants at 4).
//   - The float stage runs two rows per zmm (rows 0 and 1, rows 2 and 3).
//   - The four-row kernel asks for the next four rows (the next call's) while
//     it works, one block of 4·144 bytes per super-block.

// q4KDecConsts are the constants of the kernels, in one table.
var q4KDecConsts Mem

// Offsets in the table; the first five are 16-byte patterns repeated in
// each 128-bit lane, so that they serve as zmm memory operands.
const (
	q4kcIdxA  = 0    // VPSHUFB: b0..3, b8..11, b4..7, b8..11
	q4kcIdxB  = 64   // VPSHUFB: -, b0..3, -, b4..7
	q4kcM1    = 128  // 3f×4 0f×4 3f×4 00×4
	q4kcM2    = 192  // 00×12 0f×4
	q4kcM3    = 256  // 00×4 30×4 00×4 30×4
	q4kcS     = 320  // 4 × 64 bytes: scale word vectors of sub-blocks 2j (low half), 2j+1 (high)
	q4kcM     = 576  // 64 bytes: (m_l, m_l) word pairs, mins 0..3 then 4..7 per 256 bits
	q4kcDIdx  = 640  // 4 × 64 bytes: VPERMPS indices of d and dmin for row pairs
	q4kcShift = 896  // 64 bytes: word shifts 0 (low half), 4 (high half)
	q4kcBytes = 960  // table size
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
	for j := range 4 {
		for i := range 32 { // 32 words: sc[2j] in the low 16, sc[2j+1] in the high 16
			s := 2 * j
			if i >= 16 {
				s++
			}
			b[q4kcS+64*j+2*i], b[q4kcS+64*j+2*i+1] = byte(s), q4kcFill
		}
	}
	for lane := range 4 { // mins 0..3 in lanes 0 and 2, 4..7 in lanes 1 and 3
		for k := range 4 {
			l := 8 + 4*(lane%2) + k
			o := q4kcM + 16*lane + 4*k
			b[o], b[o+1], b[o+2], b[o+3] = byte(l), q4kcFill, byte(l), q4kcFill
		}
	}
	// Float lanes after VCVTPH2PS of the four rows' (d, dmin) pairs: row r's
	// d in lane 2r, dmin in 2r+1. Index vectors: d of rows 0|1, dmin of rows
	// 0|1, d of rows 2|3, dmin of rows 2|3, each eight lanes per row.
	for v := range 4 {
		pair, isMin := v/2, v%2
		for i := range 16 {
			r := 2*pair + i/8
			putU32(b[q4kcDIdx+64*v+4*i:], uint32(2*r+isMin))
		}
	}
	for i := 16; i < 32; i++ {
		b[q4kcShift+2*i] = 4
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

func genQ4KAVX512() {
	q4KDecode512(1)
	q4KDecode512(4)
}

// q4KDecode512 emits dotQ4_KAVX512 (rows = 1),
//
//	func(w, x *byte, nb int) float32
//
// or dotQ4_KAVX512x4 (rows = 4),
//
//	func(w *byte, stride int, x *byte, nb int, dst *[4]float32)
//
// with x in prepQ8_KPadded's layout (320 bytes per block, 64-byte
// aligned).
func q4KDecode512(rows int) {
	name := "dotQ4_KAVX512"
	if rows == 1 {
		TEXT(name, NOSPLIT, "func(w, x *byte, nb int) float32")
	} else {
		name += "x4"
		TEXT(name, NOSPLIT, "func(w *byte, stride int, x *byte, nb int, dst *[4]float32)")
	}
	Doc(name+" is the dot product of nb blocks of Q4_K weights with Q8_K",
		"activations laid out by prepQ8_KPadded (quant.dotQ4_KQ8_K), with the bits",
		"of dotQ4_KAVX2; "+map[bool]string{true: "one row.", false: "rows w + r·stride, r = 0..3."}[rows == 1])
	c := q4KDecData()
	wp := make([]Register, rows)
	wp[0] = Load(Param("w"), GP64())
	var pf Register
	if rows > 1 {
		stride := Load(Param("stride"), GP64())
		for r := 1; r < rows; r++ {
			wp[r] = GP64()
			LEAQ(Mem{Base: wp[r-1], Index: stride, Scale: 1}, wp[r])
		}
		pf = GP64()
		LEAQ(Mem{Base: wp[rows-1], Index: stride, Scale: 1}, pf)
	}
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())

	m0f := bcastDZ(0x0f0f0f0f)
	shv, idxS, idxM := ZMM(), make([]VecVirtual, 4), ZMM()
	VMOVDQU64(c.Offset(q4kcShift), shv)
	for j := range idxS {
		idxS[j] = ZMM()
		VMOVDQU64(c.Offset(q4kcS+64*j), idxS[j])
	}
	VMOVDQU64(c.Offset(q4kcM), idxM)
	var idxD [4]VecVirtual
	if rows > 1 {
		for v := range idxD {
			idxD[v] = ZMM()
			VMOVDQU64(c.Offset(q4kcDIdx+64*v), idxD[v])
		}
	}
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
		// Scales and mins of every row: lane r holds row r's (eight 6-bit
		// scales, eight 6-bit mins) as bytes.
		D := ZMM()
		VBROADCASTI32X4(Mem{Base: wp[0], Disp: 4}, D)
		for r := 1; r < rows; r++ {
			VINSERTI32X4(U8(r), Mem{Base: wp[r], Disp: 4}, D, D)
		}
		A, B := ZMM(), ZMM()
		VPSHUFB(c.Offset(q4kcIdxA), D, A)
		VPSHUFB(c.Offset(q4kcIdxB), D, B)
		VPANDD(c.Offset(q4kcM1), A, D)
		VPSRLW(U8(4), A, A)
		VPTERNLOGD(U8(0xf8), c.Offset(q4kcM2), A, D) // D |= (A>>4) & m2: mins 4..7, low nibbles
		VPSRLW(U8(2), B, B)
		VPTERNLOGD(U8(0xf8), c.Offset(q4kcM3), B, D) // D |= (B>>2) & 0x30: the top two bits
		// Integer sums, 64 quants per step.
		sumi := make([]VecVirtual, rows)
		for r := range rows {
			Dr := D
			if rows > 1 {
				Dr = ZMM()
				VSHUFI32X4(U8(0x55*r), D, D, Dr)
			}
			sumi[r] = ZMM()
			for j := range 4 {
				S := ZMM()
				VPSHUFB(idxS[j], Dr, S)
				q := ZMM()
				VBROADCASTI64X4(Mem{Base: wp[r], Disp: 16 + 32*j}, q)
				VPSRLVW(shv, q, q)
				VPANDD(m0f, q, q)
				VPMADDUBSW(xm.Offset(64*j), q, q)
				if j == 0 {
					VPMADDWD(S, q, sumi[r])
				} else {
					VPDPWSSD(S, q, sumi[r])
				}
			}
		}
		dx := ZMM()
		VBROADCASTSS(xm.Offset(288), dx)
		if rows == 1 {
			q4KDecFloat1(wp[0], xm, D, idxM, dx, sumi[0], acc[0])
		} else {
			q4KDecFloat4(wp, xm, D, idxM, idxD, dx, sumi, acc, m0f)
		}
		for r := range rows {
			ADDQ(U32(144), wp[r])
		}
		ADDQ(U32(q8KPadded), x)
	})

	half := func(a VecVirtual, h int) VecVirtual {
		y := YMM()
		VEXTRACTF64X4(U8(h), a, y)
		return y
	}
	if rows == 1 {
		s := reduce8(half(acc[0], 0), true)
		VZEROUPPER()
		Store(s, ReturnIndex(0))
		RET()
		return
	}
	dst := Load(Param("dst"), GP64())
	for p := range acc {
		VMOVSS(reduce8(half(acc[p], 0), true), Mem{Base: dst, Disp: 8 * p})
		VMOVSS(reduce8(half(acc[p], 1), true), Mem{Base: dst, Disp: 8*p + 4})
	}
	VZEROUPPER()
	RET()
}

// q4KDecFloat1 ends a super-block of one row as dotQ4_KAVX2 does, on
// ymm: acc += float(sumi)·(d·dx); acc −= float(Σ min·bsum)·(dmin·dx).
func q4KDecFloat1(w Register, x Mem, D, idxM, dx, sumi, acc VecVirtual) {
	hi := YMM()
	VEXTRACTI64X4(U8(1), sumi, hi)
	s := YMM()
	VPADDD(hi, sumi.AsY(), s)
	mw := YMM()
	VPSHUFB(idxM.AsY(), D.AsY(), mw) // lane 0 of D in both halves (broadcast load)
	VPMADDWD(x.Offset(256), mw, mw)
	d := XMM()
	VCVTPH2PS(Mem{Base: w}, d) // d, dmin (and two scale bytes' worth, unused)
	VMULPS(dx.AsX(), d, d)
	dd, dm := YMM(), YMM()
	VBROADCASTSS(d, dd)
	VMOVSHDUP(d, d)
	VBROADCASTSS(d, dm)
	VCVTDQ2PS(s, s)
	VFMADD231PS(dd, s, acc.AsY())
	VCVTDQ2PS(mw, mw)
	VFNMADD231PS(dm, mw, acc.AsY())
}

// q4KDecFloat4 ends a super-block of four rows, rows 2p and 2p+1 in the
// halves of acc[p], with q4KAVX2's operations per lane.
func q4KDecFloat4(wp []Register, x Mem, D, idxM VecVirtual, idxD [4]VecVirtual, dx VecVirtual, sumi, acc []VecVirtual, live VecVirtual) {
	// d, dmin of the four rows as eight halves, converted and scaled by dx:
	// lanes 2r, 2r+1 of f.
	h := XMM()
	VMOVD(Mem{Base: wp[0]}, h)
	for r := 1; r < 4; r++ {
		VPINSRD(U8(r), Mem{Base: wp[r]}, h, h)
	}
	f := ZMM()
	VPXORD(live, live, f) // whole register defined (see main.go)
	VCVTPH2PS(h, f.AsY())
	VMULPS(dx.AsY(), f.AsY(), f.AsY())
	bs := ZMM()
	VBROADCASTI64X4(x.Offset(256), bs)
	for p := range 2 {
		u, v := ZMM(), ZMM()
		VSHUFI64X2(U8(0x44), sumi[2*p+1], sumi[2*p], u) // low halves of rows 2p, 2p+1
		VSHUFI64X2(U8(0xee), sumi[2*p+1], sumi[2*p], v) // high halves
		VPADDD(v, u, u)                                 // q4KAVX2's eight lanes, twice
		mw := ZMM()
		VSHUFI32X4(U8(0x50+0xaa*p), D, D, mw) // lanes 2p, 2p, 2p+1, 2p+1 of D
		VPSHUFB(idxM, mw, mw)
		VPMADDWD(bs, mw, mw)
		dd, dm := ZMM(), ZMM()
		VPERMPS(f, idxD[2*p], dd)
		VPERMPS(f, idxD[2*p+1], dm)
		VCVTDQ2PS(u, u)
		VFMADD231PS(dd, u, acc[p])
		VCVTDQ2PS(mw, mw)
		VFNMADD231PS(dm, mw, acc[p])
	}
}
