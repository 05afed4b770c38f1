package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// Q8_0 weights in ggml's order (quant.dotQ8_0Q8_0): per (row, token) eight
// float32 lanes, lane i of block b adding float(Σ of products 4i..4i+3)
// times dw·dx with one FMA, the blocks in order, hsum8 at the end. That is
// ggml_vec_dot_q8_0_q8_0 and tinyBLAS_Q0_AVX on x86, so these kernels give
// llama.cpp's bits; the price is one convert, one multiply and one FMA per
// block and token (block lanes, gemm512.go, do them once per sixteen
// blocks). The integer sums are exact for every input byte (−128
// included). The activations come prepared: for the VNNI tiles
// (prepQ8_0G, 128 bytes a block) the 32 quants, the correction −128·Σ of
// each four quants as eight dwords (VPDPBUSD on w+128), dx as float32
// eight times; for the AVX2 tiles (prepQ8_0GW, 96 bytes) the quants
// widened to int16, dx. The VNNI tiles of two tokens or more take tokens in
// pairs, one zmm per pair (token a in the low eight lanes, b in the high
// eight): kernels/cpu.pairQ8_0G rewrites a pair's two block slots as
// [x_a x_b corr_a corr_b] and [dx_a dx_b], so that every operand of a pair
// is one 64-byte load and a block stays at its own offset in each row
// (chunking cuts rows at any block).

const (
	q8gBlockBytes  = 128 // VNNI layout
	q8gWBlockBytes = 96  // AVX2 layout
	q8gCorrOff     = 32
	q8gDxOff       = 64
)

// f16Bcast8 returns a ymm with the float16 at m, as float32, in every lane.
func f16Bcast8(m Mem) VecVirtual {
	h := XMM()
	VPBROADCASTW(m, h)
	d := YMM()
	VCVTPH2PS(h, d)
	return d
}

func genQ8_0G() {
	genPrepQ8_0G()
	genPrepQ8_0GW()
	for _, T := range []int{8, 4, 2} {
		q8GPairTile(T)
	}
	q8GTile(1, true)
	for _, T := range []int{4, 2, 1} {
		q8GTile(T, false)
	}
}

// genPrepQ8_0G emits prepQ8_0G(x *byte, nb int, dst *byte) (AVX2).
func genPrepQ8_0G() {
	name := "prepQ8_0G"
	text(name, NOSPLIT, "func(x *byte, nb int, dst *byte)")
	Doc(name+" lays nb Q8_0 activation blocks out for the VNNI ggml-order Q8_0",
		"kernels, 128 bytes a block: the quants, 0x4b400000 − 128·Σ of each four",
		"quants (dwords), dx as float32 eight times (the activations of",
		"quant.dotQ8_0Q8_0).")
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	dst := Load(Param("dst"), GP64())
	ones8 := bcastD(0x01010101)
	ones16 := bcastD(0x00010001)
	bias := bcastD(0x4b400000)
	loop(name, nb, func() {
		q := YMM()
		VMOVDQU(Mem{Base: x, Disp: 2}, q)
		VMOVDQU(q, Mem{Base: dst})
		p := YMM()
		VPMADDUBSW(q, ones8, p) // pairs of quants (the ones unsigned)
		VPMADDWD(ones16, p, p)  // fours, as dwords
		VPSLLD(U8(7), p, p)
		z := YMM()
		VPSUBD(p, bias, z) // 0x4b400000 − 128·Σ (see q8GPairTile)
		VMOVDQU(z, Mem{Base: dst, Disp: q8gCorrOff})
		VMOVUPS(f16Bcast8(Mem{Base: x}), Mem{Base: dst, Disp: q8gDxOff})
		ADDQ(U8(34), x)
		ADDQ(U32(q8gBlockBytes), dst)
	})
	VZEROUPPER()
	RET()
}

// genPrepQ8_0GW emits prepQ8_0GW(x *byte, nb int, dst *byte) (AVX2).
func genPrepQ8_0GW() {
	name := "prepQ8_0GW"
	text(name, NOSPLIT, "func(x *byte, nb int, dst *byte)")
	Doc(name+" lays nb Q8_0 activation blocks out for the AVX2 ggml-order Q8_0",
		"kernels, 96 bytes a block: the quants as int16, dx as float32 eight",
		"times (the activations of quant.dotQ8_0Q8_0).")
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	dst := Load(Param("dst"), GP64())
	loop(name, nb, func() {
		for i := range 2 {
			q := YMM()
			VPMOVSXBW(Mem{Base: x, Disp: 2 + 16*i}, q)
			VMOVDQU(q, Mem{Base: dst, Disp: 32 * i})
		}
		VMOVUPS(f16Bcast8(Mem{Base: x}), Mem{Base: dst, Disp: q8gDxOff})
		ADDQ(U8(34), x)
		ADDQ(U8(q8gWBlockBytes), dst)
	})
	VZEROUPPER()
	RET()
}

