package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Attention over an F16 KV cache, for the G query heads that share a KV
// head (AVX2, FMA, F16C). A run of n cached positions lies stride bytes
// apart (one block of a paged cache); each kernel walks it once for all G
// heads, so a key or value row is loaded and converted once instead of once
// per head, and nothing is called per position. head dims: multiples of 16.

func genAttnF16() {
	for _, g := range []int{1, 2, 4} {
		qkF16(g)
		pvF16(g)
	}
}

// qkF16 emits qkF16G<g>(q *float32, hd int, k *byte, stride int, n int,
// out *float32, ldo int): out[g·ldo/4 + j] = Σ_d q[g·hd + d]·k_j[d] for the
// n key rows k_j = k + j·stride (float16) and the g heads' queries (float32,
// already rounded to float16 as ggml's path does). Per head, dimension d
// in lane d mod 16 (two ymm), then kernels/cpu.reduce16's order.
func qkF16(G int) {
	name := fmt.Sprintf("qkF16G%d", G)
	text(name, NOSPLIT, "func(q *float32, hd int, k *byte, stride int, n int, out *float32, ldo int)")
	Doc(name+fmt.Sprintf(" is the scores of %d query heads against n float16 key rows", G),
		"stride bytes apart (the sums of kernels/cpu.qkF16Generic).")
	q := Load(Param("q"), GP64())
	hd := Load(Param("hd"), GP64())
	k := Load(Param("k"), GP64())
	stride := Load(Param("stride"), GP64())
	n := Load(Param("n"), GP64())
	out := Load(Param("out"), GP64())
	ldo := Load(Param("ldo"), GP64())
	hd4 := GP64() // a head's queries in bytes
	MOVQ(hd, hd4)
	SHLQ(U8(2), hd4)
	var hd12 Register
	if G == 4 {
		hd12 = GP64()
		LEAQ(Mem{Base: hd4, Index: hd4, Scale: 2}, hd12)
	}
	Label(name + "_row")
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	acc := make([][2]VecVirtual, G)
	for g := range acc {
		for h := range 2 {
			acc[g][h] = YMM()
			VXORPS(acc[g][h], acc[g][h], acc[g][h])
		}
	}
	kp, qp, d := GP64(), GP64(), GP64()
	MOVQ(k, kp)
	MOVQ(q, qp)
	MOVQ(hd, d)
	Label(name + "_dim")
	k0, k1 := YMM(), YMM()
	VCVTPH2PS(Mem{Base: kp}, k0)
	VCVTPH2PS(Mem{Base: kp, Disp: 16}, k1)
	for g := range acc {
		VFMADD231PS(headAt(qp, g, hd4, hd12, 0), k0, acc[g][0])
		VFMADD231PS(headAt(qp, g, hd4, hd12, 32), k1, acc[g][1])
	}
	ADDQ(U8(32), kp)
	ADDQ(U8(64), qp)
	SUBQ(U8(16), d)
	JNZ(LabelRef(name + "_dim"))
	o := GP64()
	MOVQ(out, o)
	for g := range acc {
		// Lanes d mod 16: the upper eight onto the lower, then hsum8
		// (reduce16's order).
		VADDPS(acc[g][1], acc[g][0], acc[g][0])
		VMOVSS(hsum8(acc[g][0]), Mem{Base: o})
		if g+1 < G {
			ADDQ(ldo, o)
		}
	}
	ADDQ(stride, k)
	ADDQ(U8(4), out)
	DECQ(n)
	JMP(LabelRef(name + "_row"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// pvF16 emits pvF16G<g>(p *float32, ldp int, hd int, v *byte, stride int,
// n int, lanes *float32, lane0 int): for the n value rows v_j = v +
// j·stride (float16) and each head g, lanes[(g·16 + (lane0+j) mod 16)·hd +
// d] += p[g·ldp/4 + j]·v_j[d], j in order, one fused multiply-add per
// element (exact products: the adds of kernels/cpu.pvF16Generic). Each row
// is converted once for all heads; the lanes live in memory.
func pvF16(G int) {
	name := fmt.Sprintf("pvF16G%d", G)
	text(name, NOSPLIT, "func(p *float32, ldp int, hd int, v *byte, stride int, n int, lanes *float32, lane0 int)")
	Doc(name+fmt.Sprintf(" adds n float16 value rows, weighted, into the lanes of %d heads", G),
		"(the sums of kernels/cpu.pvF16Generic).")
	p := Load(Param("p"), GP64())
	ldp := Load(Param("ldp"), GP64())
	hd4 := Load(Param("hd"), GP64())
	SHLQ(U8(2), hd4)
	v := Load(Param("v"), GP64())
	lane := Load(Param("lane0"), GP64())
	hd64 := GP64() // one head's sixteen lanes in bytes
	MOVQ(hd4, hd64)
	SHLQ(U8(4), hd64)
	var ldp3, hd192 Register
	if G == 4 {
		ldp3, hd192 = GP64(), GP64()
		LEAQ(Mem{Base: ldp, Index: ldp, Scale: 2}, ldp3)
		LEAQ(Mem{Base: hd64, Index: hd64, Scale: 2}, hd192)
	}
	Label(name + "_row")
	CMPQ(paramMem("n"), U8(0))
	JE(LabelRef(name + "_done"))
	w := make([]VecVirtual, G)
	for g := range w {
		w[g] = YMM()
		VBROADCASTSS(headAt(p, g, ldp, ldp3, 0), w[g])
	}
	ap := GP64()
	MOVQ(lane, ap)
	ANDQ(U8(15), ap)
	IMULQ(hd4, ap)
	ADDQ(paramMem("lanes"), ap)
	vp, d := GP64(), GP64()
	MOVQ(v, vp)
	MOVQ(hd4, d)
	Label(name + "_dim")
	v0, v1 := YMM(), YMM()
	VCVTPH2PS(Mem{Base: vp}, v0)
	VCVTPH2PS(Mem{Base: vp, Disp: 16}, v1)
	for g := range w {
		for h, vh := range []VecVirtual{v0, v1} {
			a := YMM()
			VMOVUPS(headAt(ap, g, hd64, hd192, 32*h), a)
			VFMADD231PS(vh, w[g], a)
			VMOVUPS(a, headAt(ap, g, hd64, hd192, 32*h))
		}
	}
	ADDQ(U8(32), vp)
	ADDQ(U8(64), ap)
	SUBQ(U8(64), d)
	JNZ(LabelRef(name + "_dim"))
	ADDQ(paramMem("stride"), v)
	ADDQ(U8(4), p)
	INCQ(lane)
	DECQ(paramMem("n"))
	JMP(LabelRef(name + "_row"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// headAt addresses head g (0..3) of rows one bytes apart from base: base,
// base + one, base + 2·one, base + three (three = 3·one, set for g = 3).
func headAt(base Register, g int, one, three Register, disp int) Mem {
	switch g {
	case 0:
		return Mem{Base: base, Disp: disp}
	case 1:
		return Mem{Base: base, Index: one, Scale: 1, Disp: disp}
	case 2:
		return Mem{Base: base, Index: one, Scale: 2, Disp: disp}
	}
	return Mem{Base: base, Index: three, Scale: 1, Disp: disp}
}

// paramMem is the argument slot of a scalar or pointer parameter, for
// kernels short of registers that read it (or count it down) in place.
func paramMem(name string) Mem {
	b, err := Param(name).Resolve()
	if err != nil {
		panic(err)
	}
	return b.Addr
}

// genAttnHelpers emits the vector forms of three loops of the F16
// attention around the kernels above: sumGroups16 (the softmax sum),
// roundF16 (probabilities to float16 values) and reduceLanes16 (the value
// lanes to outputs).
func genAttnHelpers() {
	{
		name := "sumGroups16"
		text(name, NOSPLIT, "func(x *float32, n int) float64")
		Doc(name+" returns Σ over groups of sixteen of float64(reduce16(group)), n a multiple of 16:",
			"ggml's soft_max sum (kernels/cpu.softmaxAt).")
		x := Load(Param("x"), GP64())
		n := Load(Param("n"), GP64())
		acc := XMM()
		VXORPD(acc, acc, acc)
		loopBy(name, n, 16, func() {
			s := YMM()
			VMOVUPS(Mem{Base: x}, s)
			VADDPS(Mem{Base: x, Disp: 32}, s, s) // lanes i and i+8
			h := hsum8(s)
			d := XMM()
			VCVTSS2SD(h, d, d)
			VADDSD(d, acc, acc)
			ADDQ(U8(64), x)
		})
		Store(acc, ReturnIndex(0))
		VZEROUPPER()
		RET()
	}
	{
		name := "roundF16"
		text(name, NOSPLIT, "func(x *float32, n int)")
		Doc(name + " rounds n float32 values (a multiple of 8) to float16 and back, to nearest even.")
		x := Load(Param("x"), GP64())
		n := Load(Param("n"), GP64())
		loopBy(name, n, 8, func() {
			v := YMM()
			VMOVUPS(Mem{Base: x}, v)
			h := XMM()
			VCVTPS2PH(U8(0), v, h)
			VCVTPH2PS(h, v)
			VMOVUPS(v, Mem{Base: x})
			ADDQ(U8(32), x)
		})
		VZEROUPPER()
		RET()
	}
	{
		name := "reduceLanes16"
		text(name, NOSPLIT, "func(out *float32, lanes *float32, hd int)")
		Doc(name+" sets out[d] = reduce16 of lanes[l·hd + d], l = 0..15, for hd values (a multiple of 8):",
			"kernels/cpu.reduceLanes for one head.")
		out := Load(Param("out"), GP64())
		lanes := Load(Param("lanes"), GP64())
		hd := Load(Param("hd"), GP64())
		stride := GP64() // one lane row in bytes
		MOVQ(hd, stride)
		SHLQ(U8(2), stride)
		s3, s5, s7 := GP64(), GP64(), GP64()
		LEAQ(Mem{Base: stride, Index: stride, Scale: 2}, s3)
		LEAQ(Mem{Base: stride, Index: stride, Scale: 4}, s5)
		LEAQ(Mem{Base: s3, Index: stride, Scale: 4}, s7)
		hi := GP64() // lane 8's row
		MOVQ(stride, hi)
		SHLQ(U8(3), hi)
		ADDQ(lanes, hi)
		row := func(base Register, l int) Mem {
			switch l {
			case 0:
				return Mem{Base: base}
			case 1:
				return Mem{Base: base, Index: stride, Scale: 1}
			case 2:
				return Mem{Base: base, Index: stride, Scale: 2}
			case 3:
				return Mem{Base: base, Index: s3, Scale: 1}
			case 4:
				return Mem{Base: base, Index: stride, Scale: 4}
			case 5:
				return Mem{Base: base, Index: s5, Scale: 1}
			case 6:
				return Mem{Base: base, Index: s3, Scale: 2}
			}
			return Mem{Base: base, Index: s7, Scale: 1}
		}
		loopBy(name, hd, 8, func() {
			var h [8]VecVirtual
			for i := range h {
				h[i] = YMM()
				VMOVUPS(row(lanes, i), h[i])
				VADDPS(row(hi, i), h[i], h[i]) // lanes i and i+8
			}
			VADDPS(h[4], h[0], h[0])
			VADDPS(h[6], h[2], h[2])
			VADDPS(h[5], h[1], h[1])
			VADDPS(h[7], h[3], h[3])
			VADDPS(h[2], h[0], h[0])
			VADDPS(h[3], h[1], h[1])
			VADDPS(h[1], h[0], h[0])
			VMOVUPS(h[0], Mem{Base: out})
			ADDQ(U8(32), out)
			ADDQ(U8(32), lanes)
			ADDQ(U8(32), hi)
		})
		VZEROUPPER()
		RET()
	}
}
