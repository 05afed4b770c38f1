package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// AVX2 (+FMA, F16C) kernels. Byte products use VPMADDUBSW, which needs one
// unsigned operand and saturates its int16 pair sums: the weights are
// always the unsigned operand here (nibbles 0..15, 6-bit values 0..63), so
// no pair sum can exceed 2·63·128 and nothing saturates, whatever the
// activation bytes (-128 included). Offsets (-8, -16, -32) are subtracted as
// separate exact terms. IQ4_NL, whose weights are signed bytes, widens
// both operands to int16 and uses VPMADDWD instead. Q4_0 and Q8_0 are in
// gemm2.go (block lanes).

func genAVX2() {
	q4KAVX2(false).emit(1)
	q4KAVX2(false).emit(4)
	q6KAVX2().emit(1)
	q6KAVX2().emit(4)
	genAVX2More()
	genAVX2K()
}

// f16Bcast returns a ymm with fp16(*w) * dx[0] in every lane.
func f16Bcast(w Mem, dx VecVirtual) VecVirtual {
	g := GP32()
	MOVWLZX(w, g)
	d := XMM()
	VMOVD(g, d)
	VCVTPH2PS(d, d)
	VMULSS(dx, d, d)
	y := YMM()
	VBROADCASTSS(d, y)
	return y
}

// f16Load returns an xmm whose lane 0 is fp16(*m).
func f16Load(m Mem) VecVirtual {
	g := GP32()
	MOVWLZX(m, g)
	d := XMM()
	VMOVD(g, d)
	VCVTPH2PS(d, d)
	return d
}

// q4_0X and q8_0X are the activation side of the Q5_0 and IQ4_NL kernels.
type q4_0X struct {
	y, c, dx VecVirtual
}

type q8_0X struct {
	y0, y1, dx VecVirtual
}

// k4Scales unpacks the twelve scale bytes of a Q4_K/Q5_K block at s into the
// eight 6-bit scales (returned as a qword in sc) and the eight mins (mn),
// as ggml's get_scale_min_k4 does for each sub-block.
func k4Scales(s Mem) (sc, mn Register) {
	u0, u1, u2 := GP64(), GP64(), GP64()
	MOVL(s, u0.As32())
	MOVL(s.Offset(4), u1.As32())
	MOVL(s.Offset(8), u2.As32())
	t := GP64()
	// mins 4..7: (u2>>4)&0x0f0f0f0f | ((u1>>6)&0x03030303)<<4
	mhi := GP64()
	MOVL(u2.As32(), mhi.As32())
	SHRL(U8(4), mhi.As32())
	ANDL(U32(0x0f0f0f0f), mhi.As32())
	MOVL(u1.As32(), t.As32())
	SHRL(U8(6), t.As32())
	ANDL(U32(0x03030303), t.As32())
	SHLL(U8(4), t.As32())
	ORL(t.As32(), mhi.As32())
	// scales 4..7: u2&0x0f0f0f0f | ((u0>>6)&0x03030303)<<4
	ANDL(U32(0x0f0f0f0f), u2.As32())
	MOVL(u0.As32(), t.As32())
	SHRL(U8(6), t.As32())
	ANDL(U32(0x03030303), t.As32())
	SHLL(U8(4), t.As32())
	ORL(t.As32(), u2.As32())
	// scales 0..3 and mins 0..3: the low six bits of u0 and u1.
	ANDL(U32(0x3f3f3f3f), u0.As32())
	ANDL(U32(0x3f3f3f3f), u1.As32())
	SHLQ(U8(32), u2)
	ORQ(u2, u0)
	SHLQ(U8(32), mhi)
	ORQ(mhi, u1)
	return u0, u1
}

// kScales returns [x.d·fp16(w[0]), x.d·fp16(w[2])] in lanes 0 and 1 of an
// xmm: the super-block scale and min scale of Q4_K/Q5_K/Q2_K-like layouts
// with d at byte off and dmin at off+2 of w.
func kScales(w Mem, off int, x Mem) VecVirtual {
	g := GP32()
	MOVL(w.Offset(off), g)
	d := XMM()
	VMOVD(g, d)
	VCVTPH2PS(d, d)
	yd := XMM()
	VBROADCASTSS(x, yd)
	VMULPS(yd, d, d)
	return d
}

