//go:build !purego

package cpu

import (
	"unsafe"

	"golang.org/x/sys/cpu"

	"github.com/hearth-llm/hearth/quant"
)

// CPU features, read once at start-up. The AVX2 level needs AVX2, FMA and
// F16C (every AVX2 CPU since Haswell and Zen 1 has all three); the AVX-512
// level needs F, BW, VL and VNNI (Ice Lake, Sapphire Rapids, Zen 4).
var (
	hasAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA && cpu.X86.HasF16C && cpu.X86.HasOSXSAVE
	hasAVX512 = hasAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL &&
		cpu.X86.HasAVX512VNNI
)

var cpuLevel = func() level {
	switch {
	case hasAMX:
		return levelAMX
	case hasAVX512:
		return levelAVX512
	case hasAVX2:
		return levelAVX2
	}
	return levelGeneric
}()

// Assembly kernels, generated into dot_amd64.s by _asm. Each one-row kernel
// takes nb >= 1 blocks of its weight and activation types; each four-row
// kernel the same for rows stride bytes apart. The references are quant's
// dot products of the same types.

//go:noescape
func dotQ4_KAVX2(w, x *byte, nb int) float32

//go:noescape
func dotQ4_KAVX2x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func dotQ6_KAVX2(w, x *byte, nb int) float32

//go:noescape
func dotQ6_KAVX2x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func prepQ8_0AVX2(x *byte, nb int, dst *byte, shift int)

//go:noescape
func gemmQ4_0AVX2x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_0AVX2x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_0AVX2x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ8_0AVX2x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ8_0AVX2x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ8_0AVX2x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func prepQ8_0AVX512(x *byte, nb int, dst *byte, shift int)

//go:noescape
func gemmQ4_0AVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_0AVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_0AVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_0AVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_0AVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ8_0AVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ8_0AVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ8_0AVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ8_0AVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ8_0AVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_0AVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_0AVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_0AVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_0AVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_0AVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_KAVX2x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_KAVX2x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_KAVX2x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_KAVX2x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_KAVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_KAVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_KAVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_KAVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_KAVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ6_KAVX2x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ6_KAVX2x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ6_KAVX2x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ6_KAVX2x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ6_KAVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ6_KAVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ6_KAVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ6_KAVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ6_KAVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func dotQ6_KAVX512(w, x *byte, nb int) float32

// Q4_K decode kernels: x is prepared by prepQ8_KQ4.

//go:noescape
func dotQ4_KAVX512(w, x *byte, nb int) float32

//go:noescape
func dotQ4_KAVX512x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func dotQ6_KAVX512x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func dotQ5_KAVX512(w, x *byte, nb int) float32

//go:noescape
func dotQ5_KAVX512x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func gemmQ5_KAVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_KAVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_KAVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_KAVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_KAVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func prepQ8_1AVX512(x *byte, nb int, dst *byte)

//go:noescape
func gemmQ4_1AVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_1AVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_1AVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_1AVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ4_1AVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_1AVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_1AVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_1AVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_1AVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ5_1AVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func dotIQ4_XSAVX512(w, x *byte, nb int) float32

//go:noescape
func dotIQ4_XSAVX512x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func gemmIQ4_XSAVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmIQ4_XSAVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmIQ4_XSAVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmIQ4_XSAVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmIQ4_XSAVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func dotQ2_KAVX512(w, x *byte, nb int) float32

//go:noescape
func dotQ2_KAVX512x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func gemmQ2_KAVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ2_KAVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ2_KAVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ2_KAVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ2_KAVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func dotQ3_KAVX512(w, x *byte, nb int) float32

//go:noescape
func dotQ3_KAVX512x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func gemmQ3_KAVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ3_KAVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ3_KAVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ3_KAVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmQ3_KAVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmIQ4_NLAVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmIQ4_NLAVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmIQ4_NLAVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmIQ4_NLAVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmIQ4_NLAVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func prepF16AVX512(x *byte, nb int, dst *byte)

