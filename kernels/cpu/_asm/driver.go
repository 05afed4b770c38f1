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
		text(name, NOSPLIT, "func(w, x *byte, nb int) float32")
	} else {
		name += "x4"
		text(name, NOSPLIT, "func(w *byte, stride int, x *byte, nb int, dst *[4]float32)")
	}
	Doc(append([]string{name + " is the dot product of nb blocks:"}, k.doc...)...)
	wp, pf := rowPointers(rows)
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
		if rows > 1 {
			prefetchNext(pf, rows*per*k.wBytes)
		}
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

// prefetchNext asks for the n bytes at pf and moves pf on by n. The
// four-row kernels use it to stream the next call's rows while they work:
// with rows stride apart and read in step, pf starts at row 4 and keeps a
// block of four rows ahead (for the contiguous rows of a matrix, the rows
// MatMul will pass next). Without it the hardware prefetcher, which sees
// four interleaved streams, falls behind: a four-row Q4_K kernel read 6.9
// GB/s from DRAM on one core without, 11.9 with (NOTES.md). Prefetches
// never fault, past the end of a mapping included.
func prefetchNext(pf Register, n int) {
	for o := 0; o < n; o += 64 {
		PREFETCHT0(Mem{Base: pf, Disp: o})
	}
	ADDQ(U32(n), pf)
}

// rowPrefetch is how far ahead of its loads a one-row decode kernel (the
// T = 1 block-lanes tiles) asks for its row: 4 KiB, a few rows of a
// 2048-column matrix, since MatMul gives a thread consecutive rows. One
// core read Q4_0 from DRAM at 9.2 GB/s with the earlier distance of two
// groups (576 bytes), 11.8 with 4 KiB, 11.6 with 8 KiB (NOTES.md).
const rowPrefetch = 4096

// tilePrefetchT: tiles of up to this many tokens prefetch rowPrefetch
// ahead too. Batched decode (eight sequences: T = 8 tiles) reads each row
// from DRAM once; without the prefetch the T = 8 tiles ran at about half
// their in-cache rate there (NOTES.md, "Batched decode"). Prefill's T = 16
// tiles reread blocks of rows from L2 and do without.
const tilePrefetchT = 8

// rowPointers loads the row parameters of a one-row (rows = 1: w) or
// four-row decode kernel (w, stride): the rows' addresses, and for four
// rows pf, the address of the row after them (for prefetchNext).
func rowPointers(rows int) (wp []Register, pf Register) {
	wp = make([]Register, rows)
	wp[0] = Load(Param("w"), GP64())
	if rows > 1 {
		stride := Load(Param("stride"), GP64())
		for r := 1; r < rows; r++ {
			wp[r] = GP64()
			LEAQ(Mem{Base: wp[r-1], Index: stride, Scale: 1}, wp[r])
		}
		pf = GP64()
		LEAQ(Mem{Base: wp[rows-1], Index: stride, Scale: 1}, pf)
	}
	return wp, pf
}

// tileAccIn returns T zmm accumulators of a tile (the block-lanes
// signature): loaded from acc when flags&1, else zero.
func tileAccIn(name string, T int) []VecVirtual {
	flags := Load(Param("flags"), GP64())
	accp := Load(Param("acc"), GP64())
	acc := make([]VecVirtual, T)
	for t := range acc {
		acc[t] = ZMM()
		VPXORD(acc[t], acc[t], acc[t])
	}
	TESTQ(U32(1), flags)
	JZ(LabelRef(name + "_start"))
	for t := range acc {
		VMOVUPS(Mem{Base: accp, Disp: 64 * t}, acc[t])
	}
	Label(name + "_start")
	return acc
}

// tileAccOut ends a tile with sixteen-lane accumulators: when flags&2,
// token t's hsum16 goes to dst + t·ldd (storeSumsAll); else the
// accumulators go back to acc.
func tileAccOut(name string, acc []VecVirtual) {
	flags := Load(Param("flags"), GP64())
	TESTQ(U32(2), flags)
	JNZ(LabelRef(name + "_final"))
	accp := Load(Param("acc"), GP64())
	for t := range acc {
		VMOVUPS(acc[t], Mem{Base: accp, Disp: 64 * t})
	}
	VZEROUPPER()
	RET()
	Label(name + "_final")
	dst := Load(Param("dst"), GP64())
	ldd := Load(Param("ldd"), GP64())
	storeSumsAll(acc, dst, ldd)
	VZEROUPPER()
	RET()
}
