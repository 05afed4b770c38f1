package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// AVX2 kernels of the low-bit K-quants (Q2_K, Q3_K) and IQ4_XS.

func genAVX2K() {
	for _, rows := range []int{1, 4} {
		q2KAVX2().emit(rows)
		q3KAVX2().emit(rows)
		iq4xsAVX2().emit(rows)
	}
}

// evenOddScales returns the sixteen int16 scales in s8 (bytes) as a ymm
// with the even ones in the low lane and the odd ones in the high lane, for
// selection with the q6KScaleMasks; signed says whether to sign-extend.
func evenOddScales(s8, evenOdd VecVirtual, signed bool) VecVirtual {
	t := XMM()
	VPSHUFB(evenOdd, s8, t)
	S := YMM()
	if signed {
		VPMOVSXBW(t, S)
	} else {
		VPMOVZXBW(t, S)
	}
	return S
}

// q2KAVX2: per 16 elements scale·Σ q·y, q the 2-bit quants; the mins through
// the bsums. The group of 32 elements at shift s of half h has its two scales
// at 8h+2s and 8h+2s+1, as Q6_K's groups do, so Q6_K's masks select them.
func q2KAVX2() *blockKernel {
	var m03, m0f, evenOdd VecVirtual
	masks := q6KMaskData()
	return &blockKernel{
		name:   "dotQ2_KAVX2",
		doc:    []string{"Q2_K weights × Q8_K activations (quant.dotQ2_KQ8_K)."},
		wBytes: 84, xBytes: 292,
		setup: func() {
			m03 = bcastD(0x03030303)
			m0f = bcastD(0x0f0f0f0f)
			evenOdd = XMM()
			VMOVDQU(masks.Offset(256), evenOdd)
		},
		loadX: func(x Mem, _ bool) any { return x },
		row: func(w Mem, xv any, acc VecVirtual, _ bool) {
			x := xv.(Mem)
			raw := XMM()
			VMOVDQU(w, raw)
			sc := XMM()
			VPAND(m0f.AsX(), raw, sc)
			S := evenOddScales(sc, evenOdd, false)
			mins := XMM()
			VPSRLW(U8(4), raw, mins)
			VPAND(m0f.AsX(), mins, mins)
			mw := YMM()
			VPMOVZXBW(mins, mw)
			VPMADDWD(x.Offset(260), mw, mw) // Σ min·bsum, pairwise
			sumi := YMM()
			for h := range 2 {
				qb := YMM()
				VMOVDQU(w.Offset(16+32*h), qb)
				for s := range 4 {
					q := YMM()
					if s == 0 {
						VPAND(m03, qb, q)
					} else {
						VPSRLW(U8(2*s), qb, q)
						VPAND(m03, q, q)
					}
					VPMADDUBSW(x.Offset(4+128*h+32*s), q, q)
					sv := YMM()
					VPSHUFB(masks.Offset(32*(4*h+s)), S, sv)
					VPMADDWD(sv, q, q)
					if h == 0 && s == 0 {
						VMOVDQA(q, sumi)
					} else {
						VPADDD(q, sumi, sumi)
					}
				}
			}
			d := kScales(w, 80, x)
			dd, dm := YMM(), YMM()
			VBROADCASTSS(d, dd)
			VMOVSHDUP(d, d)
			VBROADCASTSS(d, dm)
			VCVTDQ2PS(sumi, sumi)
			VFMADD231PS(dd, sumi, acc)
			VCVTDQ2PS(mw, mw)
			VFNMADD231PS(dm, mw, acc)
		},
	}
}

// q3KScales decodes the twelve scale bytes at s into sixteen bytes (the
// 6-bit values, still offset by 32) in an xmm, in order.
func q3KScales(s Mem) VecVirtual {
	a0, a1, a2 := GP64(), GP64(), GP64()
	MOVL(s, a0.As32())
	MOVL(s.Offset(4), a1.As32())
	MOVL(s.Offset(8), a2.As32())
	part := func(lo GPVirtual, loShift int, hiShift int) GPVirtual {
		r, t := GP64(), GP64()
		MOVL(lo.As32(), r.As32())
		if loShift > 0 {
			SHRL(U8(loShift), r.As32())
		}
		ANDL(U32(0x0f0f0f0f), r.As32())
		MOVL(a2.As32(), t.As32())
		if hiShift > 0 {
			SHRL(U8(hiShift), t.As32())
		}
		ANDL(U32(0x03030303), t.As32())
		SHLL(U8(4), t.As32())
		ORL(t.As32(), r.As32())
		return r
	}
	s0 := part(a0, 0, 0)
	s1 := part(a1, 0, 2)
	s2 := part(a0, 4, 4)
	s3 := part(a1, 4, 6)
	SHLQ(U8(32), s1)
	ORQ(s1, s0)
	SHLQ(U8(32), s3)
	ORQ(s3, s2)
	x := XMM()
	VMOVQ(s0, x)
	VPINSRQ(U8(1), s2, x, x)
	return x
}

