package cpu

import (
	"encoding/binary"
	"math"
	"sync"
	"unsafe"

	"github.com/hearth-llm/hearth/quant"
)

// The amx level's prefill path: AMX tiles (TDPBUSD, TDPBSSD) compute the
// exact integer sums of 16 weight rows × 16 tokens per sub-block (or
// block), and AVX-512 applies the scales in the avx512 level's float order,
// so a (row, token) result is bit for bit that of the avx512 tiles and
// decode kernels. That keeps the amx level batch-invariant although tokens
// left over after the groups of 16, rows of a last partial group of 16 and
// single tokens take the avx512 kernels. Per matrix product, each thread
// lays out its groups of 16 rows once (unpack: nibbles to bytes, scales to
// float32) for all the token groups, and gemmActs lays out the tokens in
// groups of 16 (acts) once for all the rows.

// amxImpl is a type's AMX kernel and the layouts it reads.
type amxImpl struct {
	// kernel: 16 rows (at w, rb bytes apart, and unpacked at wa) × 16
	// tokens (at xa) over nb blocks; row m, token n's result to dst + 4m +
	// n·ldd bytes; scr: an amxScratch of 64-byte aligned scratch.
	kernel func(w *byte, rb int, wa, xa *byte, nb int, scr *byte, dst *float32, ldd int)
	// unpack lays out 16 weight rows (rb bytes apart at w, as
	// Matrix.weights holds them) for kernel: wBytes per block.
	unpack func(dst, w []byte, rb, nb int)
	// acts lays out 16 quantized activation rows (xrb bytes apart at xq)
	// for kernel: xBytes per block.
	acts           func(dst, xq []byte, xrb, nb int)
	wBytes, xBytes int
	minTokens      int // see minFor
}

// amxMinTokens, where positive (the tests), replaces every AMX kernel's
// own minimum of tokens (amxImpl.minTokens).
var amxMinTokens = 0

// minFor is the fewest tokens a product sends through a's kernel (fewer:
// the avx512 tiles). Each thread unpacks its rows once per product and
// each call has a fixed cost (the accumulators cleared and reduced, the
// transposed stores), which pay off only over enough token groups
// (NOTES.md).
func (a *amxImpl) minFor() int {
	if amxMinTokens > 0 {
		return amxMinTokens
	}
	return a.minTokens
}

// amxScratch is the kernels' scratch (accumulators and stored C tiles).
const amxScratch = 24 << 10

// amxBlockBytes bounds the unpacked rows a thread keeps (in L2) while
// every token group passes over them.
const amxBlockBytes = 384 << 10

// amxBuf is a thread's buffers for the AMX loop.
type amxBuf struct {
	w   []byte
	scr []byte
}

var amxBufs = sync.Pool{New: func() any { return &amxBuf{scr: make([]byte, amxScratch+64)} }}

// actsBytes is the size of n tokens' layout for a (whole groups of 16).
func (a *amxImpl) actsBytes(n, nb int) int { return n / 16 * nb * a.xBytes }

// amxLoop is gemmLoop's loop for a matrix with an AMX kernel: units are
// groups of 16 rows; the whole token groups go through the AMX kernel, the
// rest (tokens after the last whole group, rows of a last partial group)
// through the level's tiles (rest(r0, r1, t0): rows r0..r1, tokens t0..n).
func amxLoop(dst []float32, m *Matrix, n, nb int, xa []byte, rest func(r0, r1, t0 int)) (int, func(g0, g1 int)) {
	a := m.gemm.amx
	rows, rb := m.Rows, m.RowBytes
	wd := m.weights()
	ng, full := n/16, rows/16
	gw := nb * a.wBytes // one group's unpacked rows
	gx := nb * a.xBytes // one token group
	per := max(1, amxBlockBytes/gw)
	return (rows + 15) / 16, func(g0, g1 int) {
		buf := amxBufs.Get().(*amxBuf)
		defer amxBufs.Put(buf)
		scr := align64(buf.scr)
		for b0 := g0; b0 < g1; b0 += per {
			b1 := min(g1, b0+per)
			f1 := min(b1, full)
			if b0 < f1 {
				if need := (f1-b0)*gw + 64; cap(buf.w) < need {
					buf.w = make([]byte, need)
				}
				w := aligned64(buf.w[:cap(buf.w)])
				for g := b0; g < f1; g++ {
					a.unpack(w[(g-b0)*gw:(g-b0+1)*gw], wd[16*g*rb:], rb, nb)
				}
				for tg := range ng {
					for g := b0; g < f1; g++ {
						a.kernel(&wd[16*g*rb], rb, &w[(g-b0)*gw], &xa[tg*gx], nb, scr, &dst[16*tg*rows+16*g], 4*rows)
					}
				}
				if 16*ng < n {
					rest(16*b0, 16*f1, 16*ng)
				}
			}
			if f1 < b1 {
				rest(16*f1, rows, 0)
			}
		}
	}
}

