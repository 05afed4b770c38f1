package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// AVX-512 VNNI kernels of Q4_0 and Q8_0 weights in the "block lanes" order
// (see kernels/cpu/gemm.go): a row is cut into groups of sixteen blocks and
// block 4i+j of a group owns float32 lane 4j+i of a sixteen-lane
// accumulator. Per (row, token) and per group, each lane gets the block's
// exact integer dot product s (VPDPBUSD, four bytes per step) and does
// acc = fma(float(s), dw·dx, acc); at the end the lanes are added in
// hsum16's order. The activations come prepared (prepQ8_0AVX512): per
// group, eight zmm of quants transposed into the same lane order, the
// sixteen scales dx as float32 and the integer correction −2^shift·Σy per
// block, 640 bytes, 64-byte aligned. The weights are transposed in
// registers once per group and used for T tokens.

const (
	gGroup      = 16  // blocks per group
	gGroupBytes = 640 // prepared bytes per group
	gDxOff      = 512
	gCorrOff    = 576
)

func genGemm512() {
	genPrepQ8_0AVX512()
	genPrepQ8_1AVX512()
	for _, T := range []int{16, 8, 4, 2, 1} {
		s3Q4_0AVX512().emit(T)
	}
	for _, T := range []int{16, 8, 4, 2, 1} {
		s3Q8_0AVX512().emit(T)
	}
	for _, T := range []int{16, 8, 4, 2, 1} {
		s3Q5_0AVX512().emit(T)
	}
	for _, T := range []int{16, 8, 4, 2, 1} {
		s3IQ4_NLAVX512().emit(T)
	}
	for _, T := range []int{16, 8, 4, 2, 1} {
		s3Q4_1AVX512().emit(T)
	}
	for _, T := range []int{16, 8, 4, 2, 1} {
		s3Q5_1AVX512().emit(T)
	}
}

// lanesIndex returns, for blocks of bb bytes, sixteen dword byte offsets:
// lane 4j+i holds the offset of block 4i+j (plus off).
func lanesIndex(name string, bb, off int) Mem {
	var v []uint32
	for l := 0; l < 16; l++ {
		j, i := l/4, l%4
		v = append(v, uint32(bb*(4*i+j)+off))
	}
	return globl(name, dwords(v...))
}

// transpose4 transposes dwords across four vectors (zmm or, with newV =
// YMM, ymm) within each 128-bit lane: out[k] lane (j, i) = a[i] lane (j,
// dword k).
func transpose4(a [4]VecVirtual, newV func() VecVirtual) [4]VecVirtual {
	v := newV
	t0, t1, t2, t3 := v(), v(), v(), v()
	VPUNPCKLDQ(a[1], a[0], t0)
	VPUNPCKHDQ(a[1], a[0], t1)
	VPUNPCKLDQ(a[3], a[2], t2)
	VPUNPCKHDQ(a[3], a[2], t3)
	var q [4]VecVirtual
	for k := range q {
		q[k] = v()
	}
	VPUNPCKLQDQ(t2, t0, q[0])
	VPUNPCKHQDQ(t2, t0, q[1])
	VPUNPCKLQDQ(t3, t1, q[2])
	VPUNPCKHQDQ(t3, t1, q[3])
	return q
}

func zmmV() VecVirtual { return ZMM() }
func ymmV() VecVirtual { return YMM() }

// q8Lanes loads a group of sixteen 34-byte Q8_0 blocks at b (quants at +2)
// and returns the eight zmm of quant dwords in block-lane order: out[k]
// lane 4j+i = dword k of block 4i+j.
func q8Lanes(b Register, bb int) [8]VecVirtual { return q8LanesAt(b, bb, 2) }

