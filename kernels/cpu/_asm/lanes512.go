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
		text(name, NOSPLIT, "func(w, x *byte, nb int) float32")
	} else {
		name += "x4"
		text(name, NOSPLIT, "func(w *byte, stride int, x *byte, nb int, dst *[4]float32)")
	}
	Doc(name+" is the dot product of nb repacked weight blocks with Q8_K activations",
		"laid out by "+k.prep+" ("+k.ref+"), in the avx512 level's sub-block lanes; "+
			map[bool]string{true: "one row.", false: "rows w + r·stride, r = 0..3."}[rows == 1])
	wp, pf := rowPointers(rows)
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
	text(name, NOSPLIT, "func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)")
	Doc(name+fmt.Sprintf(" is the dot product of one repacked weight row with %d tokens", T),
		"laid out by "+k.prep+" ("+k.ref+"), in the avx512 level's sub-block",
		"lanes (dot"+k.name+"'s bits per token).")
	w := Load(Param("w"), GP64())
	nb := Load(Param("nb"), GP64())
	xt := newTokAddr(T)
	k.setup()
	zero := bcastDZ(0)
	acc := tileAccIn(name, T)
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
	tileAccOut(name, acc)
}
