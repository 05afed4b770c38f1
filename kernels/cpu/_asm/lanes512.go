package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Sub-block lanes: the avx512 level's kernels for the K-quant-like types
// whose weights are repacked at load (Q6_K, Q5_K, IQ4_XS; q6k512.go,
// q5k512.go, iq4xs512.go). The weights of a 256-quant super-block come as
// four 64-byte slices of unsigned bytes whose dword lanes each hold quants
// of one sub-block only, the activations in the same order (a prep per
// type, 384 bytes a block: the quants at 0, sixteen 32-bit values at 256,
// dx at 320). Per token and super-block:
//
//	s = start (the int32 at 256, or 0)
//	s += four VPDPBUSD (slice × activations)
//	acc += float(s) · (dsc · dx)           (dsc: the row's per-lane scale)
//	acc −= dmm · (the float32 at 256)      (types with mins: Q5_K)
//
// and at the end the sixteen lanes reduced as hsum16 does. The decode
// kernels (one row or four, one token) and the tiles (one row, T tokens)
// do exactly these operations, so their bits agree.
type laneKernel struct {
	name, prep, ref string // the kernels' prefix, the prep and the reference dot
	bb              int    // bytes per repacked block
	setup           func()
	// row emits the row work of the super-block at w: the four slices, the
	// per-lane scales, and (types with mins) the per-lane min factors.
	row func(w Mem) (W [4]VecVirtual, dsc, dmm VecVirtual)
}

const laneBlock = 384 // the activations' bytes per super-block

func (k *laneKernel) emitAll() {
	k.decode(1)
	k.decode(4)
	for _, T := range []int{16, 8, 4, 2, 1} {
		k.tile(T)
	}
}

// token adds one token's super-block (activations at x(disp)) to acc.
func (k *laneKernel) token(W [4]VecVirtual, dsc, dmm, zero VecVirtual, x func(disp int) Mem, acc VecVirtual) {
	s := ZMM()
	if dmm != nil {
		VPXORD(zero, zero, s)
	} else {
		VMOVDQU64(x(256), s)
	}
	for j := range W {
		VPDPBUSD(x(64*j), W[j], s)
	}
	VCVTDQ2PS(s, s)
	v := ZMM()
	VMULPS_BCST(x(320), dsc, v)
	VFMADD231PS(v, s, acc)
	if dmm != nil {
		VFNMADD231PS(x(256), dmm, acc)
	}
}

// decode emits dot<name> (rows = 1), func(w, x *byte, nb int) float32, or
// dot<name>x4 (rows = 4), func(w *byte, stride int, x *byte, nb int, dst
// *[4]float32).
func (k *laneKernel) decode(rows int) {
	name := "dot" + k.name
	if rows == 1 {
		TEXT(name, NOSPLIT, "func(w, x *byte, nb int) float32")
	} else {
		name += "x4"
		TEXT(name, NOSPLIT, "func(w *byte, stride int, x *byte, nb int, dst *[4]float32)")
	}
	Doc(name+" is the dot product of nb repacked weight blocks with Q8_K activations",
		"laid out by "+k.prep+" ("+k.ref+"), in the avx512 level's sub-block lanes; "+
			map[bool]string{true: "one row.", false: "rows w + r·stride, r = 0..3."}[rows == 1])
	wp := make([]Register, rows)
	wp[0] = Load(Param("w"), GP64())
	var pf Register
	if rows > 1 {
		stride := Load(Param("stride"), GP64())
		for r := 1; r < rows; r++ {
			wp[r] = GP64()
			LEAQ(Mem{Base: wp[r-1], Index: stride, Scale: 1}, wp[r])
		}
		pf = GP64()
		LEAQ(Mem{Base: wp[rows-1], Index: stride, Scale: 1}, pf)
	}
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	k.setup()
	zero := bcastDZ(0)
	acc := make([]VecVirtual, rows)
	for r := range acc {
		acc[r] = ZMM()
		VPXORD(zero, zero, acc[r])
	}
	loop(name, nb, func() {
		if rows > 1 {
			prefetchNext(pf, 4*k.bb)
		}
		xm := Mem{Base: x}
		for r := range rows {
			W, dsc, dmm := k.row(Mem{Base: wp[r]})
			k.token(W, dsc, dmm, zero, xm.Offset, acc[r])
		}
		for r := range rows {
			ADDQ(U32(k.bb), wp[r])
		}
		ADDQ(U32(laneBlock), x)
	})
	if rows == 1 {
		s := hsum16(acc[0])
		VZEROUPPER()
		Store(s, ReturnIndex(0))
		RET()
		return
	}
	dst := Load(Param("dst"), GP64())
	for r := range acc {
		VMOVSS(hsum16(acc[r]), Mem{Base: dst, Disp: 4 * r})
	}
	VZEROUPPER()
	RET()
}

