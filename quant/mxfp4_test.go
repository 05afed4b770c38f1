package quant

import (
	"bytes"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"
)

// MXFP4 beyond the generic tables: the scale's corners (subnormal and
// wrapped exponents), the quantizer's exponent choice at binade edges, and
// ties between levels, each against hand-computed values or ggml's bytes
// (testdata/ggml, gen_mxfp4.py).

// TestE8M0Half: 2^(e-128) for every e, the subnormals for e = 0 and 1
// included, and ggml's bit patterns for a few.
func TestE8M0Half(t *testing.T) {
	for e := range 256 {
		want := float32(math.Ldexp(1, e-128))
		if got := e8m0Half(byte(e)); math.Float32bits(got) != math.Float32bits(want) {
			t.Errorf("e8m0Half(%d) = %v (%#08x), want %v", e, got, math.Float32bits(got), want)
		}
	}
	for e, bits := range map[byte]uint32{0: 0x00200000, 1: 0x00400000, 2: 0x00800000, 127: 0x3f000000,
		128: 0x3f800000, 254: 0x7e800000, 255: 0x7f000000} {
		if got := math.Float32bits(e8m0Half(e)); got != bits {
			t.Errorf("e8m0Half(%d) bits %#08x, ggml %#08x", e, got, bits)
		}
	}
}

// TestMXFP4DequantizeHand decodes blocks written by hand: qs[j] = j |
// (15-j)<<4, so element j is level j and element 16+j level 15-j, at the
// exponents of the subnormal scales (0, 1), the smallest normal (2), d =
// 1/2 and 1 (127, 128), and the largest (254, 255).
func TestMXFP4DequantizeHand(t *testing.T) {
	levels := [16]float64{0, 1, 2, 3, 4, 6, 8, 12, 0, -1, -2, -3, -4, -6, -8, -12}
	for _, e := range []int{0, 1, 2, 127, 128, 254, 255} {
		b := make([]byte, 17)
		b[0] = byte(e)
		for j := range 16 {
			b[1+j] = byte(j | (15-j)<<4)
		}
		got := make([]float32, 32)
		if err := DequantizeRow(MXFP4, b, got); err != nil {
			t.Fatal(err)
		}
		for i, g := range got {
			l := levels[i%16]
			if i >= 16 {
				l = levels[31-i]
			}
			want := float32(l * math.Ldexp(1, e-128)) // ±Inf where 12·2^127 overflows
			if math.Float32bits(g) != math.Float32bits(want) {
				t.Errorf("e=%d element %d: %v, want %v", e, i, g, want)
			}
		}
	}
	// Spot values: e = 128 is d = 1, so the block holds the levels as they are.
	b := []byte{128, 0x70, 0xf9, 0x85, 0x00, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	got := make([]float32, 32)
	DequantizeRow(MXFP4, b, got)
	for i, want := range map[int]float32{0: 0, 16: 12, 1: -1, 17: -12, 2: 6, 18: 0, 3: 0} {
		if math.Float32bits(got[i]) != math.Float32bits(want) { // zeros are +0
			t.Errorf("element %d = %v, want %v", i, got[i], want)
		}
	}
}

// log2Rounds returns how many float32 values just below 2^k have log2f
// equal to k (so floor(log2f) = k, one more than their binade's): those
// whose log2 is within half a float32 ulp of k. Measured with glibc 2.36's
// log2f over every positive finite float32 (mxfp4Exponent was checked
// against all of them); the count follows the spacing of float32 values
// just below k, halving each time |k| drops past a power of two, and the
// coarser spacing of subnormal amax.
func log2Rounds(k int) uint32 {
	switch {
	case k <= -132:
		return 0
	case k <= -126: // subnormal amax
		return [...]uint32{1, 2, 5, 11, 11, 22}[k+131]
	case k > 0: // values below k lie in the binade below k's
		for _, c := range []struct {
			above int
			n     uint32
		}{{64, 44}, {32, 22}, {16, 11}, {8, 5}, {4, 2}, {2, 1}} {
			if k > c.above {
				return c.n
			}
		}
		return 0
	}
	for _, c := range []struct { // values below k (< 0) lie in |k|'s binade
		atLeast int
		n       uint32
	}{{64, 44}, {32, 22}, {16, 11}, {8, 5}, {4, 2}, {2, 1}} {
		if -k >= c.atLeast {
			return c.n
		}
	}
	return 0
}

// TestMXFP4Exponent checks the exponent for the floats around every binade
// edge (2^k for k = -148..128): (floor(log2f(amax)) - 2 + 127) as ggml's
// x86 build converts it to uint8_t.
func TestMXFP4Exponent(t *testing.T) {
	for k := -148; k <= 128; k++ {
		top := uint32(0x7f800000) // 2^128
		if k < 128 {
			top = math.Float32bits(float32(math.Ldexp(1, k)))
		}
		c := log2Rounds(k)
		for n := uint32(0); n <= 64 && n < top; n++ {
			if k == 128 && n == 0 {
				continue // +Inf
			}
			x := math.Float32frombits(top - n)
			fl := k // x = 2^k, or log2f rounds up to k
			if n > c {
				_, ex := math.Frexp(float64(x)) // x in [2^(ex-1), 2^ex)
				fl = ex - 1
			}
			want := byte(int32(fl) + 125)
			if got := mxfp4Exponent(x); got != want {
				t.Fatalf("amax %g (2^%d minus %d ulps): e = %d, want %d", x, k, n, got, want)
			}
		}
	}
	for _, c := range []struct {
		amax float32
		e    byte
	}{
		{8, 128}, {15.99, 128}, {15.999999, 129}, {16, 129}, {1, 125}, {0x1p-125, 0}, {0x1p-124, 1},
		{0x1p-126, 255}, {math.SmallestNonzeroFloat32, 232}, {math.MaxFloat32, 253}, // log2f rounds to 128
		{float32(math.Inf(1)), 0},
	} {
		if got := mxfp4Exponent(c.amax); got != c.e {
			t.Errorf("mxfp4Exponent(%g) = %d, want %d", c.amax, got, c.e)
		}
	}
}

// TestMXFP4Ties: values halfway between two levels take the one of smaller
// magnitude (ggml's first index on an equal error), and zero is index 0.
func TestMXFP4Ties(t *testing.T) {
	x := make([]float32, 32)
	want := make([]byte, 17)
	want[0] = 128 // amax 8: d = 1
	mids := []float32{0.5, 1.5, 2.5, 3.5, 5, 7, 10, 14}
	lower := []byte{0, 1, 2, 3, 4, 5, 6, 7}
	for i, m := range mids {
		x[i], x[16+i] = m, -m
		want[1+i] = lower[i] | (lower[i]+8)<<4
		if i == 0 {
			want[1] = 0 // -0.5 also goes to index 0 (zero), not 8
		}
	}
	x[8], x[24] = 8, -8
	want[9] = 6 | 14<<4
	x[9], x[25] = 0, float32(math.Copysign(0, -1))
	got := make([]byte, 17)
	if err := QuantizeRow(MXFP4, x, got); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("got  % x\nwant % x", got, want)
	}
}