// q8GTile emits gemmQ8_0G<V>x<T>, the gemmTile of one Q8_0 weight row
// against T prepared tokens. vnni: VPDPBUSD (AVX-512 VL + VNNI on ymm) on
// w+128 from the correction. Else (AVX2) both sides widened to int16,
// VPMADDWD into pair sums of bytes 0-15 and 16-31 and VPHADDD into the
// four-product dwords, which leaves them in lane order 0 1 4 5 2 3 6 7:
// the accumulators keep that order (stored so between chunks too) and one
// VPERMPD puts them back before hsum8.
func q8GTile(T int, vnni bool) {
	v := "AVX2"
	if vnni {
		v = "VNNI"
	}
	name := fmt.Sprintf("gemmQ8_0G%sx%d", v, T)
	text(name, NOSPLIT, "func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)")
	Doc(name + fmt.Sprintf(" is the ggml-order Q8_0 tile for %d tokens (quant.dotQ8_0Q8_0).", T))
	w := Load(Param("w"), GP64())
	nb := Load(Param("nb"), GP64())
	x := Load(Param("x"), GP64())
	xs := Load(Param("xs"), GP64())
	accp := Load(Param("acc"), GP64())
	flags := Load(Param("flags"), GP64())
	var xs3 Register
	if T == 4 {
		xs3 = GP64()
		LEAQ(Mem{Base: xs, Index: xs, Scale: 2}, xs3)
	}
	at := func(t, disp int) Mem { return headAt(x, t, xs, xs3, disp) }
	accs := make([]VecVirtual, T)
	for t := range accs {
		accs[t] = YMM()
		VXORPS(accs[t], accs[t], accs[t])
	}
	TESTQ(U32(1), flags)
	JZ(LabelRef(name + "_start"))
	for t := range accs {
		VMOVUPS(Mem{Base: accp, Disp: 64 * t}, accs[t])
	}
	Label(name + "_start")
	var k80, magic VecVirtual
	if vnni {
		k80 = bcastD(0x80808080)
		magic = bcastD(0x4b400000)
	}
	Label(name + "_block")
	TESTQ(nb, nb)
	JZ(LabelRef(name + "_end"))
	if T == 1 {
		// Decode streams the weights from DRAM: ask for them 2 KiB ahead
		// (the hardware prefetcher alone left the one-token product at
		// ~65% of the read bandwidth: llama-1b Q8_0 tg64 14.8 t/s; 1 KiB
		// 17.1, 1.5-2 KiB 18.3, 4 KiB 17.4, 8 KiB 17.5).
		PREFETCHT0(Mem{Base: w, Disp: 2048})
	}
	dw := f16Bcast8(Mem{Base: w})
	var wq, wlo, whi VecVirtual
	if vnni {
		wq = YMM()
		VPXOR(Mem{Base: w, Disp: 2}, k80, wq)
	} else {
		wlo, whi = YMM(), YMM()
		VPMOVSXBW(Mem{Base: w, Disp: 2}, wlo)
		VPMOVSXBW(Mem{Base: w, Disp: 18}, whi)
	}
	for t := range accs {
		s := YMM()
		if vnni {
			VMOVDQU(at(t, q8gCorrOff), s)
			VPDPBUSD(at(t, 0), wq, s)
		} else {
			s2 := YMM()
			VPMADDWD(at(t, 0), wlo, s)
			VPMADDWD(at(t, 32), whi, s2)
			VPHADDD(s2, s, s)
		}
		f := YMM()
		if vnni {
			VSUBPS(magic, s, f) // the sum as float32, exactly (q8GPairTile)
		} else {
			VCVTDQ2PS(s, f)
		}
		d := YMM()
		VMULPS(at(t, q8gDxOff), dw, d)
		VFMADD231PS(f, d, accs[t])
	}
	ADDQ(U8(34), w)
	if vnni {
		ADDQ(U32(q8gBlockBytes), x)
	} else {
		ADDQ(U8(q8gWBlockBytes), x)
	}
	DECQ(nb)
	JMP(LabelRef(name + "_block"))
	Label(name + "_end")
	TESTQ(U32(2), flags)
	JZ(LabelRef(name + "_store"))
	dst := Load(Param("dst"), GP64())
	ldd := Load(Param("ldd"), GP64())
	for t := range accs {
		if !vnni {
			VPERMPD(U8(0xd8), accs[t], accs[t]) // lanes 0 1 4 5 2 3 6 7 back in order
		}
		VMOVSS(hsum8(accs[t]), Mem{Base: dst})
		if t+1 < T {
			ADDQ(ldd, dst)
		}
	}
	VZEROUPPER()
	RET()
	Label(name + "_store")
	for t := range accs {
		VMOVUPS(accs[t], Mem{Base: accp, Disp: 64 * t})
	}
	VZEROUPPER()
	RET()
}

