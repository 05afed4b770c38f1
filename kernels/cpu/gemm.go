package cpu

import (
	"encoding/binary"
	"math"
	"runtime"
	"runtime/debug"
	"sync"
	"unsafe"

	"github.com/hearth-llm/hearth/quant"
)

// Tile kernels for prefill: one weight row against T tokens at a time (T
// up to 16), so that the work of unpacking a weight block (nibbles to
// bytes, scale decoding, transposition) is done once for T tokens instead
// of once per token. MatMul uses them for two tokens or more, and for one
// token where they are the level's only kernels (block lanes).
//
// Batch invariance: for a given type and level every kernel that computes a
// (row, token) result — the one-row kernel behind Dot, its four-row form and
// each tile kernel — performs the same float32 operations on the same
// values in the same order, so the bits do not depend on how many tokens
// are multiplied together or which kernel took them. The integer part (block
// dot products) is exact in every kernel and may be computed in any order.
//
// Three float orders are in use:
//
//   - The one-row order of the AVX2 K-quant kernels (Q4_K, Q6_K): a tile
//     keeps the one-row kernel's accumulator lanes, its per-super-block
//     scaling and its final reduction (_asm/gemmk.go).
//   - Sub-block lanes, for Q4_K and Q6_K at the avx512 level: the weights
//     are repacked once per matrix (gemmImpl.repack) and the activations
//     prepared (prepQ8_KQ4, prepQ8_KQ6) so that VPDPBUSD sums each
//     sub-block in its own dword lanes; the decode kernels and the tiles
//     scale and accumulate those lanes in the same float operations
//     (_asm/q4k512.go, _asm/q6k512.go).
//   - "Block lanes", for Q4_0 and Q8_0 weights: a row is cut into groups of
//     sixteen blocks (AVX-512; eight on AVX2); block 4i+j (2i+j) of a group
//     owns float32 lane 4j+i of the accumulator and adds to it, once per
//     group, float(its exact integer dot product) times dw·dx with one fused
//     multiply-add; the lanes are added at the end in hsum16's (hsum8's)
//     order. The float work is one convert, one multiply and one FMA per
//     group and token instead of per pair of blocks, which is what makes
//     these tiles fast (_asm/gemm512.go, _asm/gemm2.go); the one-row kernel
//     of the level is the T = 1 tile. The activations are first rearranged
//     into the lane order (prep), once per token for all rows.

// gemmTile computes, for one weight row w of nb blocks and T tokens, the
// dot products with token t's (prepared) activations at x + t·xs. flags&1:
// continue from the T×16 float32 accumulators at acc (else start from
// zero); flags&2: finish, writing token t's result to dst + t·ldd bytes
// (else store the accumulators to acc). A row may so be split into chunks
// of whole groups (block lanes) or super-blocks with the same result.
type gemmTile func(w *byte, nb int, x *byte, xs int, acc *float32, dst *float32, ldd int, flags int)

const (
	gemmLoad   = 1
	gemmFinish = 2
)

// tileT is a tile kernel for T tokens.
type tileT struct {
	t  int
	fn gemmTile
}

// gemmImpl is a family of tile kernels of one type at one level.
type gemmImpl struct {
	tiles []tileT // T descending; the last one has T = 1
	// prep rearranges nb blocks of one quantized activation row into the
	// kernels' layout at dst (64-byte aligned), groupBytes per group of
	// group blocks; nil: the kernels read the quantized rows.
	prep       func(x *byte, nb int, dst *byte)
	group      int
	groupBytes int
	// single: the T = 1 tile is the level's one-row kernel (block lanes),
	// used for single tokens too; else one token takes the four-row
	// kernel, which shares its activations between rows.
	single bool
	// dec1, dec4: one-token (decode) kernels over prepared activations, one
	// row or four rows stride bytes apart, with the tiles' numerics. Where
	// set, MatMul prepares a single token once and runs them over the
	// rows, and they are the level's Dot and Dot4 (decDot).
	dec1 func(w, x *byte, nb int) float32
	dec4 func(w *byte, stride int, x *byte, nb int, dst *[4]float32)
	// pair, where set, turns the prepared activations of token a into
	// those of the tiles' token pair (a, b) (pairQ8_KQ4); MatMul pairs
	// tokens 2i and 2i+1 (the tiles start at even tokens), a last odd token
	// stays paired with itself.
	pair func(a, b *byte, nb int)
	// repack, where set, rewrites whole weight blocks from the file's
	// layout into the one the level's kernels read (same size, same
	// block boundaries); NewMatrix does it once per matrix (Matrix.packed),
	// the Dot wrappers per call.
	repack func(dst, src []byte)
}

