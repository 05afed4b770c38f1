package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The avx512 level's Q3_K kernels, in sub-block lanes (lanes512.go): lane
// l is sub-block l (16 quants). The weights are repacked once per matrix
// (repackQ3_K, 110 bytes a block as in the file): at 0 the low 2 bits as
// repackQ2_K lays them out, at 64 the high bits of slice j as the 64-bit
// mask at 64+8j (bit k for byte k), at 96 the sixteen 6-bit scales
// (stored +32) at bits 6p of the 48-bit fields at 96 (scales 0..7) and
// 102 (8..15), d at 108. A quant is q2 + 4·h − 4: the kernels multiply
// q2 + 4·h (unsigned) and start from −4·B_l (prepQ8_KQ3); the lane's scale
// is d·(sc_l − 32).

func genQ3KN() {
	var m03, m04, ctl, m3f, m32 VecVirtual
	k := &laneKernel{name: "Q3_KAVX512", prep: "prepQ8_KQ3", ref: "quant.dotQ3_KQ8_K", bb: 110,
		setup: func() {
			m03 = bcastDZ(0x03030303)
			m04 = bcastDZ(0x04040404)
			c := make([]uint16, 32)
			for l := range 16 {
				c[2*l] = uint16(6 * (l % 8))
			}
			ctl = ZMM()
			VMOVDQU64(globl("q3ScaleShift", c), ctl)
			m3f = bcastDZ(0x3f)
			m32 = bcastDZ(32)
		},
		row: func(w Mem) ([4]VecVirtual, VecVirtual, VecVirtual) {
			var W [4]VecVirtual
			for j := range W {
				W[j] = ZMM()
				if j == 0 {
					VPANDD(w, m03, W[j])
				} else {
					VPSRLW(U8(2*j), w, W[j])
					VPANDD(m03, W[j], W[j])
				}
				h := K()
				KMOVQ(w.Offset(64+8*j), h)
				VPADDB(m04, W[j], h, W[j]) // +4 where the high bit is set
			}
			a := ZMM()
			VPBROADCASTQ(w.Offset(96), a)
			b := YMM()
			VPBROADCASTQ(w.Offset(102), b)
			VINSERTI64X4(U8(1), b, a, a) // scales 0..7 in qwords 0..3, 8..15 in 4..7
			s := ZMM()
			VPMULTISHIFTQB(a, ctl, s)
			VPANDD(m3f, s, s)
			VPSUBD(m32, s, s)
			VCVTDQ2PS(s, s)
			d := f16Load(w.Offset(108))
			dz := ZMM()
			VBROADCASTSS(d, dz)
			VMULPS(dz, s, s)
			return W, s, nil
		},
	}
	k.emitAll()
}
