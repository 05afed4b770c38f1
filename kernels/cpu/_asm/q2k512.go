package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The avx512 level's Q2_K kernels, in sub-block lanes (lanes512.go): lane
// l is sub-block l (16 quants). The weights are repacked once per matrix
// (repackQ2_K, 84 bytes a block as in the file): at 0 the 2-bit quants,
// byte 4l+i holding in bits 2j..2j+1 quant 16l+4j+i (slice j), then the
// sixteen scale bytes (scale in the low nibble, min in the high) and d,
// dmin as they are. Per lane the scale is d·sc_l and the min term
// dmin·m_l·(dx·B_l), dx·B_l as prepQ8_KQ2 stores it.

func genQ2KN() {
	var m03, m0f VecVirtual
	k := &laneKernel{name: "Q2_KAVX512", prep: "prepQ8_KQ2", ref: "quant.dotQ2_KQ8_K", bb: 84,
		setup: func() {
			m03 = bcastDZ(0x03030303)
			m0f = bcastDZ(0x0000000f)
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
			}
			sc := ZMM()
			VPMOVZXBD(w.Offset(64), sc)
			dsc, dmm := ZMM(), ZMM()
			VPANDD(m0f, sc, dsc)
			VPSRLD(U8(4), sc, dmm)
			VCVTDQ2PS(dsc, dsc)
			VCVTDQ2PS(dmm, dmm)
			h := XMM()
			VMOVD(w.Offset(80), h) // d, dmin: the block's last four bytes
			VCVTPH2PS(h, h)
			dd, dm := ZMM(), ZMM()
			VBROADCASTSS(h, dd)
			VMOVSHDUP(h, h)
			VBROADCASTSS(h, dm)
			VMULPS(dd, dsc, dsc)
			VMULPS(dm, dmm, dmm)
			return W, dsc, dmm
		},
	}
	k.emitAll()
}
