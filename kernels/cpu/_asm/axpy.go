package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	"github.com/mmcloughlin/avo/reg"
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

// genAxpyF16x4 emits func(dst *float32, v *byte, stride int, w *float32,
// n int): dst[i] += w[0]·v0[i], then w[1]·v1[i], w[2]·v2[i], w[3]·v3[i],
// for n (a multiple of 8) float16 values of four rows stride bytes apart
// (v0 at v), each a fused multiply-add in that order: the bits of four
// axpyF16AVX2 calls with dst loaded and stored once instead of four times
// (a LoRA's expand, Bᵀ's rows times the shrink's coefficients).
func genAxpyF16x4() {
	name := "axpyF16x4AVX2"
	text(name, NOSPLIT, "func(dst *float32, v *byte, stride int, w *float32, n int)")
	Doc(name+" adds w[k] times row k of four rows of n float16 values (n a multiple",
		"of 8, rows stride bytes apart) to dst, rows in order, one fused multiply-add",
		"per element and row (four kernels/cpu.axpyF16Generic calls).")
	dst := Load(Param("dst"), GP64())
	v := Load(Param("v"), GP64())
	stride := Load(Param("stride"), GP64())
	wp := Load(Param("w"), GP64())
	n := Load(Param("n"), GP64())
	var wy [4]reg.VecVirtual
	for k := range wy {
		wy[k] = YMM()
		VBROADCASTSS(Mem{Base: wp, Disp: 4 * k}, wy[k])
	}
	s3 := GP64()
	LEAQ(Mem{Base: stride, Index: stride, Scale: 2}, s3)
	step := func(lanes int) {
		for i := 0; i < lanes; i++ {
			d := YMM()
			VMOVUPS(Mem{Base: dst, Disp: 32 * i}, d)
			for k := 0; k < 4; k++ {
				a := YMM()
				switch k {
				case 0:
					VCVTPH2PS(Mem{Base: v, Disp: 16 * i}, a)
				case 1:
					VCVTPH2PS(Mem{Base: v, Index: stride, Scale: 1, Disp: 16 * i}, a)
				case 2:
					VCVTPH2PS(Mem{Base: v, Index: stride, Scale: 2, Disp: 16 * i}, a)
				case 3:
					VCVTPH2PS(Mem{Base: v, Index: s3, Scale: 1, Disp: 16 * i}, a)
				}
				VFMADD231PS(a, wy[k], d)
			}
			VMOVUPS(d, Mem{Base: dst, Disp: 32 * i})
		}
	}
	Label(name + "_loop16")
	CMPQ(n, U8(16))
	JL(LabelRef(name + "_loop8"))
	step(2)
	ADDQ(U8(32), v)
	ADDQ(U8(64), dst)
	SUBQ(U8(16), n)
	JMP(LabelRef(name + "_loop16"))
	Label(name + "_loop8")
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	step(1)
	ADDQ(U8(16), v)
	ADDQ(U8(32), dst)
	SUBQ(U8(8), n)
	JMP(LabelRef(name + "_loop8"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// genDotF32 emits func(a, b *float32, n int, s *[8]float32): s[k] +=
// a[i]·b[i] over i ≡ k (mod 8) for n (a multiple of 8) values, each
// product rounded before its sum, no fused multiply-add: bit for bit the
// eight partial sums of kernels/cpu.DotF32's loop (Go on amd64 fuses
// nothing), which finishes the tail and the reduction.
func genDotF32() {
	for _, k := range []int{1, 4} {
		dotF32Lanes(k)
	}
}

// dotF32Lanes emits dotF32L<16k>(a, b *float32, n int, acc *float32):
// for n values (a multiple of 16k) element i goes to lane i mod 16k of the
// 16k float32 accumulators at acc, one FMA each, in order: k = 1 is the
// sum tinyBLAS keeps per output (ggml's F32 matrix products of two tokens
// or more), k = 4 ggml_vec_dot_f32's four sixteen-lane sums (one token).
func dotF32Lanes(k int) {
	name := fmt.Sprintf("dotF32L%d", 16*k)
	text(name, NOSPLIT, "func(a, b *float32, n int, acc *float32)")
	Doc(name+fmt.Sprintf(" adds a[i]·b[i] to lane i mod %d of acc with one FMA each,", 16*k),
		"for n values (a multiple of the lanes): kernels/cpu.dotF32Lanes.")
	a := Load(Param("a"), GP64())
	b := Load(Param("b"), GP64())
	n := Load(Param("n"), GP64())
	accp := Load(Param("acc"), GP64())
	acc := make([]reg.VecVirtual, 2*k)
	for i := range acc {
		acc[i] = YMM()
		VMOVUPS(Mem{Base: accp, Disp: 32 * i}, acc[i])
	}
	Label(name + "_loop")
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	for i := range acc {
		x := YMM()
		VMOVUPS(Mem{Base: a, Disp: 32 * i}, x)
		VFMADD231PS(Mem{Base: b, Disp: 32 * i}, x, acc[i])
	}
	ADDQ(U32(64*k), a)
	ADDQ(U32(64*k), b)
	SUBQ(U8(16*k), n)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_done")
	for i := range acc {
		VMOVUPS(acc[i], Mem{Base: accp, Disp: 32 * i})
	}
	VZEROUPPER()
	RET()
}