// q4KAVX2 is Q4_K × Q8_K, or with five Q5_K × Q8_K (a fifth bit per
// quant from qh, quants from byte 48).
func q4KAVX2(five bool) *blockKernel {
	var m0f, m01 VecVirtual
	var local Mem
	name, wb, qs := "dotQ4_KAVX2", 144, 16
	if five {
		name, wb, qs = "dotQ5_KAVX2", 176, 48
	}
	return &blockKernel{
		name: name,
		doc: []string{"Q4_K (Q5_K) weights × Q8_K activations (quant.dotQ4_KQ8_K,",
			"quant.dotQ5_KQ8_K). Per sub-block of 32: VPMADDUBSW of the 4-bit (5-bit)",
			"quants with the activations, VPMADDWD with the 6-bit scale; the mins",
			"enter through the activation group sums (bsums), one VPMADDWD per",
			"super-block."},
		wBytes: wb, xBytes: 292,
		setup: func() {
			m0f = bcastD(0x0f0f0f0f)
			if five {
				m01 = bcastD(0x01010101)
			}
			local = AllocLocal(32)
		},
		loadX: func(x Mem, _ bool) any { return x },
		row: func(w Mem, xv any, acc VecVirtual, _ bool) {
			x := xv.(Mem)
			sc, mn := k4Scales(w.Offset(4))
			// Scales as (s, s) int16 pairs on the stack, one dword each.
			s8 := XMM()
			VMOVQ(sc, s8)
			VPMOVZXBW(s8, s8)
			s2 := XMM()
			VPUNPCKLWD(s8, s8, s2)
			VMOVDQU(s2, local)
			VPUNPCKHWD(s8, s8, s2)
			VMOVDQU(s2, local.Offset(16))
			// Mins: m_j · (bsum[2j] + bsum[2j+1]).
			m8 := XMM()
			VMOVQ(mn, m8)
			VPMOVZXBW(m8, m8)
			mlo, mhi := XMM(), XMM()
			VPUNPCKLWD(m8, m8, mlo)
			VPUNPCKHWD(m8, m8, mhi)
			mm := YMM()
			VINSERTI128(U8(1), mhi, mlo.AsY(), mm)
			VPMADDWD(x.Offset(260), mm, mm)
			sumi := YMM()
			var qh VecVirtual
			if five {
				qh = YMM()
				VMOVDQU(w.Offset(16), qh)
			}
			for j := range 4 {
				q := YMM()
				VMOVDQU(w.Offset(qs+32*j), q)
				hi := YMM()
				VPSRLW(U8(4), q, hi)
				VPAND(m0f, q, q)
				VPAND(m0f, hi, hi)
				if five { // bit 2j of qh[l] tops element 64j+l, bit 2j+1 element 64j+32+l
					b := YMM()
					VPAND(m01, qh, b)
					VPSLLW(U8(4), b, b)
					VPOR(b, q, q)
					VPSRLW(U8(1), qh, qh)
					VPAND(m01, qh, b)
					VPSLLW(U8(4), b, b)
					VPOR(b, hi, hi)
					if j < 3 {
						VPSRLW(U8(1), qh, qh)
					}
				}
				VPMADDUBSW(x.Offset(4+64*j), q, q)
				VPMADDUBSW(x.Offset(4+64*j+32), hi, hi)
				s := YMM()
				VPBROADCASTD(local.Offset(8*j), s)
				VPMADDWD(s, q, q)
				VPBROADCASTD(local.Offset(8*j+4), s)
				VPMADDWD(s, hi, hi)
				if j == 0 {
					VPADDD(hi, q, sumi)
				} else {
					VPADDD(q, sumi, sumi)
					VPADDD(hi, sumi, sumi)
				}
			}
			d := kScales(w, 0, x)
			dd, dm := YMM(), YMM()
			VBROADCASTSS(d, dd)
			VMOVSHDUP(d, d)
			VBROADCASTSS(d, dm)
			VCVTDQ2PS(sumi, sumi)
			VFMADD231PS(dd, sumi, acc)
			VCVTDQ2PS(mm, mm)
			VFNMADD231PS(dm, mm, acc)
		},
	}
}

