package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// AVX-512 (F, BW, VL) + VNNI kernels. They may use any of the 32 vector
// registers, so they use only EVEX-encodable instructions (VMOVDQU64, not
// VMOVDQU; VINSERTI32X4, not VINSERTI128). VPDPBUSD sums four u8·s8 products
// straight into int32 lanes, with no int16 step to saturate: Q4_0 and Q8_0
// use it with the weights as the unsigned operand (Q8_0 shifted by +128,
// the shift taken back out as 128·Σy). The K-quants keep VPMADDUBSW for the
// byte products (their weights are small and unsigned) and fold the int16
// scale multiply and the accumulation into one VPDPWSSD. Accumulators are
// zmm. A VEX- or EVEX-encoded instruction writing an xmm or ymm clears the
// rest of the zmm, which the kernels use to feed 256-bit results into
// 512-bit sums.
//
// A Q4_K kernel in this style (VPMADDUBSW + VPERMW + VPDPWSSD per 64 quants)
// measured 5-9% slower than the AVX2 one in MatMul on Sapphire Rapids, where
// 512-bit work has two ports to 256-bit work's three and the per-super-block
// scale decoding is the same; Q4_K stays on AVX2 (see NOTES.md).

func genAVX512() {
	for _, rows := range []int{1, 4} {
		q4_0AVX512().emit(rows)
	}
	for _, rows := range []int{1, 4} {
		q8_0AVX512().emit(rows)
	}
	for _, rows := range []int{1, 4} {
		q6KAVX512().emit(rows)
	}
}

// globl emits read-only data once and returns its address.
var globls = map[string]Mem{}

func globl(name string, words []uint16) Mem {
	if m, ok := globls[name]; ok {
		return m
	}
	m := GLOBL(name, RODATA|NOPTR)
	for i, v := range words {
		DATA(2*i, U16(v))
	}
	globls[name] = m
	return m
}

func dwords(v ...uint32) []uint16 {
	var w []uint16
	for _, d := range v {
		w = append(w, uint16(d), uint16(d>>16))
	}
	return w
}

// pairF16 returns an xmm with fp16(*a) in lane 0 and, unless tail,
// fp16(*b) in lane 1 (else 0).
func pairF16(a, b Mem, tail bool) VecVirtual {
	g := GP32()
	MOVWLZX(a, g)
	if !tail {
		g2 := GP32()
		MOVWLZX(b, g2)
		SHLL(U8(16), g2)
		ORL(g2, g)
	}
	x := XMM()
	VMOVD(g, x)
	VCVTPH2PS(x, x)
	return x
}

type pairX struct {
	y, negc, dx VecVirtual
}

func q4_0AVX512() *blockKernel {
	var m0f, e8, perm VecVirtual
	permData := globl("q40Perm512", dwords(0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 0, 0, 1, 1, 1, 1))
	return &blockKernel{
		name: "dotQ4_0AVX512",
		doc: []string{"Q4_0 weights × Q8_0 activations (quant.dotQ4_0Q8_0), two blocks",
			"per zmm: 128-bit lanes hold block 0's low nibbles, block 1's low, block",
			"0's high, block 1's high; Σ q·y − 8·Σ y with VPDPBUSD."},
		wBytes: 18, xBytes: 34, pair: true, zmm: true,
		setup: func() {
			m0f = bcastDZ(0x0f0f0f0f)
			e8 = bcastDZ(0x08080808)
			perm = ZMM()
			VMOVDQU64(permData, perm)
		},
		loadX: func(x Mem, tail bool) any {
			v := pairX{ZMM(), ZMM(), pairF16(x, x.Offset(34), tail)}
			lo, hi := YMM(), YMM()
			VMOVDQU64(x.Offset(2), lo.AsX())
			VMOVDQU64(x.Offset(18), hi.AsX())
			if !tail {
				VINSERTI32X4(U8(1), x.Offset(36), lo, lo)
				VINSERTI32X4(U8(1), x.Offset(52), hi, hi)
			}
			VINSERTI64X4(U8(1), hi, lo.AsZ(), v.y)
			c := ZMM()
			VPXORD(c, c, c)
			VPDPBUSD(v.y, e8, c)
			VPXORD(v.negc, v.negc, v.negc)
			VPSUBD(c, v.negc, v.negc)
			return v
		},
		row: func(w Mem, xv any, acc VecVirtual, tail bool) {
			v := xv.(pairX)
			q := YMM()
			VMOVDQU64(w.Offset(2), q.AsX())
			if !tail {
				VINSERTI32X4(U8(1), w.Offset(20), q, q)
			}
			h := YMM()
			VPSRLW(U8(4), q, h)
			z := ZMM()
			VINSERTI64X4(U8(1), h, q.AsZ(), z)
			VPANDD(m0f, z, z)
			s := ZMM()
			VMOVDQA64(v.negc, s)
			VPDPBUSD(v.y, z, s)
			VCVTDQ2PS(s, s)
			d := pairF16(w, w.Offset(18), tail)
			VMULPS(v.dx, d, d)
			dz := ZMM()
			VPERMPS(d.AsZ(), perm, dz)
			VFMADD231PS(dz, s, acc)
		},
	}
}

