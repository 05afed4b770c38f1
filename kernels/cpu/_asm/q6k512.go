package main

import (
	"fmt"

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

// q6nBlock is prepQ8_KQ6's block: the quants at 0, −32·B_l as sixteen int32
// at 256, d at 320.
const q6nBlock = 384

func genQ6KN() {
	q6KDecodeN(1)
	q6KDecodeN(4)
	for _, T := range []int{16, 8, 4, 2, 1} {
		q6KTileN(T)
	}
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

// q6NToken adds one token's super-block (activations at x(disp)) to acc.
func q6NToken(W [4]VecVirtual, dsc VecVirtual, x func(disp int) Mem, acc VecVirtual) {
	s := ZMM()
	VMOVDQU64(x(256), s)
	for j := range W {
		VPDPBUSD(x(64*j), W[j], s)
	}
	VCVTDQ2PS(s, s)
	v := ZMM()
	VMULPS_BCST(x(320), dsc, v)
	VFMADD231PS(v, s, acc)
}

// q6KDecodeN emits dotQ6_KAVX512 (rows = 1),
//
//	func(w, x *byte, nb int) float32
//
// or dotQ6_KAVX512x4 (rows = 4),
//
//	func(w *byte, stride int, x *byte, nb int, dst *[4]float32)
//
// with w repacked by repackQ6_K and x laid out by prepQ8_KQ6.
func q6KDecodeN(rows int) {
	name := "dotQ6_KAVX512"
	if rows == 1 {
		TEXT(name, NOSPLIT, "func(w, x *byte, nb int) float32")
	} else {
		name += "x4"
		TEXT(name, NOSPLIT, "func(w *byte, stride int, x *byte, nb int, dst *[4]float32)")
	}
	Doc(name+" is the dot product of nb blocks of Q6_K weights (repackQ6_K) with",
		"Q8_K activations laid out by prepQ8_KQ6 (quant.dotQ6_KQ8_K), in the avx512",
		"level's Q6_K numerics; "+map[bool]string{true: "one row.", false: "rows w + r·stride, r = 0..3."}[rows == 1])
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
	m30 := bcastDZ(0x30303030)
	acc := make([]VecVirtual, rows)
	for r := range acc {
		acc[r] = ZMM()
		VPXORD(m0f, m0f, acc[r])
	}
	loop(name, nb, func() {
		if rows > 1 {
			prefetchNext(pf, 4*210)
		}
		xm := Mem{Base: x}
		for r := range rows {
			wm := Mem{Base: wp[r]}
			W := q6NWeights(wm, m0f, m30)
			q6NToken(W, q6NScales(wm), xm.Offset, acc[r])
		}
		for r := range rows {
			ADDQ(U32(210), wp[r])
		}
		ADDQ(U32(q6nBlock), x)
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

// q6KTileN emits gemmQ6_KAVX512x<T> (the signature of the block-lanes
// tiles; the acc area holds each token's sixteen lanes). The accumulators
// stay in registers for the whole row.
func q6KTileN(T int) {
	name := fmt.Sprintf("gemmQ6_KAVX512x%d", T)
	attr := NOSPLIT
	if 64*T > 512 {
		attr = 0 // the frame exceeds the nosplit limit
	}
	TEXT(name, attr, "func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)")
	Doc(name+fmt.Sprintf(" is the dot product of one weight row with %d tokens:", T),
		"Q6_K weights (repackQ6_K) × Q8_K activations laid out by prepQ8_KQ6, in",
		"the avx512 level's Q6_K numerics (dotQ6_KAVX512's bits per token).")
	w := Load(Param("w"), GP64())
	nb := Load(Param("nb"), GP64())
	xt := newTokAddr(T)
	loc := AllocLocal(64 * T)
	m0f := bcastDZ(0x0f0f0f0f)
	m30 := bcastDZ(0x30303030)

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
			for o := 0; o < 210; o += 64 {
				PREFETCHT0(wm.Offset(rowPrefetch + o))
			}
		}
		W := q6NWeights(wm, m0f, m30)
		dsc := q6NScales(wm)
		for t := range T {
			q6NToken(W, dsc, func(disp int) Mem { return xt.at(t, disp) }, acc[t])
		}
		ADDQ(U32(210), w)
		xt.advance(q6nBlock)
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