// weights returns the bytes m's tile and decode kernels read: m.Data, or
// its copy in the kernels' layout, made on first use (NewMatrix makes it
// at once, so that concurrent MatMuls only read it).
func (m *Matrix) weights() []byte {
	g := m.gemm
	if g.repack == nil {
		return m.Data
	}
	if m.packedFor != g {
		m.packed = make([]byte, len(m.Data))
		repackParallel(g.repack, m.packed, m.Data, m.Type.BlockBytes())
		m.packedFor = g
	}
	return m.packed
}

// repackParallel runs repack over src in pieces of whole blocks of bb
// bytes, one per CPU (it runs once per matrix, at load: a Q4_K_M 8B model
// repacks about 4 GB, at 1-6 GB/s per core).
func repackParallel(repack func(dst, src []byte), dst, src []byte, bb int) {
	blocks := len(src) / bb
	parts := min(runtime.GOMAXPROCS(0), max(1, blocks/4096))
	if parts <= 1 {
		repack(dst, src)
		return
	}
	var wg sync.WaitGroup
	var once sync.Once
	var fault any
	per := (blocks + parts - 1) / parts
	for b0 := 0; b0 < blocks; b0 += per {
		b1 := min(blocks, b0+per)
		wg.Go(func() {
			// A fault reading mapped weights comes back to the caller
			// (NewMatrix's readGuard) instead of killing the process.
			debug.SetPanicOnFault(true)
			defer func() {
				if r := recover(); r != nil {
					once.Do(func() { fault = r })
				}
			}()
			repack(dst[b0*bb:b1*bb], src[b0*bb:b1*bb])
		})
	}
	wg.Wait()
	if fault != nil {
		panic(fault)
	}
}

// prepBytes is the size of one prepared activation row of nb blocks.
func (g *gemmImpl) prepBytes(nb int) int {
	return (nb + g.group - 1) / g.group * g.groupBytes
}

// prepQ8_KQ4 lays out nb Q8_K blocks for the avx512 level's Q4_K kernels,
// 384 bytes a block: the quants at 0 in four 64-byte slices, slice j
// holding quants 8j..8j+7 of each 32-quant sub-block p as its qword p
// (the order of the kernels' nibble slices); at 256 sixteen float32, lane
// 4k+i the sum of the quants of sub-block 2k+(i&1); at 320 d in sixteen
// lanes. The tiles take tokens in pairs, one per half of each 128-bit lane
// (lanes 4k, 4k+1: the first token, 4k+2, 4k+3: the second); a block as
// prepared here is that of a token paired with itself, and pairQ8_KQ4
// makes the first token's block that of a pair, so that the tiles read a
// pair's sums and d with one load each.
func prepQ8_KQ4(x *byte, nb int, dst *byte) {
	for b := range nb {
		s := unsafe.Add(unsafe.Pointer(x), b*292)
		d := unsafe.Add(unsafe.Pointer(dst), b*384)
		q := (*[32]uint64)(unsafe.Add(d, 0))
		for p := range 8 {
			// sub-block p's four qwords (unaligned in the Q8_K block)
			src := (*[32]byte)(unsafe.Add(s, 4+32*p))
			for j := range 4 {
				q[8*j+p] = binary.LittleEndian.Uint64(src[8*j:])
			}
		}
		g := (*[32]byte)(unsafe.Add(s, 260))
		f := (*[16]float32)(unsafe.Add(d, 256))
		for sb := range 8 {
			v := float32(int32(int16(binary.LittleEndian.Uint16(g[4*sb:]))) + int32(int16(binary.LittleEndian.Uint16(g[4*sb+2:]))))
			f[4*(sb/2)+sb%2], f[4*(sb/2)+sb%2+2] = v, v
		}
		dx := *(*float32)(s)
		for i, dd := 0, (*[16]float32)(unsafe.Add(d, 320)); i < 16; i++ {
			dd[i] = dx
		}
	}
}

// pairQ8_KQ4 writes into the nb prepared blocks at a the second halves of
// the 128-bit lanes of those at b (b's sums and d): a's blocks become
// those of the pair (a, b). b must be as prepQ8_KQ4 left it.
func pairQ8_KQ4(a, b *byte, nb int) {
	for blk := range nb {
		fa := (*[32]float32)(unsafe.Add(unsafe.Pointer(a), blk*384+256))
		fb := (*[32]float32)(unsafe.Add(unsafe.Pointer(b), blk*384+256))
		for k := range 8 { // the sums (lanes 0..15), then d (16..31)
			fa[4*k+2], fa[4*k+3] = fb[4*k+2], fb[4*k+3]
		}
	}
}

