package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// blockKernel describes a dot product over blocks: the per-block work is
// split into what depends on the activation block only (loadX) and what is
// done per weight row (row), so that the four-row kernel shares the first
// part between its rows while each row runs exactly the one-row kernel's
// instructions (and so gets the same bits).
type blockKernel struct {
	name           string // Go name of the one-row kernel; the four-row one adds "x4"
	doc            []string
	wBytes, xBytes int  // bytes per block (per iteration when pair is false)
	pair           bool // an iteration covers two blocks; a lone last block runs with tail=true
	zmm            bool // the accumulators are zmm (sixteen lanes)
	// setup emits loop-invariant constants.
	setup func()
	// loadX emits the activation-side work of one iteration.
	loadX func(x Mem, tail bool) any
	// row emits one row's work for one iteration, adding into acc.
	row func(w Mem, xv any, acc VecVirtual, tail bool)
}

// emit writes the one-row kernel (rows == 1),
//
//	func(w, x *byte, nb int) float32
//
// or the four-row kernel (rows == 4),
//
//	func(w *byte, stride int, x *byte, nb int, dst *[4]float32)
//
// whose row r starts at w + r*stride.
func (k *blockKernel) emit(rows int) {
	name := k.name
	if rows == 1 {
		TEXT(name, NOSPLIT, "func(w, x *byte, nb int) float32")
	} else {
		name += "x4"
		TEXT(name, NOSPLIT, "func(w *byte, stride int, x *byte, nb int, dst *[4]float32)")
	}
	Doc(append([]string{name + " is the dot product of nb blocks:"}, k.doc...)...)
	wp := make([]Register, rows)
	wp[0] = Load(Param("w"), GP64())
	if rows > 1 {
		stride := Load(Param("stride"), GP64())
		for r := 1; r < rows; r++ {
			wp[r] = GP64()
			LEAQ(Mem{Base: wp[r-1], Index: stride, Scale: 1}, wp[r])
		}
	}
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	k.setup()
	acc := make([]VecVirtual, rows)
	for r := range acc {
		if k.zmm {
			acc[r] = ZMM()
			VPXORD(acc[r], acc[r], acc[r])
		} else {
			acc[r] = YMM()
			VXORPS(acc[r], acc[r], acc[r])
		}
	}
	iter := func(tail bool) {
		xv := k.loadX(Mem{Base: x}, tail)
		for r := range rows {
			k.row(Mem{Base: wp[r]}, xv, acc[r], tail)
		}
	}
	per := 1
	n := nb
	if k.pair {
		per = 2
		n = GP64()
		MOVQ(nb, n)
		SHRQ(U8(1), n)
	}
	loop(name, n, func() {
		iter(false)
		for r := range rows {
			ADDQ(U32(per*k.wBytes), wp[r])
		}
		ADDQ(U32(per*k.xBytes), x)
	})
	if k.pair {
		TESTQ(U32(1), nb)
		JZ(LabelRef(name + "_reduce"))
		iter(true)
		Label(name + "_reduce")
	}
	if rows == 1 {
		var s VecVirtual
		if k.zmm {
			s = hsum16(acc[0])
		} else {
			s = hsum8(acc[0])
		}
		VZEROUPPER()
		Store(s, ReturnIndex(0))
		RET()
		return
	}
	dst := Load(Param("dst"), GP64())
	for r := range rows {
		var s VecVirtual
		if k.zmm {
			s = hsum16(acc[r])
		} else {
			s = hsum8(acc[r])
		}
		VMOVSS(s, Mem{Base: dst, Disp: 4 * r})
	}
	VZEROUPPER()
	RET()
}
