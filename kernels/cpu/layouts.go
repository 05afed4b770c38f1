package cpu

import (
	"encoding/binary"
	"math"
	"unsafe"
)

// Layouts of the avx512 level's repacked kernels: how each type's weights
// are rewritten once per matrix (repack*, gemmImpl.repack) and how the
// quantized activations are laid out to meet them (prep*, gemmImpl.prep).
// Each pair is the contract of one kernel file in _asm (q4k512.go,
// lanes512.go and the types on it); the kernels' tests (TestDotVariants,
// TestGemmTiles) check them against quant's reference.

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
	prepLanes(x, nb, dst, 32, func(s, d []byte) {
		f := (*[32]float32)(unsafe.Pointer(&d[256])) // the sums, then d
		for p := range 8 {
			v := float32(bsum32(s, p))
			f[4*(p/2)+p%2], f[4*(p/2)+p%2+2] = v, v
		}
		for i := 16; i < 32; i++ {
			f[i] = f[16] // d, written by prepLanes, in every lane
		}
	})
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
	prepLanes(x, nb, dst, 32, func(s, d []byte) {
		dx := math.Float32frombits(binary.LittleEndian.Uint32(s))
		for p := range 8 {
			putLane(d, 2*p, math.Float32bits(dx*float32(bsum32(s, p))))
			putLane(d, 2*p+1, 0)
		}
	})
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
	prepLanes(x, nb, dst, 32, func(s, d []byte) {
		for p := range 8 {
			putLane(d, 2*p, uint32(-128*bsum32(s, p)))
			putLane(d, 2*p+1, 0)
		}
	})
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
	prepLanes(x, nb, dst, 16, func(s, d []byte) {
		dx := math.Float32frombits(binary.LittleEndian.Uint32(s))
		for l := range 16 {
			putLane(d, l, math.Float32bits(dx*float32(bsum16(s, l))))
		}
	})
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
	prepLanes(x, nb, dst, 16, func(s, d []byte) {
		for l := range 16 {
			putLane(d, l, uint32(bias*bsum16(s, l)))
		}
	})
}

// prepLanes lays out nb Q8_K blocks (292 bytes) in 384-byte blocks for the
// sub-block lanes: the quants at 0 in four 64-byte slices, slice j holding
// quants j·sub/4.. of each sub-block of sub (32 or 16) quants, sub/4 of
// them, in sub-block order; dx at 320; then aux(s, d) writes the rest (the
// sixteen lanes at 256, mostly) from the Q8_K block s.
func prepLanes(x *byte, nb int, dst *byte, sub int, aux func(s, d []byte)) {
	le := binary.LittleEndian
	src := unsafe.Slice(x, nb*292)
	out := unsafe.Slice(dst, nb*384)
	for b := range nb {
		s, d := src[b*292:(b+1)*292], out[b*384:(b+1)*384]
		for j := range 4 {
			if sub == 32 {
				for p := range 8 {
					le.PutUint64(d[64*j+8*p:], le.Uint64(s[4+32*p+8*j:]))
				}
			} else {
				for l := range 16 {
					le.PutUint32(d[64*j+4*l:], le.Uint32(s[4+16*l+4*j:]))
				}
			}
		}
		copy(d[320:324], s[:4])
		aux(s, d)
	}
}

// bsum16 is the Q8_K block s's sum of quants 16l..16l+15; bsum32 that of
// the 32-quant sub-block p.
func bsum16(s []byte, l int) int32 { return int32(int16(binary.LittleEndian.Uint16(s[260+2*l:]))) }
func bsum32(s []byte, p int) int32 { return bsum16(s, 2*p) + bsum16(s, 2*p+1) }

// putLane writes v into 32-bit lane l of a prepared block's lanes at 256.
func putLane(d []byte, l int, v uint32) { binary.LittleEndian.PutUint32(d[256+4*l:], v) }

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
