package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The avx512 level's Q5_K numerics (decode kernels dotQ5_KAVX512/x4 and the
// tiles gemmQ5_KAVX512x<T>, bit for bit the same per row and token), the
// sub-block lanes of Q6_K's (q6k512.go) for Q4_K's block header. Per
// super-block and token, sub-block p (32 quants) in float32 lanes 2p and
// 2p+1, each summing half of its quants:
//
//   - S_l = Σ_{i∈l} q_i·x_i, an exact integer (q the unsigned 5-bit quants);
//   - acc_l += float(S_l) · ((d·sc_p) · dx) − (dmin·m_p) · (dx·B_p), the
//     second term in lane 2p only (B_p the sub-block's quant sum, dx·B_p
//     as prepQ8_KQ5 stores it);
//
// and at the end the sixteen lanes reduced as hsum16 does.
//
// The weights are repacked once per matrix (repackQ5_K, 176 bytes a
// block as in the file): the header (d, dmin, the packed 6-bit scales and
// mins) as it is, the nibbles at 16 as repackQ4_K lays them out (slice j,
// 64 quants: qword p holds quants 8j..8j+7 of sub-block p), and at 144
// the fifth bits, eight bytes a slice, bit k of slice j's for its byte k.
// A slice costs a nibble extraction, a mask load and one masked byte add.

// q5nBlock is prepQ8_KQ5's block: the quants at 0 (prepQ8_KQ4's slices),
// dx·B_p in float32 lane 2p at 256 (0 in lane 2p+1), dx at 320.
const q5nBlock = 384

// q5KNConsts: VPSHUFB indices that spread D's scale bytes (q4NScales'
// layout: scales at bytes 0..7, mins at 8..15 of every 128-bit lane) into
// dword lanes: sc_{l/2} in lane l; m_p in lane 2p and 0 in 2p+1.
var q5KNConsts Mem

const (
	q5nSC    = 0
	q5nMN    = 64
	q5nBytes = 128
)

func q5KNData() Mem {
	if q5KNConsts.Symbol.Name != "" {
		return q5KNConsts
	}
	m := GLOBL("q5kN512", RODATA|NOPTR)
	b := make([]byte, q5nBytes)
	for i := range b {
		b[i] = q4kcFill
	}
	for l := range 16 { // dword lane l = 4·(128-bit lane) + dword
		b[q5nSC+4*l] = byte(l / 2)
		if l%2 == 0 {
			b[q5nMN+4*l] = byte(8 + l/2)
		}
	}
	for i, v := range b {
		DATA(i, U8(v))
	}
	q5KNConsts = m
	return m
}

func genQ5KN() {
	q5KDecodeN(1)
	q5KDecodeN(4)
	for _, T := range []int{16, 8, 4, 2, 1} {
		q5KTileN(T)
	}
}

// q5NWeights returns the four slices of the repacked Q5_K block at w as
// bytes 0..31: the nibble, plus 16 under the slice's 64-bit mask of fifth
// bits.
func q5NWeights(w Mem, m0f, m10 VecVirtual) [4]VecVirtual {
	var W [4]VecVirtual
	for j := range W {
		src := w.Offset(16 + 64*(j/2))
		W[j] = ZMM()
		if j%2 == 0 {
			VPANDD(src, m0f, W[j])
		} else {
			VPSRLW(U8(4), src, W[j])
			VPANDD(m0f, W[j], W[j])
		}
		k := K()
		KMOVQ(w.Offset(144+8*j), k)
		VPADDB(m10, W[j], k, W[j]) // +16 where the fifth bit is set
	}
	return W
}

// q5NRow returns, for the Q5_K block at w, d·sc_p in lanes 2p and 2p+1 and
// dmin·m_p in lane 2p (0 in 2p+1).
func q5NRow(w Mem) (dsc, dmm VecVirtual) {
	c := q4KDecData()
	n := q5KNData()
	D := ZMM()
	VBROADCASTI32X4(w.Offset(4), D)
	q4NScales(c, D)
	dsc, dmm = ZMM(), ZMM()
	VPSHUFB(n.Offset(q5nSC), D, dsc)
	VPSHUFB(n.Offset(q5nMN), D, dmm)
	VCVTDQ2PS(dsc, dsc)
	VCVTDQ2PS(dmm, dmm)
	h := XMM()
	VCVTPH2PS(w, h) // d, dmin (and two scale bytes' worth, unused)
	dd, dm := ZMM(), ZMM()
	VBROADCASTSS(h, dd)
	VMOVSHDUP(h, h)
	VBROADCASTSS(h, dm)
	VMULPS(dd, dsc, dsc)
	VMULPS(dm, dmm, dmm)
	return dsc, dmm
}

// q5NToken adds one token's super-block (activations at x(disp)) to acc.
func q5NToken(W [4]VecVirtual, dsc, dmm, zero VecVirtual, x func(disp int) Mem, acc VecVirtual) {
	s := ZMM()
	VPXORD(zero, zero, s)
	for j := range W {
		VPDPBUSD(x(64*j), W[j], s)
	}
	VCVTDQ2PS(s, s)
	v := ZMM()
	VMULPS_BCST(x(320), dsc, v)
	VFMADD231PS(v, s, acc)
	VFNMADD231PS(x(256), dmm, acc)
}

