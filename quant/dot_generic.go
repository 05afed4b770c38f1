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
	w, x = w[:4*n], x[:4*n]
	var s0, s1 float64
	i := 0
	for ; i+1 < n; i += 2 {
		a0 := math.Float32frombits(binary.LittleEndian.Uint32(w[4*i:]))
		b0 := math.Float32frombits(binary.LittleEndian.Uint32(x[4*i:]))
		a1 := math.Float32frombits(binary.LittleEndian.Uint32(w[4*i+4:]))
		b1 := math.Float32frombits(binary.LittleEndian.Uint32(x[4*i+4:]))
		s0 += float64(a0 * b0)
		s1 += float64(a1 * b1)
	}
	if i < n {
		a := math.Float32frombits(binary.LittleEndian.Uint32(w[4*i:]))
		b := math.Float32frombits(binary.LittleEndian.Uint32(x[4*i:]))
		s0 += float64(a * b)
	}
	return float32(s0 + s1)
}

// dotF16 sums exact products (two 11-bit significands fit a float32) in
// float64, as ggml_vec_dot_f16 does.
func dotF16(n int, w, x []byte) float32 {
	w, x = w[:2*n], x[:2*n]
	var s0, s1 float64
	i := 0
	for ; i+1 < n; i += 2 {
		a0 := F16ToF32(binary.LittleEndian.Uint16(w[2*i:]))
		b0 := F16ToF32(binary.LittleEndian.Uint16(x[2*i:]))
		a1 := F16ToF32(binary.LittleEndian.Uint16(w[2*i+2:]))
		b1 := F16ToF32(binary.LittleEndian.Uint16(x[2*i+2:]))
		s0 += float64(a0 * b0)
		s1 += float64(a1 * b1)
	}
	if i < n {
		s0 += float64(F16ToF32(binary.LittleEndian.Uint16(w[2*i:])) * F16ToF32(binary.LittleEndian.Uint16(x[2*i:])))
	}
	return float32(s0 + s1)
}

// dotBF16 sums exact products in float64, as ggml_vec_dot_bf16 does.
func dotBF16(n int, w, x []byte) float32 {
	w, x = w[:2*n], x[:2*n]
	var s0, s1 float64
	i := 0
	for ; i+1 < n; i += 2 {
		a0 := BF16ToF32(binary.LittleEndian.Uint16(w[2*i:]))
		b0 := BF16ToF32(binary.LittleEndian.Uint16(x[2*i:]))
		a1 := BF16ToF32(binary.LittleEndian.Uint16(w[2*i+2:]))
		b1 := BF16ToF32(binary.LittleEndian.Uint16(x[2*i+2:]))
		s0 += float64(a0 * b0)
		s1 += float64(a1 * b1)
	}
	if i < n {
		s0 += float64(BF16ToF32(binary.LittleEndian.Uint16(w[2*i:])) * BF16ToF32(binary.LittleEndian.Uint16(x[2*i:])))
	}
	return float32(s0 + s1)
}

// sumI8x32 returns the sum of 32 int8 values.
func sumI8x32(q *[32]byte) int32 {
	var s int32
	for _, v := range q {
		s += int32(int8(v))
	}
	return s
}

// dotQ4_0Q8_0: sum (q-8)*y = sum q*y - 8*sum y, scaled by dw*dx.
func dotQ4_0Q8_0(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[18]byte)(w[18*i:])
		xb := (*[34]byte)(x[34*i:])
		y := (*[32]byte)(xb[2:])
		var s0, s1 int32
		for j := range 16 {
			q := wb[2+j]
			s0 += int32(q&0xf) * int32(int8(y[j]))
			s1 += int32(q>>4) * int32(int8(y[j+16]))
		}
		sumi := s0 + s1 - 8*sumI8x32(y)
		sum += float32(sumi) * (f16le(wb[0:]) * f16le(xb[0:]))
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
		y := (*[32]byte)(xb[2:])
		qh := binary.LittleEndian.Uint32(wb[2:])
		var s0, s1 int32
		for j := range 16 {
			q := wb[6+j]
			lo := int32(q&0xf) | int32(qh>>j&1)<<4
			hi := int32(q>>4) | int32(qh>>(j+16)&1)<<4
			s0 += lo * int32(int8(y[j]))
			s1 += hi * int32(int8(y[j+16]))
		}
		sumi := s0 + s1 - 16*sumI8x32(y)
		sum += float32(sumi) * (f16le(wb[0:]) * f16le(xb[0:]))
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
			lo := int32(q&0xf) | int32(qh>>j&1)<<4
			hi := int32(q>>4) | int32(qh>>(j+16)&1)<<4
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

