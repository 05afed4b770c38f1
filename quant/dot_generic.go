package quant

import (
	"encoding/binary"
	"math"
)

// Portable dot-product kernels, one per weight type, each the reference for
// any later SIMD variant. They mirror ggml's ggml_vec_dot_*_generic: integer
// sums per block or sub-block, then one float32 scaling per block. Callers
// (VecDot) have checked the lengths; nb is the number of blocks.

func dotF32(n int, w, x []byte) float32 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= n; i += 4 {
		a := (*[16]byte)(w[4*i:])
		b := (*[16]byte)(x[4*i:])
		s0 += float64(f32le(a[0:]) * f32le(b[0:]))
		s1 += float64(f32le(a[4:]) * f32le(b[4:]))
		s2 += float64(f32le(a[8:]) * f32le(b[8:]))
		s3 += float64(f32le(a[12:]) * f32le(b[12:]))
	}
	for ; i < n; i++ {
		s0 += float64(f32le(w[4*i:]) * f32le(x[4*i:]))
	}
	return float32((s0 + s1) + (s2 + s3))
}

func f32le(b []byte) float32 { return math.Float32frombits(binary.LittleEndian.Uint32(b)) }

// dotF16 sums exact products (two 11-bit significands fit a float32) in
// float64, as ggml_vec_dot_f16 does. It decodes through f16Table, which is
// several times faster than converting with bit operations.
func dotF16(n int, w, x []byte) float32 {
	tab := f16Table()
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= n; i += 4 {
		a := binary.LittleEndian.Uint64(w[2*i:])
		b := binary.LittleEndian.Uint64(x[2*i:])
		s0 += float64(tab[uint16(a)] * tab[uint16(b)])
		s1 += float64(tab[uint16(a>>16)] * tab[uint16(b>>16)])
		s2 += float64(tab[uint16(a>>32)] * tab[uint16(b>>32)])
		s3 += float64(tab[uint16(a>>48)] * tab[uint16(b>>48)])
	}
	for ; i < n; i++ {
		s0 += float64(tab[binary.LittleEndian.Uint16(w[2*i:])] * tab[binary.LittleEndian.Uint16(x[2*i:])])
	}
	return float32((s0 + s1) + (s2 + s3))
}

func bf16le(b []byte) float32 {
	_ = b[1]
	return math.Float32frombits(uint32(b[0])<<16 | uint32(b[1])<<24)
}

// dotBF16 sums exact products in float64, as ggml_vec_dot_bf16 does.
func dotBF16(n int, w, x []byte) float32 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= n; i += 4 {
		a := (*[8]byte)(w[2*i:])
		b := (*[8]byte)(x[2*i:])
		s0 += float64(bf16le(a[0:]) * bf16le(b[0:]))
		s1 += float64(bf16le(a[2:]) * bf16le(b[2:]))
		s2 += float64(bf16le(a[4:]) * bf16le(b[4:]))
		s3 += float64(bf16le(a[6:]) * bf16le(b[6:]))
	}
	for ; i < n; i++ {
		s0 += float64(bf16le(w[2*i:]) * bf16le(x[2*i:]))
	}
	return float32((s0 + s1) + (s2 + s3))
}

// dotQ4_0Q8_0: sum (q-8)*y per block, scaled by dw*dx.
func dotQ4_0Q8_0(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[18]byte)(w[18*i:])
		xb := (*[34]byte)(x[34*i:])
		var s0, s1 int32
		for j := range 16 {
			q := wb[2+j]
			s0 += (int32(q&0xf) - 8) * int32(int8(xb[2+j]))
			s1 += (int32(q>>4) - 8) * int32(int8(xb[18+j]))
		}
		sum += float32(s0+s1) * (f16le(wb[0:]) * f16le(xb[0:]))
	}
	return sum
}

// dotQ4_1Q8_1: dw*dx*sum(q*y) + mw*sx, with sx the activation block's stored
// d*sum(y).
func dotQ4_1Q8_1(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[20]byte)(w[20*i:])
		xb := (*[36]byte)(x[36*i:])
		var s0, s1 int32
		for j := range 16 {
			q := wb[4+j]
			s0 += int32(q&0xf) * int32(int8(xb[4+j]))
			s1 += int32(q>>4) * int32(int8(xb[20+j]))
		}
		sum += f16le(wb[0:])*f16le(xb[0:])*float32(s0+s1) + f16le(wb[2:])*f16le(xb[2:])
	}
	return sum
}