// TestMXFP4Nearest: every quantized element is the level nearest to its
// input (checked in float64, so only float32 rounding of the error may pick
// an equally near one), over scales from subnormal to huge.
func TestMXFP4Nearest(t *testing.T) {
	rng := rand.New(rand.NewPCG(39, 40))
	for _, scale := range []float64{0x1p-130, 1e-30, 1e-3, 1, 300, 1e30} {
		x := randomRow(rng, 32*64, scale)
		q := quantizeNew(t, MXFP4, x)
		dq := dequantizeNew(t, MXFP4, q, len(x))
		for blk := range 64 {
			checkNearest(t, MXFP4, q[17*blk:17*blk+17], x[32*blk:32*blk+32], dq[32*blk:32*blk+32])
		}
	}
}

// TestMXFP4GgmlCorners compares with ggml's own bytes: the quantizer on
// blocks at the exponent's binade edges, subnormal and tiny amax, the
// largest floats and exact ties (MXFP4.edge.*), and the decoder on every
// exponent with every nibble (MXFP4.exp.*).
func TestMXFP4GgmlCorners(t *testing.T) {
	dir := filepath.Join("testdata", "ggml")
	verifySums(t, dir)
	c := vectorCase{Name: "MXFP4", Dir: dir}
	v := &vectorData{}
	x := v.floats(t, c, "edge.f32")
	want := v.bytes(t, c, "edge.q.bin")
	got := make([]byte, len(want))
	if err := QuantizeRow(MXFP4, x, got); err != nil {
		t.Fatal(err)
	}
	compareBlocks(t, MXFP4, "edge", got, want)

	q := v.bytes(t, c, "exp.q.bin")
	wantD := v.floats(t, c, "exp.deq.f32")
	gotD := make([]float32, len(wantD))
	if err := DequantizeRow(MXFP4, q, gotD); err != nil {
		t.Fatal(err)
	}
	for i := range gotD {
		if math.Float32bits(gotD[i]) != math.Float32bits(wantD[i]) {
			t.Fatalf("e=%d element %d: %v, ggml %v", q[i/32*17], i%32, gotD[i], wantD[i])
		}
	}
}

// TestMXFP4VecDotScales: the block scale fp16(x.d)·2^(e-128) at the
// exponent extremes, against a float64 computation (exact here: each block
// scale and integer sum is exactly representable, and one block is summed).
func TestMXFP4VecDotScales(t *testing.T) {
	w := make([]byte, 17)
	x := make([]byte, 34)
	for j := range 16 {
		w[1+j] = byte(j | (15-j)<<4)
	}
	var isum int
	levels := kvaluesMXFP4
	for j := range 32 {
		q := int8(j*7 - 100)
		x[2+j] = byte(q)
		l := levels[j%16]
		if j >= 16 {
			l = levels[31-j]
		}
		isum += int(l) * int(q)
	}
	for _, e := range []int{0, 1, 2, 100, 127, 128, 200} {
		for _, dx := range []float32{1, 0.0625, 3.5} {
			w[0] = byte(e)
			putF16le(x, dx)
			want := float32(float64(isum) * float64(dx) * math.Ldexp(1, e-128))
			if got := VecDot(MXFP4, 32, w, x); got != want {
				t.Errorf("e=%d dx=%v: VecDot %v, want %v", e, dx, got, want)
			}
		}
	}
}