// q8LanesAt is q8Lanes for blocks whose 32 quants start at byte qo.
func q8LanesAt(b Register, bb, qo int) [8]VecVirtual {
	var a, h [4]VecVirtual
	for i := range a {
		c0, c1 := ZMM(), ZMM()
		VBROADCASTI64X4(Mem{Base: b, Disp: bb*(4*i) + qo}, c0) // a full write (for avo's liveness)
		VINSERTI64X4(U8(1), Mem{Base: b, Disp: bb*(4*i+1) + qo}, c0, c0)
		VBROADCASTI64X4(Mem{Base: b, Disp: bb*(4*i+2) + qo}, c1)
		VINSERTI64X4(U8(1), Mem{Base: b, Disp: bb*(4*i+3) + qo}, c1, c1)
		a[i], h[i] = ZMM(), ZMM()
		VSHUFI32X4(U8(0x88), c1, c0, a[i]) // low halves of blocks 4i..4i+3
		VSHUFI32X4(U8(0xdd), c1, c0, h[i]) // high halves
	}
	lo := transpose4(a, zmmV)
	hi := transpose4(h, zmmV)
	return [8]VecVirtual{lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]}
}

// zeroZ returns a zeroed zmm. (VPXORD of a live register with itself: a
// zeroing idiom for the CPU, and no read of an undefined register for
// avo's liveness analysis, which does not know the idiom.)
func zeroZ(live VecVirtual) VecVirtual {
	z := ZMM()
	VPXORD(live, live, z)
	return z
}

// allOnesK returns an opmask with sixteen bits set.
func allOnesK() OpmaskVirtual {
	g := GP32()
	MOVL(U32(0xffff), g)
	k := K()
	KMOVW(g, k)
	return k
}

// f16Lanes gathers the sixteen fp16 scales at the block starts (idx) and
// returns them as float32 in a zmm.
func f16Lanes(b Register, idx VecVirtual) VecVirtual {
	k := allOnesK()
	g := zeroZ(idx)
	VPGATHERDD(Mem{Base: b, Index: idx, Scale: 1}, k, g)
	h := YMM()
	VPMOVDW(g, h)
	d := ZMM()
	VCVTPH2PS(h, d)
	return d
}

// copyBlocks copies n (1..15) blocks of bb bytes (16 <= bb) from src to
// dst: 16 bytes at a time, the last 16 overlapping where bb is not a
// multiple of 16.
func copyBlocks(name string, src, dst, n Register, bb int) {
	s, d, c := GP64(), GP64(), GP64()
	MOVQ(src, s)
	MOVQ(dst, d)
	MOVQ(n, c)
	Label(name + "_copy")
	x := XMM()
	for o := 0; o+16 <= bb; o += 16 {
		VMOVDQU64(Mem{Base: s, Disp: o}, x)
		VMOVDQU64(x, Mem{Base: d, Disp: o})
	}
	if bb%16 != 0 {
		VMOVDQU64(Mem{Base: s, Disp: bb - 16}, x)
		VMOVDQU64(x, Mem{Base: d, Disp: bb - 16})
	}
	ADDQ(U8(bb), s)
	ADDQ(U8(bb), d)
	DECQ(c)
	JNZ(LabelRef(name + "_copy"))
}

// zeroLocal zeroes n bytes of the stack at m, rounded up to 64.
func zeroLocal(m Mem, n int, live VecVirtual) {
	z := zeroZ(live)
	for o := 0; o < n; o += 64 {
		VMOVDQU64(z, m.Offset(o))
	}
}

// genPrepQ8_0AVX512 emits prepQ8_0AVX512(x *byte, nb int, dst *byte,
// shift int): nb Q8_0 blocks into ceil(nb/16) prepared groups at dst, the
// last one padded with zero blocks.
func genPrepQ8_0AVX512() {
	name := "prepQ8_0AVX512"
	text(name, NOSPLIT, "func(x *byte, nb int, dst *byte, shift int)")
	Doc(name+" rearranges nb Q8_0 activation blocks into the block-lane groups",
		"of the AVX-512 Q4_0/Q8_0 kernels: quants transposed, scales as float32,",
		"−2^shift·Σ quants per block; the last group padded with zero blocks",
		"(the activations of quant.dotQ4_0Q8_0, dotQ5_0Q8_0, dotQ8_0Q8_0, dotIQ4_NLQ8_0",
		"and dotMXFP4Q8_0).")
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	dst := Load(Param("dst"), GP64())
	sh := XMM()
	shg := Load(Param("shift"), GP64())
	VMOVQ(shg, sh)
	buf := AllocLocal(16*34 + 32)
	one := bcastDZ(0x01010101)
	idx := ZMM()
	VMOVDQU64(lanesIndex("q80Lanes", 34, 0), idx)
	body := func(b Register) {
		q := q8Lanes(b, 34)
		s := zeroZ(one)
		for k := range q {
			VMOVDQU64(q[k], Mem{Base: dst, Disp: 64 * k})
			VPDPBUSD(q[k], one, s)
		}
		VPSLLD(sh, s, s)
		z := zeroZ(one)
		VPSUBD(s, z, z)
		VMOVDQU64(z, Mem{Base: dst, Disp: gCorrOff})
		d := f16Lanes(b, idx)
		VMOVUPS(d, Mem{Base: dst, Disp: gDxOff})
	}
	prepGroups(name, x, nb, dst, 34, buf, one, body)
}