func dotQ5_0Q8_0(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[22]byte)(w[22*i:])
		xb := (*[34]byte)(x[34*i:])
		qh := binary.LittleEndian.Uint32(wb[2:])
		var s0, s1 int32
		for j := range 16 {
			q := wb[6+j]
			lo := int32(q&0xf) | int32(qh&1)<<4
			hi := int32(q>>4) | int32(qh>>16&1)<<4
			qh >>= 1
			s0 += (lo - 16) * int32(int8(xb[2+j]))
			s1 += (hi - 16) * int32(int8(xb[18+j]))
		}
		sum += float32(s0+s1) * (f16le(wb[0:]) * f16le(xb[0:]))
	}
	return sum
}

func dotQ5_1Q8_1(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[24]byte)(w[24*i:])
		xb := (*[36]byte)(x[36*i:])
		qh := binary.LittleEndian.Uint32(wb[4:])
		var s0, s1 int32
		for j := range 16 {
			q := wb[8+j]
			lo := int32(q&0xf) | int32(qh&1)<<4
			hi := int32(q>>4) | int32(qh>>16&1)<<4
			qh >>= 1
			s0 += lo * int32(int8(xb[4+j]))
			s1 += hi * int32(int8(xb[20+j]))
		}
		sum += f16le(wb[0:])*f16le(xb[0:])*float32(s0+s1) + f16le(wb[2:])*f16le(xb[2:])
	}
	return sum
}

// dotI8x32 returns the sum of products of 32 int8 pairs.
func dotI8x32(a, b *[32]byte) int32 {
	var s0, s1 int32
	for j := 0; j < 32; j += 2 {
		s0 += int32(int8(a[j])) * int32(int8(b[j]))
		s1 += int32(int8(a[j+1])) * int32(int8(b[j+1]))
	}
	return s0 + s1
}

// dotQ8_0Q8_0 is ggml's x86 Q8_0 product bit for bit: ggml_vec_dot_q8_0_q8_0
// (AVX2, with or without VNNI) and tinyBLAS_Q0_AVX, which its matrix
// products take for batches, sum in the same order. Per block, eight lanes
// of four-product integer sums (exact), each FMA'd with the block's dw·dx
// (exact in float32: two 11-bit significands) into its own float32
// accumulator; one horizontal sum at the end, hsum8's. Matching that order
// matters beyond the last bit: a later Q8_0 activation quantization turns a
// one-ulp difference into a whole quantization step now and then.
func dotQ8_0Q8_0(nb int, w, x []byte) float32 {
	var acc [8]float32
	for i := range nb {
		wb := (*[34]byte)(w[34*i:])
		xb := (*[34]byte)(x[34*i:])
		d := f16le(wb[0:]) * f16le(xb[0:])
		for l := range 8 {
			var s int32
			for k := 2 + 4*l; k < 6+4*l; k++ {
				s += int32(int8(wb[k])) * int32(int8(xb[k]))
			}
			acc[l] = FMA32(d, float32(s), acc[l])
		}
	}
	return Hsum8(&acc)
}

func dotQ8_1Q8_1(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[36]byte)(w[36*i:])
		xb := (*[36]byte)(x[36*i:])
		sumi := dotI8x32((*[32]byte)(wb[4:]), (*[32]byte)(xb[4:]))
		sum += float32(sumi) * (f16le(wb[0:]) * f16le(xb[0:]))
	}
	return sum
}

// q8KScale returns the float32 scale of a Q8_K block.
func q8KScale(xb *[292]byte) float32 {
	return math.Float32frombits(binary.LittleEndian.Uint32(xb[0:]))
}

// q8KBsum returns the sum of activation quants 16g..16g+15 of a Q8_K block.
func q8KBsum(xb *[292]byte, g int) int32 {
	return int32(int16(binary.LittleEndian.Uint16(xb[260+2*g:])))
}

