package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
)

// genAxpyF16 emits func(dst *float32, v *byte, w float32, n int): dst[i] +=
// w·v[i] for n (a multiple of 8) float16 values v, with fused multiply-adds:
// the weighted sum of value rows in attention.
func genAxpyF16() {
	name := "axpyF16AVX2"
	text(name, NOSPLIT, "func(dst *float32, v *byte, w float32, n int)")
	Doc(name+" adds w times n float16 values (n a multiple of 8) to dst,",
		"one fused multiply-add per element (kernels/cpu.axpyF16Generic).")
	dst := Load(Param("dst"), GP64())
	v := Load(Param("v"), GP64())
	n := Load(Param("n"), GP64())
	wx := XMM()
	Load(Param("w"), wx)
	wy := YMM()
	VBROADCASTSS(wx, wy)
	Label(name + "_loop32")
	CMPQ(n, U8(32))
	JL(LabelRef(name + "_loop8"))
	for i := 0; i < 4; i++ {
		a := YMM()
		VCVTPH2PS(Mem{Base: v, Disp: 16 * i}, a)
		d := YMM()
		VMOVUPS(Mem{Base: dst, Disp: 32 * i}, d)
		VFMADD231PS(a, wy, d)
		VMOVUPS(d, Mem{Base: dst, Disp: 32 * i})
	}
	ADDQ(U8(64), v)
	ADDQ(U32(128), dst)
	SUBQ(U8(32), n)
	JMP(LabelRef(name + "_loop32"))
	Label(name + "_loop8")
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	a := YMM()
	VCVTPH2PS(Mem{Base: v}, a)
	d := YMM()
	VMOVUPS(Mem{Base: dst}, d)
	VFMADD231PS(a, wy, d)
	VMOVUPS(d, Mem{Base: dst})
	ADDQ(U8(16), v)
	ADDQ(U8(32), dst)
	SUBQ(U8(8), n)
	JMP(LabelRef(name + "_loop8"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}