// genPrepQ8_1AVX512 emits prepQ8_1AVX512(x *byte, nb int, dst *byte): nb
// Q8_1 blocks (d, s = d·Σq as float16, 32 quants: 36 bytes) into
// ceil(nb/16) prepared groups at dst as prepQ8_0AVX512 lays them out, with
// the sixteen s as float32 where Q8_0's groups hold their integer
// correction (the Q4_1/Q5_1 kernels add m·s per block).
func genPrepQ8_1AVX512() {
	name := "prepQ8_1AVX512"
	text(name, NOSPLIT, "func(x *byte, nb int, dst *byte)")
	Doc(name+" rearranges nb Q8_1 activation blocks into the block-lane groups",
		"of the AVX-512 Q4_1/Q5_1 kernels: quants transposed, d and s as float32;",
		"the last group padded with zero blocks (the activations of quant.dotQ4_1Q8_1,",
		"quant.dotQ5_1Q8_1).")
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	dst := Load(Param("dst"), GP64())
	buf := AllocLocal(16*36 + 32)
	idx, sidx := ZMM(), ZMM()
	VMOVDQU64(lanesIndex("q81Lanes", 36, 0), idx)
	VMOVDQU64(lanesIndex("q81SLanes", 36, 2), sidx)
	body := func(b Register) {
		q := q8LanesAt(b, 36, 4)
		for k := range q {
			VMOVDQU64(q[k], Mem{Base: dst, Disp: 64 * k})
		}
		VMOVUPS(f16Lanes(b, idx), Mem{Base: dst, Disp: gDxOff})
		VMOVUPS(f16Lanes(b, sidx), Mem{Base: dst, Disp: gCorrOff})
	}
	prepGroups(name, x, nb, dst, 36, buf, idx, body)
}

// prepGroups emits the loop of a block-lanes prep: body(b) for each group
// of sixteen blocks of bb bytes at x (dst moving on gGroupBytes per group),
// then the last nb%16 blocks copied into the zeroed stack area buf (16·bb
// bytes and more) and prepared from there; live is any defined zmm.
func prepGroups(name string, x, nb, dst Register, bb int, buf Mem, live VecVirtual, body func(b Register)) {
	n := GP64()
	MOVQ(nb, n)
	SHRQ(U8(4), n)
	loop(name, n, func() {
		body(x)
		ADDQ(U32(16*bb), x)
		ADDQ(U32(gGroupBytes), dst)
	})
	ANDQ(U8(15), nb)
	JZ(LabelRef(name + "_ret"))
	zeroLocal(buf, 16*bb, live)
	bp := GP64()
	LEAQ(buf, bp)
	copyBlocks(name, x, bp, nb, bb)
	body(bp)
	Label(name + "_ret")
	VZEROUPPER()
	RET()
}

// s3Kernel is a block-lanes kernel: loadW turns a group of sixteen weight
// blocks at b into the eight zmm of unsigned bytes that meet the prepared
// quants, and their sixteen scales as float32.
type s3Kernel struct {
	name  string
	doc   []string
	bb    int // bytes per weight block
	setup func()
	loadW func(b Register) ([8]VecVirtual, VecVirtual)
	// mins, where set, returns the sixteen blocks' float16 mins (Q4_1,
	// Q5_1) as float32: the sums start at 0 and each block adds m·s with
	// the s of prepQ8_1AVX512 (at gCorrOff) after its d term.
	mins func(b Register) VecVirtual
}

