package quant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// DequantizeRow decodes len(dst) elements of type t from src into dst. src
// must hold exactly the bytes of those elements (t.RowBytes(len(dst))); the
// result is bit for bit what ggml's to_float produces. Several rows may be
// decoded at once, as rows are whole blocks laid end to end.
//
// It returns an error wrapping ErrUnsupported for a type without a decoder,
// and an error if len(dst) is not a multiple of the block size or src has
// the wrong length. It does not allocate and is safe for concurrent use.
func DequantizeRow(t Type, src []byte, dst []float32) error {
	if !t.Supported() {
		return fmt.Errorf("%w: cannot dequantize %v", ErrUnsupported, t)
	}
	if err := checkRow(t, len(dst), len(src)); err != nil {
		return fmt.Errorf("quant: dequantize: %w", err)
	}
	switch t {
	case F32:
		for i := range dst {
			dst[i] = math.Float32frombits(binary.LittleEndian.Uint32(src[4*i:]))
		}
	case F16:
		tab := f16Table()
		for i := range dst {
			dst[i] = tab[binary.LittleEndian.Uint16(src[2*i:])]
		}
	case BF16:
		for i := range dst {
			dst[i] = BF16ToF32(binary.LittleEndian.Uint16(src[2*i:]))
		}
	case Q4_0:
		dequantQ4_0(src, dst)
	case Q4_1:
		dequantQ4_1(src, dst)
	case Q5_0:
		dequantQ5_0(src, dst)
	case Q5_1:
		dequantQ5_1(src, dst)
	case Q8_0:
		dequantQ8_0(src, dst)
	case Q8_1:
		dequantQ8_1(src, dst)
	case Q2_K:
		dequantQ2_K(src, dst)
	case Q3_K:
		dequantQ3_K(src, dst)
	case Q4_K:
		dequantQ4_K(src, dst)
	case Q5_K:
		dequantQ5_K(src, dst)
	case Q6_K:
		dequantQ6_K(src, dst)
	case Q8_K:
		dequantQ8_K(src, dst)
	case IQ4_NL:
		dequantIQ4_NL(src, dst)
	case IQ4_XS:
		dequantIQ4_XS(src, dst)
	case MXFP4:
		dequantMXFP4(src, dst)
	default:
		panic("quant: supported type without a decoder: " + t.String())
	}
	return nil
}

// checkRow verifies that n elements of t take exactly nbytes bytes.
func checkRow(t Type, n, nbytes int) error {
	want, err := t.RowBytes(n)
	if err != nil {
		return err
	}
	if nbytes != want {
		return fmt.Errorf("%v: %d elements take %d bytes, have %d", t, n, want, nbytes)
	}
	return nil
}

// A note on float arithmetic, here and in the quantizers: ggml computes in
// float32 without fused multiply-add, and Go may fuse x*y+z into one FMA on
// some targets (arm64, ppc64le, s390x, amd64 with GOAMD64=v3). Writing
// float32(x*y) + z forces the product to be rounded on its own, which keeps
// the results bit-identical to ggml's everywhere.

// kvaluesIQ4NL are the 16 non-linear levels of IQ4_NL and IQ4_XS (ggml's
// kvalues_iq4nl), sorted ascending.
var kvaluesIQ4NL = [16]int8{-127, -104, -83, -65, -49, -35, -22, -10, 1, 13, 25, 38, 53, 69, 89, 113}

func dequantQ4_0(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += 32 {
		b := (*[18]byte)(src[i/32*18:])
		y := (*[32]float32)(dst[i:])
		d := f16le(b[0:])
		for j := range 16 {
			q := b[2+j]
			y[j] = float32(int(q&0xf)-8) * d
			y[j+16] = float32(int(q>>4)-8) * d
		}
	}
}

func dequantQ4_1(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += 32 {
		b := (*[20]byte)(src[i/32*20:])
		y := (*[32]float32)(dst[i:])
		d, m := f16le(b[0:]), f16le(b[2:])
		for j := range 16 {
			q := b[4+j]
			y[j] = float32(float32(q&0xf)*d) + m
			y[j+16] = float32(float32(q>>4)*d) + m
		}
	}
}