// prepQ8_KQ5 lays out nb Q8_K blocks for the avx512 level's Q5_K kernels,
// 384 bytes a block: the quants at 0 as prepQ8_KQ4 lays them out; at 256
// sixteen float32, dx·B_p in lane 2p (B_p the sum of sub-block p's 32
// quants) and 0 in lane 2p+1; dx at 320.
func prepQ8_KQ5(x *byte, nb int, dst *byte) {
	le := binary.LittleEndian
	src := unsafe.Slice(x, nb*292)
	out := unsafe.Slice(dst, nb*384)
	for b := range nb {
		s, d := src[b*292:(b+1)*292], out[b*384:(b+1)*384]
		for p := range 8 {
			for j := range 4 {
				copy(d[64*j+8*p:64*j+8*p+8], s[4+32*p+8*j:])
			}
		}
		dx := math.Float32frombits(le.Uint32(s))
		for p := range 8 {
			bp := int32(int16(le.Uint16(s[260+4*p:]))) + int32(int16(le.Uint16(s[262+4*p:])))
			le.PutUint32(d[256+8*p:], math.Float32bits(dx*float32(bp)))
			le.PutUint32(d[260+8*p:], 0)
		}
		copy(d[320:324], s[:4])
	}
}

// repackQ5_K rewrites Q5_K blocks for the avx512 level's kernels (same 176
// bytes). The file's block: d, dmin, 12 bytes of scales and mins, 32 bytes
// of fifth bits (bit p of byte l: quant l of sub-block p), 128 of nibbles
// as Q4_K's. The repacked one: the 16-byte header as it is, the nibbles at
// 16 as repackQ4_K lays them out, at 144 the fifth bits of slice j (quant
// 8j+i of sub-block p at byte 8p+i) as the eight bytes 144+8j.., bit k for
// byte k.
func repackQ5_K(dst, src []byte) {
	const bb = 176
	for o := 0; o+bb <= len(src); o += bb {
		s, d := src[o:o+bb], dst[o:o+bb]
		copy(d[:16], s[:16])
		// The nibbles: a Q4_K block's 128 bytes at the same place.
		var q4s, q4d [144]byte
		copy(q4s[16:], s[48:176])
		repackQ4_K(q4d[:], q4s[:])
		copy(d[16:144], q4d[16:])
		qh := s[16:48]
		for j := range 4 {
			var bits uint64
			for k := range 64 {
				p, i := k/8, k%8
				bits |= uint64(qh[8*j+i]>>p&1) << k
			}
			binary.LittleEndian.PutUint64(d[144+8*j:], bits)
		}
	}
}

// prepQ8_KIQ4 lays out nb Q8_K blocks for the avx512 level's IQ4_XS
// kernels, 384 bytes a block: the quants at 0 as prepQ8_KQ4 lays them out;
// at 256 sixteen int32, −128·B_p in lane 2p (B_p the sum of sub-block p's
// 32 quants: the kernels' weights are the levels +128) and 0 in lane 2p+1;
// d at 320.
func prepQ8_KIQ4(x *byte, nb int, dst *byte) {
	le := binary.LittleEndian
	src := unsafe.Slice(x, nb*292)
	out := unsafe.Slice(dst, nb*384)
	for b := range nb {
		s, d := src[b*292:(b+1)*292], out[b*384:(b+1)*384]
		for p := range 8 {
			for j := range 4 {
				copy(d[64*j+8*p:64*j+8*p+8], s[4+32*p+8*j:])
			}
		}
		for p := range 8 {
			bp := int32(int16(le.Uint16(s[260+4*p:]))) + int32(int16(le.Uint16(s[262+4*p:])))
			le.PutUint32(d[256+8*p:], uint32(-128*bp))
			le.PutUint32(d[260+8*p:], 0)
		}
		copy(d[320:324], s[:4])
	}
}

// repackIQ4_XS rewrites IQ4_XS blocks for the avx512 level's kernels (same
// 136 bytes). The file's block: d, scales_h (16 bits: the high 2 bits of
// each sub-block's 6-bit scale), scales_l (4 bytes: the low 4 bits), and
// 128 bytes of nibbles, sub-block p's quants e < 16 in the low nibbles of
// bytes 16p+e, e ≥ 16 in the high nibbles of 16p+e−16. The repacked one:
// d, the eight 6-bit scales at bits 6p of bytes 2..7, the nibbles at 8 in
// repackQ4_K's slice order.
func repackIQ4_XS(dst, src []byte) {
	const bb = 136
	le := binary.LittleEndian
	for o := 0; o+bb <= len(src); o += bb {
		s, d := src[o:o+bb], dst[o:o+bb]
		sh := le.Uint16(s[2:])
		var ls uint64
		for p := range 8 {
			v := uint64(s[4+p/2]>>(4*(p%2))&15) | uint64(sh>>(2*p)&3)<<4
			ls |= v << (6 * p)
		}
		le.PutUint64(d[0:], uint64(le.Uint16(s[0:]))|ls<<16)
		// Sub-block p in Q4_K's layout (nibble p&1 of bytes 32(p>>1)..+31,
		// quant e at byte e), then repackQ4_K's slices.
		var q4s, q4d [144]byte
		for p := range 8 {
			for e := range 32 {
				b := s[8+16*p+e%16]
				if e >= 16 {
					b >>= 4
				}
				q4s[16+32*(p>>1)+e] |= (b & 15) << (4 * (p & 1))
			}
		}
		repackQ4_K(q4d[:], q4s[:])
		copy(d[8:136], q4d[16:144])
	}
}