func s3Q4_0AVX512() *s3Kernel {
	var m0f, idx VecVirtual
	return &s3Kernel{
		name: "gemmQ4_0AVX512",
		doc: []string{"Q4_0 weights × prepared Q8_0 activations (quant.dotQ4_0Q8_0) in",
			"block lanes: the nibbles (unsigned) meet the quants in VPDPBUSD, the",
			"−8·Σy correction comes prepared."},
		bb: 18,
		setup: func() {
			m0f = bcastDZ(0x0f0f0f0f)
			idx = ZMM()
			VMOVDQU64(lanesIndex("q40Lanes", 18, 0), idx)
		},
		loadW: func(b Register) ([8]VecVirtual, VecVirtual) {
			var a [4]VecVirtual
			for i := range a {
				a[i] = ZMM()
				VBROADCASTI32X4(Mem{Base: b, Disp: 18*(4*i) + 2}, a[i]) // a full write (for avo's liveness)
				for j := 1; j < 4; j++ {
					VINSERTI32X4(U8(j), Mem{Base: b, Disp: 18*(4*i+j) + 2}, a[i], a[i])
				}
			}
			q := transpose4(a, zmmV)
			var w [8]VecVirtual
			for k := range q {
				w[k], w[k+4] = ZMM(), ZMM()
				VPANDD(m0f, q[k], w[k])
				VPSRLW(U8(4), q[k], w[k+4])
				VPANDD(m0f, w[k+4], w[k+4])
			}
			return w, f16Lanes(b, idx)
		},
	}
}

// s3Q5_0AVX512: Q5_0 blocks (d, 32 fifth bits, 16 bytes of nibbles: 22
// bytes) as Q4_0's with the fifth bit of each quant put in bit 4 of its
// byte: the blocks' qh words gathered into block lanes, then per dword of
// quants one VPMULTISHIFTQB (byte m of a lane takes the bits from 4 below
// its quant's, so the quant's bit lands in bit 4) and one VPTERNLOGD to
// merge. The weights are q+16 (unsigned, 0..31); the −16·Σy correction
// comes prepared.
func s3Q5_0AVX512() *s3Kernel {
	var m0f, m10, idx, qhIdx VecVirtual
	return &s3Kernel{
		name: "gemmQ5_0AVX512",
		doc: []string{"Q5_0 weights × prepared Q8_0 activations (quant.dotQ5_0Q8_0) in",
			"block lanes: Q4_0's nibbles with the fifth bits added (q+16, unsigned)",
			"meet the quants in VPDPBUSD, the −16·Σy correction comes prepared."},
		bb: 22,
		setup: func() {
			m0f = bcastDZ(0x0f0f0f0f)
			m10 = bcastDZ(0x10101010)
			idx = ZMM()
			VMOVDQU64(lanesIndex("q50Lanes", 22, 0), idx)
			qhIdx = ZMM()
			VMOVDQU64(lanesIndex("q50QhLanes", 22, 2), qhIdx)
		},
		loadW: func(b Register) ([8]VecVirtual, VecVirtual) {
			w := nibbleLanes(b, 22, 6, m0f)
			addFifthBits(b, qhIdx, m10, &w)
			return w, f16Lanes(b, idx)
		},
	}
}

