package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// swigluConst are the constants of ggml's ggml_v_expf (its AVX-512 form,
// which produced llama.cpp's reference outputs), each repeated in the eight
// lanes of a 32-byte row of one table, so that every FMA can read its
// constant from memory and the sixteen ymm registers stay free for work.
var swigluConst = []struct {
	name string
	v    uint32 // bits
}{
	{"round", 0x4b400000}, // 0x1.8p23: adding it rounds to an integer
	{"log2e", 0x3fb8aa3b}, // 0x1.715476p+0
	{"ln2hi", 0x3f317200}, // 0x1.62e4p-1
	{"ln2lo", 0x35bfbe8e}, // 0x1.7f7d1cp-20
	{"c5", 0x3c072010},    // 0x1.0e4020p-7
	{"c4", 0x3d2b9f17},    // 0x1.573e2ep-5
	{"c3", 0x3e2aaf33},    // 0x1.555e66p-3
	{"c2", 0x3efffedb},    // 0x1.fffdb6p-2
	{"c1", 0x3f7ffff6},    // 0x1.ffffecp-1
	{"one", 0x3f800000},   // 1
	{"limit", 0x43400000}, // 192
	{"abs", 0x7fffffff},   // |x| mask
	{"inf", 0x7f800000},   // +Inf
	{"bias", 127},         // the exponent bias, an integer
}

// genSwiGLU emits func(dst, gate, up *float32, n int): dst[i] =
// silu(gate[i])·up[i] for n (a multiple of 8) values as ggml's swiglu
// does: x/(1 + e^(0−x)) with ggml_v_expf (expLanes), then ·up.
func genSwiGLU(c map[string]Mem) {
	name := "swigluAVX2"
	text(name, NOSPLIT, "func(dst, gate, up *float32, n int)")
	Doc(name+" sets dst[i] = silu(gate[i])·up[i] for n values (n a multiple of 8),",
		"with ggml's e^x (kernels/cpu.swigluGeneric is the reference).")
	dst := Load(Param("dst"), GP64())
	gate := Load(Param("gate"), GP64())
	up := Load(Param("up"), GP64())
	n := Load(Param("n"), GP64())
	loopBy(name, n, 8, func() {
		x := YMM()
		VMOVUPS(Mem{Base: gate}, x)
		t := YMM()
		VXORPS(t, t, t)
		VSUBPS(x, t, t) // t = 0 - x
		p := expLanes(c, t)
		VADDPS(c["one"], p, p) // 1 + e^-x
		VDIVPS(p, x, x)        // silu(x)
		VMULPS(Mem{Base: up}, x, x)
		VMOVUPS(x, Mem{Base: dst})
		ADDQ(U8(32), gate)
		ADDQ(U8(32), up)
		ADDQ(U8(32), dst)
	})
	VZEROUPPER()
	RET()
}