// prepQ8_KQ2 lays out nb Q8_K blocks for the avx512 level's Q2_K kernels,
// 384 bytes a block: the quants at 0 as prepQ8_KQ6 lays them out (dword l
// of slice j: quants 16l+4j..+3); at 256 sixteen float32, dx·B_l (B_l the
// Q8_K group sum of sub-block l); dx at 320.
func prepQ8_KQ2(x *byte, nb int, dst *byte) {
	le := binary.LittleEndian
	src := unsafe.Slice(x, nb*292)
	out := unsafe.Slice(dst, nb*384)
	for b := range nb {
		s, d := src[b*292:(b+1)*292], out[b*384:(b+1)*384]
		for j := range 4 {
			for l := range 16 {
				copy(d[64*j+4*l:64*j+4*l+4], s[4+16*l+4*j:])
			}
		}
		dx := math.Float32frombits(le.Uint32(s))
		for l := range 16 {
			le.PutUint32(d[256+4*l:], math.Float32bits(dx*float32(int16(le.Uint16(s[260+2*l:])))))
		}
		copy(d[320:324], s[:4])
	}
}

// repackQ2_K rewrites Q2_K blocks for the avx512 level's kernels (same 84
// bytes). The file's block: 16 scale bytes, 64 bytes of 2-bit quants
// (quant e in bits 2·(e/32%4) of byte 32·(e/128) + e%32), d, dmin. The
// repacked one: the quants at 0, byte 4l+i holding quant 16l+4j+i in bits
// 2j (slice j), then the scales and d, dmin as they are.
func repackQ2_K(dst, src []byte) {
	const bb = 84
	for o := 0; o+bb <= len(src); o += bb {
		s, d := src[o:o+bb], dst[o:o+bb]
		q := s[16:80]
		for k := range 64 {
			l, i := k/4, k%4
			var v byte
			for j := range 4 {
				e := 16*l + 4*j + i
				v |= (q[e/128*32+e%32] >> (e / 32 % 4 * 2) & 3) << (2 * j)
			}
			d[k] = v
		}
		copy(d[64:80], s[0:16])
		copy(d[80:84], s[80:84])
	}
}

// repackQ3_K rewrites Q3_K blocks for the avx512 level's kernels (same 110
// bytes). The file's block: hmask[32] (quant e's high bit is bit e/32 of
// byte e%32), qs[64] (the low 2 bits, as Q2_K's), 12 bytes of 6-bit scales
// (quant.q3Scales' packing), d. The repacked one: the low bits as
// repackQ2_K lays them out, the high bits of slice j (byte k: quant
// 16(k/4)+4j+k%4) as the 64-bit mask at 64+8j, the scales (+32, 0..63) at
// bits 6p of the 48-bit fields at 96 (0..7) and 102 (8..15), d at 108.
func repackQ3_K(dst, src []byte) {
	const bb = 110
	le := binary.LittleEndian
	for o := 0; o+bb <= len(src); o += bb {
		s, d := src[o:o+bb], dst[o:o+bb]
		var q2 [84]byte // a Q2_K block's quants at 16, for repackQ2_K
		copy(q2[16:80], s[32:96])
		var p2 [84]byte
		repackQ2_K(p2[:], q2[:])
		copy(d[0:64], p2[0:64])
		for j := range 4 {
			var bits uint64
			for k := range 64 {
				e := 16*(k/4) + 4*j + k%4
				bits |= uint64(s[e%32]>>(e/32)&1) << k
			}
			le.PutUint64(d[64+8*j:], bits)
		}
		sc := s[96:108]
		var f [2]uint64
		for p := range 16 {
			lo := sc[p%8] >> (4 * (p / 8)) & 15
			hi := sc[8+p%4] >> (2 * (p / 4)) & 3
			f[p/8] |= uint64(lo|hi<<4) << (6 * (p % 8))
		}
		var six [12]byte
		for i := range 6 {
			six[i], six[6+i] = byte(f[0]>>(8*i)), byte(f[1]>>(8*i))
		}
		copy(d[96:108], six[:])
		copy(d[108:110], s[108:110])
	}
}