// s3IQ4_NLAVX512: IQ4_NL blocks (d, 16 bytes of nibbles: 18 bytes), each
// nibble turned into its non-linear level +128 (unsigned) by VPSHUFB; the
// −128·Σy correction comes prepared, as Q8_0's.
func s3IQ4_NLAVX512() *s3Kernel {
	var m0f, idx, lut VecVirtual
	return &s3Kernel{
		name: "gemmIQ4_NLAVX512",
		doc: []string{"IQ4_NL weights × prepared Q8_0 activations (quant.dotIQ4_NLQ8_0) in",
			"block lanes: the levels +128 meet the quants in VPDPBUSD, the −128·Σy",
			"correction comes prepared."},
		bb: 18,
		setup: func() {
			m0f = bcastDZ(0x0f0f0f0f)
			idx = ZMM()
			VMOVDQU64(lanesIndex("iq4nlLanes", 18, 0), idx)
			lut = ZMM()
			VMOVDQU64(iq4Levels128(), lut)
		},
		loadW: func(b Register) ([8]VecVirtual, VecVirtual) {
			w := nibbleLanes(b, 18, 2, m0f)
			for k := range w {
				VPSHUFB(w[k], lut, w[k])
			}
			return w, f16Lanes(b, idx)
		},
	}
}

// s3Q4_1AVX512: Q4_1 blocks (d, m, 16 bytes of nibbles: 20 bytes), the
// nibbles unsigned as Q4_0's, against Q8_1 activations; m·s per block.
func s3Q4_1AVX512() *s3Kernel {
	var m0f, idx, midx VecVirtual
	return &s3Kernel{
		name: "gemmQ4_1AVX512",
		doc: []string{"Q4_1 weights × prepared Q8_1 activations (quant.dotQ4_1Q8_1) in",
			"block lanes: the nibbles meet the quants in VPDPBUSD, then d·dx and m·s."},
		bb: 20,
		setup: func() {
			m0f = bcastDZ(0x0f0f0f0f)
			idx, midx = ZMM(), ZMM()
			VMOVDQU64(lanesIndex("q41Lanes", 20, 0), idx)
			VMOVDQU64(lanesIndex("q41MLanes", 20, 2), midx)
		},
		loadW: func(b Register) ([8]VecVirtual, VecVirtual) {
			return nibbleLanes(b, 20, 4, m0f), f16Lanes(b, idx)
		},
		mins: func(b Register) VecVirtual { return f16Lanes(b, midx) },
	}
}

// s3Q5_1AVX512: Q5_1 blocks (d, m, 32 fifth bits, 16 bytes of nibbles: 24
// bytes) as Q4_1's with Q5_0's fifth bits.
func s3Q5_1AVX512() *s3Kernel {
	var m0f, m10, idx, midx, qhIdx VecVirtual
	return &s3Kernel{
		name: "gemmQ5_1AVX512",
		doc: []string{"Q5_1 weights × prepared Q8_1 activations (quant.dotQ5_1Q8_1) in",
			"block lanes: Q4_1's with the fifth bits added (q5_0's VPMULTISHIFTQB)."},
		bb: 24,
		setup: func() {
			m0f = bcastDZ(0x0f0f0f0f)
			m10 = bcastDZ(0x10101010)
			idx, midx, qhIdx = ZMM(), ZMM(), ZMM()
			VMOVDQU64(lanesIndex("q51Lanes", 24, 0), idx)
			VMOVDQU64(lanesIndex("q51MLanes", 24, 2), midx)
			VMOVDQU64(lanesIndex("q51QhLanes", 24, 4), qhIdx)
		},
		loadW: func(b Register) ([8]VecVirtual, VecVirtual) {
			w := nibbleLanes(b, 24, 8, m0f)
			addFifthBits(b, qhIdx, m10, &w)
			return w, f16Lanes(b, idx)
		},
		mins: func(b Register) VecVirtual { return f16Lanes(b, midx) },
	}
}

// nibbleLanes loads a group of sixteen blocks of bb bytes whose 16 bytes of
// nibbles start at qo and returns the eight zmm of unsigned quant bytes in
// block-lane order (low nibbles: quants 0..15, then high: 16..31).
func nibbleLanes(b Register, bb, qo int, m0f VecVirtual) [8]VecVirtual {
	var a [4]VecVirtual
	for i := range a {
		a[i] = ZMM()
		VBROADCASTI32X4(Mem{Base: b, Disp: bb*(4*i) + qo}, a[i]) // a full write (for avo's liveness)
		for j := 1; j < 4; j++ {
			VINSERTI32X4(U8(j), Mem{Base: b, Disp: bb*(4*i+j) + qo}, a[i], a[i])
		}
	}
	q := transpose4(a, zmmV)
	var w [8]VecVirtual
	for k := range q {
		w[k], w[k+4] = ZMM(), ZMM()
		VPANDD(m0f, q[k], w[k])
		VPSRLW(U8(4), q[k], w[k+4])
		VPANDD(m0f, w[k+4], w[k+4])
	}
	return w
}