func dequantQ5_0(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += 32 {
		b := (*[22]byte)(src[i/32*22:])
		y := (*[32]float32)(dst[i:])
		d := f16le(b[0:])
		qh := binary.LittleEndian.Uint32(b[2:])
		for j := range 16 {
			q := b[6+j]
			lo := int(q&0xf) | int(qh>>j&1)<<4
			hi := int(q>>4) | int(qh>>(j+16)&1)<<4
			y[j] = float32(lo-16) * d
			y[j+16] = float32(hi-16) * d
		}
	}
}

func dequantQ5_1(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += 32 {
		b := (*[24]byte)(src[i/32*24:])
		y := (*[32]float32)(dst[i:])
		d, m := f16le(b[0:]), f16le(b[2:])
		qh := binary.LittleEndian.Uint32(b[4:])
		for j := range 16 {
			q := b[8+j]
			lo := int(q&0xf) | int(qh>>j&1)<<4
			hi := int(q>>4) | int(qh>>(j+16)&1)<<4
			y[j] = float32(float32(lo)*d) + m
			y[j+16] = float32(float32(hi)*d) + m
		}
	}
}

func dequantQ8_0(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += 32 {
		b := (*[34]byte)(src[i/32*34:])
		y := (*[32]float32)(dst[i:])
		d := f16le(b[0:])
		for j := range 32 {
			y[j] = float32(int8(b[2+j])) * d
		}
	}
}

func dequantQ8_1(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += 32 {
		b := (*[36]byte)(src[i/32*36:])
		y := (*[32]float32)(dst[i:])
		d := f16le(b[0:])
		for j := range 32 {
			y[j] = float32(int8(b[4+j])) * d
		}
	}
}

// Q2_K block (84 bytes): scales[16] (low nibble: scale, high nibble: min, of
// each 16 elements), qs[64] (2-bit quants), d and dmin (fp16).
func dequantQ2_K(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += qk {
		b := (*[84]byte)(src[i/qk*84:])
		y := (*[qk]float32)(dst[i:])
		d, dmin := f16le(b[80:]), f16le(b[82:])
		for e := range qk {
			// Element e: byte 32*(e/128) + e%32 of qs, bit pair (e/32)%4.
			q := b[16+e/128*32+e%32] >> (e / 32 % 4 * 2) & 3
			sc := b[e/16]
			dl := d * float32(sc&0xf)
			ml := float32(dmin * float32(sc>>4))
			y[e] = float32(dl*float32(q)) - ml
		}
	}
}

// q3Scales unpacks the sixteen 6-bit scales of a Q3_K block, stored as 12
// bytes: low nibbles in bytes 0-7 (scales 0-7 in the low nibble, 8-15 in the
// high one), the top two bits in bytes 8-11 (scale j in byte 8+j%4, bit pair
// j/4). The stored value is offset by 32.
func q3Scales(s *[12]byte, out *[16]int8) {
	for j := range 16 {
		var lo byte
		if j < 8 {
			lo = s[j] & 0xf
		} else {
			lo = s[j-8] >> 4
		}
		hi := s[8+j%4] >> (2 * (j / 4)) & 3
		out[j] = int8(lo|hi<<4) - 32
	}
}

// Q3_K block (110 bytes): hmask[32] (the high bit: element e's is bit e/32 of
// byte e%32), qs[64] (low 2 bits, as Q2_K), scales[12], d (fp16).
func dequantQ3_K(src []byte, dst []float32) {
	var sc [16]int8
	for i := 0; i < len(dst); i += qk {
		b := (*[110]byte)(src[i/qk*110:])
		y := (*[qk]float32)(dst[i:])
		d := f16le(b[108:])
		q3Scales((*[12]byte)(b[96:]), &sc)
		for e := range qk {
			q := int(b[32+e/128*32+e%32] >> (e / 32 % 4 * 2) & 3)
			if b[e%32]>>(e/32)&1 == 0 {
				q -= 4
			}
			dl := d * float32(sc[e/16])
			y[e] = dl * float32(q)
		}
	}
}