// repackQ4_K rewrites Q4_K blocks for the avx512 level's kernels: the
// header (d, dmin, the packed scales: 16 bytes) as it is, then the 256
// nibbles reordered so that the kernels get prepQ8_KQ4's four slices with
// two loads, a shift and three ANDs. Slice j (64 quants) holds, at byte
// 8p+i, quant 8j+i of sub-block p; the file keeps sub-block p in nibble
// p&1 of bytes 32·(p>>1)..+31. Bytes 16..79 take slice 0 in their low
// nibbles and slice 1 in their high ones, bytes 80..143 slices 2 and 3.
func repackQ4_K(dst, src []byte) {
	const bb, lo4 = 144, 0x0f0f0f0f0f0f0f0f
	le := binary.LittleEndian
	for o := 0; o+bb <= len(src); o += bb {
		s, d := src[o:o+bb], dst[o:o+bb]
		copy(d[:16], s[:16])
		qs := s[16:]
		// Output qword p of half h: bytes i = 0..7 of sub-block p's slices
		// 2h (low nibbles) and 2h+1 (high), i.e. quants 16h+i and 16h+8+i
		// of the sub-block, from file bytes 32·(p>>1)+16h+i and +8.
		for h := range 2 {
			for a := range 4 {
				l := le.Uint64(qs[32*a+16*h:])
				u := le.Uint64(qs[32*a+16*h+8:])
				le.PutUint64(d[16+64*h+8*(2*a):], l&lo4|(u&lo4)<<4)
				le.PutUint64(d[16+64*h+8*(2*a+1):], l>>4&lo4|u&^lo4)
			}
		}
	}
}

// prepQ8_KQ6 lays out nb Q8_K blocks for the avx512 level's Q6_K kernels,
// 384 bytes a block: the quants at 0 in four 64-byte slices, slice j
// holding quants 4j..4j+3 of each 16-quant sub-block l as its dword l (the
// order of repackQ6_K); at 256 sixteen int32, −32 times the sum of
// sub-block l's quants (the Q8_K group sum), where the kernels start their
// integer sums (Q6_K's quants are stored +32); d at 320.
func prepQ8_KQ6(x *byte, nb int, dst *byte) { prepSlices16(x, nb, dst, -32) }

// prepQ8_KQ3 is prepQ8_KQ6's layout with −4·B_l at 256 (Q3_K's quants
// are stored +4).
func prepQ8_KQ3(x *byte, nb int, dst *byte) { prepSlices16(x, nb, dst, -4) }

// prepSlices16 lays out nb Q8_K blocks in the 16-quant sub-block lanes:
// dword l of slice j holds quants 16l+4j..+3; at 256, bias times the Q8_K
// group sum of sub-block l as int32; d at 320.
func prepSlices16(x *byte, nb int, dst *byte, bias int32) {
	le := binary.LittleEndian
	src := unsafe.Slice(x, nb*292)
	out := unsafe.Slice(dst, nb*384)
	for b := range nb {
		s, d := src[b*292:(b+1)*292], out[b*384:(b+1)*384]
		for j := range 4 {
			for l := range 16 {
				copy(d[64*j+4*l:64*j+4*l+4], s[4+16*l+4*j:])
			}
		}
		for l := range 16 {
			le.PutUint32(d[256+4*l:], uint32(bias*int32(int16(le.Uint16(s[260+2*l:])))))
		}
		copy(d[320:324], s[:4])
	}
}

// repackQ6_K rewrites Q6_K blocks for the avx512 level's kernels (same 210
// bytes). The file's block: 128 bytes of low nibbles, 64 of high 2-bit
// pairs, 16 int8 scales, d. Quant n (0..255) of a block is, with
// half = n/128, g = n%128/32, l = n%32: low nibble g>>1 of byte
// 64·half + l + 32·(g&1), high bits 2g..2g+1 of byte 128 + 32·half + l.
// The repacked block holds slice j (byte 4s+i = quant 16s+4j+i, for the
// sixteen sub-blocks s) as: low nibbles of slices 0 and 1 in bytes 0..63
// (low, high), of slices 2 and 3 in 64..127, the high bits of slice j in
// bits 2j..2j+1 of bytes 128..191; scales and d as they are.
func repackQ6_K(dst, src []byte) {
	const bb, lo4, lo2 = 210, 0x0f0f0f0f, 0x03030303
	le := binary.LittleEndian
	for o := 0; o+bb <= len(src); o += bb {
		s, d := src[o:o+bb], dst[o:o+bb]
		for sb := range 16 {
			// Slice j of sub-block sb: quants n = 16sb+4j..+3, four
			// consecutive quants of the file, i.e. four bytes of its low
			// nibbles and four of its high bit pairs.
			var q [4]uint32
			for j := range 4 {
				n := 16*sb + 4*j
				half, g, l := n/128, n%128/32, n%32
				lo := le.Uint32(s[64*half+l+32*(g&1):]) >> (4 * (g >> 1)) & lo4
				hi := le.Uint32(s[128+32*half+l:]) >> (2 * g) & lo2
				q[j] = lo | hi<<4
			}
			le.PutUint32(d[4*sb:], q[0]&lo4|(q[1]&lo4)<<4)
			le.PutUint32(d[64+4*sb:], q[2]&lo4|(q[3]&lo4)<<4)
			le.PutUint32(d[128+4*sb:], q[0]>>4&lo2|(q[1]>>4&lo2)<<2|(q[2]>>4&lo2)<<4|(q[3]>>4&lo2)<<6)
		}
		copy(d[192:210], s[192:210])
	}
}

