package quant

import (
	"math"
	"sync"
)

// F16ToF32 converts an IEEE 754 binary16 value, given by its bits, to float32.
// The conversion is exact for every input, subnormals included; infinities
// keep their sign and NaNs keep their sign and payload (shifted into the high
// payload bits, so a quiet NaN stays quiet).
func F16ToF32(h uint16) float32 {
	b := uint32(h&0x7fff) << 13 // exponent and mantissa, 112 short of float32's bias
	if b >= 0x7c00<<13 {
		b |= 0x7f800000 // infinity or NaN: all exponent bits set
	} else {
		// Scaling by 2^112 rebiases exactly, and also normalizes binary16
		// subnormals, which are float32 subnormals before the scaling.
		b = math.Float32bits(math.Float32frombits(b) * 0x1p112)
	}
	return math.Float32frombits(b | uint32(h&0x8000)<<16)
}

// F32ToF16 converts f to IEEE 754 binary16 bits, rounding to nearest with ties
// to even, the rounding of ggml's GGML_FP32_TO_FP16 (and of the F16C
// instruction). Values of magnitude 65520 and above become infinity, results
// below the smallest subnormal round to a signed zero, and every NaN becomes
// the quiet NaN 0x7e00 with f's sign, as ggml's portable conversion does.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	abs := b & 0x7fffffff
	switch {
	case abs > 0x7f800000: // NaN
		return sign | 0x7e00
	case abs >= 0x477ff000: // >= 65520, the midpoint of 65504 and 2^16: infinity
		return sign | 0x7c00
	case abs >= 0x38800000: // >= 2^-14: a normal binary16
		// Rebias the exponent (127 -> 15), then round away the low 13 bits.
		// A carry out of the mantissa correctly bumps the exponent.
		v := abs - 0x38000000
		v += 0xfff + (v>>13)&1
		return sign | uint16(v>>13)
	case abs >= 0x33000000: // >= 2^-25: a binary16 subnormal (or 2^-14 after rounding)
		// The result counts units of 2^-24: mant * 2^(exp-150) / 2^-24.
		exp := abs >> 23
		mant := abs&0x7fffff | 0x800000
		shift := 126 - exp // 14 ..= 24
		q := mant >> shift
		rem := mant & (1<<shift - 1)
		half := uint32(1) << (shift - 1)
		if rem > half || rem == half && q&1 == 1 {
			q++
		}
		return sign | uint16(q)
	default: // rounds to zero
		return sign
	}
}

// BF16ToF32 converts a bfloat16 value, given by its bits, to float32 (exact).
func BF16ToF32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// F32ToBF16 converts f to bfloat16 bits as ggml_compute_fp32_to_bf16 does:
// round to nearest, ties to even, subnormals kept (not flushed), overflow to
// infinity, and a NaN truncated to its high 16 bits with the quiet bit forced.
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x40
	}
	return uint16((b + 0x7fff + (b>>16)&1) >> 16)
}

// f16le reads little-endian binary16 bits at b[0:2] and converts them.
func f16le(b []byte) float32 {
	_ = b[1]
	return F16ToF32(uint16(b[0]) | uint16(b[1])<<8)
}

// putF16le stores f as little-endian binary16 at b[0:2].
func putF16le(b []byte, f float32) {
	h := F32ToF16(f)
	_ = b[1]
	b[0] = byte(h)
	b[1] = byte(h >> 8)
}

// f16Table returns F16ToF32 of every binary16 value (256 KiB), built on
// first use. Lookups beat the bit operations in the F16 hot loops.
var f16Table = sync.OnceValue(func() *[1 << 16]float32 {
	t := new([1 << 16]float32)
	for i := range t {
		t[i] = F16ToF32(uint16(i))
	}
	return t
})
