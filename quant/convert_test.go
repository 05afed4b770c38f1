package quant

import (
	"math/rand/v2"
	"testing"
)

// TestMXFP4AsQ8_0: the Q8_0 blocks dequantize to exactly the MXFP4 values,
// at every exponent in float16's range, and an exponent outside it is
// refused.
func TestMXFP4AsQ8_0(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for e := 104; e <= 143; e++ {
		src := make([]byte, 17*4)
		for i := range src {
			src[i] = byte(r.Uint32())
		}
		for b := 0; b < 4; b++ {
			src[b*17] = byte(e)
		}
		dst := make([]byte, 34*4)
		if !MXFP4AsQ8_0(dst, src) {
			t.Fatalf("e %d refused", e)
		}
		want, got := make([]float32, 128), make([]float32, 128)
		if err := DequantizeRow(MXFP4, src, want); err != nil {
			t.Fatal(err)
		}
		if err := DequantizeRow(Q8_0, dst, got); err != nil {
			t.Fatal(err)
		}
		for i := range want {
			if want[i] != got[i] {
				t.Fatalf("e %d value %d: Q8_0 %v, MXFP4 %v", e, i, got[i], want[i])
			}
		}
	}
	for _, e := range []byte{0, 103, 144, 255} {
		src := make([]byte, 17)
		src[0] = e
		if MXFP4AsQ8_0(make([]byte, 34), src) {
			t.Errorf("e %d accepted: 2^(e-128) is not a float16", e)
		}
	}
}
