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
// the shift taken back out as 128·Σy), in block lanes (gemm512.go). The
// K-quants keep VPMADDUBSW for the byte products (their weights are small
// and unsigned) and fold the int16 scale multiply and the accumulation into
// one VPDPWSSD. Accumulators are zmm. A VEX- or EVEX-encoded instruction
// writing an xmm or ymm clears the rest of the zmm, which the kernels use to
// feed 256-bit results into 512-bit sums.
//
// A first one-row Q4_K kernel in this style (VPMADDUBSW + VPERMW + VPDPWSSD
// per 64 quants, on the unaligned Q8_K activations, with the AVX2 kernel's
// scalar scale decoding) was slower than the AVX2 one; the Q4_K decode
// kernels of this level (q4k512.go) decode the scales of four rows in one
// zmm and read padded activations, and the tiles (gemmk.go) decode them once
// for up to 16 tokens, all with the AVX2 kernel's numerics (see NOTES.md).

func genAVX512() {
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