// amxUnpackQ4_K lays out 16 Q4_K rows, repacked by repackQ4_K, for
// amxQ4_K, 5248 bytes per block: sub-block s's quants as bytes, row m's
// at 512s+32m in order; row m's float32(sc_s) at 4096+64m+4s and
// dmin·float32(m_s) at 4128+64m+4s; d at 5120+8m.
func amxUnpackQ4_K(dst, w []byte, rb, nb int) {
	const lo4 = 0x0f0f0f0f0f0f0f0f
	le := binary.LittleEndian
	for b := range nb {
		o := (*[5248]byte)(dst[b*5248:])
		for m := range 16 {
			blk := (*[144]byte)(w[m*rb+b*144:])
			// repackQ4_K: quant 8j+i of sub-block p in nibble j%2 of byte
			// 16+64(j/2)+8p+i.
			for p := range 8 {
				l, h := le.Uint64(blk[16+8*p:]), le.Uint64(blk[80+8*p:])
				q := (*[32]byte)(o[512*p+32*m:])
				le.PutUint64(q[0:], l&lo4)
				le.PutUint64(q[8:], l>>4&lo4)
				le.PutUint64(q[16:], h&lo4)
				le.PutUint64(q[24:], h>>4&lo4)
			}
		}
	}
	amxScalesQ4_K(dst, w, rb, nb)
}

// amxScalesQ4_K writes the scales, mins and d of amxUnpackQ4_K's layout.
func amxScalesQ4_K(dst, w []byte, rb, nb int) {
	le := binary.LittleEndian
	for b := range nb {
		o := (*[5248]byte)(dst[b*5248:])
		for m := range 16 {
			blk := (*[144]byte)(w[m*rb+b*144:])
			d := quant.F16ToF32(le.Uint16(blk[0:]))
			dmin := quant.F16ToF32(le.Uint16(blk[2:]))
			r := (*[64]byte)(o[4096+64*m:])
			// The 6-bit scales and mins (quant's get_scale_min_k4): for
			// s < 4 the low 6 bits of bytes 4+s, 8+s; for s ≥ 4 the nibbles
			// of byte 12+s−4 with the top bits of bytes 4+s−4, 8+s−4.
			sc := (*[12]byte)(blk[4:16])
			for s := range 4 {
				a, c, e := sc[s], sc[s+4], sc[s+8]
				le.PutUint32(r[4*s:], math.Float32bits(float32(a&63)))
				le.PutUint32(r[32+4*s:], math.Float32bits(dmin*float32(c&63)))
				le.PutUint32(r[16+4*s:], math.Float32bits(float32(e&0xf|a>>6<<4)))
				le.PutUint32(r[48+4*s:], math.Float32bits(dmin*float32(e>>4|c>>6<<4)))
			}
			le.PutUint32(o[5120+8*m:], math.Float32bits(d))
		}
	}
}

// amxActsQ8_K lays out 16 tokens' Q8_K rows for amxQ4_K, 4672 bytes per
// block: sub-block s's B tile at 512s (row k: quants 4k..4k+3 of the
// sub-block for each token, token n at 4n), the tokens' float32 sums of
// sub-block s at 4096+64s, their d at 4608.
func amxActsQ8_K(dst, xq []byte, xrb, nb int) {
	le := binary.LittleEndian
	for b := range nb {
		o := dst[b*4672 : (b+1)*4672]
		for n := range 16 {
			x := xq[n*xrb+b*292 : n*xrb+(b+1)*292]
			for s := range 8 {
				for k := range 8 {
					copy(o[512*s+64*k+4*n:][:4], x[4+32*s+4*k:])
				}
				le.PutUint32(o[4096+64*s+4*n:], math.Float32bits(float32(bsum32(x, s))))
			}
			copy(o[4608+4*n:][:4], x[:4])
		}
	}
}

// aligned64 returns b from its first 64-byte boundary on (b must have 63
// bytes to spare).
func aligned64(b []byte) []byte {
	return b[int(uintptr(unsafe.Pointer(align64(b)))-uintptr(unsafe.Pointer(unsafe.SliceData(b)))):]
}

// amxUnpackQ8_0 lays out the scales of 16 Q8_0 rows for amxQ8_0 (which
// reads the quants in place), 64 bytes per block: row m's d as float32 at
// 4m.
func amxUnpackQ8_0(dst, w []byte, rb, nb int) {
	le := binary.LittleEndian
	for b := range nb {
		for m := range 16 {
			d := quant.F16ToF32(le.Uint16(w[m*rb+b*34:]))
			le.PutUint32(dst[64*b+4*m:], math.Float32bits(d))
		}
	}
}

