package quant

import "math"

// FMA32 returns a·b + c rounded once to float32, as the FMA instructions
// (VFMADD…PS) ggml's kernels accumulate with. The product of two float32s
// is exact in float64, so p + c is the float64 FMA; its rounding to
// float32 could then differ from a single rounding only where the float64
// sum lies exactly halfway between two float32s while the exact sum does
// not: there the exact remainder (Knuth's TwoSum) moves it one float64 ulp
// toward the exact value first.
func FMA32(a, b, c float32) float32 {
	p := float64(float64(a) * float64(b)) // exact (48 bits); the conversion keeps it unfused
	s := p + float64(c)
	if math.Float64bits(s)&(1<<29-1) == 1<<28 {
		bb := s - p
		if e := (p - (s - bb)) + (float64(c) - bb); e > 0 {
			s = math.Nextafter(s, math.Inf(1))
		} else if e < 0 {
			s = math.Nextafter(s, math.Inf(-1))
		}
	}
	return float32(s)
}

// Hsum8 sums eight float32 lanes as ggml's x86 hsum_float_8 (and
// tinyBLAS's hsum) does: upper half onto lower, then pairs two apart,
// then the last two.
func Hsum8(a *[8]float32) float32 {
	r0, r1, r2, r3 := a[0]+a[4], a[1]+a[5], a[2]+a[6], a[3]+a[7]
	return (r0 + r2) + (r1 + r3)
}