func dotQ8_KQ8_K(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[292]byte)(w[292*i:])
		xb := (*[292]byte)(x[292*i:])
		var sumi int32
		for k := 0; k < qk; k += 32 {
			sumi += dotI8x32((*[32]byte)(wb[4+k:]), (*[32]byte)(xb[4+k:]))
		}
		sum += float32(sumi) * (q8KScale(wb) * q8KScale(xb))
	}
	return sum
}

// dotQ2_KQ8_K: per 16 elements, scale*sum(q*y); the mins come in through the
// activation group sums: d*y.d*isum - dmin*y.d*sum(min*bsum). Byte l of each
// 32-byte half of qs holds elements l, l+32, l+64 and l+96 of that half, so
// one pass over l feeds eight accumulators with constant shifts.
func dotQ2_KQ8_K(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[84]byte)(w[84*i:])
		xb := (*[292]byte)(x[292*i:])
		y := (*[qk]byte)(xb[4:])
		sc := (*[16]byte)(wb[0:16])
		var summs int32
		for g := range 16 {
			summs += int32(sc[g]>>4) * q8KBsum(xb, g)
		}
		var isum int32
		for p := range 2 { // first and second 16 of every 32: scales differ
			var a0, a1, a2, a3, a4, a5, a6, a7 int32
			for l := 16 * p; l < 16*p+16; l++ {
				q0, q1 := int32(wb[16+l]), int32(wb[48+l])
				a0 += (q0 & 3) * int32(int8(y[l]))
				a1 += (q0 >> 2 & 3) * int32(int8(y[32+l]))
				a2 += (q0 >> 4 & 3) * int32(int8(y[64+l]))
				a3 += (q0 >> 6) * int32(int8(y[96+l]))
				a4 += (q1 & 3) * int32(int8(y[128+l]))
				a5 += (q1 >> 2 & 3) * int32(int8(y[160+l]))
				a6 += (q1 >> 4 & 3) * int32(int8(y[192+l]))
				a7 += (q1 >> 6) * int32(int8(y[224+l]))
			}
			isum += int32(sc[p]&0xf)*a0 + int32(sc[2+p]&0xf)*a1 + int32(sc[4+p]&0xf)*a2 + int32(sc[6+p]&0xf)*a3 +
				int32(sc[8+p]&0xf)*a4 + int32(sc[10+p]&0xf)*a5 + int32(sc[12+p]&0xf)*a6 + int32(sc[14+p]&0xf)*a7
		}
		yd := q8KScale(xb)
		dall := yd * f16le(wb[80:])
		dmin := yd * f16le(wb[82:])
		sum += dall*float32(isum) - dmin*float32(summs)
	}
	return sum
}

// dotQ3_KQ8_K: per 16 elements, (scale-32)*sum(q*y) with q in [-4, 3]: the
// low two bits as Q2_K, minus 4 where the hmask bit is clear (hmask byte l,
// bit 4h+j, for element 128h+32j+l).
func dotQ3_KQ8_K(nb int, w, x []byte) float32 {
	var sum float32
	var sc [16]int8
	for i := range nb {
		wb := (*[110]byte)(w[110*i:])
		xb := (*[292]byte)(x[292*i:])
		y := (*[qk]byte)(xb[4:])
		q3Scales((*[12]byte)(wb[96:]), &sc)
		var isum int32
		for p := range 2 {
			var a0, a1, a2, a3, a4, a5, a6, a7 int32
			for l := 16 * p; l < 16*p+16; l++ {
				q0, q1 := int32(wb[32+l]), int32(wb[64+l])
				m := ^int32(wb[l]) // a clear hmask bit subtracts 4
				a0 += ((q0 & 3) - (m<<2)&4) * int32(int8(y[l]))
				a1 += ((q0 >> 2 & 3) - (m<<1)&4) * int32(int8(y[32+l]))
				a2 += ((q0 >> 4 & 3) - m&4) * int32(int8(y[64+l]))
				a3 += ((q0 >> 6) - (m>>1)&4) * int32(int8(y[96+l]))
				a4 += ((q1 & 3) - (m>>2)&4) * int32(int8(y[128+l]))
				a5 += ((q1 >> 2 & 3) - (m>>3)&4) * int32(int8(y[160+l]))
				a6 += ((q1 >> 4 & 3) - (m>>4)&4) * int32(int8(y[192+l]))
				a7 += ((q1 >> 6) - (m>>5)&4) * int32(int8(y[224+l]))
			}
			isum += int32(sc[p])*a0 + int32(sc[2+p])*a1 + int32(sc[4+p])*a2 + int32(sc[6+p])*a3 +
				int32(sc[8+p])*a4 + int32(sc[10+p])*a5 + int32(sc[12+p])*a6 + int32(sc[14+p])*a7
		}
		sum += f16le(wb[108:]) * q8KScale(xb) * float32(isum)
	}
	return sum
}

