package main

import (
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
	var m0f, m10 VecVirtual
	k := &laneKernel{name: "Q5_KAVX512", prep: "prepQ8_KQ5", ref: "quant.dotQ5_KQ8_K", bb: 176,
		setup: func() {
			m0f = bcastDZ(0x0f0f0f0f)
			m10 = bcastDZ(0x10101010)
		},
		row: func(w Mem) ([4]VecVirtual, VecVirtual, VecVirtual) {
			W := q5NWeights(w, m0f, m10)
			dsc, dmm := q5NRow(w)
			return W, dsc, dmm
		},
	}
	k.emitAll()
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
