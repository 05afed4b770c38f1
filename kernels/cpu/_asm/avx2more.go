package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// The remaining AVX2 kernels: Q4_1, Q5_0, Q5_1, IQ4_NL, Q5_K, F16, BF16.

func genAVX2More() {
	for _, rows := range []int{1, 4} {
		q41AVX2(false).emit(rows)
		q41AVX2(true).emit(rows)
		q50AVX2().emit(rows)
		iq4nlAVX2().emit(rows)
		q4KAVX2(true).emit(rows)
	}
	genHalfDot("dotF16AVX2", false)
	genHalfDot("dotBF16AVX2", true)
}

// bitsToBytes returns a ymm whose byte i is 0xff where bit i of the 32-bit
// value at m is set, else 0 (the Q5 high bits).
func bitsToBytes(m Mem, shuf, bitMask VecVirtual) VecVirtual {
	x := XMM()
	VMOVD(m, x)
	y := YMM()
	VPBROADCASTD(x, y)
	VPSHUFB(shuf, y, y)
	VPAND(bitMask, y, y)
	VPCMPEQB(bitMask, y, y)
	return y
}

var bitsShufData Mem

// bitsConsts loads the VPSHUFB mask (byte i takes byte i/8) and the bit
// mask (byte i is 1 << i%8) of bitsToBytes.
func bitsConsts() (shuf, bitMask VecVirtual) {
	if bitsShufData.Symbol.Name == "" {
		bitsShufData = GLOBL("bitsShuf", RODATA|NOPTR)
		for i := range 32 {
			DATA(i, U8(i/8))
		}
		for i := range 32 {
			DATA(32+i, U8(1<<(i%8)))
		}
	}
	shuf, bitMask = YMM(), YMM()
	VMOVDQU(bitsShufData, shuf)
	VMOVDQU(bitsShufData.Offset(32), bitMask)
	return
}

// nibbles returns the 32 nibbles of the 16 bytes at m as bytes in element
// order (low nibbles, then high nibbles).
func nibbles(m Mem, m0f VecVirtual) VecVirtual {
	q := XMM()
	VMOVDQU(m, q)
	h := XMM()
	VPSRLW(U8(4), q, h)
	qy := YMM()
	VINSERTI128(U8(1), h, q.AsY(), qy)
	VPAND(m0f, qy, qy)
	return qy
}

type q81X struct {
	y, c, ds VecVirtual // ds: [dx, sx] (Q8_1) or [dx] (Q8_0)
}

// q41AVX2 is Q4_1 (or, with five, Q5_1) × Q8_1: dw·dx·Σ q·y + mw·sx.
func q41AVX2(five bool) *blockKernel {
	var m0f, ones, shuf, bitMask, m10 VecVirtual
	name, wb, qs := "dotQ4_1AVX2", 20, 4
	if five {
		name, wb, qs = "dotQ5_1AVX2", 24, 8
	}
	return &blockKernel{
		name: name,
		doc: []string{"Q4_1/Q5_1 weights × Q8_1 activations (quant.dotQ4_1Q8_1,",
			"quant.dotQ5_1Q8_1): VPMADDUBSW of the unsigned quants, plus mw·sx added",
			"into lane 0 once per block."},
		wBytes: wb, xBytes: 36,
		setup: func() {
			m0f = bcastD(0x0f0f0f0f)
			ones = bcastD(0x00010001)
			if five {
				shuf, bitMask = bitsConsts()
				m10 = bcastD(0x10101010)
			}
		},
		loadX: func(x Mem, _ bool) any {
			v := q81X{y: YMM(), ds: XMM()}
			VMOVDQU(x.Offset(4), v.y)
			VCVTPH2PS(x, v.ds) // [dx, sx]
			return v
		},
		row: func(w Mem, xv any, acc VecVirtual, _ bool) {
			v := xv.(q81X)
			q := nibbles(w.Offset(qs), m0f)
			if five {
				b := bitsToBytes(w.Offset(4), shuf, bitMask)
				VPAND(m10, b, b)
				VPOR(b, q, q)
			}
			VPMADDUBSW(v.y, q, q)
			VPMADDWD(ones, q, q)
			VCVTDQ2PS(q, q)
			dm := XMM()
			VCVTPH2PS(w, dm) // [dw, mw]
			VMULPS(v.ds, dm, dm)
			d := YMM()
			VBROADCASTSS(dm, d)
			VFMADD231PS(d, q, acc)
			t := XMM()
			VINSERTPS(U8(0x4e), dm, dm, t) // [mw·sx, 0, 0, 0]
			VADDPS(t.AsY(), acc, acc)
		},
	}
}

