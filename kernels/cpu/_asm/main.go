// Command _asm generates kernels/cpu/dot_amd64.s, the amd64 dot-product and
// activation-quantizer kernels, and their Go declarations in
// kernels/cpu/dot_stubs_amd64.go (avo's -stubs output), with avo. Run it
// with `go generate` in kernels/cpu (see dot.go there); TestGeneratedAsm
// fails when either committed file differs from what this program writes.
//
// Every kernel mirrors a reference in package quant (named in its doc
// comment) and is checked against it by the differential tests in
// kernels/cpu. Integer sums per block are exact (no int16 saturation for any
// input bytes, -128 included); the float32 scaling and summation order is
// fixed per type and level, so that a (row, token) pair gives the same bits
// whether it is computed by the one-row kernel, the four-row kernel or a
// prefill tile (one row × T tokens: gemm512.go, gemm2.go, gemmk.go).
//
// avo's liveness analysis does not know that a VEX/EVEX write to an xmm or
// ymm clears the rest of the register, nor zeroing idioms: the tile kernels
// define whole registers (VBROADCASTI32X4/64X4 for a first load, VPXORD of
// a live register) so that no virtual register looks live from the entry,
// which would make allocation fail with 32 registers in use.
package main

import (
	"fmt"

	"github.com/mmcloughlin/avo/attr"
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

func main() {
	ConstraintExpr("!purego")

	genQuantQ8_0AVX2()
	genQuantQ8_1AVX2()
	genQuantQ8_KAVX2()

	genAVX2()
	genQ6KN()
	genQ5KN()
	genIQ4XSN()
	genQ2KN()
	genQ3KN()
	genHalf512()
	genGemm512()
	genGemmK()
	genGemmAVX2()
	genQ8_0G()
	genAxpyF16()
	genAxpyF16x4()
	genDotF32()
	genMadF32()
	genVecDotF32()
	genConvStep4()
	genAttnF16()
	genAttnHelpers()
	expC := expConsts()
	genSwiGLU(expC)
	genSiLU(expC)
	genExpShift(expC)
	genQ4KN()
	genMXFP4()

	Generate()
}

// text starts the kernel name with the Go signature sig, like TEXT, and
// marks its stub //go:noescape: no kernel keeps a pointer argument past
// its return. Every kernel also calls Doc with what it computes and the
// quant (or kernels/cpu generic) reference it mirrors; the -stubs output
// (dot_stubs_amd64.go) carries both.
func text(name string, a attr.Attribute, sig string) {
	TEXT(name, a, sig)
	Pragma("noescape")
}

// bcastD returns a ymm with the 32-bit value v in every lane.
func bcastD(v uint32) VecVirtual {
	g := GP32()
	MOVL(U32(v), g)
	x := XMM()
	VMOVD(g, x)
	y := YMM()
	VPBROADCASTD(x, y)
	return y
}

// bcastDZ returns a zmm with the 32-bit value v in every lane.
func bcastDZ(v uint32) VecVirtual {
	g := GP32()
	MOVL(U32(v), g)
	z := ZMM()
	VPBROADCASTD(g, z)
	return z
}

// hsum8 reduces the eight float32 lanes of y into lane 0 of the returned
// xmm, in one fixed order: (l0+h0)+(l2+h2) + (l1+h1)+(l3+h3).
func hsum8(y VecVirtual) VecVirtual { return reduce8(y, false) }

// hsum16 reduces the sixteen float32 lanes of z: halves first, then as
// hsum8, with EVEX instructions only (AVX-512 kernels use all 32 registers).
func hsum16(z VecVirtual) VecVirtual {
	hi := YMM()
	VEXTRACTF64X4(U8(1), z, hi)
	lo := YMM()
	VADDPS(hi, z.AsY(), lo)
	return reduce8(lo, true)
}

func reduce8(y VecVirtual, evex bool) VecVirtual {
	hi := XMM()
	if evex {
		VEXTRACTF32X4(U8(1), y, hi)
	} else {
		VEXTRACTF128(U8(1), y, hi)
	}
	lo := XMM()
	VADDPS(hi, y.AsX(), lo)
	t := XMM()
	VMOVHLPS(lo, lo, t)
	VADDPS(t, lo, lo)
	VMOVSHDUP(lo, t)
	VADDSS(t, lo, lo)
	return lo
}

// f16Product returns an xmm whose lane 0 is fp16(*a) * fp16(*b) in float32.
func f16Product(a, b Mem) VecVirtual {
	ga, gb := GP32(), GP32()
	MOVWLZX(a, ga)
	MOVWLZX(b, gb)
	SHLL(U8(16), gb)
	ORL(ga, gb)
	x := XMM()
	VMOVD(gb, x)
	VCVTPH2PS(x, x)
	t := XMM()
	VMOVSHDUP(x, t)
	VMULSS(t, x, x)
	return x
}

// f16F32Product returns an xmm whose lane 0 is fp16(*a) * float32(*b).
func f16F32Product(a, b Mem) VecVirtual {
	ga := GP32()
	MOVWLZX(a, ga)
	x := XMM()
	VMOVD(ga, x)
	VCVTPH2PS(x, x)
	VMULSS(b, x, x)
	return x
}

// loop emits the skeleton `for ; n > 0; n-- { body; advance }`.
func loop(name string, n Register, body func()) {
	top, done := name+"_loop", name+"_done"
	Label(top)
	TESTQ(n, n)
	JZ(LabelRef(done))
	body()
	DECQ(n)
	JMP(LabelRef(top))
	Label(done)
}

// loopBy is loop counting n down by step per pass (n a multiple of step).
func loopBy(name string, n Register, step int, body func()) {
	top, done := name+"_loop", name+"_done"
	Label(top)
	TESTQ(n, n)
	JZ(LabelRef(done))
	body()
	SUBQ(U8(step), n)
	JMP(LabelRef(top))
	Label(done)
}

func label(kernel, part string) string { return fmt.Sprintf("%s_%s", kernel, part) }
