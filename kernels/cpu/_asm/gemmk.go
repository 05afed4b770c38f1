package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// AVX2 tile kernels of the K-quants (Q4_K, Q6_K × Q8_K; the avx512 level's
// are in q4k512.go and q6k512.go): one weight row against T tokens, in the
// float order of the level's one-row kernel (q4KAVX2, q6KAVX2): the same exact integer sums per super-block in the
// same accumulator lanes, the same scale products, the same fused
// multiply-adds in the same order, the same final reduction. What a tile
// saves is the per-row work of a super-block — scale decoding, nibble and
// 6-bit unpacking, scale vectors — done once for T tokens. The per-token
// accumulators live in a stack area (one load and one store per
// super-block); the activations are the Q8_K rows as QuantizeAct makes
// them, token t's at x + t·xs.

func genGemmK() {
	for _, T := range []int{8, 4, 2, 1} {
		q4KTileAVX2().emit(T)
	}
	for _, T := range []int{8, 4, 2, 1} {
		q6KTileAVX2().emit(T)
	}
}

// kTile is a K-quant tile kernel (AVX2: eight-lane accumulators).
type kTile struct {
	name string
	doc  []string
	wb   int // weight bytes per super-block
	// setup emits loop-invariant constants and stack areas.
	setup func()
	// block emits one super-block for T tokens: w is the weight block,
	// x(t, disp) token t's activation block at disp, acc(t) token t's
	// float32 accumulator.
	block func(w Mem, x func(t, disp int) Mem, acc func(t int) Mem, T int)
}

const (
	q8KBytes   = 292 // Q8_K block: d float32, 256 quants, 16 int16 group sums
	q8KBsumOff = 260
)

// emit writes the kernel for T tokens, with the signature and flags of the
// block-lanes tiles (s3Kernel.emit); the acc area holds 16 float32 per
// token, of which the kernel uses eight.
func (k *kTile) emit(T int) {
	name := fmt.Sprintf("%sx%d", k.name, T)
	text(name, NOSPLIT, "func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)")
	Doc(append([]string{fmt.Sprintf("%s is the dot product of one weight row with %d tokens:", name, T)}, k.doc...)...)
	w := Load(Param("w"), GP64())
	nb := Load(Param("nb"), GP64())
	xt := newTokAddr(T)
	loc := AllocLocal(T * 32)
	slot := func(t int) Mem { return loc.Offset(32 * t) }
	k.setup()
	// Accumulators: from acc (flags&1) or zero.
	flags := Load(Param("flags"), GP64())
	accp := Load(Param("acc"), GP64())
	TESTQ(U32(1), flags)
	JZ(LabelRef(name + "_zero"))
	for t := 0; t < T; t++ {
		copyAcc8(Mem{Base: accp, Disp: 64 * t}, slot(t))
	}
	JMP(LabelRef(name + "_start"))
	Label(name + "_zero")
	g := GP64()
	XORQ(g, g)
	for o := 0; o < T*32; o += 8 {
		MOVQ(g, loc.Offset(o))
	}
	Label(name + "_start")
	loop(name, nb, func() {
		if T <= tilePrefetchT {
			for o := 0; o < k.wb; o += 64 {
				PREFETCHT0(Mem{Base: w, Disp: rowPrefetch + o})
			}
		}
		k.block(Mem{Base: w}, xt.at, slot, T)
		ADDQ(U32(k.wb), w)
		xt.advance(q8KBytes)
	})
	flags2 := Load(Param("flags"), GP64())
	TESTQ(U32(2), flags2)
	JNZ(LabelRef(name + "_final"))
	accp2 := Load(Param("acc"), GP64())
	for t := 0; t < T; t++ {
		copyAcc8(slot(t), Mem{Base: accp2, Disp: 64 * t})
	}
	VZEROUPPER()
	RET()
	Label(name + "_final")
	dst := Load(Param("dst"), GP64())
	ldd := Load(Param("ldd"), GP64())
	d := GP64()
	MOVQ(dst, d)
	for t := 0; t < T; t++ {
		a := YMM()
		VMOVUPS(slot(t), a)
		s := hsum8(a)
		VMOVSS(s, Mem{Base: d})
		if t+1 < T {
			ADDQ(ldd, d)
		}
	}
	VZEROUPPER()
	RET()
}

