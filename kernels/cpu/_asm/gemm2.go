package main

import (
	"fmt"

	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
	. "github.com/mmcloughlin/avo/reg"
)

// AVX2 kernels of Q4_0 and Q8_0 weights in block lanes, the ymm version of
// gemm512.go: groups of eight blocks, block 2i+j of a group in float32 lane
// 4j+i, acc = fma(float(s), dw·dx, acc) per lane and group, hsum8's order
// at the end. Without VNNI the byte products are VPMADDUBSW pairs (the
// weights, nibbles 0..15, unsigned): the eight pair vectors of a group add
// up in int16 without overflow (8·2·15·128 = 30720), then one VPMADDWD
// widens them. Q8_0 weights split into the nibbles of w+128:
// w·y = 16·h·y + l·y − 128·y. The activations come prepared by
// prepQ8_0AVX2: per group eight ymm of quants in lane order, the eight dx
// as float32, the correction −2^shift·Σy per block; 320 bytes.

const (
	hGroupBytes = 320
	hDxOff      = 256
	hCorrOff    = 288
)

func genGemmAVX2() {
	genPrepQ8_0AVX2()
	for _, T := range []int{4, 2, 1} {
		s3Q4_0AVX2().emit(T)
	}
	for _, T := range []int{4, 2, 1} {
		s3Q8_0AVX2().emit(T)
	}
}

// lanesIndex8 returns eight dword byte offsets for blocks of bb bytes:
// lane 4j+i holds the offset of block 2i+j.
func lanesIndex8(name string, bb int) Mem {
	var v []uint32
	for l := 0; l < 8; l++ {
		j, i := l/4, l%4
		v = append(v, uint32(bb*(2*i+j)))
	}
	return globl(name, dwords(v...))
}

// q8Lanes8 loads a group of eight Q8_0 blocks (bb bytes, quants at +2) at b
// and returns the eight ymm of quant dwords in lane order: out[k] lane 4j+i
// = dword k of block 2i+j.
func q8Lanes8(b Register, bb int) [8]VecVirtual {
	var a, h [4]VecVirtual
	for i := range a {
		a[i], h[i] = YMM(), YMM()
		VBROADCASTI128(Mem{Base: b, Disp: bb*(2*i) + 2}, a[i])
		VINSERTI128(U8(1), Mem{Base: b, Disp: bb*(2*i+1) + 2}, a[i], a[i])
		VBROADCASTI128(Mem{Base: b, Disp: bb*(2*i) + 18}, h[i])
		VINSERTI128(U8(1), Mem{Base: b, Disp: bb*(2*i+1) + 18}, h[i], h[i])
	}
	lo := transpose4(a, ymmV)
	hi := transpose4(h, ymmV)
	return [8]VecVirtual{lo[0], lo[1], lo[2], lo[3], hi[0], hi[1], hi[2], hi[3]}
}

// constY returns 32 bytes of read-only data: the dword v eight times.
func constY(name string, v uint32) Mem {
	return globl(name, dwords(v, v, v, v, v, v, v, v))
}

var f16PackData Mem

// f16Lanes8 gathers the eight fp16 scales at the block starts (offsets at
// idxData) and returns them as float32 in a ymm.
func f16Lanes8(b Register, idxData Mem) VecVirtual {
	if f16PackData.Symbol.Name == "" {
		f16PackData = GLOBL("f16Pack", RODATA|NOPTR)
		for l := range 2 {
			for i := range 16 {
				v := 0x80
				if i < 8 {
					v = 4*(i/2) + i%2
				}
				DATA(16*l+i, U8(v))
			}
		}
	}
	idx := YMM()
	VMOVDQU(idxData, idx)
	m := YMM()
	VPCMPEQD(idx, idx, m) // all ones (the mask is consumed)
	g := YMM()
	VPXOR(idx, idx, g)
	VPGATHERDD(m, Mem{Base: b, Index: idx, Scale: 1}, g)
	VPSHUFB(f16PackData, g, g) // the low words of each 128-bit lane to its low 8 bytes
	VPERMQ(U8(0x08), g, g)     // qwords 0 and 2 to the low 128 bits
	d := YMM()
	VCVTPH2PS(g.AsX(), d)
	return d
}