// addFifthBits gathers the sixteen blocks' 32-bit fifth-bit words (at the
// offsets of qhIdx) and sets bit 4 of each quant byte of w whose bit is
// set: one VPMULTISHIFTQB per zmm brings the quant's bit to bit 4 of its
// byte (wrapping within the qword), one VPTERNLOGD merges.
func addFifthBits(b Register, qhIdx, m10 VecVirtual, w *[8]VecVirtual) {
	k := allOnesK()
	qh := zeroZ(qhIdx)
	VPGATHERDD(Mem{Base: b, Index: qhIdx, Scale: 1}, k, qh)
	for kk := range w {
		var ctl [64]byte
		for i := range ctl {
			half, m := i/4%2, i%4         // the dword of the qword, the byte of the dword
			q := 4*(kk%4) + 16*(kk/4) + m // the quant: dword kk%4 of the nibbles, high nibbles for kk >= 4
			ctl[i] = byte((32*half + q - 4 + 64) % 64)
		}
		words := make([]uint16, 32)
		for i := range words {
			words[i] = uint16(ctl[2*i]) | uint16(ctl[2*i+1])<<8
		}
		c, t := ZMM(), ZMM()
		VMOVDQU64(globl(fmt.Sprintf("q5xShift%d", kk), words), c)
		VPMULTISHIFTQB(qh, c, t)
		VPTERNLOGD(U8(0xf8), m10, t, w[kk]) // w |= t & 0x10
	}
}

func s3Q8_0AVX512() *s3Kernel {
	var m80, idx VecVirtual
	return &s3Kernel{
		name: "gemmQ8_0AVX512",
		doc: []string{"Q8_0 weights × prepared Q8_0 activations (quant.dotQ8_0Q8_0) in",
			"block lanes: VPDPBUSD of w+128 (unsigned) and the quants, the −128·Σy",
			"correction comes prepared."},
		bb: 34,
		setup: func() {
			m80 = bcastDZ(0x80808080)
			idx = ZMM()
			VMOVDQU64(lanesIndex("q80Lanes", 34, 0), idx)
		},
		loadW: func(b Register) ([8]VecVirtual, VecVirtual) {
			w := q8Lanes(b, 34)
			for k := range w {
				VPXORD(m80, w[k], w[k])
			}
			return w, f16Lanes(b, idx)
		},
	}
}

