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

// genMadF32 emits madF32(y, x *float32, v float32, n int): y[i] =
// fma(x[i], v, y[i]) for n values (a multiple of 8), ggml_vec_mad_f32's
// arithmetic (the gated delta rule's state update), and scaleF32(x
// *float32, v float32, n int): x[i] *= v (ggml_vec_scale_f32).
func genMadF32() {
	{
		name := "madF32"
		text(name, NOSPLIT, "func(y, x *float32, v float32, n int)")
		Doc(name+" sets y[i] = fma(x[i], v, y[i]) for n values (a multiple of 8):",
			"kernels/cpu.DeltaStep's update, one FMA each.")
		y := Load(Param("y"), GP64())
		x := Load(Param("x"), GP64())
		vx := XMM()
		Load(Param("v"), vx)
		n := Load(Param("n"), GP64())
		vv := YMM()
		VBROADCASTSS(vx, vv)
		loopBy(name, n, 8, func() {
			a := YMM()
			VMOVUPS(Mem{Base: y}, a)
			VFMADD231PS(Mem{Base: x}, vv, a)
			VMOVUPS(a, Mem{Base: y})
			ADDQ(U8(32), y)
			ADDQ(U8(32), x)
		})
		VZEROUPPER()
		RET()
	}
	{
		name := "scaleF32"
		text(name, NOSPLIT, "func(x *float32, v float32, n int)")
		Doc(name + " sets x[i] *= v for n values (a multiple of 8).")
		x := Load(Param("x"), GP64())
		vx := XMM()
		Load(Param("v"), vx)
		n := Load(Param("n"), GP64())
		vv := YMM()
		VBROADCASTSS(vx, vv)
		loopBy(name, n, 8, func() {
			a := YMM()
			VMULPS(Mem{Base: x}, vv, a)
			VMOVUPS(a, Mem{Base: x})
			ADDQ(U8(32), x)
		})
		VZEROUPPER()
		RET()
	}
}

// genVecDotF32 emits vecDotF32(a, b *float32, n int) float32, the whole
// of kernels/cpu.DotF32 (ggml_vec_dot_f32): 64 FMA lanes over the first
// n/64·64, reduced as GGML_F32_VEC_REDUCE and reduce16, then the rest as
// a rounded product and an add each.
func genVecDotF32() {
	name := "vecDotF32"
	text(name, NOSPLIT, "func(a, b *float32, n int) float32")
	Doc(name + " is kernels/cpu.DotF32 (ggml_vec_dot_f32 of an AVX-512 build), bit for bit.")
	a := Load(Param("a"), GP64())
	b := Load(Param("b"), GP64())
	n := Load(Param("n"), GP64())
	np := GP64()
	MOVQ(n, np)
	ANDQ(I32(-64), np)
	SUBQ(np, n) // the rest
	sum := XMM()
	VXORPS(sum, sum, sum)
	TESTQ(np, np)
	JZ(LabelRef(name + "_rest"))
	acc := make([]reg.VecVirtual, 8)
	for i := range acc {
		acc[i] = YMM()
		VXORPS(acc[i], acc[i], acc[i])
	}
	Label(name + "_loop")
	for i := range acc {
		x := YMM()
		VMOVUPS(Mem{Base: a, Disp: 32 * i}, x)
		VFMADD231PS(Mem{Base: b, Disp: 32 * i}, x, acc[i])
	}
	ADDQ(U32(256), a)
	ADDQ(U32(256), b)
	SUBQ(U8(64), np)
	JNZ(LabelRef(name + "_loop"))
	// acc[2j], acc[2j+1]: lanes 0-7 and 8-15 of sixteen-lane sum j.
	for h := range 2 {
		VADDPS(acc[4+h], acc[h], acc[h])     // 0+2
		VADDPS(acc[6+h], acc[2+h], acc[2+h]) // 1+3
		VADDPS(acc[2+h], acc[h], acc[h])     // (0+2)+(1+3)
	}
	VADDPS(acc[1], acc[0], acc[0]) // reduce16: lanes i and i+8
	VMOVAPS(hsum8(acc[0]), sum)
	Label(name + "_rest")
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	p := XMM()
	VMOVSS(Mem{Base: a}, p)
	VMULSS(Mem{Base: b}, p, p)
	VADDSS(p, sum, sum)
	ADDQ(U8(4), a)
	ADDQ(U8(4), b)
	DECQ(n)
	JMP(LabelRef(name + "_rest"))
	Label(name + "_done")
	Store(sum, ReturnIndex(0))
	VZEROUPPER()
	RET()
}

// genConvStep4 emits convStep4(dst, x, w, state *float32, c int): one
// token of a causal convolution of kernel 4 over c channels (a multiple of
// 8), kernels/cpu.ConvStep's arithmetic: per channel the taps' products
// chained in FMAs from the oldest input (w rows of 4 taps gathered eight
// channels at a time; the state's three rows oldest first, then x).
func genConvStep4() {
	name := "convStep4"
	text(name, NOSPLIT, "func(dst, x, w, state *float32, c int)")
	Doc(name + " is kernels/cpu.ConvStep for kernel 4 (c a multiple of 8), bit for bit.")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	w := Load(Param("w"), GP64())
	st := Load(Param("state"), GP64())
	c := Load(Param("c"), GP64())
	row := GP64() // one state row in bytes
	MOVQ(c, row)
	SHLQ(U8(2), row)
	idx := YMM()
	VMOVDQU(globl("convIdx4", dwords(0, 4, 8, 12, 16, 20, 24, 28)), idx)
	loopBy(name, c, 8, func() {
		taps := make([]reg.VecVirtual, 4)
		for i := range taps {
			m := YMM()
			VPCMPEQD(m, m, m)
			taps[i] = YMM()
			VXORPS(taps[i], taps[i], taps[i])
			VGATHERDPS(m, Mem{Base: w, Index: idx, Scale: 4, Disp: 4 * i}, taps[i])
		}
		sum := YMM()
		VXORPS(sum, sum, sum) // ggml's sumf = 0: a −0 product ends +0
		VFMADD231PS(Mem{Base: st}, taps[0], sum)
		VFMADD231PS(Mem{Base: st, Index: row, Scale: 1}, taps[1], sum)
		VFMADD231PS(Mem{Base: st, Index: row, Scale: 2}, taps[2], sum)
		VFMADD231PS(Mem{Base: x}, taps[3], sum)
		VMOVUPS(sum, Mem{Base: dst})
		ADDQ(U8(32), dst)
		ADDQ(U8(32), x)
		ADDQ(U8(128), w)
		ADDQ(U8(32), st)
	})
	VZEROUPPER()
	RET()
}