// q8GPairTile emits gemmQ8_0GVNNIx<T> for T = 2, 4, 8 tokens in T/2 pairs
// (pairQ8_0G's layout): per block one broadcast of w+128 to both halves,
// then per pair one VPDPBUSD, subtract, multiply and FMA on a zmm. The
// correction the sums start from carries 0x4b400000, the bits of 1.5·2^23:
// with |Σ w·x| ≤ 2^16 the dword is the float32 1.5·2^23 + Σ exactly, and
// one VSUBPS (ports 0 and 5) gives float(Σ) instead of VCVTDQ2PS (port 0
// only, with VPDPBUSD). The acc area keeps each token's eight lanes at
// acc + 64·t, as the T = 1 tile.
func q8GPairTile(T int) {
	name := fmt.Sprintf("gemmQ8_0GVNNIx%d", T)
	text(name, NOSPLIT, "func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)")
	Doc(name + fmt.Sprintf(" is the ggml-order Q8_0 tile for %d tokens in pairs (quant.dotQ8_0Q8_0).", T))
	P := T / 2
	w := Load(Param("w"), GP64())
	nb := Load(Param("nb"), GP64())
	x := Load(Param("x"), GP64())
	xs := Load(Param("xs"), GP64())
	accp := Load(Param("acc"), GP64())
	flags := Load(Param("flags"), GP64())
	// Row k (0..2P-1) of the tile at x + k·xs: index registers for k·xs.
	var xs3, xs5, xs7 Register
	if P >= 2 {
		xs3 = GP64()
		LEAQ(Mem{Base: xs, Index: xs, Scale: 2}, xs3)
	}
	if P >= 3 {
		xs5, xs7 = GP64(), GP64()
		LEAQ(Mem{Base: xs, Index: xs, Scale: 4}, xs5)
		LEAQ(Mem{Base: xs3, Index: xs, Scale: 4}, xs7)
	}
	row := func(k, disp int) Mem {
		switch k {
		case 0:
			return Mem{Base: x, Disp: disp}
		case 1:
			return Mem{Base: x, Index: xs, Scale: 1, Disp: disp}
		case 2:
			return Mem{Base: x, Index: xs, Scale: 2, Disp: disp}
		case 3:
			return Mem{Base: x, Index: xs3, Scale: 1, Disp: disp}
		case 4:
			return Mem{Base: x, Index: xs, Scale: 4, Disp: disp}
		case 5:
			return Mem{Base: x, Index: xs5, Scale: 1, Disp: disp}
		case 6:
			return Mem{Base: x, Index: xs3, Scale: 2, Disp: disp}
		}
		return Mem{Base: x, Index: xs7, Scale: 1, Disp: disp}
	}
	accs := make([]VecVirtual, P)
	for p := range accs {
		accs[p] = ZMM()
		VPXORD(accs[p], accs[p], accs[p])
	}
	TESTQ(U32(1), flags)
	JZ(LabelRef(name + "_start"))
	for p := range accs {
		VMOVUPS(Mem{Base: accp, Disp: 64 * (2 * p)}, accs[p].AsY())
		VINSERTF64X4(U8(1), Mem{Base: accp, Disp: 64 * (2*p + 1)}, accs[p], accs[p])
	}
	Label(name + "_start")
	k80, magic := ZMM(), ZMM()
	g := GP32()
	MOVL(U32(0x80808080), g)
	VPBROADCASTD(g, k80)
	MOVL(U32(0x4b400000), g)
	VPBROADCASTD(g, magic)
	Label(name + "_block")
	TESTQ(nb, nb)
	JZ(LabelRef(name + "_end"))
	hw := ZMM()
	VPBROADCASTW(Mem{Base: w}, hw)
	dw := ZMM()
	VCVTPH2PS(hw.AsY(), dw)
	wq := ZMM()
	VBROADCASTI64X4(Mem{Base: w, Disp: 2}, wq)
	VPXORD(k80, wq, wq)
	for p := range accs {
		s := ZMM()
		VMOVDQU64(row(2*p, 64), s) // corr_a corr_b
		VPDPBUSD(row(2*p, 0), wq, s)
		f := ZMM()
		VSUBPS(magic, s, f) // float(Σ w·x), exactly
		d := ZMM()
		VMULPS(row(2*p+1, 0), dw, d) // dx_a dx_b
		VFMADD231PS(f, d, accs[p])
	}
	ADDQ(U8(34), w)
	ADDQ(U32(q8gBlockBytes), x)
	DECQ(nb)
	JMP(LabelRef(name + "_block"))
	Label(name + "_end")
	TESTQ(U32(2), flags)
	JZ(LabelRef(name + "_store"))
	dst := Load(Param("dst"), GP64())
	ldd := Load(Param("ldd"), GP64())
	for p := range accs {
		lo, hi := YMM(), YMM()
		VEXTRACTF64X4(U8(0), accs[p], lo)
		VEXTRACTF64X4(U8(1), accs[p], hi)
		VMOVSS(reduce8(lo, true), Mem{Base: dst})
		ADDQ(ldd, dst)
		VMOVSS(reduce8(hi, true), Mem{Base: dst})
		if p+1 < P {
			ADDQ(ldd, dst)
		}
	}
	VZEROUPPER()
	RET()
	Label(name + "_store")
	for p := range accs {
		VMOVUPS(accs[p].AsY(), Mem{Base: accp, Disp: 64 * (2 * p)})
		VEXTRACTF64X4(U8(1), accs[p], Mem{Base: accp, Disp: 64 * (2*p + 1)})
	}
	VZEROUPPER()
	RET()
}