//go:noescape
func gemmF16AVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmF16AVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmF16AVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmF16AVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmF16AVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func prepBF16AVX512(x *byte, nb int, dst *byte)

//go:noescape
func gemmBF16AVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmBF16AVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmBF16AVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmBF16AVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmBF16AVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func dotQ4_1AVX2(w, x *byte, nb int) float32

//go:noescape
func dotQ4_1AVX2x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func dotQ5_1AVX2(w, x *byte, nb int) float32

//go:noescape
func dotQ5_1AVX2x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func dotQ5_0AVX2(w, x *byte, nb int) float32

//go:noescape
func dotQ5_0AVX2x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func dotIQ4_NLAVX2(w, x *byte, nb int) float32

//go:noescape
func dotIQ4_NLAVX2x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func dotQ5_KAVX2(w, x *byte, nb int) float32

//go:noescape
func dotQ5_KAVX2x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func dotQ2_KAVX2(w, x *byte, nb int) float32

//go:noescape
func dotQ2_KAVX2x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func dotQ3_KAVX2(w, x *byte, nb int) float32

//go:noescape
func dotQ3_KAVX2x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func dotIQ4_XSAVX2(w, x *byte, nb int) float32

//go:noescape
func dotIQ4_XSAVX2x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

// MXFP4 kernels (_asm/mxfp4.go): IQ4_NL's shape with the doubled E2M1
// levels and the E8M0 scale 2^(e-128).

//go:noescape
func dotMXFP4AVX2(w, x *byte, nb int) float32

//go:noescape
func dotMXFP4AVX2x4(w *byte, stride int, x *byte, nb int, dst *[4]float32)