// q50AVX2 is Q5_0 × Q8_0: Σ q·y − 16·Σ y, q the 5-bit unsigned quants.
func q50AVX2() *blockKernel {
	var m0f, ones, e16, shuf, bitMask, m10 VecVirtual
	return &blockKernel{
		name: "dotQ5_0AVX2",
		doc: []string{"Q5_0 weights × Q8_0 activations (quant.dotQ5_0Q8_0): as Q4_0 with",
			"the fifth bits spread to bytes and an offset of 16."},
		wBytes: 22, xBytes: 34,
		setup: func() {
			m0f = bcastD(0x0f0f0f0f)
			ones = bcastD(0x00010001)
			e16 = bcastD(0x10101010)
			m10 = e16
			shuf, bitMask = bitsConsts()
		},
		loadX: func(x Mem, _ bool) any {
			v := q4_0X{YMM(), YMM(), f16Load(x)}
			VMOVDQU(x.Offset(2), v.y)
			VPMADDUBSW(v.y, e16, v.c)
			return v
		},
		row: func(w Mem, xv any, acc VecVirtual, _ bool) {
			v := xv.(q4_0X)
			q := nibbles(w.Offset(6), m0f)
			b := bitsToBytes(w.Offset(2), shuf, bitMask)
			VPAND(m10, b, b)
			VPOR(b, q, q)
			VPMADDUBSW(v.y, q, q)
			VPSUBW(v.c, q, q)
			VPMADDWD(ones, q, q)
			VCVTDQ2PS(q, q)
			VFMADD231PS(f16Bcast(w, v.dx), q, acc)
		},
	}
}

var kvaluesData Mem

// iq4nlAVX2 is IQ4_NL × Q8_0: the nibbles index the 16 levels (VPSHUFB),
// then both sides are widened to int16 for VPMADDWD (levels and activations
// are both signed).
func iq4nlAVX2() *blockKernel {
	var m0f, kv VecVirtual
	return &blockKernel{
		name:   "dotIQ4_NLAVX2",
		doc:    []string{"IQ4_NL weights × Q8_0 activations (quant.dotIQ4_NLQ8_0)."},
		wBytes: 18, xBytes: 34,
		setup: func() {
			if kvaluesData.Symbol.Name == "" {
				kvaluesData = GLOBL("kvaluesIQ4NL", RODATA|NOPTR)
				for i, v := range []int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113} {
					DATA(i, U8(uint8(v)))
				}
			}
			m0f = bcastD(0x0f0f0f0f)
			kv = XMM()
			VMOVDQU(kvaluesData, kv)
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
			VMOVDQU(w.Offset(2), q)
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
			VFMADD231PS(f16Bcast(w, v.dx), a0, acc)
		},
	}
}

// genHalfDot emits func(w, x *byte, n int) float32 over n (a multiple of 8)
// F16 or BF16 elements: exact products fused into four float32
// accumulators of eight lanes, 32 elements a step, then one for the rest.
func genHalfDot(name string, bf16 bool) {
	text(name, NOSPLIT, "func(w, x *byte, n int) float32")
	kind := "F16 (quant.dotF16; F16C conversions)"
	if bf16 {
		kind = "BF16 (quant.dotBF16; a bf16 is the top half of a float32)"
	}
	Doc(name+" is the dot product of n elements, n a multiple of 8, of "+kind+",",
		"summed in float32 as ggml's SIMD F16 dot does.")
	w := Load(Param("w"), GP64())
	x := Load(Param("x"), GP64())
	n := Load(Param("n"), GP64())
	load := func(m Mem) VecVirtual {
		y := YMM()
		if bf16 {
			VPMOVZXWD(m, y)
			VPSLLD(U8(16), y, y)
		} else {
			VCVTPH2PS(m, y)
		}
		return y
	}
	var acc [4]VecVirtual
	for i := range acc {
		acc[i] = YMM()
		VXORPS(acc[i], acc[i], acc[i])
	}
	Label(name + "_loop32")
	CMPQ(n, U8(32))
	JL(LabelRef(name + "_loop8"))
	for i := range acc {
		a := load(Mem{Base: w, Disp: 16 * i})
		b := load(Mem{Base: x, Disp: 16 * i})
		VFMADD231PS(a, b, acc[i])
	}
	ADDQ(U8(64), w)
	ADDQ(U8(64), x)
	SUBQ(U8(32), n)
	JMP(LabelRef(name + "_loop32"))
	Label(name + "_loop8")
	TESTQ(n, n)
	JZ(LabelRef(name + "_done"))
	a := load(Mem{Base: w})
	b := load(Mem{Base: x})
	VFMADD231PS(a, b, acc[0])
	ADDQ(U8(16), w)
	ADDQ(U8(16), x)
	SUBQ(U8(8), n)
	JMP(LabelRef(name + "_loop8"))
	Label(name + "_done")
	VADDPS(acc[1], acc[0], acc[0])
	VADDPS(acc[3], acc[2], acc[2])
	VADDPS(acc[2], acc[0], acc[0])
	s := hsum8(acc[0])
	VZEROUPPER()
	Store(s, ReturnIndex(0))
	RET()
}