// q6KScaleMasks are VPSHUFB masks: mask k picks int16 word k of each
// 128-bit lane into all eight words of that lane.
var q6KScaleMasks Mem

func q6KMaskData() Mem {
	if q6KScaleMasks.Symbol.Name != "" {
		return q6KScaleMasks
	}
	q6KScaleMasks = GLOBL("q6kScaleMasks", RODATA|NOPTR)
	for k := range 8 {
		for b := range 32 {
			DATA(32*k+b, U8(2*k+b%2))
		}
	}
	// Even scales to the low eight bytes, odd ones to the high eight.
	for b := range 16 {
		DATA(256+b, U8(2*(b%8)+b/8))
	}
	return q6KScaleMasks
}

func q6KAVX2() *blockKernel {
	var m0f, m30, evenOdd VecVirtual
	masks := q6KMaskData()
	return &blockKernel{
		name: "dotQ6_KAVX2",
		doc: []string{"Q6_K weights × Q8_K activations (quant.dotQ6_KQ8_K).",
			"The 6-bit quants q are the unsigned VPMADDUBSW operand; the offset 32",
			"comes in once per super-block as 32·Σ scale·bsum (VPMADDWD)."},
		wBytes: 210, xBytes: 292,
		setup: func() {
			m0f = bcastD(0x0f0f0f0f)
			m30 = bcastD(0x30303030)
			evenOdd = XMM()
			VMOVDQU(masks.Offset(256), evenOdd)
		},
		loadX: func(x Mem, _ bool) any { return x },
		row: func(w Mem, xv any, acc VecVirtual, _ bool) {
			x := xv.(Mem)
			// S: scales as int16, even ones in the low lane, odd in the high.
			S := YMM()
			s8 := XMM()
			VMOVDQU(w.Offset(192), s8)
			VPSHUFB(evenOdd, s8, s8)
			VPMOVSXBW(s8, S)
			// corr = Σ scale·bsum per pair of groups.
			corr := YMM()
			VPMOVSXBW(w.Offset(192), corr)
			VPMADDWD(x.Offset(260), corr, corr)
			sumi := YMM()
			for h := range 2 {
				ql0, ql1, qh := YMM(), YMM(), YMM()
				VMOVDQU(w.Offset(64*h), ql0)
				VMOVDQU(w.Offset(64*h+32), ql1)
				VMOVDQU(w.Offset(128+32*h), qh)
				for g := range 4 {
					q, hb := YMM(), YMM()
					switch g {
					case 0:
						VPAND(m0f, ql0, q)
						VPSLLW(U8(4), qh, hb)
					case 1:
						VPAND(m0f, ql1, q)
						VPSLLW(U8(2), qh, hb)
					case 2:
						VPSRLW(U8(4), ql0, q)
						VPAND(m0f, q, q)
						VMOVDQA(qh, hb)
					case 3:
						VPSRLW(U8(4), ql1, q)
						VPAND(m0f, q, q)
						VPSRLW(U8(2), qh, hb)
					}
					VPAND(m30, hb, hb)
					VPOR(hb, q, q)
					VPMADDUBSW(x.Offset(4+128*h+32*g), q, q)
					s := YMM()
					VPSHUFB(masks.Offset(32*(4*h+g)), S, s)
					VPMADDWD(s, q, q)
					if h == 0 && g == 0 {
						VMOVDQA(q, sumi)
					} else {
						VPADDD(q, sumi, sumi)
					}
				}
			}
			VPSLLD(U8(5), corr, corr)
			VPSUBD(corr, sumi, sumi)
			d := f16Load(w.Offset(208))
			VMULSS(x, d, d)
			dd := YMM()
			VBROADCASTSS(d, dd)
			VCVTDQ2PS(sumi, sumi)
			VFMADD231PS(dd, sumi, acc)
		},
	}
}