//go:noescape
func gemmMXFP4AVX512x16(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmMXFP4AVX512x8(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmMXFP4AVX512x4(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmMXFP4AVX512x2(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

//go:noescape
func gemmMXFP4AVX512x1(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

// F16 and BF16 kernels take n, a multiple of 8, elements.

//go:noescape
func dotF16AVX2(w, x *byte, n int) float32

//go:noescape
func dotBF16AVX2(w, x *byte, n int) float32

// Activation quantizers (quant.QuantizeRow, byte-exact).

//go:noescape
func quantQ8_0AVX2(x *float32, dst *byte, nb int)

//go:noescape
func quantQ8_1AVX2(x *float32, dst *byte, nb int)

//go:noescape
func quantQ8_KAVX2(x *float32, dst *byte, nb int)

type asmDot func(w, x *byte, nb int) float32
type asmDot4 func(w *byte, stride int, x *byte, nb int, dst *[4]float32)

// asmImpl wraps a kernel pair with the length checks quant.VecDot makes.
func asmImpl(t quant.Type, l level, k asmDot, k4 asmDot4) impl {
	name := t.String()
	bs, wb, xb := t.BlockSize(), t.BlockBytes(), t.VecDotType().BlockBytes()
	d := impl{level: l}
	d.dot = func(n int, w, x []byte) float32 {
		nb := checkDot(name, n, bs, wb, xb, len(w), len(x))
		if nb == 0 {
			return 0
		}
		return k(unsafe.SliceData(w), unsafe.SliceData(x), nb)
	}
	if k4 != nil {
		d.dot4 = func(n int, w []byte, stride int, x []byte, dst *[4]float32) {
			nb := checkDot(name, n, bs, wb, xb, len(w), len(x))
			checkRows4(n, nb*wb, len(w), stride)
			if nb == 0 {
				*dst = [4]float32{}
				return
			}
			k4(unsafe.SliceData(w), stride, unsafe.SliceData(x), nb, dst)
		}
	}
	return d
}

// halfImpl wraps an F16/BF16 kernel: it takes the elements in multiples of
// 8, and the last n%8 products are added in Go, in order.
func halfImpl(t quant.Type, k asmDot, conv func(uint16) float32) impl {
	name := t.String()
	return impl{level: levelAVX2, dot: func(n int, w, x []byte) float32 {
		checkDot(name, n, 1, 2, 2, len(w), len(x))
		n8 := n &^ 7
		var s float32
		if n8 > 0 {
			s = k(unsafe.SliceData(w), unsafe.SliceData(x), n8)
		}
		for i := n8; i < n; i++ {
			s += conv(uint16(w[2*i])|uint16(w[2*i+1])<<8) * conv(uint16(x[2*i])|uint16(x[2*i+1])<<8)
		}
		return s
	}}
}

// blockLanesImpl is an AVX-512 block-lanes family (Q4_0, Q5_0, IQ4_NL, MXFP4, Q8_0 weights):
// activations prepared by prepQ8_0AVX512 with the correction −2^shift·Σy,
// tiles of up to 16 tokens, Dot and Dot4 from the 1-token tile.
func blockLanesImpl(t quant.Type, shift int, tiles []tileT) impl {
	return blockLanes(t, func(x *byte, nb int, dst *byte) { prepQ8_0AVX512(x, nb, dst, shift) }, 640, tiles)
}

// blockLanesQ8_1 is an AVX-512 block-lanes family over Q8_1 activations
// (Q4_1, Q5_1 weights: a min per block), prepared by prepQ8_1AVX512.
func blockLanesQ8_1(t quant.Type, tiles []tileT) impl {
	return blockLanes(t, prepQ8_1AVX512, 640, tiles)
}

// repackedImpl is an AVX-512 family on weights repacked at load
// (gemmImpl.repack): one 384-byte prepared block per super-block, decode
// kernels, Dot and Dot4 through decDot.
func repackedImpl(t quant.Type, g gemmImpl) impl {
	g.group, g.groupBytes = 1, 384
	d := impl{level: levelAVX512, gemm: &g}
	d.dot, d.dot4 = decDot(t, d.gemm)
	return d
}

// tiles16 lists an AVX-512 family's tiles, 16 tokens down to 1.
func tiles16(x16, x8, x4, x2, x1 gemmTile) []tileT {
	return []tileT{{16, x16}, {8, x8}, {4, x4}, {2, x2}, {1, x1}}
}

// halfLanes is the AVX-512 family of a 16-bit float type: groups of
// sixteen values, 64 bytes of float32 activations each.
func halfLanes(t quant.Type, prep func(x *byte, nb int, dst *byte), tiles []tileT) impl {
	return blockLanes(t, prep, 64, tiles)
}

// blockLanes is a family of groups of sixteen blocks, groupBytes of
// prepared activations each, whose T = 1 tile is the one-row kernel.
func blockLanes(t quant.Type, prep func(x *byte, nb int, dst *byte), groupBytes int, tiles []tileT) impl {
	g := &gemmImpl{tiles: tiles, prep: prep, group: 16, groupBytes: groupBytes, single: true}
	d := impl{level: levelAVX512, gemm: g}
	d.dot, d.dot4 = prepDot(t, g)
	return d
}

// blockLanesAVX2 is an AVX2 block-lanes family (Q4_0, Q8_0 weights):
// activations prepared by prepQ8_0AVX2, groups of eight blocks, tiles of 4,
// 2 and 1 tokens.
func blockLanesAVX2(t quant.Type, shift int, k4, k2, k1 gemmTile) impl {
	g := &gemmImpl{
		tiles: []tileT{{4, k4}, {2, k2}, {1, k1}},
		prep: func(x *byte, nb int, dst *byte) {
			prepQ8_0AVX2(x, nb, dst, shift)
		},
		group:      8,
		groupBytes: 320,
		single:     true,
	}
	d := impl{level: levelAVX2, gemm: g}
	d.dot, d.dot4 = prepDot(t, g)
	return d
}

func asmQuant(k func(x *float32, dst *byte, nb int)) func(x []float32, dst []byte, nb int) {
	return func(x []float32, dst []byte, nb int) { k(unsafe.SliceData(x), unsafe.SliceData(dst), nb) }
}

func archImpls() map[quant.Type][]impl {
	m := map[quant.Type][]impl{}
	add := func(t quant.Type, d impl) { m[t] = append(m[t], d) }
	if hasAVX2 {
		add(quant.Q4_0, blockLanesAVX2(quant.Q4_0, 3, gemmQ4_0AVX2x4, gemmQ4_0AVX2x2, gemmQ4_0AVX2x1))
		q8 := blockLanesAVX2(quant.Q8_0, 7, gemmQ8_0AVX2x4, gemmQ8_0AVX2x2, gemmQ8_0AVX2x1)
		q8.quant = asmQuant(quantQ8_0AVX2)
		add(quant.Q8_0, q8)
		add(quant.Q8_1, impl{level: levelAVX2, quant: asmQuant(quantQ8_1AVX2)})
		add(quant.Q8_K, impl{level: levelAVX2, quant: asmQuant(quantQ8_KAVX2)})
		q4k := asmImpl(quant.Q4_K, levelAVX2, dotQ4_KAVX2, dotQ4_KAVX2x4)
		q4k.gemm = &gemmImpl{tiles: []tileT{{8, gemmQ4_KAVX2x8}, {4, gemmQ4_KAVX2x4}, {2, gemmQ4_KAVX2x2},
			{1, gemmQ4_KAVX2x1}}}
		add(quant.Q4_K, q4k)
		q6k := asmImpl(quant.Q6_K, levelAVX2, dotQ6_KAVX2, dotQ6_KAVX2x4)
		q6k.gemm = &gemmImpl{tiles: []tileT{{8, gemmQ6_KAVX2x8}, {4, gemmQ6_KAVX2x4}, {2, gemmQ6_KAVX2x2},
			{1, gemmQ6_KAVX2x1}}}
		add(quant.Q6_K, q6k)
		add(quant.Q5_K, asmImpl(quant.Q5_K, levelAVX2, dotQ5_KAVX2, dotQ5_KAVX2x4))
		add(quant.Q4_1, asmImpl(quant.Q4_1, levelAVX2, dotQ4_1AVX2, dotQ4_1AVX2x4))
		add(quant.Q5_0, asmImpl(quant.Q5_0, levelAVX2, dotQ5_0AVX2, dotQ5_0AVX2x4))
		add(quant.Q5_1, asmImpl(quant.Q5_1, levelAVX2, dotQ5_1AVX2, dotQ5_1AVX2x4))
		add(quant.IQ4_NL, asmImpl(quant.IQ4_NL, levelAVX2, dotIQ4_NLAVX2, dotIQ4_NLAVX2x4))
		add(quant.MXFP4, asmImpl(quant.MXFP4, levelAVX2, dotMXFP4AVX2, dotMXFP4AVX2x4))
		add(quant.Q2_K, asmImpl(quant.Q2_K, levelAVX2, dotQ2_KAVX2, dotQ2_KAVX2x4))
		add(quant.Q3_K, asmImpl(quant.Q3_K, levelAVX2, dotQ3_KAVX2, dotQ3_KAVX2x4))
		add(quant.IQ4_XS, asmImpl(quant.IQ4_XS, levelAVX2, dotIQ4_XSAVX2, dotIQ4_XSAVX2x4))
		add(quant.F16, halfImpl(quant.F16, dotF16AVX2, quant.F16ToF32))
		add(quant.BF16, halfImpl(quant.BF16, dotBF16AVX2, quant.BF16ToF32))
	}
	if hasAVX512 {
		q40 := blockLanesImpl(quant.Q4_0, 3, tiles16(gemmQ4_0AVX512x16, gemmQ4_0AVX512x8,
			gemmQ4_0AVX512x4, gemmQ4_0AVX512x2, gemmQ4_0AVX512x1))
		add(quant.Q4_0, q40)
		if hasAMX {
			g := *q40.gemm
			g.amx = &amxImpl{kernel: amxQ4_0, unpack: amxUnpackQ4_0, acts: amxActsQ4_0, wBytes: 576, xBytes: 640, minTokens: 64}
			d := q40
			d.level, d.gemm = levelAMX, &g
			add(quant.Q4_0, d)
		}
		q80 := blockLanesImpl(quant.Q8_0, 7, tiles16(gemmQ8_0AVX512x16, gemmQ8_0AVX512x8,
			gemmQ8_0AVX512x4, gemmQ8_0AVX512x2, gemmQ8_0AVX512x1))
		add(quant.Q8_0, q80)
		if hasAMX {
			// The amx level: the same kernels, and groups of 16 rows × 16
			// tokens through AMX tiles in block lanes (gemm_amx.go).
			g := *q80.gemm
			g.amx = &amxImpl{kernel: amxQ8_0, unpack: amxUnpackQ8_0, acts: amxActsQ8_0, wBytes: 64, xBytes: 576, minTokens: 64}
			d := q80
			d.level, d.gemm = levelAMX, &g
			add(quant.Q8_0, d)
		}
		add(quant.Q5_0, blockLanesImpl(quant.Q5_0, 4, tiles16(gemmQ5_0AVX512x16, gemmQ5_0AVX512x8,
			gemmQ5_0AVX512x4, gemmQ5_0AVX512x2, gemmQ5_0AVX512x1)))
		add(quant.IQ4_NL, blockLanesImpl(quant.IQ4_NL, 7, tiles16(gemmIQ4_NLAVX512x16, gemmIQ4_NLAVX512x8,
			gemmIQ4_NLAVX512x4, gemmIQ4_NLAVX512x2, gemmIQ4_NLAVX512x1)))
		add(quant.MXFP4, blockLanesImpl(quant.MXFP4, 7, tiles16(gemmMXFP4AVX512x16, gemmMXFP4AVX512x8,
			gemmMXFP4AVX512x4, gemmMXFP4AVX512x2, gemmMXFP4AVX512x1)))
		// F16, BF16: float32 activations, sixteen weights widened per
		// group and met by every token of the tile (half512.go).
		add(quant.F16, halfLanes(quant.F16, prepF16AVX512, tiles16(gemmF16AVX512x16, gemmF16AVX512x8,
			gemmF16AVX512x4, gemmF16AVX512x2, gemmF16AVX512x1)))
		add(quant.BF16, halfLanes(quant.BF16, prepBF16AVX512, tiles16(gemmBF16AVX512x16, gemmBF16AVX512x8,
			gemmBF16AVX512x4, gemmBF16AVX512x2, gemmBF16AVX512x1)))
		add(quant.Q4_1, blockLanesQ8_1(quant.Q4_1, tiles16(gemmQ4_1AVX512x16, gemmQ4_1AVX512x8,
			gemmQ4_1AVX512x4, gemmQ4_1AVX512x2, gemmQ4_1AVX512x1)))
		add(quant.Q5_1, blockLanesQ8_1(quant.Q5_1, tiles16(gemmQ5_1AVX512x16, gemmQ5_1AVX512x8,
			gemmQ5_1AVX512x4, gemmQ5_1AVX512x2, gemmQ5_1AVX512x1)))
		// Q4_K: decode kernels and tiles with their own numerics (four
		// VPDPBUSD per 256 quants and token, token pairs; _asm/q4k512.go)
		// on weights repacked once per matrix (see NOTES.md).
		q4k := gemmImpl{tiles: tiles16(gemmQ4_KAVX512x16, gemmQ4_KAVX512x8,
			gemmQ4_KAVX512x4, gemmQ4_KAVX512x2, gemmQ4_KAVX512x1), prep: prepQ8_KQ4,
			dec1: dotQ4_KAVX512, dec4: dotQ4_KAVX512x4, repack: repackQ4_K, pair: pairQ8_KQ4}
		add(quant.Q4_K, repackedImpl(quant.Q4_K, q4k))
		if hasAMX {
			// The amx level: the same kernels, and groups of 16 rows × 16
			// tokens through AMX tiles with their numerics (gemm_amx.go).
			q4k.amx = &amxImpl{kernel: amxQ4_K, unpack: amxUnpackQ4_KAsm, acts: amxActsQ8_K, wBytes: 5248, xBytes: 4672, minTokens: 32}
			d := repackedImpl(quant.Q4_K, q4k)
			d.level = levelAMX
			add(quant.Q4_K, d)
		}
		// Sub-block lanes on repacked weights (_asm/lanes512.go): Q6_K,
		// Q5_K (Q4_K's header, a min term), IQ4_XS (levels +128 by
		// VPSHUFB), Q2_K (a min term), Q3_K.
		q6k := gemmImpl{tiles: tiles16(gemmQ6_KAVX512x16, gemmQ6_KAVX512x8,
			gemmQ6_KAVX512x4, gemmQ6_KAVX512x2, gemmQ6_KAVX512x1), prep: prepQ8_KQ6,
			dec1: dotQ6_KAVX512, dec4: dotQ6_KAVX512x4, repack: repackQ6_K}
		add(quant.Q6_K, repackedImpl(quant.Q6_K, q6k))
		if hasAMX {
			q6k.amx = &amxImpl{kernel: amxQ6_K, unpack: amxUnpackQ6_K, acts: amxActsQ6_K, wBytes: 5120, xBytes: 5184, minTokens: 64}
			d := repackedImpl(quant.Q6_K, q6k)
			d.level = levelAMX
			add(quant.Q6_K, d)
		}
		add(quant.Q5_K, repackedImpl(quant.Q5_K, gemmImpl{tiles: tiles16(gemmQ5_KAVX512x16, gemmQ5_KAVX512x8,
			gemmQ5_KAVX512x4, gemmQ5_KAVX512x2, gemmQ5_KAVX512x1), prep: prepQ8_KQ5,
			dec1: dotQ5_KAVX512, dec4: dotQ5_KAVX512x4, repack: repackQ5_K}))
		add(quant.IQ4_XS, repackedImpl(quant.IQ4_XS, gemmImpl{tiles: tiles16(gemmIQ4_XSAVX512x16, gemmIQ4_XSAVX512x8,
			gemmIQ4_XSAVX512x4, gemmIQ4_XSAVX512x2, gemmIQ4_XSAVX512x1), prep: prepQ8_KIQ4,
			dec1: dotIQ4_XSAVX512, dec4: dotIQ4_XSAVX512x4, repack: repackIQ4_XS}))
		add(quant.Q2_K, repackedImpl(quant.Q2_K, gemmImpl{tiles: tiles16(gemmQ2_KAVX512x16, gemmQ2_KAVX512x8,
			gemmQ2_KAVX512x4, gemmQ2_KAVX512x2, gemmQ2_KAVX512x1), prep: prepQ8_KQ2,
			dec1: dotQ2_KAVX512, dec4: dotQ2_KAVX512x4, repack: repackQ2_K}))
		add(quant.Q3_K, repackedImpl(quant.Q3_K, gemmImpl{tiles: tiles16(gemmQ3_KAVX512x16, gemmQ3_KAVX512x8,
			gemmQ3_KAVX512x4, gemmQ3_KAVX512x2, gemmQ3_KAVX512x1), prep: prepQ8_KQ3,
			dec1: dotQ3_KAVX512, dec4: dotQ3_KAVX512x4, repack: repackQ3_K}))
	}
	return m
}
