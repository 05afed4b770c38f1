package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// AVX-512 tiles of the 16-bit float weights (F16, BF16): the activations
// come as float32 (prepF16AVX512 / prepBF16AVX512 widen the vec-dot row,
// itself F16 or BF16 as ggml makes it, zero-padded to 16), the weights are
// widened sixteen at a time once per group and met by T tokens with one
// FMA each; sixteen lanes per token, reduced as hsum16 does. The one-row
// kernel is the T = 1 tile, so every (row, token) gets the same
// operations whatever the batch. A row's last partial group is read with
// a masked load (no byte past the row).

func genHalf512() {
	for _, bf := range []bool{false, true} {
		prepHalf512(bf)
		for _, T := range []int{16, 8, 4, 2, 1} {
			halfTile512(bf, T)
		}
	}
}

func halfName(bf bool) string {
	if bf {
		return "BF16"
	}
	return "F16"
}

// halfRef is the quant reference of a 16-bit float type's dot product.
func halfRef(bf bool) string {
	if bf {
		return "dotBF16"
	}
	return "dotF16"
}

// widen16 loads sixteen 16-bit floats at m (under mask k where k is not
// nil, the rest zero) as float32 into a new zmm.
func widen16(bf bool, m Mem, k Register) VecVirtual {
	z := ZMM()
	switch {
	case !bf && k == nil:
		VCVTPH2PS(m, z)
	case !bf:
		VCVTPH2PS_Z(m, k, z)
	case k == nil:
		VPMOVZXWD(m, z)
		VPSLLD(U8(16), z, z)
	default:
		VPMOVZXWD_Z(m, k, z)
		VPSLLD(U8(16), z, z)
	}
	return z
}

// tailMask returns an opmask with the low r bits set (r a register, 1..15).
func tailMask(r GPVirtual) Register {
	g := GP32()
	MOVL(U32(0xffff), g)
	BZHIL(r.As32(), g, g) // the bits below r
	k := K()
	KMOVW(g, k)
	return k
}

// prepHalf512 emits prep<F16|BF16>AVX512(x *byte, nb int, dst *byte): nb
// 16-bit floats as float32 at dst, padded with zeros to a multiple of 16.
func prepHalf512(bf bool) {
	name := "prep" + halfName(bf) + "AVX512"
	text(name, NOSPLIT, "func(x *byte, nb int, dst *byte)")
	Doc(name+" widens nb "+halfName(bf)+" values to float32, zero-padded to a multiple of 16",
		"(the activations of quant."+halfRef(bf)+").")
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	dst := Load(Param("dst"), GP64())
	n := GP64()
	MOVQ(nb, n)
	SHRQ(U8(4), n)
	loop(name, n, func() {
		VMOVUPS(widen16(bf, Mem{Base: x}, nil), Mem{Base: dst})
		ADDQ(U8(32), x)
		ADDQ(U8(64), dst)
	})
	ANDQ(U8(15), nb)
	JZ(LabelRef(name + "_ret"))
	VMOVUPS(widen16(bf, Mem{Base: x}, tailMask(nb.(GPVirtual))), Mem{Base: dst})
	Label(name + "_ret")
	VZEROUPPER()
	RET()
}

// halfTile512 emits gemm<F16|BF16>AVX512x<T> (the block-lanes signature;
// a block is one value, nb the row length).
func halfTile512(bf bool, T int) {
	name := fmt.Sprintf("gemm%sAVX512x%d", halfName(bf), T)
	text(name, NOSPLIT, "func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)")
	Doc(name+fmt.Sprintf(" is the dot product of one %s weight row with %d tokens", halfName(bf), T),
		"prepared as float32 (prep"+halfName(bf)+"AVX512; quant."+halfRef(bf)+"): sixteen lanes of",
		"FMAs per token.")
	w := Load(Param("w"), GP64())
	nb := Load(Param("nb"), GP64())
	xt := newTokAddr(T)
	acc := tileAccIn(name, T)
	n := GP64()
	MOVQ(nb, n)
	SHRQ(U8(4), n)
	group := func(k Register) {
		wv := widen16(bf, Mem{Base: w}, k)
		for t := range acc {
			VFMADD231PS(xt.at(t, 0), wv, acc[t])
		}
	}
	loop(name, n, func() {
		if T <= tilePrefetchT {
			PREFETCHT0(Mem{Base: w, Disp: rowPrefetch})
		}
		group(nil)
		ADDQ(U8(32), w)
		xt.advance(64)
	})
	ANDQ(U8(15), nb)
	JZ(LabelRef(name + "_end"))
	group(tailMask(nb.(GPVirtual)))
	Label(name + "_end")
	tileAccOut(name, acc)
}