// genSiLU emits func(dst, x *float32, n int): dst[i] = x/(1 + e^(0−x))
// for n (a multiple of 8) values, ggml's silu (ggml_v_silu).
func genSiLU(c map[string]Mem) {
	name := "siluAVX2"
	text(name, NOSPLIT, "func(dst, x *float32, n int)")
	Doc(name+" sets dst[i] = silu(x[i]) for n values (n a multiple of 8),",
		"with ggml's e^x (kernels/cpu.SiLU is the reference).")
	dst := Load(Param("dst"), GP64())
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	loopBy(name, n, 8, func() {
		v := YMM()
		VMOVUPS(Mem{Base: x}, v)
		t := YMM()
		VXORPS(t, t, t)
		VSUBPS(v, t, t) // 0 - x
		p := expLanes(c, t)
		VADDPS(c["one"], p, p)
		VDIVPS(p, v, v)
		VMOVUPS(v, Mem{Base: dst})
		ADDQ(U8(32), x)
		ADDQ(U8(32), dst)
	})
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

// expLanes returns e^t in eight lanes as ggml_v_expf's AVX-512 form
// computes it (kernels/cpu.ExpGGML): n = round(t·log2e) by the 1.5·2^23
// trick, b = t − n·ln2 in two fused steps, a degree-5 polynomial in b in
// ggml's FMA order, times 2^n; 0 where n < −192 and +Inf where n > 192.
// Without VSCALEFPS the scaling is two multiplications by 2^⌊n/2⌋ and
// 2^(n−⌊n/2⌋), both normal: the first is exact, so the result is rounded
// once, as scalef rounds it. NaN stays NaN; t is left unchanged.
func expLanes(c map[string]Mem, t VecVirtual) VecVirtual {
	n := YMM()
	VMOVUPS(c["round"], n)
	VFMADD231PS(c["log2e"], t, n) // z = t·log2e + 1.5·2^23
	VSUBPS(c["round"], n, n)      // n = z − 1.5·2^23
	b := YMM()
	VMOVAPS(t, b)
	VFNMADD231PS(c["ln2hi"], n, b) // b = t − n·ln2hi
	VFNMADD231PS(c["ln2lo"], n, b) // b −= n·ln2lo
	u := YMM()
	VMULPS(b, b, u)
	j := YMM()
	VMOVUPS(c["c5"], j)
	VFMADD213PS(c["c4"], b, j) // c5·b + c4
	q := YMM()
	VMOVUPS(c["c3"], q)
	VFMADD213PS(c["c2"], b, q) // c3·b + c2
	VFMADD213PS(q, u, j)       // (c5·b + c4)·u + (c3·b + c2)
	q2 := YMM()
	VMOVUPS(c["c1"], q2)
	VFMADD213PS(c["one"], b, q2) // c1·b + 1
	VFMADD213PS(q2, u, j)        // j = (…)·u + (c1·b + 1)
	// 2^a, 2^(n−a) with a = n>>1 (arithmetic), from the exponent bits.
	ni := YMM()
	VCVTPS2DQ(n, ni)
	a := YMM()
	VPSRAD(U8(1), ni, a)
	VPSUBD(a, ni, ni)
	VPADDD(c["bias"], a, a)
	VPSLLD(U8(23), a, a)
	VPADDD(c["bias"], ni, ni)
	VPSLLD(U8(23), ni, ni)
	VMULPS(a, j, j)
	VMULPS(ni, j, j)
	// |n| > 192: 0 or +Inf as n's sign says (NaN fails the compare).
	big := YMM()
	VANDPS(c["abs"], n, big)
	VCMPPS(U8(0x1e), c["limit"], big, big) // |n| > 192, ordered
	pos := YMM()
	VXORPS(pos, pos, pos)
	VCMPPS(U8(0x1e), pos, n, pos) // n > 0
	VANDPS(c["inf"], pos, pos)    // +Inf where n > 0, else 0
	VBLENDVPS(big, pos, j, j)
	return j
}

// genExpShift emits func(x *float32, m float32, n int): x[i] = e^(x[i]-m)
// for n (a multiple of 8) values: softmax's exponentials, ggml's
// (expLanes). −Inf (masked positions) gives 0, NaN stays NaN.
func genExpShift(c map[string]Mem) {
	name := "expShiftAVX2"
	text(name, NOSPLIT, "func(x *float32, m float32, n int)")
	Doc(name+" sets x[i] = e^(x[i]-m) for n values (n a multiple of 8),",
		"with ggml's e^x (kernels/cpu.expShiftGeneric is the reference).")
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	mx := XMM()
	Load(Param("m"), mx)
	m := YMM()
	VBROADCASTSS(mx, m)
	loopBy(name, n, 8, func() {
		v := YMM()
		VMOVUPS(Mem{Base: x}, v)
		VSUBPS(m, v, v) // v = x - m
		p := expLanes(c, v)
		VMOVUPS(p, Mem{Base: x})
		ADDQ(U8(32), x)
	})
	VZEROUPPER()
	RET()
}
