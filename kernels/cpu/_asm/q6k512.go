package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The avx512 level's Q6_K numerics (decode kernels dotQ6_KAVX512/x4 and the
// tiles gemmQ6_KAVX512x<T>, bit for bit the same per row and token). Per
// super-block and token, for each of the sixteen 16-quant sub-blocks l in
// float32 lane l:
//
//   - S_l = Σ_{i∈l} q_i·x_i − 32·B_l, an exact integer (q the unsigned
//     6-bit quants, B_l the Q8_K group sum), |S_l| < 2^18;
//   - acc_l += float(S_l) · ((d·float(sc_l)) · dx) (one multiply, one FMA);
//
// and at the end the sixteen lanes reduced as hsum16 does.
//
// The integer sums: the activations are laid out by prepQ8_KQ6 so that
// 64-byte slice j holds, in dword l, quants 4j..4j+3 of sub-block l, and
// the weights come in the same order (repackQ6_K, once per matrix): so four
// VPDPBUSD (u8 quants × s8 activations) accumulate every sub-block in its
// own dword lane, starting from the −32·B_l that prepQ8_KQ6 stores, with no
// scale in between: 4 multiplies per 256 quants and token and three float
// operations, against dotQ6_KAVX2's 4 VPMADDUBSW + 4 VPDPWSSD + a VPMADDWD
// for the bias and three. The scales go to float once per row and
// super-block. The repacked block (210 bytes, as the file's): at 0 the low
// nibbles of slices 0 (low) and 1 (high), at 64 those of slices 2 and 3, at
// 128 the high two bits of slice j in bits 2j..2j+1, the scales at 192, d
// at 208.

func genQ6KN() {
	var m0f, m30 VecVirtual
	k := &laneKernel{name: "Q6_KAVX512", prep: "prepQ8_KQ6", ref: "quant.dotQ6_KQ8_K", bb: 210,
		setup: func() {
			m0f = bcastDZ(0x0f0f0f0f)
			m30 = bcastDZ(0x30303030)
		},
		row: func(w Mem) ([4]VecVirtual, VecVirtual, VecVirtual) {
			return q6NWeights(w, m0f, m30), q6NScales(w), nil
		},
	}
	k.emitAll()
}

// q6NWeights returns the four slices of the repacked Q6_K block at w as
// bytes 0..63: a nibble, the high bits moved to bits 4 and 5 (word shifts:
// what crosses a byte is masked away), one VPTERNLOGD to merge.
func q6NWeights(w Mem, m0f, m30 VecVirtual) [4]VecVirtual {
	var W [4]VecVirtual
	h := ZMM()
	VMOVDQU64(w.Offset(128), h)
	for j := range W {
		hb := h
		switch j {
		case 0:
			hb = ZMM()
			VPSLLW(U8(4), h, hb)
		case 1:
			hb = ZMM()
			VPSLLW(U8(2), h, hb)
		case 3:
			hb = ZMM()
			VPSRLW(U8(2), h, hb)
		}
		src := w.Offset(64 * (j / 2))
		W[j] = ZMM()
		if j%2 == 0 {
			VPANDD(src, m0f, W[j])
		} else {
			VPSRLW(U8(4), src, W[j])
			VPANDD(m0f, W[j], W[j])
		}
		VPTERNLOGD(U8(0xf8), m30, hb, W[j]) // W |= hb & 0x30
	}
	return W
}

// q6NScales returns d·float(sc_l) in lane l for the Q6_K block at w.
func q6NScales(w Mem) VecVirtual {
	s := ZMM()
	VPMOVSXBD(w.Offset(192), s)
	VCVTDQ2PS(s, s)
	d := f16Load(w.Offset(208))
	dz := ZMM()
	VBROADCASTSS(d, dz)
	VMULPS(dz, s, s)
	return s
}