// prepChunk is the number of groups the Dot wrappers of prepared kernels
// rearrange at a time.
const prepChunk = 8

// prepBuf holds prepared activations for the Dot wrappers; pooled, since a
// stack array would be zeroed on every call.
type prepBuf [prepChunk*640 + 64]byte

var prepBufs = sync.Pool{New: func() any { return new(prepBuf) }}

// prepDot returns the one-row DotFunc and Dot4Func of a prepared kernel
// family for weight type t: the activations are prepared prepChunk groups
// at a time into a pooled buffer and the T = 1 kernel runs over each chunk.
func prepDot(t quant.Type, g *gemmImpl) (DotFunc, Dot4Func) {
	name := t.String()
	bs, wb, xb := t.BlockSize(), t.BlockBytes(), t.VecDotType().BlockBytes()
	one := g.tiles[len(g.tiles)-1].fn
	chunk := prepChunk * g.group
	if g.groupBytes > 640 {
		panic("cpu: prepared group larger than prepBuf allows")
	}
	dot := func(n int, w, x []byte) float32 {
		nb := checkDot(name, n, bs, wb, xb, len(w), len(x))
		if nb == 0 {
			return 0
		}
		buf := prepBufs.Get().(*prepBuf)
		defer prepBufs.Put(buf)
		xp := align64(buf[:])
		var acc [16]float32
		var out float32
		for b0 := 0; b0 < nb; b0 += chunk {
			c := min(nb-b0, chunk)
			g.prep(&x[b0*xb], c, xp)
			flags := 0
			if b0 > 0 {
				flags |= gemmLoad
			}
			if b0+c == nb {
				flags |= gemmFinish
			}
			one(&w[b0*wb], c, xp, 0, &acc[0], &out, 0, flags)
		}
		return out
	}
	dot4 := func(n int, w []byte, stride int, x []byte, dst *[4]float32) {
		nb := checkDot(name, n, bs, wb, xb, len(w), len(x))
		checkRows4(n, nb*wb, len(w), stride)
		if nb == 0 {
			*dst = [4]float32{}
			return
		}
		buf := prepBufs.Get().(*prepBuf)
		defer prepBufs.Put(buf)
		xp := align64(buf[:])
		var acc [4][16]float32
		for b0 := 0; b0 < nb; b0 += chunk {
			c := min(nb-b0, chunk)
			g.prep(&x[b0*xb], c, xp)
			flags := 0
			if b0 > 0 {
				flags |= gemmLoad
			}
			if b0+c == nb {
				flags |= gemmFinish
			}
			for r := range 4 {
				one(&w[r*stride+b0*wb], c, xp, 0, &acc[r][0], &dst[r], 0, flags)
			}
		}
	}
	return dot, dot4
}

// decBufs holds prepared activation rows for the Dot wrappers of decode
// kernels (decDot), which need a whole row prepared.
var decBufs = sync.Pool{New: func() any { return new([]byte) }}

