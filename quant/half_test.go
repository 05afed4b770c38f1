package quant

import (
	"math"
	"testing"
)

// f16Value is an independent decoding of binary16 bits in float64.
func f16Value(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	e := int(h>>10) & 0x1f
	m := float64(h & 0x3ff)
	switch e {
	case 0:
		return sign * math.Ldexp(m, -24)
	case 0x1f:
		if m != 0 {
			return math.NaN()
		}
		return sign * math.Inf(1)
	}
	return sign * math.Ldexp(1+m/1024, e-15)
}

func TestF16ToF32Exhaustive(t *testing.T) {
	for i := range 1 << 16 {
		h := uint16(i)
		got := F16ToF32(h)
		want := f16Value(h)
		if math.IsNaN(want) {
			b := math.Float32bits(got)
			if !math.IsNaN(float64(got)) || b>>31 != uint32(h>>15) || b&0x1fff != 0 || (b>>13)&0x3ff != uint32(h&0x3ff) {
				t.Fatalf("F16ToF32(%#04x) = %#08x, want NaN with sign and payload kept", h, b)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != math.Signbit(want) {
			t.Fatalf("F16ToF32(%#04x) = %v, want %v", h, got, want)
		}
		if back := F32ToF16(got); back != h {
			t.Fatalf("F32ToF16(F16ToF32(%#04x)) = %#04x", h, back)
		}
	}
}

// refF32ToF16 rounds f to the nearest binary16, ties to even, by comparing
// exact float64 distances to the two neighbouring binary16 values.
func refF32ToF16(f float32) uint16 {
	v := float64(f)
	var sign uint16
	if math.Signbit(v) {
		sign, v = 0x8000, -v
	}
	switch {
	case math.IsNaN(v):
		return sign | 0x7e00
	case v >= 65520:
		return sign | 0x7c00
	}
	// Largest non-negative binary16 bits whose value is <= v (values are
	// monotonic in the bits).
	lo, hi := uint16(0), uint16(0x7bff)
	for lo < hi {
		mid := (lo + hi + 1) / 2
		if f16Value(mid) <= v {
			lo = mid
		} else {
			hi = mid - 1
		}
	}
	if f16Value(lo) == v {
		return sign | lo
	}
	up := lo + 1 // 0x7c00 (infinity) when lo is 65504
	var upVal float64
	if up == 0x7c00 {
		upVal = 65536 // rounds like the next binade's first value
	} else {
		upVal = f16Value(up)
	}
	dlo, dhi := v-f16Value(lo), upVal-v // exact (Sterbenz)
	if dhi < dlo || dhi == dlo && lo&1 == 1 {
		return sign | up
	}
	return sign | lo
}

func TestF32ToF16Known(t *testing.T) {
	cases := []struct {
		f    float32
		want uint16
	}{
		{0, 0x0000},
		{float32(math.Copysign(0, -1)), 0x8000},
		{1, 0x3c00},
		{-2, 0xc000},
		{0.5, 0x3800},
		{65504, 0x7bff},          // largest finite
		{65519.996, 0x7bff},      // just below the midpoint to 2^16
		{65520, 0x7c00},          // midpoint, ties to even = infinity
		{1e10, 0x7c00},           // overflow
		{-1e10, 0xfc00},          //
		{0x1p-14, 0x0400},        // smallest normal
		{0x1p-24, 0x0001},        // smallest subnormal
		{0x1p-25, 0x0000},        // half of it: tie to even (zero)
		{0x1.000002p-25, 0x0001}, // just above: rounds up
		{0x3p-25, 0x0002},        // 1.5 units: tie to even (2)
		{0x5p-25, 0x0002},        // 2.5 units: tie to even (2)
		{0x1.ff8p-15, 0x03ff},    // largest subnormal
		{0x1.ffcp-15, 0x0400},    // midpoint to the smallest normal: tie to even (up)
		{0x1.ffep-15, 0x0400},    // rounds up into the normals
		{1 + 0x1p-11, 0x3c00},    // tie to even (down)
		{1 + 0x3p-11, 0x3c02},    // tie to even (up)
		{1e-10, 0x0000},          // underflow
		{float32(math.Inf(1)), 0x7c00},
		{float32(math.Inf(-1)), 0xfc00},
		{float32(math.NaN()), 0x7e00},
		{math.Float32frombits(0xffc00001), 0xfe00}, // negative NaN keeps its sign
		{math.Float32frombits(0x7f800001), 0x7e00}, // signaling NaN becomes quiet
	}
	for _, c := range cases {
		if got := F32ToF16(c.f); got != c.want {
			t.Errorf("F32ToF16(%v = %#08x) = %#04x, want %#04x", c.f, math.Float32bits(c.f), got, c.want)
		}
		if got := refF32ToF16(c.f); got != c.want {
			t.Errorf("reference(%v) = %#04x, want %#04x (test bug)", c.f, got, c.want)
		}
	}
}

func TestF32ToF16Rounding(t *testing.T) {
	check := func(b uint32) {
		f := math.Float32frombits(b)
		if got, want := F32ToF16(f), refF32ToF16(f); got != want {
			t.Fatalf("F32ToF16(%#08x = %v) = %#04x, want %#04x", b, f, got, want)
		}
	}
	// Every binary16 midpoint and its float32 neighbours: the ties and the
	// values that must not be taken for ties.
	for h := uint32(0); h < 0x7c00; h++ {
		lo := f16Value(uint16(h))
		var hi float64
		if h == 0x7bff {
			hi = 65536
		} else {
			hi = f16Value(uint16(h + 1))
		}
		mid := math.Float32bits(float32((lo + hi) / 2)) // exact: 12 significant bits
		for _, b := range []uint32{mid - 1, mid, mid + 1} {
			check(b)
			check(b | 0x80000000)
		}
	}
	// A spread of all float32 patterns (the stride is odd, so every low-bit
	// pattern occurs).
	if testing.Short() {
		return
	}
	for b := uint64(0); b < 1<<32; b += 997 {
		check(uint32(b))
	}
}

func TestBF16(t *testing.T) {
	cases := []struct {
		f    float32
		want uint16
	}{
		{1, 0x3f80},
		{-1, 0xbf80},
		{math.Float32frombits(0x3f808000), 0x3f80}, // tie, even stays
		{math.Float32frombits(0x3f818000), 0x3f82}, // tie, odd rounds up
		{math.Float32frombits(0x3f808001), 0x3f81}, // above the tie
		{math.Float32frombits(0x7f7fffff), 0x7f80}, // max float32 rounds to infinity
		{math.Float32frombits(0x00010000), 0x0001}, // subnormals are kept, not flushed
		{math.Float32frombits(0x00008000), 0x0000}, // tie to even zero
		{math.Float32frombits(0x80018000), 0x8002}, // negative subnormal tie, odd
		{float32(math.Inf(1)), 0x7f80},
		{float32(math.Inf(-1)), 0xff80},
		{math.Float32frombits(0x7f800001), 0x7fc0}, // NaN: truncated, quiet bit forced
		{math.Float32frombits(0xffa12345), 0xffe1},
		{math.Float32frombits(0x7fc00000), 0x7fc0},
	}
	for _, c := range cases {
		if got := F32ToBF16(c.f); got != c.want {
			t.Errorf("F32ToBF16(%#08x) = %#04x, want %#04x", math.Float32bits(c.f), got, c.want)
		}
	}
	for i := range 1 << 16 {
		h := uint16(i)
		f := BF16ToF32(h)
		if math.Float32bits(f) != uint32(h)<<16 {
			t.Fatalf("BF16ToF32(%#04x) = %#08x", h, math.Float32bits(f))
		}
		if !math.IsNaN(float64(f)) && F32ToBF16(f) != h {
			t.Fatalf("F32ToBF16(BF16ToF32(%#04x)) = %#04x", h, F32ToBF16(f))
		}
	}
	// Against exact float64 distances to the two neighbours.
	for b := uint64(0); b < 1<<32; b += 9973 {
		f := math.Float32frombits(uint32(b))
		if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
			continue
		}
		lo := uint16(b >> 16) // truncation: same sign, smaller magnitude
		v, vlo := math.Abs(float64(f)), math.Abs(float64(BF16ToF32(lo)))
		vhi := math.Abs(float64(BF16ToF32(lo + 1)))
		if lo&0x7fff == 0x7f7f {
			vhi = 0x1p128 // lo+1 is infinity; it rounds like the next binade
		}
		want := lo
		if d1, d2 := v-vlo, vhi-v; d2 < d1 || d2 == d1 && lo&1 == 1 {
			want = lo + 1
		}
		if got := F32ToBF16(f); got != want {
			t.Fatalf("F32ToBF16(%#08x) = %#04x, want %#04x", uint32(b), got, want)
		}
	}
}