// scaleMinK4 returns the 6-bit scale and min of sub-block j (0-7) of a Q4_K or
// Q5_K block from its 12 packed bytes (ggml's get_scale_min_k4).
func scaleMinK4(j int, s *[12]byte) (sc, m byte) {
	if j < 4 {
		return s[j] & 63, s[j+4] & 63
	}
	return s[j+4]&0xf | (s[j-4]>>6)<<4, s[j+4]>>4 | (s[j]>>6)<<4
}

// Q4_K block (144 bytes): d, dmin (fp16), scales[12], qs[128]. Sub-block 2k
// is the low nibbles of qs[32k:32k+32], sub-block 2k+1 their high nibbles.
func dequantQ4_K(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += qk {
		b := (*[144]byte)(src[i/qk*144:])
		y := (*[qk]float32)(dst[i:])
		d, dmin := f16le(b[0:]), f16le(b[2:])
		s := (*[12]byte)(b[4:])
		for k := range 4 {
			sc1, m1 := scaleMinK4(2*k, s)
			sc2, m2 := scaleMinK4(2*k+1, s)
			d1, dm1 := d*float32(sc1), float32(dmin*float32(m1))
			d2, dm2 := d*float32(sc2), float32(dmin*float32(m2))
			q := (*[32]byte)(b[16+32*k:])
			o := (*[64]float32)(y[64*k:])
			for l := range 32 {
				o[l] = float32(d1*float32(q[l]&0xf)) - dm1
				o[l+32] = float32(d2*float32(q[l]>>4)) - dm2
			}
		}
	}
}

// Q5_K block (176 bytes): d, dmin, scales[12], qh[32], qs[128]; as Q4_K plus a
// fifth bit: bit 2k of qh[l] for element 64k+l, bit 2k+1 for 64k+32+l.
func dequantQ5_K(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += qk {
		b := (*[176]byte)(src[i/qk*176:])
		y := (*[qk]float32)(dst[i:])
		d, dmin := f16le(b[0:]), f16le(b[2:])
		s := (*[12]byte)(b[4:])
		qh := (*[32]byte)(b[16:])
		for k := range 4 {
			sc1, m1 := scaleMinK4(2*k, s)
			sc2, m2 := scaleMinK4(2*k+1, s)
			d1, dm1 := d*float32(sc1), float32(dmin*float32(m1))
			d2, dm2 := d*float32(sc2), float32(dmin*float32(m2))
			q := (*[32]byte)(b[48+32*k:])
			o := (*[64]float32)(y[64*k:])
			for l := range 32 {
				lo := q[l]&0xf | (qh[l]>>(2*k)&1)<<4
				hi := q[l]>>4 | (qh[l]>>(2*k+1)&1)<<4
				o[l] = float32(d1*float32(lo)) - dm1
				o[l+32] = float32(d2*float32(hi)) - dm2
			}
		}
	}
}

// Q6_K block (210 bytes): ql[128] (low 4 bits), qh[64] (high 2 bits),
// scales[16] (int8, one per 16 elements), d (fp16). In each half h of 128
// elements, element 32g+l (g 0-3, l 0-31) has its low bits in the low (g even)
// or high (g odd) nibble of ql[64h + l + 32*(g%2)] and its high bits at bit
// pair g of qh[32h+l]; quants are offset by 32.
func dequantQ6_K(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += qk {
		b := (*[210]byte)(src[i/qk*210:])
		y := (*[qk]float32)(dst[i:])
		d := f16le(b[208:])
		for h := range 2 {
			ql := (*[64]byte)(b[64*h:])
			qh := (*[32]byte)(b[128+32*h:])
			sc := (*[8]byte)(b[192+8*h:])
			o := (*[128]float32)(y[128*h:])
			for l := range 32 {
				is := l / 16
				q1 := int(ql[l]&0xf|(qh[l]>>0&3)<<4) - 32
				q2 := int(ql[l+32]&0xf|(qh[l]>>2&3)<<4) - 32
				q3 := int(ql[l]>>4|(qh[l]>>4&3)<<4) - 32
				q4 := int(ql[l+32]>>4|(qh[l]>>6&3)<<4) - 32
				o[l] = d * float32(int8(sc[is])) * float32(q1)
				o[l+32] = d * float32(int8(sc[is+2])) * float32(q2)
				o[l+64] = d * float32(int8(sc[is+4])) * float32(q3)
				o[l+96] = d * float32(int8(sc[is+6])) * float32(q4)
			}
		}
	}
}

