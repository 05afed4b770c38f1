//go:build !purego

package cpu

import "golang.org/x/sys/cpu"

// hasAMX: the amx level — the avx512 level plus AMX-TILE and AMX-INT8
// (Sapphire Rapids and later), and the operating system's leave to use the
// tile registers (amxPermit). The AMX kernels are written by hand in
// amx_amd64.s (avo v0.6.0 has no AMX instructions and no raw bytes).
var hasAMX = hasAVX512 && cpu.X86.HasAMXTile && cpu.X86.HasAMXInt8 && amxPermit()

// amxDPBUSD runs one TDPBUSD on full tiles: c (16 rows of 16 int32) +=
// a (16 rows of 64 unsigned bytes) · b (16 rows of 64 signed bytes, each
// row four bytes for each of the 16 columns: Intel's "VNNI" layout), that
// is c[m][n] += Σ_k a[m][k]·b[k/4][4n+k%4]. It loads its own tile
// configuration and releases the tiles before it returns. A test kernel
// (TestAMXDPBUSD): it checks the instruction encodings and the OS support.
//
//go:noescape
func amxDPBUSD(a, b *byte, c *int32)

// amxQ4_K is the amx level's Q4_K kernel: 16 weight rows (laid out by
// amxUnpackQ4_K at wa; w and rb unused) × 16 tokens (amxActsQ8_K at xa),
// nb super-blocks, in the avx512 level's Q4_K numerics (bit for bit
// dotQ4_KAVX512's result per row and token). Row m's result for token n
// goes to dst + 4m + n·ldd bytes. scr: 24 KiB of scratch, 64-byte aligned.
//
//go:noescape
func amxQ4_K(w *byte, rb int, wa, xa *byte, nb int, scr *byte, dst *float32, ldd int)

// amxQ8_0 is the amx level's Q8_0 kernel: 16 weight rows at w (the file's
// layout, rb bytes apart; their scales as float32 by amxUnpackQ8_0 at wa)
// × 16 tokens (amxActsQ8_0 at xa), nb blocks, in the avx512 level's block
// lanes (bit for bit gemmQ8_0AVX512x1's result per row and token); dst,
// ldd and scr as amxQ4_K's.
//
//go:noescape
func amxQ8_0(w *byte, rb int, wa, xa *byte, nb int, scr *byte, dst *float32, ldd int)

// amxQ4_0 is the amx level's Q4_0 kernel: amxQ8_0 for 16 Q4_0 rows
// unpacked by amxUnpackQ4_0 at wa (w and rb unused) and 16 tokens laid
// out by amxActsQ4_0 at xa (bit for bit gemmQ4_0AVX512x1's results).
//
//go:noescape
func amxQ4_0(w *byte, rb int, wa, xa *byte, nb int, scr *byte, dst *float32, ldd int)

// amxNibblesQ4_K writes the quants of amxUnpackQ4_K's layout (amx_amd64.s).
//
//go:noescape
func amxNibblesQ4_K(dst, w *byte, rb, nb int)

// amxUnpackQ4_KAsm is amxUnpackQ4_K with the quants unpacked in assembly
// (the scales in Go), byte for byte the same (TestAMXUnpackQ4_K).
func amxUnpackQ4_KAsm(dst, w []byte, rb, nb int) {
	if nb == 0 {
		return
	}
	_ = dst[nb*5248-1]
	_ = w[15*rb+nb*144-1]
	amxNibblesQ4_K(&dst[0], &w[0], rb, nb)
	amxScalesQ4_K(dst, w, rb, nb)
}

// amxQ6_K is the amx level's Q6_K kernel: 16 rows unpacked by
// amxUnpackQ6_K at wa (w and rb unused) × 16 tokens laid out by
// amxActsQ6_K at xa, nb super-blocks (bit for bit dotQ6_KAVX512's results).
//
//go:noescape
func amxQ6_K(w *byte, rb int, wa, xa *byte, nb int, scr *byte, dst *float32, ldd int)
