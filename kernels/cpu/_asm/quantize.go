package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Activation quantizers, byte-exact with quant.QuantizeAct: the same float32
// operations in the same precision and the same rounding. Q8_0/Q8_1 are
// ggml's x86 quantize_row_q8_0/q8_1 (d = amax/127, quants x·(127/amax)
// rounded to nearest even); Q8_K is quantize_row_q8_K_ref (nearest even,
// ggml's nearest_int).

// hmaxBcast returns an xmm whose lane 0 is the largest of the lanes of m.
func hmaxBcast(m VecVirtual) VecVirtual {
	hi := XMM()
	VEXTRACTF128(U8(1), m, hi)
	lo := XMM()
	VMAXPS(hi, m.AsX(), lo)
	t := XMM()
	VMOVHLPS(lo, lo, t)
	VMAXPS(t, lo, lo)
	VMOVSHDUP(lo, t)
	VMAXSS(t, lo, lo)
	return lo
}

// packQ8 packs four ymm of int32 (32 lanes, in order) into 32 int8 bytes in
// order, in a, using perm (VPERMD index 0,4,1,5,2,6,3,7).
func packQ8(p [4]VecVirtual, perm VecVirtual) VecVirtual {
	VPACKSSDW(p[1], p[0], p[0])
	VPACKSSDW(p[3], p[2], p[2])
	VPACKSSWB(p[2], p[0], p[0])
	VPERMD(p[0], perm, p[0])
	return p[0]
}

var packPerm Mem

// permIndex loads the VPERMD index of packQ8, emitting its data once.
func permIndex() VecVirtual {
	if packPerm.Symbol.Name == "" {
		packPerm = GLOBL("packPerm", RODATA|NOPTR)
		for i, v := range []uint32{0, 4, 1, 5, 2, 6, 3, 7} {
			DATA(4*i, U32(v))
		}
	}
	y := YMM()
	VMOVDQU(packPerm, y)
	return y
}

// q8Block emits one 32-element Q8_0/Q8_1 block: src at x, scale at dst,
// quants at dst+qoff; if sumOff >= 0 it also stores fp16(Σq · d) there.
func q8Block(x, dst Mem, qoff, sumOff int, absMask, c127, perm VecVirtual) {
	var v [4]VecVirtual
	m := YMM()
	for i := range v {
		v[i] = YMM()
		VMOVUPS(x.Offset(32*i), v[i])
	}
	a := YMM()
	VANDPS(absMask, v[0], m)
	VANDPS(absMask, v[1], a)
	VMAXPS(a, m, m)
	VANDPS(absMask, v[2], a)
	VMAXPS(a, m, m)
	VANDPS(absMask, v[3], a)
	VMAXPS(a, m, m)
	amax := hmaxBcast(m)
	d := XMM()
	VDIVSS(c127.AsX(), amax, d) // d = amax / 127
	id := XMM()
	VDIVSS(amax, c127.AsX(), id) // 127/amax, +Inf when amax == 0
	z := XMM()
	VXORPS(z, z, z)
	nz := XMM()
	VCMPSS(U8(4), z, amax, nz) // amax != 0
	VANDPS(nz, id, id)
	h := XMM()
	VCVTPS2PH(U8(0), d, h)
	g := GP32()
	VMOVD(h, g)
	MOVW(g.As16(), dst)
	idb := YMM()
	VBROADCASTSS(id, idb)
	for i := range v {
		VMULPS(idb, v[i], v[i])
		VCVTPS2DQ(v[i], v[i]) // nearest even (MXCSR's default)
	}
	if sumOff >= 0 {
		s := YMM()
		VPADDD(v[1], v[0], s)
		VPADDD(v[2], s, s)
		VPADDD(v[3], s, s)
		hi := XMM()
		VEXTRACTI128(U8(1), s, hi)
		VPADDD(hi, s.AsX(), hi)
		t := XMM()
		VPSHUFD(U8(0x4e), hi, t)
		VPADDD(t, hi, hi)
		VPSHUFD(U8(0xb1), hi, t)
		VPADDD(t, hi, hi)
		VCVTDQ2PS(hi, hi)
		VMULSS(d, hi, hi)
		VCVTPS2PH(U8(0), hi, hi)
		VMOVD(hi, g)
		MOVW(g.As16(), dst.Offset(sumOff))
	}
	q := packQ8(v, perm)
	VMOVDQU(q, dst.Offset(qoff))
}

func q8Consts() (absMask, c127 VecVirtual) {
	return bcastD(0x7fffffff), bcastD(0x42fe0000)
}

func genQuantQ8_0AVX2() {
	text("quantQ8_0AVX2", NOSPLIT, "func(x *float32, dst *byte, nb int)")
	Doc("quantQ8_0AVX2 writes nb Q8_0 blocks of x to dst, byte-exact with quant.QuantizeAct.")
	x := Load(Param("x"), GP64())
	dst := Load(Param("dst"), GP64())
	nb := Load(Param("nb"), GP64())
	absMask, c127 := q8Consts()
	perm := permIndex()
	loop("quantQ8_0AVX2", nb, func() {
		q8Block(Mem{Base: x}, Mem{Base: dst}, 2, -1, absMask, c127, perm)
		ADDQ(U32(128), x)
		ADDQ(U32(34), dst)
	})
	VZEROUPPER()
	RET()
}