// emit writes the kernel for T tokens:
//
//	func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)
//
// x points at the prepared group of token 0 where the row's first block
// belongs; token t's is xs bytes further. flags&1: start from the T×16
// accumulators at acc (else from zero); flags&2: finish, writing token t's
// result to dst + t·ldd bytes (else store the accumulators back to acc).
func (k *s3Kernel) emit(T int) {
	name := fmt.Sprintf("%sx%d", k.name, T)
	// Up to eight tokens the accumulators stay in registers; beyond, they
	// live on the stack (one fused load and one store per group and token).
	inRegs := T <= 8
	attr := NOSPLIT
	if !inRegs {
		attr = 0 // the frame exceeds the nosplit limit
	}
	text(name, attr, "func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)")
	Doc(append([]string{fmt.Sprintf("%s is the dot product of one weight row with %d tokens:", name, T)}, k.doc...)...)
	w := Load(Param("w"), GP64())
	nb := Load(Param("nb"), GP64())
	xt := newTokAddr(T)
	tok := xt.at
	buf := AllocLocal(16*k.bb + 32)
	var loc Mem
	if !inRegs {
		loc = AllocLocal(64 * T)
	}
	k.setup()
	var acc []VecVirtual
	if inRegs {
		acc = tileAccIn(name, T)
	} else {
		flags := Load(Param("flags"), GP64())
		accp := Load(Param("acc"), GP64())
		acc = make([]VecVirtual, T)
		z := ZMM()
		VPXORD(z, z, z)
		TESTQ(U32(1), flags)
		JZ(LabelRef(name + "_zero"))
		for t := range acc {
			a := ZMM()
			VMOVUPS(Mem{Base: accp, Disp: 64 * t}, a)
			VMOVUPS(a, loc.Offset(64*t))
		}
		JMP(LabelRef(name + "_start"))
		Label(name + "_zero")
		for t := range acc {
			VMOVUPS(z, loc.Offset(64*t))
		}
		Label(name + "_start")
	}
	body := func(b Register) {
		wv, dw := k.loadW(b)
		var mw VecVirtual
		if k.mins != nil {
			mw = k.mins(b)
		}
		s := make([]VecVirtual, T)
		for t := range s {
			s[t] = ZMM()
			if mw != nil {
				VPXORD(dw, dw, s[t]) // a zeroing idiom
			} else {
				VMOVDQU64(tok(t, gCorrOff), s[t])
			}
		}
		for kk := range wv {
			for t := range s {
				VPDPBUSD(tok(t, 64*kk), wv[kk], s[t])
			}
		}
		for t := range s {
			VCVTDQ2PS(s[t], s[t])
			d := ZMM()
			VMULPS(tok(t, gDxOff), dw, d)
			if inRegs {
				VFMADD231PS(d, s[t], acc[t])
				if mw != nil {
					VFMADD231PS(tok(t, gCorrOff), mw, acc[t])
				}
			} else {
				VFMADD213PS(loc.Offset(64*t), d, s[t]) // s = d·s + acc
				if mw != nil {
					VFMADD231PS(tok(t, gCorrOff), mw, s[t])
				}
				VMOVUPS(s[t], loc.Offset(64*t))
			}
		}
	}
	n := GP64()
	MOVQ(nb, n)
	SHRQ(U8(4), n)
	loop(name, n, func() {
		if T <= tilePrefetchT {
			// Decode, one token or a few sequences together: the row
			// streams from memory; ask for the bytes rowPrefetch ahead,
			// which the hardware prefetcher alone does not reach early
			// enough.
			for o := 0; o < 16*k.bb; o += 64 {
				PREFETCHT0(Mem{Base: w, Disp: rowPrefetch + o})
			}
		}
		body(w)
		ADDQ(U32(16*k.bb), w)
		xt.advance(gGroupBytes)
	})
	ANDQ(U8(15), nb)
	JZ(LabelRef(name + "_end"))
	g := GP64()
	XORQ(g, g)
	for o := 0; o < 16*k.bb; o += 8 {
		MOVQ(g, buf.Offset(o))
	}
	bp := GP64()
	LEAQ(buf, bp)
	copyBlocks(name, w, bp, nb, k.bb)
	body(bp)
	Label(name + "_end")
	if !inRegs {
		for t := range acc {
			acc[t] = ZMM()
			VMOVUPS(loc.Offset(64*t), acc[t])
		}
	}
	tileAccOut(name, acc)
}

// tokAddr addresses the activations of T tokens, x + t·xs: one base
// register per four tokens, and xs, 3·xs.
type tokAddr struct {
	bases   []Register
	xs, xs3 Register
}

// newTokAddr loads the parameters x and xs.
func newTokAddr(T int) *tokAddr {
	a := &tokAddr{}
	x := Load(Param("x"), GP64())
	a.xs = Load(Param("xs"), GP64())
	a.bases = []Register{x}
	if T >= 4 {
		a.xs3 = GP64()
		LEAQ(Mem{Base: a.xs, Index: a.xs, Scale: 2}, a.xs3)
	}
	for q := 1; q < (T+3)/4; q++ {
		b := GP64()
		if q == 1 {
			LEAQ(Mem{Base: x, Index: a.xs, Scale: 4}, b)
		} else {
			LEAQ(Mem{Base: a.bases[q-2], Index: a.xs, Scale: 8}, b)
		}
		a.bases = append(a.bases, b)
	}
	return a
}