// tile emits gemm<name>x<T> (the signature of the block-lanes tiles; the
// acc area holds each token's sixteen lanes). The accumulators stay in
// registers for the whole row.
func (k *laneKernel) tile(T int) {
	name := fmt.Sprintf("gemm%sx%d", k.name, T)
	attr := NOSPLIT
	if 64*T > 512 {
		attr = 0 // the frame exceeds the nosplit limit
	}
	TEXT(name, attr, "func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)")
	Doc(name+fmt.Sprintf(" is the dot product of one repacked weight row with %d tokens", T),
		"laid out by "+k.prep+", in the avx512 level's sub-block lanes (dot"+k.name+"'s bits per token).")
	w := Load(Param("w"), GP64())
	nb := Load(Param("nb"), GP64())
	xt := newTokAddr(T)
	loc := AllocLocal(64 * T)
	k.setup()
	zero := bcastDZ(0)

	flags := Load(Param("flags"), GP64())
	accp := Load(Param("acc"), GP64())
	TESTQ(U32(1), flags)
	JZ(LabelRef(name + "_zero"))
	for t := range T {
		z := ZMM()
		VMOVUPS(Mem{Base: accp, Disp: 64 * t}, z)
		VMOVUPS(z, loc.Offset(64*t))
	}
	JMP(LabelRef(name + "_start"))
	Label(name + "_zero")
	gz := GP64()
	XORQ(gz, gz)
	for o := 0; o < 64*T; o += 8 {
		MOVQ(gz, loc.Offset(o))
	}
	Label(name + "_start")
	acc := make([]VecVirtual, T)
	for t := range acc {
		acc[t] = ZMM()
		VMOVUPS(loc.Offset(64*t), acc[t])
	}
	loop(name, nb, func() {
		wm := Mem{Base: w}
		if T <= tilePrefetchT {
			for o := 0; o < k.bb; o += 64 {
				PREFETCHT0(wm.Offset(rowPrefetch + o))
			}
		}
		W, dsc, dmm := k.row(wm)
		for t := range T {
			k.token(W, dsc, dmm, zero, func(disp int) Mem { return xt.at(t, disp) }, acc[t])
		}
		ADDQ(U32(k.bb), w)
		xt.advance(laneBlock)
	})
	flags2 := Load(Param("flags"), GP64())
	TESTQ(U32(2), flags2)
	JNZ(LabelRef(name + "_final"))
	accp2 := Load(Param("acc"), GP64())
	for t := range T {
		VMOVUPS(acc[t], Mem{Base: accp2, Disp: 64 * t})
	}
	VZEROUPPER()
	RET()
	Label(name + "_final")
	dst := Load(Param("dst"), GP64())
	ldd := Load(Param("ldd"), GP64())
	d := GP64()
	MOVQ(dst, d)
	for t := range T {
		VMOVSS(hsum16(acc[t]), Mem{Base: d})
		if t+1 < T {
			ADDQ(ldd, d)
		}
	}
	VZEROUPPER()
	RET()
}
