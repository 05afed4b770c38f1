//go:build amd64 && !purego

package cpu

import (
	"math/rand/v2"
	"testing"
)

// skipNoAMX skips a test where the CPU or the operating system gives no
// AMX (the amx level is then never chosen).
func skipNoAMX(t testing.TB) {
	t.Helper()
	if !hasAMX {
		t.Skip("no AMX here: needs AMX-TILE and AMX-INT8 (Sapphire Rapids or later) and Linux 5.16+ granting XTILEDATA")
	}
}

// TestAMXDPBUSD runs one TDPBUSD through amxDPBUSD on random and extreme
// bytes (255 × −128 in every product) and checks it against Go's integer
// arithmetic: the encodings, the operand roles (unsigned A, signed B) and
// the OS's tile state.
func TestAMXDPBUSD(t *testing.T) {
	skipNoAMX(t)
	r := rand.New(rand.NewPCG(7, 8))
	for round := range 4 {
		var a, b [16 * 64]byte
		var c, want [16 * 16]int32
		for i := range a {
			a[i], b[i] = byte(r.Uint32()), byte(r.Uint32())
			if round == 1 {
				a[i], b[i] = 255, 0x80
			}
		}
		for i := range c {
			c[i] = int32(r.Uint32() >> 8)
			want[i] = c[i]
		}
		for m := range 16 {
			for n := range 16 {
				for k := range 64 {
					want[16*m+n] += int32(a[64*m+k]) * int32(int8(b[64*(k/4)+4*n+k%4]))
				}
			}
		}
		amxDPBUSD(&a[0], &b[0], &c[0])
		if c != want {
			t.Fatalf("round %d: TDPBUSD differs from Go's integer sums:\n got %v\nwant %v", round, c[:16], want[:16])
		}
	}
}