// at is token t's activations at byte disp.
func (a *tokAddr) at(t, disp int) Mem {
	base := a.bases[t/4]
	switch t % 4 {
	case 0:
		return Mem{Base: base, Disp: disp}
	case 1:
		return Mem{Base: base, Index: a.xs, Scale: 1, Disp: disp}
	case 2:
		return Mem{Base: base, Index: a.xs, Scale: 2, Disp: disp}
	}
	return Mem{Base: base, Index: a.xs3, Scale: 1, Disp: disp}
}

// advance moves every token on by n bytes.
func (a *tokAddr) advance(n int) {
	for _, b := range a.bases {
		ADDQ(U32(n), b)
	}
}

// storeSumsAll is storeSums for any number of accumulators, eight at a
// time.
func storeSumsAll(acc []VecVirtual, dst, ldd Register) {
	for h := 0; h < len(acc); h += 8 {
		if h > 0 {
			for range 8 {
				ADDQ(ldd, dst)
			}
		}
		storeSums(acc[h:min(len(acc), h+8)], dst, ldd)
	}
}

// storeSums writes hsum16(acc[t]) to dst + t·ldd for each t, adding the
// lanes in hsum16's order for every t (transposed for several at once).
func storeSums(acc []VecVirtual, dst, ldd Register) {
	T := len(acc)
	if T == 1 {
		s := hsum16(acc[0])
		VMOVSS(s, Mem{Base: dst})
		return
	}
	// Step 1: lo[i] = a[i] + a[i+8], two accumulators per zmm.
	var s1 []VecVirtual
	for p := 0; p < T; p += 2 {
		u, v := ZMM(), ZMM()
		VSHUFF64X2(U8(0x44), acc[p+1], acc[p], u) // lanes 0,1 of a, 0,1 of b
		VSHUFF64X2(U8(0xee), acc[p+1], acc[p], v) // lanes 2,3 of a, 2,3 of b
		VADDPS(v, u, u)
		s1 = append(s1, u)
	}
	// Step 2: l2[i] = lo[i] + lo[i+4]: one 128-bit lane per accumulator.
	var s2 []VecVirtual
	for p := 0; p < len(s1); p += 2 {
		a, b := s1[p], s1[p]
		if p+1 < len(s1) {
			b = s1[p+1]
		}
		u, v := ZMM(), ZMM()
		VSHUFF32X4(U8(0x88), b, a, u) // a.L0, a.L2, b.L0, b.L2
		VSHUFF32X4(U8(0xdd), b, a, v) // a.L1, a.L3, b.L1, b.L3
		VADDPS(v, u, u)
		s2 = append(s2, u)
	}
	// Step 3: l3[0] = l2[0] + l2[2], l3[1] = l2[1] + l2[3]; lane j of
	// s2[0] and s2[1] paired in one VSHUFPS.
	a, b := s2[0], s2[0]
	if len(s2) > 1 {
		b = s2[1]
	}
	u, v := ZMM(), ZMM()
	VSHUFPS(U8(0x44), b, a, u) // a0 a1 b0 b1
	VSHUFPS(U8(0xee), b, a, v) // a2 a3 b2 b3
	VADDPS(v, u, u)
	// Step 4: r = l3[0] + l3[1].
	h := ZMM()
	VMOVSHDUP(u, h)
	VADDPS(h, u, u)
	// Accumulator t's sum is element 2·(t/4) of 128-bit lane t%4: s1[p]
	// holds accumulators 2p, 2p+1; s2[q] has accumulator 4q+L in lane L;
	// step 3 puts s2[0] in elements 0, 1 and s2[1] in elements 2, 3.
	tmp := AllocLocal(64)
	VMOVUPS(u, tmp)
	d := GP64()
	MOVQ(dst, d)
	g := GP32()
	for t := 0; t < T; t++ {
		q, L := t/4, t%4
		off := 16*L + 8*q
		MOVL(tmp.Offset(off), g)
		MOVL(g, Mem{Base: d})
		if t+1 < T {
			ADDQ(ldd, d)
		}
	}
}