func q8_0AVX512() *blockKernel {
	var m80, perm VecVirtual
	permData := globl("q80Perm512", dwords(0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1))
	return &blockKernel{
		name: "dotQ8_0AVX512",
		doc: []string{"Q8_0 weights × Q8_0 activations (quant.dotQ8_0Q8_0), two blocks",
			"per zmm: VPDPBUSD of (w+128) and y, minus 128·Σ y (also VPDPBUSD),",
			"exact for every byte value."},
		wBytes: 34, xBytes: 34, pair: true, zmm: true,
		setup: func() {
			m80 = bcastDZ(0x80808080)
			perm = ZMM()
			VMOVDQU64(permData, perm)
		},
		loadX: func(x Mem, tail bool) any {
			v := pairX{ZMM(), ZMM(), pairF16(x, x.Offset(34), tail)}
			VMOVDQU64(x.Offset(2), v.y.AsY())
			if !tail {
				VINSERTI64X4(U8(1), x.Offset(36), v.y, v.y)
			}
			c := ZMM()
			VPXORD(c, c, c)
			VPDPBUSD(v.y, m80, c)
			VPXORD(v.negc, v.negc, v.negc)
			VPSUBD(c, v.negc, v.negc)
			return v
		},
		row: func(w Mem, xv any, acc VecVirtual, tail bool) {
			v := xv.(pairX)
			z := ZMM()
			VMOVDQU64(w.Offset(2), z.AsY())
			if !tail {
				VINSERTI64X4(U8(1), w.Offset(36), z, z)
			}
			VPXORD(m80, z, z)
			s := ZMM()
			VMOVDQA64(v.negc, s)
			VPDPBUSD(v.y, z, s)
			VCVTDQ2PS(s, s)
			d := pairF16(w, w.Offset(34), tail)
			VMULPS(v.dx, d, d)
			dz := ZMM()
			VPERMPS(d.AsZ(), perm, dz)
			VFMADD231PS(dz, s, acc)
		},
	}
}

// wordIndex returns 32 words: word i is base + i/run.
func wordIndex(base, run int) []uint16 {
	w := make([]uint16, 32)
	for i := range w {
		w[i] = uint16(base + i/run)
	}
	return w
}

func q6KAVX512() *blockKernel {
	var m0f, m30, sh01, sh23 VecVirtual
	var idx [4]Mem
	for k := range idx {
		idx[k] = globl("q6kIdx512_"+string(rune('0'+k)), wordIndex(4*k, 8))
	}
	shl := globl("q6kShl512", append(wordIndex(4, 64)[:16], wordIndex(2, 64)[:16]...))
	shr := globl("q6kShr512", append(wordIndex(0, 64)[:16], wordIndex(2, 64)[:16]...))
	return &blockKernel{
		name: "dotQ6_KAVX512",
		doc: []string{"Q6_K weights × Q8_K activations (quant.dotQ6_KQ8_K): 64 quants per",
			"zmm (variable word shifts place the high bits), VPMADDUBSW with the",
			"activations, VPDPWSSD with the scales; the offset 32 through the bsums."},
		wBytes: 210, xBytes: 292, zmm: true,
		setup: func() {
			m0f = bcastDZ(0x0f0f0f0f)
			m30 = bcastDZ(0x30303030)
			sh01, sh23 = ZMM(), ZMM()
			VMOVDQU64(shl, sh01)
			VMOVDQU64(shr, sh23)
		},
		loadX: func(x Mem, _ bool) any { return x },
		row: func(w Mem, xv any, acc VecVirtual, _ bool) {
			x := xv.(Mem)
			s16 := ZMM()
			VPMOVSXBW(w.Offset(192), s16.AsY()) // VEX: upper half zero
			corr := YMM()
			VPMADDWD(x.Offset(260), s16.AsY(), corr)
			sumi := ZMM()
			VPXORD(sumi, sumi, sumi)
			for h := range 2 {
				ql := ZMM()
				VMOVDQU64(w.Offset(64*h), ql)
				qh := ZMM()
				VBROADCASTI64X4(w.Offset(128+32*h), qh)
				lo, hi := ZMM(), ZMM()
				VPANDD(m0f, ql, lo)
				VPSRLW(U8(4), ql, hi)
				VPANDD(m0f, hi, hi)
				h01, h23 := ZMM(), ZMM()
				VPSLLVW(sh01, qh, h01)
				VPSRLVW(sh23, qh, h23)
				VPTERNLOGD(U8(0xf8), m30, h01, lo) // lo |= h01 & 0x30
				VPTERNLOGD(U8(0xf8), m30, h23, hi)
				VPMADDUBSW(x.Offset(4+128*h), lo, lo)
				VPMADDUBSW(x.Offset(4+128*h+64), hi, hi)
				s := ZMM()
				VMOVDQU64(idx[2*h], s)
				VPERMW(s16, s, s)
				VPDPWSSD(s, lo, sumi)
				s2 := ZMM()
				VMOVDQU64(idx[2*h+1], s2)
				VPERMW(s16, s2, s2)
				VPDPWSSD(s2, hi, sumi)
			}
			VPSLLD(U8(5), corr, corr) // VEX: upper half zero
			VPSUBD(corr.AsZ(), sumi, sumi)
			d := f16Load(w.Offset(208))
			VMULSS(x, d, d)
			dd := ZMM()
			VBROADCASTSS(d, dd)
			VCVTDQ2PS(sumi, sumi)
			VFMADD231PS(dd, sumi, acc)
		},
	}
}
