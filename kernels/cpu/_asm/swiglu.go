package main

import (
	"math"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// swigluConst are the constants of genSwiGLU, each repeated in the eight
// lanes of a 32-byte row of one table, so that every FMA can read its
// constant from memory and the sixteen ymm registers stay free for work.
var swigluConst = []struct {
	name string
	v    uint32 // bits
}{
	{"lo", math.Float32bits(-87)}, // e^-87 + 1 == 1 in float32: silu(x) = x
	{"hi", math.Float32bits(88)},  // e^88 is still finite
	{"log2e", math.Float32bits(1.44269504088896341)},
	{"c1", math.Float32bits(0.693359375)},     // ln2, high part (exact)
	{"c2", math.Float32bits(-2.12194440e-4)},  // ln2 - c1
	{"p0", math.Float32bits(1.9875691500e-4)}, // Cephes expf on [-ln2/2, ln2/2]
	{"p1", math.Float32bits(1.3981999507e-3)},
	{"p2", math.Float32bits(8.3334519073e-3)},
	{"p3", math.Float32bits(4.1665795894e-2)},
	{"p4", math.Float32bits(1.6666665459e-1)},
	{"p5", math.Float32bits(5.0000001201e-1)},
	{"one", math.Float32bits(1)},
	{"bias", 127}, // the exponent bias, an integer
}

// genSwiGLU emits func(dst, gate, up *float32, n int): dst[i] =
// silu(gate[i])·up[i] for n (a multiple of 8) values, silu(x) = x/(1+e^-x)
// with e^t computed in eight lanes as Cephes' expf does it: t clamped to
// [-87, 88], t = n·ln2 + r, a degree-6 polynomial for e^r, 2^n from the
// exponent bits (within 2 ulp of e^t). A NaN gate stays NaN (x/… keeps it).
func genSwiGLU(c map[string]Mem) {
	name := "swigluAVX2"
	text(name, NOSPLIT, "func(dst, gate, up *float32, n int)")
	Doc(name+" sets dst[i] = silu(gate[i])·up[i] for n values (n a multiple of 8),",
		"with a polynomial e^x (kernels/cpu.swigluGeneric is the reference).")
	dst := Load(Param("dst"), GP64())
	gate := Load(Param("gate"), GP64())
	up := Load(Param("up"), GP64())
	n := Load(Param("n"), GP64())
	Label(name + "_loop")
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	x := YMM()
	VMOVUPS(Mem{Base: gate}, x)
	t := YMM()
	VXORPS(t, t, t)
	VSUBPS(x, t, t) // t = -x
	VMAXPS(c["lo"], t, t)
	VMINPS(c["hi"], t, t)
	p := expLanes(c, t)
	VADDPS(c["one"], p, p) // 1 + e^-x
	VDIVPS(p, x, x)        // silu(x)
	VMULPS(Mem{Base: up}, x, x)
	VMOVUPS(x, Mem{Base: dst})
	ADDQ(U8(32), gate)
	ADDQ(U8(32), up)
	ADDQ(U8(32), dst)
	SUBQ(U8(8), n)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}

// expConsts emits the constant table of genSwiGLU and genExpShift.
func expConsts() map[string]Mem {
	tbl := GLOBL("swigluConsts", RODATA|NOPTR)
	c := map[string]Mem{}
	for i, k := range swigluConst {
		for l := 0; l < 8; l++ {
			DATA(32*i+4*l, U32(k.v))
		}
		c[k.name] = tbl.Offset(32 * i)
	}
	return c
}

// expLanes returns e^t in eight lanes for t already clamped to [-87, 88]
// (Cephes' expf: t = k·ln2 + r, a degree-6 polynomial for e^r, 2^k from
// the exponent bits). t is left unchanged.
func expLanes(c map[string]Mem, t VecVirtual) VecVirtual {
	k := YMM()
	VMULPS(c["log2e"], t, k)
	VROUNDPS(U8(0), k, k) // to nearest
	r := YMM()
	VMOVAPS(t, r)
	VFNMADD231PS(c["c1"], k, r) // r = t - k·c1
	VFNMADD231PS(c["c2"], k, r) // r -= k·c2
	p := YMM()
	VMOVUPS(c["p0"], p)
	for _, pc := range []string{"p1", "p2", "p3", "p4", "p5"} {
		VFMADD213PS(c[pc], r, p) // p = p·r + pc
	}
	r2 := YMM()
	VMULPS(r, r, r2)
	VADDPS(c["one"], r, r) // r + 1
	VFMADD213PS(r, r2, p)  // p = p·r² + r + 1 = e^r
	ki := YMM()
	VCVTPS2DQ(k, ki)
	VPADDD(c["bias"], ki, ki)
	VPSLLD(U8(23), ki, ki) // 2^k
	VMULPS(ki, p, p)       // e^t
	return p
}

// genExpShift emits func(x *float32, m float32, n int): x[i] = e^(x[i]-m)
// for n (a multiple of 8) values: softmax's exponentials. Below -87 (and
// -Inf: masked positions) the result is 0, NaN stays NaN.
func genExpShift(c map[string]Mem) {
	name := "expShiftAVX2"
	text(name, NOSPLIT, "func(x *float32, m float32, n int)")
	Doc(name+" sets x[i] = e^(x[i]-m) for n values (n a multiple of 8),",
		"with a polynomial e^x (kernels/cpu.expShiftGeneric is the reference).")
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	mx := XMM()
	Load(Param("m"), mx)
	m := YMM()
	VBROADCASTSS(mx, m)
	Label(name + "_loop")
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	v := YMM()
	VMOVUPS(Mem{Base: x}, v)
	VSUBPS(m, v, v) // v = x - m
	keep := YMM()
	VCMPPS(U8(0x15), c["lo"], v, keep) // not (v < -87): -Inf and tiny values become 0
	t := YMM()
	VMAXPS(c["lo"], v, t)
	VMINPS(c["hi"], t, t)
	p := expLanes(c, t)
	VANDPS(keep, p, p)
	nan := YMM()
	VCMPPS(U8(0x03), v, v, nan) // unordered: v is NaN (the clamp lost it)
	VBLENDVPS(nan, v, p, p)
	VMOVUPS(p, Mem{Base: x})
	ADDQ(U8(32), x)
	SUBQ(U8(8), n)
	JMP(LabelRef(name + "_loop"))
	Label(name + "_done")
	VZEROUPPER()
	RET()
}