// decDot returns the DotFunc and Dot4Func of a family with decode kernels:
// the activations are prepared into a pooled buffer, then dec1 or dec4 runs.
func decDot(t quant.Type, g *gemmImpl) (DotFunc, Dot4Func) {
	name := t.String()
	bs, wb, xb := t.BlockSize(), t.BlockBytes(), t.VecDotType().BlockBytes()
	prep := func(x []byte, nb int) (*[]byte, *byte) {
		buf := decBufs.Get().(*[]byte)
		if need := g.prepBytes(nb) + 64; cap(*buf) < need {
			*buf = make([]byte, need)
		}
		xp := align64((*buf)[:cap(*buf)])
		g.prep(&x[0], nb, xp)
		return buf, xp
	}
	dot := func(n int, w, x []byte) float32 {
		nb := checkDot(name, n, bs, wb, xb, len(w), len(x))
		if nb == 0 {
			return 0
		}
		buf, xp := prep(x, nb)
		defer decBufs.Put(buf)
		if g.repack != nil {
			wp := repacked(g, w[:nb*wb])
			defer decBufs.Put(wp)
			return g.dec1(&(*wp)[0], xp, nb)
		}
		return g.dec1(&w[0], xp, nb)
	}
	dot4 := func(n int, w []byte, stride int, x []byte, dst *[4]float32) {
		nb := checkDot(name, n, bs, wb, xb, len(w), len(x))
		checkRows4(n, nb*wb, len(w), stride)
		if nb == 0 {
			*dst = [4]float32{}
			return
		}
		buf, xp := prep(x, nb)
		defer decBufs.Put(buf)
		if g.repack != nil {
			// The four rows, repacked next to each other.
			wp := decBufs.Get().(*[]byte)
			defer decBufs.Put(wp)
			rb := nb * wb
			if cap(*wp) < 4*rb {
				*wp = make([]byte, 4*rb)
			}
			for r := range 4 {
				g.repack((*wp)[r*rb:(r+1)*rb], w[r*stride:r*stride+rb])
			}
			g.dec4(&(*wp)[0], rb, xp, nb, dst)
			return
		}
		g.dec4(&w[0], stride, xp, nb, dst)
	}
	return dot, dot4
}

// repacked returns w in g's layout, in a buffer of decBufs.
func repacked(g *gemmImpl, w []byte) *[]byte {
	buf := decBufs.Get().(*[]byte)
	if cap(*buf) < len(w) {
		*buf = make([]byte, len(w))
	}
	*buf = (*buf)[:len(w)]
	g.repack(*buf, w)
	return buf
}

// align64 returns a pointer into b at the first 64-byte boundary; b must
// have 63 bytes to spare.
func align64(b []byte) *byte {
	off := (64 - int(uintptr(unsafe.Pointer(unsafe.SliceData(b)))%64)) % 64
	return &b[off]
}

// Blocking of the tile path: a thread walks its rows in blocks of about
// gemmRowBytes of weights (kept in L2 while every token tile passes over
// them); within a block, each row meets T tokens at a time. When a tile's
// activations for whole rows exceed 5/3·gemmChunkBytes (40 KiB, most of
// L1), rows are cut into chunks of whole groups of about gemmChunkBytes of
// activations (k-blocking: a chunk of the tile's activations stays in L1
// for all the rows of the block), the accumulators passed from chunk to
// chunk through a buffer of gemmAccFloats. Chunking never changes a
// result.
const gemmRowBytes = 256 << 10

var gemmChunkBytes = 24 << 10 // a variable for the tests

// gemmAccFloats bounds the accumulators of a block of rows when chunking
// (16 float32 per row and token): 32 KiB.
const gemmAccFloats = 8 << 10

// chunkBlocks returns the blocks per chunk for rows of nb blocks and
// activations of xbb bytes per block (prepared or not), for tiles of up to
// tmax tokens: a multiple of the group (prepared) or 1.
func (g *gemmImpl) chunkBlocks(nb, xbb, tmax int) int {
	step := 1
	if g.prep != nil {
		step = g.group
	}
	if tmax*nb*xbb <= gemmChunkBytes*5/3 {
		return nb // the tile's whole rows fit in L1 (48 KiB)
	}
	kc := gemmChunkBytes / (tmax * xbb) / step * step
	return min(nb, max(step, kc))
}

// matMulGemm is MatMul with m's tile kernels.
func matMulGemm(p *Pool, s *Scratch, dst []float32, m *Matrix, x []float32, n int) {
	xb, xs := gemmActs(p, s, m, x, n)
	units, fn := gemmLoop(dst, m, n, xb, xs)
	p.Run(units, 4, fn)
}

// gemmActs quantizes the n tokens of x for m (and prepares them, where m's
// tile kernels read a prepared layout) into s's buffers: token t's at
// xb[t·xs:].
func gemmActs(p *Pool, s *Scratch, m *Matrix, x []float32, n int) (xb []byte, xs int) {
	g := m.gemm
	cols := m.Cols
	vt := m.Type.VecDotType()
	xrb, err := vt.RowBytes(cols)
	if err != nil {
		panic(err)
	}
	nb := cols / m.Type.BlockSize()
	if cap(s.xq) < n*xrb {
		s.xq = make([]byte, n*xrb)
	}
	xq := s.xq[:n*xrb]
	xb, xs = xq, xrb
	quantize := m.quant
	if g.prep != nil {
		xs = g.prepBytes(nb)
		if cap(s.xp) < n*xs+64 {
			s.xp = make([]byte, n*xs+64)
		}
		xp := s.xp[:n*xs+64]
		off := (64 - int(uintptr(unsafe.Pointer(unsafe.SliceData(xp)))%64)) % 64
		xb = xp[off : off+n*xs]
	}
	// Tokens go by pairs, so that a pair is prepared before it is paired.
	p.Run((n+1)/2, 2, func(u0, u1 int) {
		for t := 2 * u0; t < min(n, 2*u1); t++ {
			xt := xq[t*xrb : (t+1)*xrb]
			quantize(x[t*cols:(t+1)*cols], xt)
			if g.prep != nil && nb > 0 {
				g.prep(&xt[0], nb, &xb[t*xs])
			}
			if g.pair != nil && nb > 0 && t%2 == 1 {
				g.pair(&xb[(t-1)*xs], &xb[t*xs], nb)
			}
		}
	})
	return xb, xs
}