// copyAcc8 copies one eight-lane accumulator between memory operands.
func copyAcc8(src, dst Mem) {
	y := YMM()
	VMOVUPS(src, y)
	VMOVUPS(y, dst)
}

// q4KTileAVX2 has the numerics of q4KAVX2 (Q4_K).
func q4KTileAVX2() *kTile {
	var m0f VecVirtual
	var scl, mmw, ddw, dmw Mem
	return &kTile{
		name: "gemmQ4_KAVX2",
		doc: []string{"Q4_K weights × Q8_K activations with the numerics of dotQ4_KAVX2",
			"(quant.dotQ4_KQ8_K): scales and mins decoded and the nibbles unpacked",
			"once per super-block for all tokens."},
		wb: 144,
		setup: func() {
			m0f = bcastD(0x0f0f0f0f)
			scl, mmw, ddw, dmw = AllocLocal(32), AllocLocal(32), AllocLocal(32), AllocLocal(32)
		},
		block: func(w Mem, x func(t, disp int) Mem, acc func(t int) Mem, T int) {
			k4Rows(w, scl, mmw, ddw, dmw, false)
			sumi := make([]VecVirtual, T)
			for t := range sumi {
				sumi[t] = YMM()
				VPXOR(m0f, m0f, sumi[t])
			}
			for j := range 4 {
				q, hi := YMM(), YMM()
				VMOVDQU(w.Offset(16+32*j), q)
				VPSRLW(U8(4), q, hi)
				VPAND(m0f, q, q)
				VPAND(m0f, hi, hi)
				slo, shi := YMM(), YMM()
				VPBROADCASTD(scl.Offset(8*j), slo)
				VPBROADCASTD(scl.Offset(8*j+4), shi)
				for t := range sumi {
					a := YMM()
					VPMADDUBSW(x(t, 4+64*j), q, a)
					VPMADDWD(slo, a, a)
					VPADDD(a, sumi[t], sumi[t])
					b := YMM()
					VPMADDUBSW(x(t, 4+64*j+32), hi, b)
					VPMADDWD(shi, b, b)
					VPADDD(b, sumi[t], sumi[t])
				}
			}
			for t := range sumi {
				k4Float(x, acc, t, sumi[t], mmw, ddw, dmw)
			}
		},
	}
}

// k4Rows decodes the scales and mins of a Q4_K super-block at w into the
// stack: scl the (s, s) int16 pairs of the eight sub-blocks (one dword
// each), mmw the mins as q4KAVX2's VPMADDWD operand, ddw and dmw the fp16
// d and dmin broadcast to eight float32 lanes.
func k4Rows(w, scl, mmw, ddw, dmw Mem, evex bool) {
	sc, mn := k4Scales(w.Offset(4))
	s8 := XMM()
	VMOVQ(sc, s8)
	VPMOVZXBW(s8, s8)
	s2 := XMM()
	VPUNPCKLWD(s8, s8, s2)
	store := func(v VecVirtual, m Mem) {
		if evex {
			VMOVDQU64(v, m)
		} else {
			VMOVDQU(v, m)
		}
	}
	store(s2, scl)
	VPUNPCKHWD(s8, s8, s2)
	store(s2, scl.Offset(16))
	m8 := XMM()
	VMOVQ(mn, m8)
	VPMOVZXBW(m8, m8)
	mlo, mhi := XMM(), XMM()
	VPUNPCKLWD(m8, m8, mlo)
	VPUNPCKHWD(m8, m8, mhi)
	store(mlo, mmw)
	store(mhi, mmw.Offset(16))
	g := GP32()
	MOVL(w, g)
	d := XMM()
	VMOVD(g, d)
	VCVTPH2PS(d, d)
	dd := YMM()
	VBROADCASTSS(d, dd)
	store(dd, ddw)
	VMOVSHDUP(d, d)
	VBROADCASTSS(d, dd)
	store(dd, dmw)
}