// genPrepQ8_0AVX2 emits prepQ8_0AVX2(x *byte, nb int, dst *byte, shift
// int): nb Q8_0 blocks into ceil(nb/8) groups of the AVX2 block-lanes
// kernels at dst, the last one padded with zero blocks.
func genPrepQ8_0AVX2() {
	name := "prepQ8_0AVX2"
	text(name, NOSPLIT, "func(x *byte, nb int, dst *byte, shift int)")
	Doc(name+" rearranges nb Q8_0 activation blocks into the block-lane groups",
		"of the AVX2 Q4_0/Q8_0 kernels: quants transposed, scales as float32,",
		"−2^shift·Σ quants per block; the last group padded with zero blocks",
		"(the activations of quant.dotQ4_0Q8_0, quant.dotQ8_0Q8_0).")
	x := Load(Param("x"), GP64())
	nb := Load(Param("nb"), GP64())
	dst := Load(Param("dst"), GP64())
	sh := XMM()
	shg := Load(Param("shift"), GP64())
	VMOVQ(shg, sh)
	buf := AllocLocal(8*34 + 16)
	ones8 := bcastD(0x01010101)
	ones16 := constY("ones16", 0x00010001)
	idx := lanesIndex8("q80Lanes8", 34)
	body := func(b Register) {
		q := q8Lanes8(b, 34)
		s := YMM()
		for k := range q {
			VMOVDQU(q[k], Mem{Base: dst, Disp: 32 * k})
			p := YMM()
			VPMADDUBSW(q[k], ones8, p)
			if k == 0 {
				VMOVDQA(p, s)
			} else {
				VPADDW(p, s, s)
			}
		}
		VPMADDWD(ones16, s, s)
		VPSLLD(sh, s, s)
		z := YMM()
		VPXOR(ones8, ones8, z)
		VPSUBD(s, z, z)
		VMOVDQU(z, Mem{Base: dst, Disp: hCorrOff})
		d := f16Lanes8(b, idx)
		VMOVUPS(d, Mem{Base: dst, Disp: hDxOff})
	}
	n := GP64()
	MOVQ(nb, n)
	SHRQ(U8(3), n)
	loop(name, n, func() {
		body(x)
		ADDQ(U32(8*34), x)
		ADDQ(U32(hGroupBytes), dst)
	})
	ANDQ(U8(7), nb)
	JZ(LabelRef(name + "_ret"))
	zeroLocal8(buf, 8*34, ones8)
	bp := GP64()
	LEAQ(buf, bp)
	copyBlocks(name, x, bp, nb, 34)
	body(bp)
	Label(name + "_ret")
	VZEROUPPER()
	RET()
}

// zeroLocal8 zeroes n bytes of the stack at m, rounded up to 32.
func zeroLocal8(m Mem, n int, live VecVirtual) {
	z := YMM()
	VPXOR(live, live, z)
	for o := 0; o < n; o += 32 {
		VMOVDQU(z, m.Offset(o))
	}
}

// s2Kernel is an AVX2 block-lanes kernel: rows adds, for T tokens, each
// token's exact integer block sums to s[t] (int32, lane order) for the group
// of weight blocks at b, and returns the float32 scales dw.
type s2Kernel struct {
	name  string
	doc   []string
	bb    int
	setup func()
	rows  func(b Register, x func(t, disp int) Mem, s []VecVirtual) VecVirtual
}