func genQuantQ8_1AVX2() {
	text("quantQ8_1AVX2", NOSPLIT, "func(x *float32, dst *byte, nb int)")
	Doc("quantQ8_1AVX2 writes nb Q8_1 blocks of x to dst, byte-exact with quant.QuantizeAct.")
	x := Load(Param("x"), GP64())
	dst := Load(Param("dst"), GP64())
	nb := Load(Param("nb"), GP64())
	absMask, c127 := q8Consts()
	perm := permIndex()
	loop("quantQ8_1AVX2", nb, func() {
		q8Block(Mem{Base: x}, Mem{Base: dst}, 4, 2, absMask, c127, perm)
		ADDQ(U32(128), x)
		ADDQ(U32(36), dst)
	})
	VZEROUPPER()
	RET()
}

func genQuantQ8_KAVX2() {
	const name = "quantQ8_KAVX2"
	text(name, NOSPLIT, "func(x *float32, dst *byte, nb int)")
	Doc(name+" writes nb Q8_K blocks of x to dst, byte-exact with quant.QuantizeRow:",
		"the scale comes from the first element of largest magnitude, quants",
		"round to nearest even and are capped at 127, bsums are exact.")
	x := Load(Param("x"), GP64())
	dst := Load(Param("dst"), GP64())
	nb := Load(Param("nb"), GP64())
	absMask := bcastD(0x7fffffff)
	c127 := bcastD(127)
	perm := permIndex()
	loop(name, nb, func() {
		// amax over 256 values, two running maxima.
		m0, m1 := YMM(), YMM()
		VANDPS(Mem{Base: x}, absMask, m0)
		VANDPS(Mem{Base: x, Disp: 32}, absMask, m1)
		for i := 2; i < 32; i += 2 {
			a, b := YMM(), YMM()
			VANDPS(Mem{Base: x, Disp: 32 * i}, absMask, a)
			VANDPS(Mem{Base: x, Disp: 32 * (i + 1)}, absMask, b)
			VMAXPS(a, m0, m0)
			VMAXPS(b, m1, m1)
		}
		VMAXPS(m1, m0, m0)
		amax := hmaxBcast(m0)
		z := XMM()
		VXORPS(z, z, z)
		VUCOMISS(z, amax)
		JNE(LabelRef(name + "_nonzero"))
		zy := YMM()
		VXORPS(zy, zy, zy)
		for i := range 9 {
			VMOVDQU(zy, Mem{Base: dst, Disp: 32 * i})
		}
		MOVL(U32(0), Mem{Base: dst, Disp: 288})
		JMP(LabelRef(name + "_next"))

		Label(name + "_nonzero")
		// The first element with |x| == amax gives the signed max.
		ab := YMM()
		VBROADCASTSS(amax, ab)
		i := GP64()
		XORQ(i, i)
		Label(name + "_find")
		c := YMM()
		VANDPS(Mem{Base: x, Index: i, Scale: 4}, absMask, c)
		VCMPPS(U8(0), ab, c, c) // ==
		bits := GP32()
		VMOVMSKPS(c, bits)
		ADDQ(U8(8), i)
		TESTL(bits, bits)
		JZ(LabelRef(name + "_find"))
		BSFL(bits, bits)
		ADDQ(bits.As64(), i) // bits was zero-extended by the 32-bit ops
		mx := XMM()
		VMOVSS(Mem{Base: x, Index: i, Scale: 4, Disp: -32}, mx)
		// iscale = -127/max; d = 1/iscale.
		is := XMM()
		MOVL(U32(0xc2fe0000), bits) // -127
		VMOVD(bits, is)
		VDIVSS(mx, is, is)
		one := XMM()
		MOVL(U32(0x3f800000), bits)
		VMOVD(bits, one)
		VDIVSS(is, one, one)
		VMOVSS(one, Mem{Base: dst})
		isb := YMM()
		VBROADCASTSS(is, isb)
		for j := range 8 { // 32 values per step: two bsums
			var p [4]VecVirtual
			for k := range p {
				p[k] = YMM()
				VMULPS(Mem{Base: x, Disp: 128*j + 32*k}, isb, p[k])
				VCVTPS2DQ(p[k], p[k])
				VPMINSD(c127, p[k], p[k])
			}
			s0, s1 := YMM(), YMM()
			VPADDD(p[1], p[0], s0)
			VPADDD(p[3], p[2], s1)
			VPHADDD(s1, s0, s0) // lane: s0 pairs, s1 pairs
			VPHADDD(s0, s0, s0) // lane: Σs0, Σs1, Σs0, Σs1 (halves)
			hi := XMM()
			VEXTRACTI128(U8(1), s0, hi)
			VPADDD(hi, s0.AsX(), hi)
			VPACKSSDW(hi, hi, hi)
			VMOVD(hi, Mem{Base: dst, Disp: 260 + 4*j})
			q := packQ8(p, perm)
			VMOVDQU(q, Mem{Base: dst, Disp: 4 + 32*j})
		}
		Label(name + "_next")
		ADDQ(U32(1024), x)
		ADDQ(U32(292), dst)
	})
	VZEROUPPER()
	RET()
}