// dotQ4_KQ8_K: per 32 elements, scale*sum(q*y); mins through the group sums.
func dotQ4_KQ8_K(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[144]byte)(w[144*i:])
		xb := (*[292]byte)(x[292*i:])
		y := (*[qk]byte)(xb[4:])
		s := (*[12]byte)(wb[4:16])
		var isum, summ int32
		for k := range 4 {
			sc1, m1 := scaleMinK4(2*k, s)
			sc2, m2 := scaleMinK4(2*k+1, s)
			summ += int32(m1)*(q8KBsum(xb, 4*k)+q8KBsum(xb, 4*k+1)) +
				int32(m2)*(q8KBsum(xb, 4*k+2)+q8KBsum(xb, 4*k+3))
			q := (*[32]byte)(wb[16+32*k:])
			yo := (*[64]byte)(y[64*k:])
			var s0, s1 int32
			for l := range 32 {
				s0 += int32(q[l]&0xf) * int32(int8(yo[l]))
				s1 += int32(q[l]>>4) * int32(int8(yo[l+32]))
			}
			isum += int32(sc1)*s0 + int32(sc2)*s1
		}
		yd := q8KScale(xb)
		sum += yd*f16le(wb[0:])*float32(isum) - yd*f16le(wb[2:])*float32(summ)
	}
	return sum
}

// dotQ5_KQ8_K: as Q4_K with a fifth bit: bit 2k (2k+1) of qh[l] for element
// 64k+l (64k+32+l). One pass over l, eight accumulators, constant shifts.
func dotQ5_KQ8_K(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[176]byte)(w[176*i:])
		xb := (*[292]byte)(x[292*i:])
		y := (*[qk]byte)(xb[4:])
		s := (*[12]byte)(wb[4:16])
		qs := (*[128]byte)(wb[48:])
		var a0, a1, a2, a3, a4, a5, a6, a7 int32
		for l := range 32 {
			h := int32(wb[16+l])
			q0, q1, q2, q3 := int32(qs[l]), int32(qs[32+l]), int32(qs[64+l]), int32(qs[96+l])
			a0 += (q0&0xf | (h&1)<<4) * int32(int8(y[l]))
			a1 += (q0>>4 | (h&2)<<3) * int32(int8(y[32+l]))
			a2 += (q1&0xf | (h&4)<<2) * int32(int8(y[64+l]))
			a3 += (q1>>4 | (h&8)<<1) * int32(int8(y[96+l]))
			a4 += (q2&0xf | h&16) * int32(int8(y[128+l]))
			a5 += (q2>>4 | (h&32)>>1) * int32(int8(y[160+l]))
			a6 += (q3&0xf | (h&64)>>2) * int32(int8(y[192+l]))
			a7 += (q3>>4 | (h&128)>>3) * int32(int8(y[224+l]))
		}
		var isum, summ int32
		for j, a := range [8]int32{a0, a1, a2, a3, a4, a5, a6, a7} {
			sc, m := scaleMinK4(j, s)
			isum += int32(sc) * a
			summ += int32(m) * (q8KBsum(xb, 2*j) + q8KBsum(xb, 2*j+1))
		}
		yd := q8KScale(xb)
		sum += yd*f16le(wb[0:])*float32(isum) - yd*f16le(wb[2:])*float32(summ)
	}
	return sum
}