func s3Q4_0AVX2() *s2Kernel {
	m0f, ones16, idx := constY("m0f", 0x0f0f0f0f), constY("ones16", 0x00010001), lanesIndex8("q40Lanes8", 18)
	return &s2Kernel{
		name: "gemmQ4_0AVX2",
		doc: []string{"Q4_0 weights × prepared Q8_0 activations (quant.dotQ4_0Q8_0) in",
			"block lanes: nibbles × quants in VPMADDUBSW pairs summed in int16, the",
			"−8·Σy correction prepared."},
		bb:    18,
		setup: func() {},
		rows: func(b Register, x func(t, disp int) Mem, s []VecVirtual) VecVirtual {
			var a [4]VecVirtual
			for i := range a {
				a[i] = YMM()
				VBROADCASTI128(Mem{Base: b, Disp: 18*(2*i) + 2}, a[i])
				VINSERTI128(U8(1), Mem{Base: b, Disp: 18*(2*i+1) + 2}, a[i], a[i])
			}
			q := transpose4(a, ymmV)
			var w [8]VecVirtual
			for k := range q {
				w[k], w[k+4] = YMM(), YMM()
				VPAND(m0f, q[k], w[k])
				VPSRLW(U8(4), q[k], w[k+4])
				VPAND(m0f, w[k+4], w[k+4])
			}
			dw := f16Lanes8(b, idx)
			t16 := make([]VecVirtual, len(s))
			for kk := range w {
				for t := range s {
					if kk == 0 {
						t16[t] = YMM()
						VPMADDUBSW(x(t, 0), w[0], t16[t])
						continue
					}
					p := YMM()
					VPMADDUBSW(x(t, 32*kk), w[kk], p)
					VPADDW(p, t16[t], t16[t])
				}
			}
			for t := range s {
				VPMADDWD(ones16, t16[t], s[t])
			}
			return dw
		},
	}
}

func s3Q8_0AVX2() *s2Kernel {
	m0f, m80 := constY("m0f", 0x0f0f0f0f), constY("m80", 0x80808080)
	ones16, sixteen := constY("ones16", 0x00010001), constY("sixteen16", 0x00100010)
	idx := lanesIndex8("q80Lanes8", 34)
	var u Mem
	return &s2Kernel{
		name: "gemmQ8_0AVX2",
		doc: []string{"Q8_0 weights × prepared Q8_0 activations (quant.dotQ8_0Q8_0) in",
			"block lanes: w+128 = 16h + l, VPMADDUBSW of the nibbles h and l with",
			"the quants, 16·Σh·y + Σl·y and the prepared −128·Σy."},
		bb: 34,
		setup: func() {
			u = AllocLocal(8 * 32)
		},
		rows: func(b Register, x func(t, disp int) Mem, s []VecVirtual) VecVirtual {
			q := q8Lanes8(b, 34)
			inRegs := len(s) == 1 // else through the stack, for registers
			for k := range q {
				VPXOR(m80, q[k], q[k])
				if !inRegs {
					VMOVDQU(q[k], u.Offset(32*k))
				}
			}
			dw := f16Lanes8(b, idx)
			tl, th := make([]VecVirtual, len(s)), make([]VecVirtual, len(s))
			for kk := range q {
				l, h := YMM(), YMM()
				if inRegs {
					l = q[kk]
				} else {
					VMOVDQU(u.Offset(32*kk), l)
				}
				VPSRLW(U8(4), l, h)
				VPAND(m0f, l, l)
				VPAND(m0f, h, h)
				for t := range s {
					if kk == 0 {
						tl[t], th[t] = YMM(), YMM()
						VPMADDUBSW(x(t, 0), l, tl[t])
						VPMADDUBSW(x(t, 0), h, th[t])
						continue
					}
					p := YMM()
					VPMADDUBSW(x(t, 32*kk), l, p)
					VPADDW(p, tl[t], tl[t])
					VPMADDUBSW(x(t, 32*kk), h, p)
					VPADDW(p, th[t], th[t])
				}
			}
			for t := range s {
				VPMADDWD(ones16, tl[t], s[t])
				VPMADDWD(sixteen, th[t], th[t])
				VPADDD(th[t], s[t], s[t])
			}
			return dw
		},
	}
}