// amxActsQ8_0 lays out 16 tokens' Q8_0 rows for amxQ8_0, 576 bytes per
// block: the B tile (row k: quants 4k..4k+3 of each token, token n at 4n),
// then the tokens' d as float32 at 512.
func amxActsQ8_0(dst, xq []byte, xrb, nb int) {
	le := binary.LittleEndian
	for b := range nb {
		o := dst[b*576 : (b+1)*576]
		for n := range 16 {
			x := xq[n*xrb+b*34 : n*xrb+(b+1)*34]
			for k := range 8 {
				copy(o[64*k+4*n:][:4], x[2+4*k:])
			}
			le.PutUint32(o[512+4*n:], math.Float32bits(quant.F16ToF32(le.Uint16(x))))
		}
	}
}

// amxUnpackQ4_0 lays out 16 Q4_0 rows for amxQ4_0, 576 bytes per block:
// row m's 32 quants as bytes at 32m (the file's byte i holds quant i in
// its low nibble, i+16 in its high one), row m's d as float32 at 512+4m.
func amxUnpackQ4_0(dst, w []byte, rb, nb int) {
	const lo4 = 0x0f0f0f0f0f0f0f0f
	le := binary.LittleEndian
	for b := range nb {
		o := dst[b*576 : (b+1)*576]
		for m := range 16 {
			blk := w[m*rb+b*18 : m*rb+(b+1)*18]
			l, h := le.Uint64(blk[2:]), le.Uint64(blk[10:])
			q := o[32*m:]
			le.PutUint64(q[0:], l&lo4)
			le.PutUint64(q[8:], h&lo4)
			le.PutUint64(q[16:], l>>4&lo4)
			le.PutUint64(q[24:], h>>4&lo4)
			le.PutUint32(o[512+4*m:], math.Float32bits(quant.F16ToF32(le.Uint16(blk))))
		}
	}
}

// amxActsQ4_0 lays out 16 tokens' Q8_0 rows for amxQ4_0, 640 bytes per
// block: amxActsQ8_0's 576, then the tokens' −8·Σy as int32 at 576.
func amxActsQ4_0(dst, xq []byte, xrb, nb int) {
	le := binary.LittleEndian
	for b := range nb {
		o := dst[b*640 : (b+1)*640]
		amxActsQ8_0(o[:576], xq[b*34:], xrb, 1)
		for n := range 16 {
			var sum int32
			for _, v := range xq[n*xrb+b*34+2 : n*xrb+b*34+34] {
				sum += int32(int8(v))
			}
			le.PutUint32(o[576+4*n:], uint32(-8*sum))
		}
	}
}

// amxUnpackQ6_K lays out 16 Q6_K rows, repacked by repackQ6_K, for
// amxQ6_K, 5120 bytes per block: at 320l sub-block l's 16 quants of each
// row as bytes (row m's at 16m), then the rows' d·float32(sc_l) at 256+4m.
func amxUnpackQ6_K(dst, w []byte, rb, nb int) {
	const lo4, lo2 = 0x0f0f0f0f, 0x03030303
	le := binary.LittleEndian
	for b := range nb {
		o := (*[5120]byte)(dst[b*5120:])
		for m := range 16 {
			blk := (*[210]byte)(w[m*rb+b*210:])
			d := quant.F16ToF32(le.Uint16(blk[208:]))
			// repackQ6_K: quant 4j+i of sub-block l is nibble j%2 of byte
			// 64(j/2)+4l+i with bits 2j..2j+1 of byte 128+4l+i above it.
			for l := range 16 {
				u0, u1, h := le.Uint32(blk[4*l:]), le.Uint32(blk[64+4*l:]), le.Uint32(blk[128+4*l:])
				q := (*[16]byte)(o[320*l+16*m:])
				le.PutUint32(q[0:], u0&lo4|(h&lo2)<<4)
				le.PutUint32(q[4:], u0>>4&lo4|(h>>2&lo2)<<4)
				le.PutUint32(q[8:], u1&lo4|(h>>4&lo2)<<4)
				le.PutUint32(q[12:], u1>>4&lo4|(h>>6&lo2)<<4)
				le.PutUint32(o[320*l+256+4*m:], math.Float32bits(d*float32(int8(blk[192+l]))))
			}
		}
	}
}

// amxActsQ6_K lays out 16 tokens' Q8_K rows for amxQ6_K, 5184 bytes per
// block: at 320l sub-block l's B tile (row k: quants 16l+4k..+3 of each
// token, token n at 4n), then the tokens' −32·B_l as int32 (B_l the sum of
// the sub-block's 16 quants); the tokens' d at 5120.
func amxActsQ6_K(dst, xq []byte, xrb, nb int) {
	le := binary.LittleEndian
	for b := range nb {
		o := (*[5184]byte)(dst[b*5184:])
		for n := range 16 {
			x := xq[n*xrb+b*292 : n*xrb+(b+1)*292]
			for l := range 16 {
				for k := range 4 {
					copy(o[320*l+64*k+4*n:][:4], x[4+16*l+4*k:])
				}
				le.PutUint32(o[320*l+256+4*n:], uint32(-32*bsum16(x, l)))
			}
			copy(o[5120+4*n:][:4], x[:4])
		}
	}
}