// q5KDecodeN emits dotQ5_KAVX512 (rows = 1),
//
//	func(w, x *byte, nb int) float32
//
// or dotQ5_KAVX512x4 (rows = 4),
//
//	func(w *byte, stride int, x *byte, nb int, dst *[4]float32)
//
// with w repacked by repackQ5_K and x laid out by prepQ8_KQ5.
func q5KDecodeN(rows int) {
	name := "dotQ5_KAVX512"
	if rows == 1 {
		TEXT(name, NOSPLIT, "func(w, x *byte, nb int) float32")
	} else {
		name += "x4"
		TEXT(name, NOSPLIT, "func(w *byte, stride int, x *byte, nb int, dst *[4]float32)")
	}
	Doc(name+" is the dot product of nb blocks of Q5_K weights (repackQ5_K) with",
		"Q8_K activations laid out by prepQ8_KQ5 (quant.dotQ5_KQ8_K), in the avx512",
		"level's Q5_K numerics; "+map[bool]string{true: "one row.", false: "rows w + r·stride, r = 0..3."}[rows == 1])
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
	m10 := bcastDZ(0x10101010)
	acc := make([]VecVirtual, rows)
	for r := range acc {
		acc[r] = ZMM()
		VPXORD(m0f, m0f, acc[r])
	}
	loop(name, nb, func() {
		if rows > 1 {
			prefetchNext(pf, 4*176)
		}
		xm := Mem{Base: x}
		for r := range rows {
			wm := Mem{Base: wp[r]}
			W := q5NWeights(wm, m0f, m10)
			dsc, dmm := q5NRow(wm)
			q5NToken(W, dsc, dmm, m0f, xm.Offset, acc[r])
		}
		for r := range rows {
			ADDQ(U32(176), wp[r])
		}
		ADDQ(U32(q5nBlock), x)
	})
	if rows == 1 {
		s := hsum16(acc[0])
		VZEROUPPER()
		Store(s, ReturnIndex(0))
		RET()
		return
	}
	dst := Load(Param("dst"), GP64())
	for r := range acc {
		VMOVSS(hsum16(acc[r]), Mem{Base: dst, Disp: 4 * r})
	}
	VZEROUPPER()
	RET()
}

// q5KTileN emits gemmQ5_KAVX512x<T> (the signature of the block-lanes
// tiles; the acc area holds each token's sixteen lanes).
func q5KTileN(T int) {
	name := fmt.Sprintf("gemmQ5_KAVX512x%d", T)
	attr := NOSPLIT
	if 64*T > 512 {
		attr = 0 // the frame exceeds the nosplit limit
	}
	TEXT(name, attr, "func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)")
	Doc(name+fmt.Sprintf(" is the dot product of one weight row with %d tokens:", T),
		"Q5_K weights (repackQ5_K) × Q8_K activations laid out by prepQ8_KQ5, in",
		"the avx512 level's Q5_K numerics (dotQ5_KAVX512's bits per token).")
	w := Load(Param("w"), GP64())
	nb := Load(Param("nb"), GP64())
	xt := newTokAddr(T)
	loc := AllocLocal(64 * T)
	m0f := bcastDZ(0x0f0f0f0f)
	m10 := bcastDZ(0x10101010)

	flags := Load(Param("flags"), GP64())
	accp := Load(Param("acc"), GP64())
	TESTQ(U32(1), flags)
	JZ(LabelRef(name + "_zero"))
	for t := range T {
		z := ZMM()
		VMOVUPS(Mem{Base: accp, Disp: 64 * t}, z)
		VMOVUPS(z, loc.Offset(64*t))
	}
	JMP(LabelRef(name + "_start"))
	Label(name + "_zero")
	gz := GP64()
	XORQ(gz, gz)
	for o := 0; o < 64*T; o += 8 {
		MOVQ(gz, loc.Offset(o))
	}
	Label(name + "_start")
	acc := make([]VecVirtual, T)
	for t := range acc {
		acc[t] = ZMM()
		VMOVUPS(loc.Offset(64*t), acc[t])
	}
	loop(name, nb, func() {
		wm := Mem{Base: w}
		if T <= tilePrefetchT {
			for o := 0; o < 176; o += 64 {
				PREFETCHT0(wm.Offset(rowPrefetch + o))
			}
		}
		W := q5NWeights(wm, m0f, m10)
		dsc, dmm := q5NRow(wm)
		for t := range T {
			q5NToken(W, dsc, dmm, m0f, func(disp int) Mem { return xt.at(t, disp) }, acc[t])
		}
		ADDQ(U32(176), w)
		xt.advance(q5nBlock)
	})
	flags2 := Load(Param("flags"), GP64())
	TESTQ(U32(2), flags2)
	JNZ(LabelRef(name + "_final"))
	accp2 := Load(Param("acc"), GP64())
	for t := range T {
		VMOVUPS(acc[t], Mem{Base: accp2, Disp: 64 * t})
	}
	VZEROUPPER()
	RET()
	Label(name + "_final")
	dst := Load(Param("dst"), GP64())
	ldd := Load(Param("ldd"), GP64())
	d := GP64()
	MOVQ(dst, d)
	for t := range T {
		VMOVSS(hsum16(acc[t]), Mem{Base: d})
		if t+1 < T {
			ADDQ(ldd, d)
		}
	}
	VZEROUPPER()
	RET()
}