// Q8_K block (292 bytes): d (float32), qs[256] (int8), bsums[16] (int16).
func dequantQ8_K(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += qk {
		b := (*[292]byte)(src[i/qk*292:])
		y := (*[qk]float32)(dst[i:])
		d := math.Float32frombits(binary.LittleEndian.Uint32(b[0:]))
		for j := range qk {
			y[j] = d * float32(int8(b[4+j]))
		}
	}
}

func dequantIQ4_NL(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += 32 {
		b := (*[18]byte)(src[i/32*18:])
		y := (*[32]float32)(dst[i:])
		d := f16le(b[0:])
		for j := range 16 {
			q := b[2+j]
			y[j] = d * float32(kvaluesIQ4NL[q&0xf])
			y[j+16] = d * float32(kvaluesIQ4NL[q>>4])
		}
	}
}

// iq4xsScale returns the 6-bit scale of sub-block ib (0-7) of an IQ4_XS block,
// offset by 32: low nibble from scales_l, high two bits from scales_h.
func iq4xsScale(b *[136]byte, ib int) int {
	sh := binary.LittleEndian.Uint16(b[2:])
	ls := int(b[4+ib/2]>>(4*(ib%2))&0xf) | int(sh>>(2*ib)&3)<<4
	return ls - 32
}

// IQ4_XS block (136 bytes): d (fp16), scales_h (uint16), scales_l[4],
// qs[128]; sub-block ib uses qs[16ib:16ib+16] as IQ4_NL does.
func dequantIQ4_XS(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += qk {
		b := (*[136]byte)(src[i/qk*136:])
		y := (*[qk]float32)(dst[i:])
		d := f16le(b[0:])
		for ib := range 8 {
			dl := d * float32(iq4xsScale(b, ib))
			q := (*[16]byte)(b[8+16*ib:])
			o := (*[32]float32)(y[32*ib:])
			for j := range 16 {
				o[j] = dl * float32(kvaluesIQ4NL[q[j]&0xf])
				o[j+16] = dl * float32(kvaluesIQ4NL[q[j]>>4])
			}
		}
	}
}

// kvaluesMXFP4 are the sixteen levels of MXFP4 (ggml's kvalues_mxfp4): the
// E2M1 values 0, 0.5, 1, 1.5, 2, 3, 4, 6 doubled, then their negatives
// (index 8 is a second zero, -0 in E2M1).
var kvaluesMXFP4 = [16]int8{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}

// e8m0Half returns 2^(e-128), half the value of the E8M0 exponent e, built
// from the bits as ggml's GGML_E8M0_TO_FP32_HALF does: the exponent field
// e-1 for e >= 2, the subnormals 2^-128 and 2^-127 for e = 0 and 1. (e =
// 255, NaN in the MX specification, gives 2^127, as in ggml.) Halving
// compensates for the doubled levels of kvaluesMXFP4.
func e8m0Half(e byte) float32 {
	if e < 2 {
		return math.Float32frombits(0x00200000 << e)
	}
	return math.Float32frombits(uint32(e-1) << 23)
}

// MXFP4 block (17 bytes): e (E8M0), qs[16] as Q4_0's nibbles; x =
// kvalues[q] * 2^(e-128). Every product is exact unless it overflows.
func dequantMXFP4(src []byte, dst []float32) {
	for i := 0; i < len(dst); i += 32 {
		b := (*[17]byte)(src[i/32*17:])
		y := (*[32]float32)(dst[i:])
		d := e8m0Half(b[0])
		for j := range 16 {
			q := b[1+j]
			y[j] = float32(kvaluesMXFP4[q&0xf]) * d
			y[j+16] = float32(kvaluesMXFP4[q>>4]) * d
		}
	}
}