// dotQ6_KQ8_K: per 16 elements, scale*sum((q-32)*y). In each half h of 128
// elements, ql[64h+l], ql[64h+32+l] and qh[32h+l] hold elements l, l+32,
// l+64 and l+96 of the half; one pass over l covers both halves.
func dotQ6_KQ8_K(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[210]byte)(w[210*i:])
		xb := (*[292]byte)(x[292*i:])
		y := (*[qk]byte)(xb[4:])
		sc := (*[16]byte)(wb[192:208])
		var isum int32
		for p := range 2 {
			var a0, a1, a2, a3, a4, a5, a6, a7 int32
			for l := 16 * p; l < 16*p+16; l++ {
				b0, b1, h0 := int32(wb[l]), int32(wb[32+l]), int32(wb[128+l])
				b2, b3, h1 := int32(wb[64+l]), int32(wb[96+l]), int32(wb[160+l])
				a0 += (b0&0xf | (h0&3)<<4 - 32) * int32(int8(y[l]))
				a1 += (b1&0xf | (h0&12)<<2 - 32) * int32(int8(y[32+l]))
				a2 += (b0>>4 | h0&48 - 32) * int32(int8(y[64+l]))
				a3 += (b1>>4 | (h0&192)>>2 - 32) * int32(int8(y[96+l]))
				a4 += (b2&0xf | (h1&3)<<4 - 32) * int32(int8(y[128+l]))
				a5 += (b3&0xf | (h1&12)<<2 - 32) * int32(int8(y[160+l]))
				a6 += (b2>>4 | h1&48 - 32) * int32(int8(y[192+l]))
				a7 += (b3>>4 | (h1&192)>>2 - 32) * int32(int8(y[224+l]))
			}
			isum += int32(int8(sc[p]))*a0 + int32(int8(sc[2+p]))*a1 + int32(int8(sc[4+p]))*a2 + int32(int8(sc[6+p]))*a3 +
				int32(int8(sc[8+p]))*a4 + int32(int8(sc[10+p]))*a5 + int32(int8(sc[12+p]))*a6 + int32(int8(sc[14+p]))*a7
		}
		sum += f16le(wb[208:]) * q8KScale(xb) * float32(isum)
	}
	return sum
}

func dotIQ4_NLQ8_0(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[18]byte)(w[18*i:])
		xb := (*[34]byte)(x[34*i:])
		var s0, s1 int32
		for j := range 16 {
			q := wb[2+j]
			s0 += int32(kvaluesIQ4NL[q&0xf]) * int32(int8(xb[2+j]))
			s1 += int32(kvaluesIQ4NL[q>>4]) * int32(int8(xb[18+j]))
		}
		sum += float32(s0+s1) * (f16le(wb[0:]) * f16le(xb[0:]))
	}
	return sum
}

func dotIQ4_XSQ8_K(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[136]byte)(w[136*i:])
		xb := (*[292]byte)(x[292*i:])
		y := (*[qk]byte)(xb[4:])
		var isum int32
		for ib := range 8 {
			q := (*[16]byte)(wb[8+16*ib:])
			yo := (*[32]byte)(y[32*ib:])
			var s0, s1 int32
			for j := range 16 {
				s0 += int32(kvaluesIQ4NL[q[j]&0xf]) * int32(int8(yo[j]))
				s1 += int32(kvaluesIQ4NL[q[j]>>4]) * int32(int8(yo[j+16]))
			}
			isum += int32(iq4xsScale(wb, ib)) * (s0 + s1)
		}
		sum += f16le(wb[0:]) * q8KScale(xb) * float32(isum)
	}
	return sum
}

// dotMXFP4Q8_0 is ggml_vec_dot_mxfp4_q8_0: the block scale is
// fp16(x.d)·2^(e-128), a product that is exact unless it leaves the normal
// float32 range.
func dotMXFP4Q8_0(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[17]byte)(w[17*i:])
		xb := (*[34]byte)(x[34*i:])
		var s0, s1 int32
		for j := range 16 {
			q := wb[1+j]
			s0 += int32(kvaluesMXFP4[q&0xf]) * int32(int8(xb[2+j]))
			s1 += int32(kvaluesMXFP4[q>>4]) * int32(int8(xb[18+j]))
		}
		sum += float32(s0+s1) * (f16le(xb[0:]) * e8m0Half(wb[0]))
	}
	return sum
}
