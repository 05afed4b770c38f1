package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The avx512 level's IQ4_XS kernels, in sub-block lanes (lanes512.go).
// The weights are repacked once per matrix (repackIQ4_XS, 136 bytes a
// block as in the file): d at 0, the eight 6-bit sub-block scales ls_p at
// bits 16+6p of the block's first qword, the nibbles at 8 as repackQ4_K
// lays them out (slice j: qword p holds quants 8j..8j+7 of sub-block p).
// A nibble becomes its non-linear level plus 128 (VPSHUFB of a 16-entry
// table: unsigned, 1..241), so the integer sums start from −128·B_p
// (prepQ8_KIQ4, in lane 2p of sub-block p's two lanes); the lanes' scale
// is d·(ls_p − 32).

func genIQ4XSN() {
	var m0f, lut, ctl, m3f, m32 VecVirtual
	k := &laneKernel{name: "IQ4_XSAVX512", prep: "prepQ8_KIQ4", ref: "quant.dotIQ4_XSQ8_K", bb: 136,
		setup: func() {
			m0f = bcastDZ(0x0f0f0f0f)
			lut = ZMM()
			VMOVDQU64(iq4Levels128(), lut)
			// VPMULTISHIFTQB controls: byte 4l (dword lane l) takes the
			// bits of ls_{l/2}; the rest is masked away.
			c := make([]uint16, 32)
			for l := range 16 {
				c[2*l] = uint16(16 + 6*(l/2))
			}
			ctl = ZMM()
			VMOVDQU64(globl("iq4ScaleShift", c), ctl)
			m3f = bcastDZ(0x3f)
			m32 = bcastDZ(32)
		},
		row: func(w Mem) ([4]VecVirtual, VecVirtual, VecVirtual) {
			var W [4]VecVirtual
			for j := range W {
				src := w.Offset(8 + 64*(j/2))
				n := ZMM()
				if j%2 == 0 {
					VPANDD(src, m0f, n)
				} else {
					VPSRLW(U8(4), src, n)
					VPANDD(m0f, n, n)
				}
				W[j] = ZMM()
				VPSHUFB(n, lut, W[j])
			}
			q := ZMM()
			VPBROADCASTQ(w, q)
			s := ZMM()
			VPMULTISHIFTQB(q, ctl, s)
			VPANDD(m3f, s, s)
			VPSUBD(m32, s, s)
			VCVTDQ2PS(s, s)
			d := f16Load(w)
			dz := ZMM()
			VBROADCASTSS(d, dz)
			VMULPS(dz, s, s)
			return W, s, nil
		},
	}
	k.emitAll()
}

// iq4Levels128 is the VPSHUFB table of IQ4_NL's and IQ4_XS's sixteen
// non-linear levels plus 128, in every 128-bit lane.
func iq4Levels128() Mem {
	levels := [16]int{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}
	w := make([]uint16, 32)
	for i := range w {
		lo, hi := levels[(2*i)%16]+128, levels[(2*i+1)%16]+128
		w[i] = uint16(lo) | uint16(hi)<<8
	}
	return globl("iq4Levels128", w)
}