// gemmLoop returns the product of m with the n tokens at xb (as gemmActs
// leaves them) as a loop for Pool.Run: fn(u0, u1) computes work units u0..u1
// of units (four-row groups for one token with decode kernels, else rows).
func gemmLoop(dst []float32, m *Matrix, n int, xb []byte, xs int) (units int, fn func(u0, u1 int)) {
	g := m.gemm
	rows := m.Rows
	nb := m.Cols / m.Type.BlockSize()
	if nb == 0 {
		clear(dst[:n*rows])
		return 0, func(int, int) {}
	}
	xbb := m.Type.VecDotType().BlockBytes() // activation bytes per weight block
	if g.prep != nil {
		xbb = g.groupBytes / g.group
	}
	rb := m.RowBytes
	if n == 1 && g.dec4 != nil {
		return (rows + 3) / 4, matVecDec(dst, m, nb, &xb[0])
	}
	tmax := min(g.tiles[0].t, n)
	kc := g.chunkBlocks(nb, xbb, tmax)
	blockRows := max(1, gemmRowBytes/rb)
	if kc < nb {
		blockRows = min(blockRows, gemmAccFloats/(16*tmax))
	}
	ldd := rows * 4
	wd := m.weights()
	return rows, func(r0, r1 int) {
		for b0 := r0; b0 < r1; b0 += blockRows {
			b1 := min(r1, b0+blockRows)
			for t0 := 0; t0 < n; {
				k := g.tiles[len(g.tiles)-1]
				for _, c := range g.tiles {
					if c.t <= n-t0 {
						k = c
						break
					}
				}
				if kc == nb {
					xt := &xb[t0*xs]
					for r := b0; r < b1; r++ {
						k.fn(&wd[r*rb], nb, xt, xs, nil, &dst[t0*rows+r], ldd, gemmFinish)
					}
				} else {
					gemmChunks(k, m, b0, b1, nb, kc, xb[t0*xs:], xs, xbb, dst[t0*rows:], ldd)
				}
				t0 += k.t
			}
		}
	}
}

// accBufs holds gemmChunks' accumulator areas. A local array would do, but
// it escapes through the kernel's function value: the compiler would put
// 32 KiB on the heap, zeroed, at every call (3-4% of a batched decode step
// went to allocating and clearing them).
var accBufs = sync.Pool{New: func() any { return new([gemmAccFloats]float32) }}

// gemmChunks runs tile k over rows b0..b1 of m in chunks of kc blocks, the
// accumulators kept in between (at most gemmAccFloats; the kernels load or
// initialize them as flags say, so the buffer needs no clearing).
func gemmChunks(k tileT, m *Matrix, b0, b1, nb, kc int, xb []byte, xs, xbb int, dst []float32, ldd int) {
	acc := accBufs.Get().(*[gemmAccFloats]float32)
	defer accBufs.Put(acc)
	rb, wbb, wd := m.RowBytes, m.Type.BlockBytes(), m.weights()
	for c0 := 0; c0 < nb; c0 += kc {
		c := min(kc, nb-c0)
		flags := 0
		if c0 > 0 {
			flags |= gemmLoad
		}
		if c0+c == nb {
			flags |= gemmFinish
		}
		xt := &xb[c0*xbb]
		for r := b0; r < b1; r++ {
			k.fn(&wd[r*rb+c0*wbb], c, xt, xs, &acc[(r-b0)*16*k.t], &dst[r], ldd, flags)
		}
	}
}

// matVecDec is one token (prepared at x) against every row of m with the
// decode kernels, as a loop over groups of four rows: four rows per call,
// in contiguous ranges per thread.
func matVecDec(dst []float32, m *Matrix, nb int, x *byte) func(g0, g1 int) {
	g, rb, rows, wd := m.gemm, m.RowBytes, m.Rows, m.weights()
	return func(g0, g1 int) {
		r, r1 := 4*g0, min(rows, 4*g1)
		for ; r+4 <= r1; r += 4 {
			g.dec4(&wd[r*rb], rb, x, nb, (*[4]float32)(dst[r:r+4]))
		}
		for ; r < r1; r++ {
			dst[r] = g.dec1(&wd[r*rb], x, nb)
		}
	}
}