// k4Float ends a Q4_K super-block for token t as q4KAVX2 does:
// acc += float(sumi)·(d·dx), acc −= float(Σ min·bsum)·(dmin·dx).
func k4Float(x func(t, disp int) Mem, acc func(t int) Mem, t int, sumi VecVirtual, mmw, ddw, dmw Mem) {
	a := YMM()
	VMOVUPS(x(t, 260), a)
	VPMADDWD(mmw, a, a)
	VCVTDQ2PS(a, a)
	VCVTDQ2PS(sumi, sumi)
	bx := YMM()
	VBROADCASTSS(x(t, 0), bx)
	dd := YMM()
	VMULPS(ddw, bx, dd)
	c := YMM()
	VMOVUPS(acc(t), c)
	VFMADD231PS(dd, sumi, c)
	VMULPS(dmw, bx, dd)
	VFNMADD231PS(dd, a, c)
	VMOVUPS(c, acc(t))
}

// q6KTileAVX2 has the numerics of q6KAVX2: per super-block the row's eight
// 32-quant slices are unpacked to the stack once, then each token does
// VPMADDUBSW + VPMADDWD + VPADDD per slice.
func q6KTileAVX2() *kTile {
	var m0f, m30, evenOdd VecVirtual
	var qv, s16, ddw Mem
	masks := q6KMaskData()
	return &kTile{
		name: "gemmQ6_KAVX2",
		doc: []string{"Q6_K weights × Q8_K activations with the numerics of dotQ6_KAVX2",
			"(quant.dotQ6_KQ8_K): the 6-bit quants and scale vectors unpacked once",
			"per super-block for all tokens."},
		wb: 210,
		setup: func() {
			m0f = bcastD(0x0f0f0f0f)
			m30 = bcastD(0x30303030)
			evenOdd = XMM()
			VMOVDQU(masks.Offset(256), evenOdd)
			qv, s16, ddw = AllocLocal(8*32), AllocLocal(32), AllocLocal(32)
		},
		block: func(w Mem, x func(t, disp int) Mem, acc func(t int) Mem, T int) {
			S := YMM()
			s8 := XMM()
			VMOVDQU(w.Offset(192), s8)
			VPSHUFB(evenOdd, s8, s8)
			VPMOVSXBW(s8, S)
			c16 := YMM()
			VPMOVSXBW(w.Offset(192), c16)
			VMOVDQU(c16, s16)
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
					VMOVDQU(q, qv.Offset(32*(4*h+g)))
				}
			}
			d := f16Load(w.Offset(208))
			dd := YMM()
			VBROADCASTSS(d, dd)
			VMOVDQU(dd, ddw)
			sumi := make([]VecVirtual, T)
			for t := range sumi {
				// sumi = −32·Σ scale·bsum, then the slices.
				c := YMM()
				VMOVDQU(x(t, 260), c)
				VPMADDWD(s16, c, c)
				VPSLLD(U8(5), c, c)
				sumi[t] = YMM()
				VPXOR(m0f, m0f, sumi[t])
				VPSUBD(c, sumi[t], sumi[t])
			}
			for sl := range 8 {
				q, s := YMM(), YMM()
				VMOVDQU(qv.Offset(32*sl), q)
				VPSHUFB(masks.Offset(32*sl), S, s)
				for t := range sumi {
					a := YMM()
					VPMADDUBSW(x(t, 4+32*sl), q, a)
					VPMADDWD(s, a, a)
					VPADDD(a, sumi[t], sumi[t])
				}
			}
			for t := range sumi {
				bx := YMM()
				VBROADCASTSS(x(t, 0), bx)
				VMULPS(ddw, bx, bx)
				VCVTDQ2PS(sumi[t], sumi[t])
				c := YMM()
				VMOVUPS(acc(t), c)
				VFMADD231PS(bx, sumi[t], c)
				VMOVUPS(c, acc(t))
			}
		},
	}
}
