package cpu

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hearth-llm/hearth/quant"
)

// TestMXFP4Exponents runs every MXFP4 variant (one- and four-row) over
// every exponent e = 0..255, all blocks of a row sharing it, against a
// float64 sum. TestDotVariants' rows mix exponents, where a wrong scale for
// e = 0 or 1 (subnormal 2^-128, 2^-127) or e near 255 would hide under the
// larger blocks. The activation scale dx keeps every product finite and
// normal: 1 up to e = 152 (d = 2^(e-128) ≤ 2^24), then 2^-24 (the smallest
// fp16), so d ≤ 2^103 and a row's sum stays below 2^128.
//
// Tolerance: as TestDotVariants', 1e-5 of Σ|terms|; each block's integer
// sum is exact, its scale dx·2^(e-128) exact, so only the float32 products
// and the summation round.
func TestMXFP4Exponents(t *testing.T) {
	r := rand.New(rand.NewPCG(39, 40))
	for _, v := range variants(quant.MXFP4) {
		t.Run(v.name, func(t *testing.T) {
			for _, nb := range []int{1, 17, 40} {
				n := 32 * nb
				for e := range 256 {
					w := make([]byte, 17*nb)
					x := make([]byte, 34*nb)
					dx := float32(1)
					if e > 152 {
						dx = 0x1p-24
					}
					var exact, mag float64
					d := float64(dx) * math.Ldexp(1, e-128)
					for b := range nb {
						w[17*b] = byte(e)
						for j := 1; j < 17; j++ {
							w[17*b+j] = byte(r.Uint32())
						}
						binary.LittleEndian.PutUint16(x[34*b:], quant.F32ToF16(dx))
						for j := 2; j < 34; j++ {
							x[34*b+j] = byte(r.Uint32())
						}
						for j := range 32 {
							q := w[17*b+1+j%16] >> (4 * (j / 16)) & 0xf
							p := float64(mxfp4Level(q)) * float64(int8(x[34*b+2+j]))
							exact += p * d
							mag += math.Abs(p * d)
						}
					}
					gw, gx := guarded(t, w), guarded(t, x)
					got := v.dot(n, gw, gx)
					if diff := math.Abs(float64(got) - exact); diff > 1e-5*mag || math.IsNaN(float64(got)) || math.IsInf(float64(got), 0) {
						t.Fatalf("nb=%d e=%d: got %v, exact %v (diff %.3g of magnitude %.3g)", nb, e, got, exact, diff, mag)
					}
					checkDot4(t, quant.MXFP4, v, n, w, x, r, got)
				}
			}
		})
	}
}

// mxfp4Level is the level of nibble q: the E2M1 values doubled.
func mxfp4Level(q byte) int {
	return [16]int{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}[q]
}
