package main

import (
	. "github.com/mmcloughlin/avo/build"
	. "github.com/mmcloughlin/avo/operand"
)

// AVX-512 (F, BW, VL) + VNNI kernels. They may use any of the 32 vector
// registers, so they use only EVEX-encodable instructions (VMOVDQU64, not
// VMOVDQU; VINSERTI32X4, not VINSERTI128). VPDPBUSD sums four u8·s8 products
// straight into int32 lanes, with no int16 step to saturate: Q4_0 and Q8_0
// use it with the weights as the unsigned operand (Q8_0 shifted by +128,
// the shift taken back out as 128·Σy), in block lanes (gemm512.go); Q4_K
// and Q6_K use it on weights repacked at load so that each dword lane holds
// one sub-block (q4k512.go, q6k512.go). Accumulators are zmm. A VEX- or EVEX-encoded instruction
// writing an xmm or ymm clears the rest of the zmm, which the kernels use to
// feed 256-bit results into 512-bit sums.
//
// The history of this level's K-quant kernels (VPMADDUBSW + VPDPWSSD with
// the AVX2 kernels' numerics first, then the repacked VPDPBUSD forms) is in
// NOTES.md.

// globl emits read-only data once and returns its address.
var globls = map[string]Mem{}

func globl(name string, words []uint16) Mem {
	if m, ok := globls[name]; ok {
		return m
	}
	m := GLOBL(name, RODATA|NOPTR)
	for i, v := range words {
		DATA(2*i, U16(v))
	}
	globls[name] = m
	return m
}

func dwords(v ...uint32) []uint16 {
	var w []uint16
	for _, d := range v {
		w = append(w, uint16(d), uint16(d>>16))
	}
	return w
}

// wordIndex returns 32 words: word i is base + i/run.
func wordIndex(base, run int) []uint16 {
	w := make([]uint16, 32)
	for i := range w {
		w[i] = uint16(base + i/run)
	}
	return w
}