// emit writes the AVX2 block-lanes kernel for T tokens, with the signature
// and flags of s3Kernel.emit (the acc area: 16 float32 per token, the first
// eight used).
func (k *s2Kernel) emit(T int) {
	name := fmt.Sprintf("%sx%d", k.name, T)
	text(name, NOSPLIT, "func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)")
	Doc(append([]string{fmt.Sprintf("%s is the dot product of one weight row with %d tokens:", name, T)}, k.doc...)...)
	w := Load(Param("w"), GP64())
	nb := Load(Param("nb"), GP64())
	xt := newTokAddr(T)
	loc := AllocLocal(32 * T)
	slot := func(t int) Mem { return loc.Offset(32 * t) }
	buf := AllocLocal(8*k.bb + 16)
	k.setup()
	flags := Load(Param("flags"), GP64())
	accp := Load(Param("acc"), GP64())
	TESTQ(U32(1), flags)
	JZ(LabelRef(name + "_zero"))
	for t := 0; t < T; t++ {
		y := YMM()
		VMOVUPS(Mem{Base: accp, Disp: 64 * t}, y)
		VMOVUPS(y, slot(t))
	}
	JMP(LabelRef(name + "_start"))
	Label(name + "_zero")
	g := GP64()
	XORQ(g, g)
	for o := 0; o < 32*T; o += 8 {
		MOVQ(g, loc.Offset(o))
	}
	Label(name + "_start")
	body := func(b Register) {
		s := make([]VecVirtual, T)
		for t := range s {
			s[t] = YMM()
		}
		dw := k.rows(b, xt.at, s)
		for t := range s {
			VPADDD(xt.at(t, hCorrOff), s[t], s[t])
			VCVTDQ2PS(s[t], s[t])
			d := YMM()
			VMULPS(xt.at(t, hDxOff), dw, d)
			c := YMM()
			VMOVUPS(slot(t), c)
			VFMADD231PS(d, s[t], c)
			VMOVUPS(c, slot(t))
		}
	}
	n := GP64()
	MOVQ(nb, n)
	SHRQ(U8(3), n)
	loop(name, n, func() {
		if T <= tilePrefetchT { // as in s3Kernel.emit
			for o := 0; o < 8*k.bb; o += 64 {
				PREFETCHT0(Mem{Base: w, Disp: rowPrefetch + o})
			}
		}
		body(w)
		ADDQ(U32(8*k.bb), w)
		xt.advance(hGroupBytes)
	})
	ANDQ(U8(7), nb)
	JZ(LabelRef(name + "_end"))
	g2 := GP64()
	XORQ(g2, g2)
	for o := 0; o < 8*k.bb; o += 8 {
		MOVQ(g2, buf.Offset(o))
	}
	bp := GP64()
	LEAQ(buf, bp)
	copyBlocks(name, w, bp, nb, k.bb)
	body(bp)
	Label(name + "_end")
	flags2 := Load(Param("flags"), GP64())
	TESTQ(U32(2), flags2)
	JNZ(LabelRef(name + "_final"))
	accp2 := Load(Param("acc"), GP64())
	for t := 0; t < T; t++ {
		y := YMM()
		VMOVUPS(slot(t), y)
		VMOVUPS(y, Mem{Base: accp2, Disp: 64 * t})
	}
	VZEROUPPER()
	RET()
	Label(name + "_final")
	dst := Load(Param("dst"), GP64())
	ldd := Load(Param("ldd"), GP64())
	d := GP64()
	MOVQ(dst, d)
	for t := 0; t < T; t++ {
		a := YMM()
		VMOVUPS(slot(t), a)
		VMOVSS(hsum8(a), Mem{Base: d})
		if t+1 < T {
			ADDQ(ldd, d)
		}
	}
	VZEROUPPER()
	RET()
}