// q3KAVX2: q3 = q2 + 4·hbit − 4: the unsigned q2 + 4·hbit (0..7) goes to
// VPMADDUBSW and the −4 comes in as 4·Σ scale·bsum.
func q3KAVX2() *blockKernel {
	var m03, m01, c32, evenOdd VecVirtual
	masks := q6KMaskData()
	return &blockKernel{
		name:   "dotQ3_KAVX2",
		doc:    []string{"Q3_K weights × Q8_K activations (quant.dotQ3_KQ8_K)."},
		wBytes: 110, xBytes: 292,
		setup: func() {
			m03 = bcastD(0x03030303)
			m01 = bcastD(0x01010101)
			c32 = bcastD(0x20202020)
			evenOdd = XMM()
			VMOVDQU(masks.Offset(256), evenOdd)
		},
		loadX: func(x Mem, _ bool) any { return x },
		row: func(w Mem, xv any, acc VecVirtual, _ bool) {
			x := xv.(Mem)
			sc := q3KScales(w.Offset(96))
			VPSUBB(c32.AsX(), sc, sc)
			S := evenOddScales(sc, evenOdd, true)
			corr := YMM()
			VPMOVSXBW(sc, corr)
			VPMADDWD(x.Offset(260), corr, corr)
			hm := YMM()
			VMOVDQU(w, hm)
			sumi := YMM()
			for h := range 2 {
				qb := YMM()
				VMOVDQU(w.Offset(32+32*h), qb)
				for s := range 4 {
					q := YMM()
					if s == 0 {
						VPAND(m03, qb, q)
					} else {
						VPSRLW(U8(2*s), qb, q)
						VPAND(m03, q, q)
					}
					hb := YMM()
					VPAND(m01, hm, hb)
					VPSLLW(U8(2), hb, hb)
					VPOR(hb, q, q)
					if h < 1 || s < 3 {
						VPSRLW(U8(1), hm, hm)
					}
					VPMADDUBSW(x.Offset(4+128*h+32*s), q, q)
					sv := YMM()
					VPSHUFB(masks.Offset(32*(4*h+s)), S, sv)
					VPMADDWD(sv, q, q)
					if h == 0 && s == 0 {
						VMOVDQA(q, sumi)
					} else {
						VPADDD(q, sumi, sumi)
					}
				}
			}
			VPSLLD(U8(2), corr, corr)
			VPSUBD(corr, sumi, sumi)
			d := f16Load(w.Offset(108))
			VMULSS(x, d, d)
			dd := YMM()
			VBROADCASTSS(d, dd)
			VCVTDQ2PS(sumi, sumi)
			VFMADD231PS(dd, sumi, acc)
		},
	}
}

// iq4xsAVX2: per sub-block of 32, the levels (VPSHUFB) widened to int16 and
// VPMADDWD with the widened activations, times the 6-bit scale − 32
// (VPMULLD), summed over the super-block.
func iq4xsAVX2() *blockKernel {
	var m0f, kv VecVirtual
	return &blockKernel{
		name:   "dotIQ4_XSAVX2",
		doc:    []string{"IQ4_XS weights × Q8_K activations (quant.dotIQ4_XSQ8_K)."},
		wBytes: 136, xBytes: 292,
		setup: func() {
			if kvaluesData.Symbol.Name == "" {
				panic("iq4xsAVX2 needs iq4nlAVX2's table first")
			}
			m0f = bcastD(0x0f0f0f0f)
			kv = XMM()
			VMOVDQU(kvaluesData, kv)
		},
		loadX: func(x Mem, _ bool) any { return x },
		row: func(w Mem, xv any, acc VecVirtual, _ bool) {
			x := xv.(Mem)
			sh := GP32()
			MOVWLZX(w.Offset(2), sh)
			sumi := YMM()
			for ib := range 8 {
				q := XMM()
				VMOVDQU(w.Offset(8+16*ib), q)
				h := XMM()
				VPSRLW(U8(4), q, h)
				VPAND(m0f.AsX(), q, q)
				VPAND(m0f.AsX(), h, h)
				VPSHUFB(q, kv, q)
				VPSHUFB(h, kv, h)
				a0, a1 := YMM(), YMM()
				VPMOVSXBW(q, a0)
				VPMOVSXBW(h, a1)
				y := YMM()
				VPMOVSXBW(x.Offset(4+32*ib), y)
				VPMADDWD(y, a0, a0)
				VPMOVSXBW(x.Offset(4+32*ib+16), y)
				VPMADDWD(y, a1, a1)
				VPADDD(a1, a0, a0)
				// scale = (scales_l[ib/2] >> 4(ib%2)) & 15 | ((scales_h >> 2ib) & 3) << 4, − 32
				g, t := GP32(), GP32()
				MOVBLZX(w.Offset(4+ib/2), g)
				if ib%2 == 1 {
					SHRL(U8(4), g)
				}
				ANDL(U32(15), g)
				MOVL(sh, t)
				if ib > 0 {
					SHRL(U8(2*ib), t)
				}
				ANDL(U32(3), t)
				SHLL(U8(4), t)
				ORL(t, g)
				SUBL(U32(32), g)
				sv := XMM()
				VMOVD(g, sv)
				svy := YMM()
				VPBROADCASTD(sv, svy)
				VPMULLD(svy, a0, a0)
				if ib == 0 {
					VMOVDQA(a0, sumi)
				} else {
					VPADDD(a0, sumi, sumi)
				}
			}
			d := f16Load(w)
			VMULSS(x, d, d)
			dd := YMM()
			VBROADCASTSS(d, dd)
			VCVTDQ2PS(sumi, sumi)
			VFMADD231PS(dd, sumi, acc)
		},
	}
}
