package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// MXFP4 weights (ggml type 39: e, an E8M0 exponent, then 16 bytes of
// nibbles, 17 bytes a block) × Q8_0 activations. The shape is IQ4_NL's: a
// nibble indexes sixteen int8 levels (VPSHUFB), here the E2M1 values
// doubled (0, ±1, ±2, ±3, ±4, ±6, ±8, ±12); the block scale is
// 2^(e-128) (ggml's GGML_E8M0_TO_FP32_HALF) instead of an fp16, times the
// activation's fp16 scale, one float32 multiplication as in ggml. The
// scale is built from e as ggml builds it: float32 bits (e-1)<<23, or the
// subnormals 0x00200000<<e for e = 0, 1.

var mxfp4Levels = [16]int{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

func genMXFP4() {
	for _, rows := range []int{1, 4} {
		mxfp4AVX2().emit(rows)
	}
	for _, T := range []int{16, 8, 4, 2, 1} {
		s3MXFP4AVX512().emit(T)
	}
}

// e8m0HalfTable is 2^(e-128) as float32 bits for e = 0..255 (the AVX2
// kernels look the scale up by e).
func e8m0HalfTable() Mem {
	v := make([]uint32, 256)
	for e := range v {
		if e < 2 {
			v[e] = 0x00200000 << e
		} else {
			v[e] = uint32(e-1) << 23
		}
	}
	return globl("e8m0Half", dwords(v...))
}

// mxfp4AVX2 is MXFP4 × Q8_0 as iq4nlAVX2: levels by VPSHUFB, both sides
// widened to int16 for VPMADDWD; the scale 2^(e-128)·dx from a table.
func mxfp4AVX2() *blockKernel {
	var m0f, kv VecVirtual
	var tab Register
	return &blockKernel{
		name: "dotMXFP4AVX2",
		doc: []string{"MXFP4 weights × Q8_0 activations (quant.dotMXFP4Q8_0): the nibbles",
			"index the doubled E2M1 levels (VPSHUFB), widened to int16 with the",
			"activations for VPMADDWD; the scale is 2^(e-128) (a table) times dx."},
		wBytes: 17, xBytes: 34,
		setup: func() {
			m0f = bcastD(0x0f0f0f0f)
			w := make([]uint16, 8)
			for i := range w {
				w[i] = uint16(uint8(mxfp4Levels[2*i])) | uint16(uint8(mxfp4Levels[2*i+1]))<<8
			}
			kv = XMM()
			VMOVDQU(globl("mxfp4Levels", w), kv)
			tab = GP64()
			LEAQ(e8m0HalfTable(), tab)
		},
		loadX: func(x Mem, _ bool) any {
			v := q8_0X{YMM(), YMM(), f16Load(x)}
			VPMOVSXBW(x.Offset(2), v.y0)
			VPMOVSXBW(x.Offset(18), v.y1)
			return v
		},
		row: func(w Mem, xv any, acc VecVirtual, _ bool) {
			v := xv.(q8_0X)
			q := XMM()
			VMOVDQU(w.Offset(1), q)
			h := XMM()
			VPSRLW(U8(4), q, h)
			VPAND(m0f.AsX(), q, q)
			VPAND(m0f.AsX(), h, h)
			VPSHUFB(q, kv, q)
			VPSHUFB(h, kv, h)
			a0, a1 := YMM(), YMM()
			VPMOVSXBW(q, a0)
			VPMOVSXBW(h, a1)
			VPMADDWD(v.y0, a0, a0)
			VPMADDWD(v.y1, a1, a1)
			VPADDD(a1, a0, a0)
			VCVTDQ2PS(a0, a0)
			e := GP64()
			MOVBQZX(w, e)
			d := XMM()
			VMOVSS(Mem{Base: tab, Index: e, Scale: 4}, d)
			VMULSS(v.dx, d, d)
			s := YMM()
			VBROADCASTSS(d, s)
			VFMADD231PS(s, a0, acc)
		},
	}
}

// s3MXFP4AVX512: MXFP4 blocks in block lanes as IQ4_NL's (gemm512.go):
// each nibble turned into its level +128 (unsigned) by VPSHUFB, the
// −128·Σy correction prepared (prepQ8_0AVX512, shift 7), and the sixteen
// scales 2^(e-128) built in the lanes from the gathered exponent bytes.
func s3MXFP4AVX512() *s3Kernel {
	var m0f, idx, lut VecVirtual
	return &s3Kernel{
		name: "gemmMXFP4AVX512",
		doc: []string{"MXFP4 weights × prepared Q8_0 activations (quant.dotMXFP4Q8_0) in",
			"block lanes: the levels +128 meet the quants in VPDPBUSD, the −128·Σy",
			"correction comes prepared; the scales are 2^(e-128), as ggml builds them."},
		bb: 17,
		setup: func() {
			m0f = bcastDZ(0x0f0f0f0f)
			idx = ZMM()
			VMOVDQU64(lanesIndex("mxfp4Lanes", 17, 0), idx)
			w := make([]uint16, 32)
			for i := range w {
				lo, hi := mxfp4Levels[(2*i)%16]+128, mxfp4Levels[(2*i+1)%16]+128
				w[i] = uint16(lo) | uint16(hi)<<8
			}
			lut = ZMM()
			VMOVDQU64(globl("mxfp4Levels128", w), lut)
		},
		loadW: func(b Register) ([8]VecVirtual, VecVirtual) {
			w := nibbleLanes(b, 17, 1, m0f)
			for k := range w {
				VPSHUFB(w[k], lut, w[k])
			}
			return w, e8m0Lanes(b, idx)
		},
	}
}

// e8m0Lanes gathers the sixteen blocks' exponent bytes (the low byte of
// the dword at each block start, idx) and returns 2^(e-128) as float32:
// bits (e-1)<<23, replaced by 0x00200000<<e where e < 2.
func e8m0Lanes(b Register, idx VecVirtual) VecVirtual {
	c := e8m0Consts()
	k := allOnesK()
	g := zeroZ(idx)
	VPGATHERDD(Mem{Base: b, Index: idx, Scale: 1}, k, g)
	e := ZMM()
	VPANDD(c, g, e) // e
	d := ZMM()
	VPSUBD(c.Offset(64), e, d)
	VPSLLD(U8(23), d, d) // (e-1)<<23
	sub := K()
	VPCMPUD(U8(1), c.Offset(128), e, sub) // e < 2
	s := ZMM()
	VMOVDQU64(c.Offset(192), s)
	VPSLLVD(e, s, sub, d) // 0x00200000<<e in those lanes
	return d
}

// e8m0Consts: 0xff, 1, 2 and 0x00200000 in sixteen dwords each.
func e8m0Consts() Mem {
	var v []uint32
	for _, c := range []uint32{0xff, 1, 2, 0x00200000} {
		for range 16 {
			v = append(v, c)
		}
	}
	return globl("e8m0Consts", dwords(v...))
}