func dotQ8_0Q8_0(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[34]byte)(w[34*i:])
		xb := (*[34]byte)(x[34*i:])
		sumi := dotI8x32((*[32]byte)(wb[2:]), (*[32]byte)(xb[2:]))
		sum += float32(sumi) * (f16le(wb[0:]) * f16le(xb[0:]))
	}
	return sum
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
// activation group sums: d*y.d*isum - dmin*y.d*sum(min*bsum).
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
		for h := range 2 {
			q := (*[32]byte)(wb[16+32*h:])
			for j := range 4 {
				shift := 2 * j
				yo := (*[32]byte)(y[128*h+32*j:])
				var s0, s1 int32
				for l := range 16 {
					s0 += int32(q[l]>>shift&3) * int32(int8(yo[l]))
					s1 += int32(q[l+16]>>shift&3) * int32(int8(yo[l+16]))
				}
				is := 8*h + 2*j
				isum += int32(sc[is]&0xf)*s0 + int32(sc[is+1]&0xf)*s1
			}
		}
		yd := q8KScale(xb)
		dall := yd * f16le(wb[80:])
		dmin := yd * f16le(wb[82:])
		sum += dall*float32(isum) - dmin*float32(summs)
	}
	return sum
}

// dotQ3_KQ8_K: per 16 elements, (scale-32)*sum(q*y) with q in [-4, 3].
func dotQ3_KQ8_K(nb int, w, x []byte) float32 {
	var sum float32
	var sc [16]int8
	for i := range nb {
		wb := (*[110]byte)(w[110*i:])
		xb := (*[292]byte)(x[292*i:])
		y := (*[qk]byte)(xb[4:])
		hm := (*[32]byte)(wb[0:32])
		q3Scales((*[12]byte)(wb[96:]), &sc)
		var isum int32
		for h := range 2 {
			q := (*[32]byte)(wb[32+32*h:])
			for j := range 4 {
				shift := 2 * j
				bit := 4*h + j
				yo := (*[32]byte)(y[128*h+32*j:])
				var s0, s1 int32
				for l := range 16 {
					q0 := int32(q[l]>>shift&3) - 4 + int32(hm[l]>>bit&1)<<2
					q1 := int32(q[l+16]>>shift&3) - 4 + int32(hm[l+16]>>bit&1)<<2
					s0 += q0 * int32(int8(yo[l]))
					s1 += q1 * int32(int8(yo[l+16]))
				}
				is := 8*h + 2*j
				isum += int32(sc[is])*s0 + int32(sc[is+1])*s1
			}
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

// dotQ5_KQ8_K: as Q4_K with a fifth bit from qh.
func dotQ5_KQ8_K(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[176]byte)(w[176*i:])
		xb := (*[292]byte)(x[292*i:])
		y := (*[qk]byte)(xb[4:])
		s := (*[12]byte)(wb[4:16])
		qh := (*[32]byte)(wb[16:48])
		var isum, summ int32
		for k := range 4 {
			sc1, m1 := scaleMinK4(2*k, s)
			sc2, m2 := scaleMinK4(2*k+1, s)
			summ += int32(m1)*(q8KBsum(xb, 4*k)+q8KBsum(xb, 4*k+1)) +
				int32(m2)*(q8KBsum(xb, 4*k+2)+q8KBsum(xb, 4*k+3))
			q := (*[32]byte)(wb[48+32*k:])
			yo := (*[64]byte)(y[64*k:])
			var s0, s1 int32
			for l := range 32 {
				lo := int32(q[l]&0xf) | int32(qh[l]>>(2*k)&1)<<4
				hi := int32(q[l]>>4) | int32(qh[l]>>(2*k+1)&1)<<4
				s0 += lo * int32(int8(yo[l]))
				s1 += hi * int32(int8(yo[l+32]))
			}
			isum += int32(sc1)*s0 + int32(sc2)*s1
		}
		yd := q8KScale(xb)
		sum += yd*f16le(wb[0:])*float32(isum) - yd*f16le(wb[2:])*float32(summ)
	}
	return sum
}

// dotQ6_KQ8_K: per 16 elements, scale*sum((q-32)*y).
func dotQ6_KQ8_K(nb int, w, x []byte) float32 {
	var sum float32
	for i := range nb {
		wb := (*[210]byte)(w[210*i:])
		xb := (*[292]byte)(x[292*i:])
		y := (*[qk]byte)(xb[4:])
		var isum int32
		for h := range 2 {
			ql := (*[64]byte)(wb[64*h:])
			qh := (*[32]byte)(wb[128+32*h:])
			sc := (*[8]byte)(wb[192+8*h:])
			yo := (*[128]byte)(y[128*h:])
			for p := range 2 {
				var s1, s2, s3, s4 int32
				for l := 16 * p; l < 16*p+16; l++ {
					a, c, hb := ql[l], ql[l+32], qh[l]
					q1 := int32(a&0xf|(hb&3)<<4) - 32
					q2 := int32(c&0xf|(hb>>2&3)<<4) - 32
					q3 := int32(a>>4|(hb>>4&3)<<4) - 32
					q4 := int32(c>>4|(hb>>6&3)<<4) - 32
					s1 += q1 * int32(int8(yo[l]))
					s2 += q2 * int32(int8(yo[l+32]))
					s3 += q3 * int32(int8(yo[l+64]))
					s4 += q4 * int32(int8(yo[l+96]))
				}
				isum += int32(int8(sc[p]))*s1 + int32(int8(sc[p+2]))*s2 +
					int32(int8(sc[p+4]))*s3 + int32(int8(sc[p+6]))*s4
			}
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
