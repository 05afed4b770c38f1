package cpu

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hearth-llm/hearth/quant"
)

// dotTypes are the weight types with a dot product, as MatMul uses them.
var dotTypes = []quant.Type{quant.F16, quant.BF16, quant.Q4_0, quant.Q4_1, quant.Q5_0, quant.Q5_1, quant.Q8_0,
	quant.Q2_K, quant.Q3_K, quant.Q4_K, quant.Q5_K, quant.Q6_K, quant.IQ4_NL, quant.IQ4_XS, quant.MXFP4}

// scaleFields lists, per block type, the byte offsets of its float fields:
// fp16 unless the type is Q8_K (a float32 d at 0). Random blocks get finite
// values there; the magnitude bound splits the value of an element into its
// scale part (the "d" fields, first) and offset part (the min fields).
// MXFP4's scale is a one-byte exponent instead (mxfp4Exponents).
var scaleFields = map[quant.Type]struct{ d, min []int }{
	quant.Q4_0:   {[]int{0}, nil},
	quant.Q4_1:   {[]int{0}, []int{2}},
	quant.Q5_0:   {[]int{0}, nil},
	quant.Q5_1:   {[]int{0}, []int{2}},
	quant.Q8_0:   {[]int{0}, nil},
	quant.Q8_1:   {[]int{0, 2}, nil},
	quant.Q2_K:   {[]int{80}, []int{82}},
	quant.Q3_K:   {[]int{108}, nil},
	quant.Q4_K:   {[]int{0}, []int{2}},
	quant.Q5_K:   {[]int{0}, []int{2}},
	quant.Q6_K:   {[]int{208}, nil},
	quant.Q8_K:   {[]int{0}, nil},
	quant.IQ4_NL: {[]int{0}, nil},
	quant.IQ4_XS: {[]int{0}, nil},
}

func putF16(b []byte, f float32) { binary.LittleEndian.PutUint16(b, quant.F32ToF16(f)) }

// randScale is a finite scale spread over a few binades, either sign.
func randScale(r *rand.Rand) float32 {
	return float32(r.NormFloat64()) * float32(math.Ldexp(1, r.IntN(8)-10))
}

// dataMode is how a test row is made.
type dataMode int

const (
	modeQuantized dataMode = iota // quant.QuantizeRow of normal floats
	modeRandom                    // random bytes, finite random scales
	modeExtreme                   // extreme quants: all bits set / -128, large scales
	numModes
)

func (m dataMode) String() string { return [...]string{"quantized", "random", "extreme"}[m] }

// makeRow returns n elements of type t made as mode says.
func makeRow(r *rand.Rand, t quant.Type, n int, mode dataMode, alt bool) []byte {
	rb, err := t.RowBytes(n)
	if err != nil {
		panic(err)
	}
	b := make([]byte, rb)
	switch {
	case mode == modeQuantized:
		x := randVec(r, n)
		if err := quant.QuantizeRow(t, x, b); err != nil {
			panic(err)
		}
		return b
	case t == quant.MXFP4:
		for i := range b {
			b[i] = byte(r.Uint32())
			if mode == modeExtreme {
				b[i] = 0xff // level -12
			}
		}
		mxfp4Exponents(r, b, mode)
		return b
	case t == quant.F16 || t == quant.BF16:
		for i := 0; i < n; i++ {
			v := float32(r.NormFloat64())
			if mode == modeExtreme {
				v = float32(math.Copysign(60000, float64(v))) / 64
			}
			h := quant.F32ToF16(v)
			if t == quant.BF16 {
				h = quant.F32ToBF16(v)
			}
			binary.LittleEndian.PutUint16(b[2*i:], h)
		}
		return b
	}
	for i := range b {
		b[i] = byte(r.Uint32())
		if mode == modeExtreme {
			// All bits set: nibbles 15, 6-bit quants 63, int8 -1; or, for the
			// activations and Q8_0 weights, -128 (alt) and -128/127.
			b[i] = 0xff
			if t == quant.Q8_0 || t == quant.Q8_1 || t == quant.Q8_K {
				b[i] = 0x80
				if alt && i%2 == 1 {
					b[i] = 0x7f
				}
			}
		}
	}
	bs, bb := t.BlockSize(), t.BlockBytes()
	f := scaleFields[t]
	for blk := 0; blk < n/bs; blk++ {
		o := blk * bb
		for _, p := range append(append([]int(nil), f.d...), f.min...) {
			s := randScale(r)
			if mode == modeExtreme {
				s = float32(math.Copysign(1, float64(s)))
			}
			if t == quant.Q8_K {
				binary.LittleEndian.PutUint32(b[o+p:], math.Float32bits(s))
			} else {
				putF16(b[o+p:], s)
			}
		}
		if t == quant.Q8_K { // bsums must be the sums of the quants
			for g := range 16 {
				s := 0
				for _, q := range b[o+4+16*g : o+4+16*g+16] {
					s += int(int8(q))
				}
				binary.LittleEndian.PutUint16(b[o+260+2*g:], uint16(int16(s)))
			}
		}
	}
	return b
}

// mxfp4Exponents gives each MXFP4 block of b an exponent: d = 2^(e-128)
// over the binades randScale uses, one block in eight with a subnormal d
// (e = 0, 1) or the smallest normal one (e = 2), and d = 1 (e = 128) for
// extreme data. (Exponents near 255 overflow to ±Inf or NaN in every
// variant, which a tolerance cannot compare.)
func mxfp4Exponents(r *rand.Rand, b []byte, mode dataMode) {
	for o := 0; o < len(b); o += 17 {
		e := 118 + r.IntN(8)
		switch {
		case mode == modeExtreme:
			e = 128
		case r.IntN(8) == 0:
			e = r.IntN(3)
		}
		b[o] = byte(e)
	}
}

// dotMag bounds the magnitudes the float32 arithmetic of any variant works
// with: Σ (|scale part| + |offset part|)·|x| over the elements, plus, for
// Q8_1 activations, Σ |m·s| over the blocks. The scale and offset parts are
// the element values decoded with the min fields zeroed and with the d
// fields zeroed.
func dotMag(t quant.Type, n int, w, x []byte) float64 {
	vt := t.VecDotType()
	xd := make([]float32, n)
	if err := quant.DequantizeRow(vt, x, xd); err != nil {
		panic(err)
	}
	if t == quant.F16 || t == quant.BF16 || t == quant.MXFP4 { // no offset part
		wd := make([]float32, n)
		quant.DequantizeRow(t, w, wd)
		var m float64
		for i := range wd {
			m += math.Abs(float64(wd[i]) * float64(xd[i]))
		}
		return m
	}
	bs, bb := t.BlockSize(), t.BlockBytes()
	f := scaleFields[t]
	part := func(zero []int) []float32 {
		c := append([]byte(nil), w...)
		for blk := 0; blk < n/bs; blk++ {
			for _, p := range zero {
				c[blk*bb+p], c[blk*bb+p+1] = 0, 0
			}
		}
		d := make([]float32, n)
		if err := quant.DequantizeRow(t, c, d); err != nil {
			panic(err)
		}
		return d
	}
	a, o := part(f.min), part(f.d)
	var m float64
	for i := range a {
		m += (math.Abs(float64(a[i])) + math.Abs(float64(o[i]))) * math.Abs(float64(xd[i]))
	}
	if vt == quant.Q8_1 {
		for blk := 0; blk < n/32; blk++ {
			mw := quant.F16ToF32(binary.LittleEndian.Uint16(w[blk*bb+2:]))
			sx := quant.F16ToF32(binary.LittleEndian.Uint16(x[blk*36+2:]))
			m += math.Abs(float64(mw) * float64(sx))
		}
	}
	return m
}

// TestDotVariants runs every variant of every type against the generic
// kernel (quant.VecDot) on 1..maxBlocks blocks (and a long row), three kinds
// of data and unaligned offsets, each row placed at the end of readable
// memory so that a read past it faults. The four-row kernel must give the
// one-row kernel's bits for every row.
//
// Tolerance: |got − want| ≤ 1e-5·mag, mag the sum of the magnitudes of the
// terms (dotMag). Both sides are exact integer sums scaled and added in
// float32 (the generic F16/BF16 sums exact products in float64): each of the
// at most a few hundred roundings is ≤ 2^-24 of a partial sum ≤ mag, and
// the errors of long rows grow like a random walk, well inside 1e-5 (the
// worst seen is below 1e-6).
func TestDotVariants(t *testing.T) {
	r := rand.New(rand.NewPCG(11, 12))
	for _, typ := range dotTypes {
		vs := variants(typ)
		if len(vs) == 0 || vs[0].name != "generic" {
			t.Fatalf("%v: variants %v lack the generic one first", typ, vs)
		}
		bs := typ.BlockSize()
		if bs == 1 {
			bs = 16 // F16, BF16: lengths in steps of 16 and odd tails below
		}
		lengths := []int{}
		maxBlocks := 9
		if bs == 256 {
			maxBlocks = 5
		}
		for k := 1; k <= maxBlocks; k++ {
			lengths = append(lengths, k*bs)
		}
		lengths = append(lengths, 4096)
		if bs == 32 {
			lengths = append(lengths, 150*bs) // several chunks of prepared activations
		}
		if typ.BlockSize() == 1 {
			lengths = append(lengths, 1, 3, 7, 15, 33, 127)
		}
		for _, v := range vs[1:] {
			t.Run(fmt.Sprintf("%v/%s", typ, v.name), func(t *testing.T) {
				var worst float64
				for _, n := range lengths {
					for mode := range numModes {
						for rep := range 3 {
							alt := rep%2 == 1
							w := makeRow(r, typ, n, mode, alt)
							x := makeRow(r, typ.VecDotType(), n, mode, alt)
							gw, gx := guarded(t, w), guarded(t, x)
							want := float64(vs[0].dot(n, w, x))
							got := v.dot(n, gw, gx)
							mag := dotMag(typ, n, w, x)
							diff := math.Abs(float64(got) - want)
							if diff > 1e-5*mag || math.IsNaN(float64(got)) {
								t.Fatalf("n=%d %v rep %d: got %v, want %v (diff %.3g of magnitude %.3g)", n, mode, rep, got, want, diff, mag)
							}
							if mag > 0 {
								worst = max(worst, diff/mag)
							}
							checkDot4(t, typ, v, n, w, x, r, got)
						}
					}
				}
				t.Logf("worst relative error %.3g", worst)
			})
		}
	}
}

// checkDot4 places w as row 0..3 of a four-row block (the other rows
// random) and checks each output equals the one-row kernel's bits, and that
// nothing is written around dst.
func checkDot4(t *testing.T, typ quant.Type, v namedDot, n int, w, x []byte, r *rand.Rand, row0 float32) {
	t.Helper()
	rb := len(w)
	stride := rb + 7*r.IntN(2) // padded rows too
	buf := make([]byte, 3*stride+rb)
	for i := range 4 {
		src := w
		if i > 0 {
			src = makeRow(r, typ, n, modeRandom, false)
		}
		copy(buf[i*stride:], src)
	}
	g := guarded(t, buf)
	var out [6]float32
	out[0], out[5] = 12345, 12345
	v.dot4(n, g, stride, x, (*[4]float32)(out[1:5]))
	if out[0] != 12345 || out[5] != 12345 {
		t.Fatal("dot4 wrote outside dst")
	}
	for i := range 4 {
		want := v.dot(n, buf[i*stride:i*stride+rb], x)
		if math.Float32bits(out[1+i]) != math.Float32bits(want) {
			t.Fatalf("n=%d: dot4 row %d = %v, one-row kernel %v", n, i, out[1+i], want)
		}
	}
	if math.Float32bits(out[1]) != math.Float32bits(row0) {
		t.Fatalf("n=%d: dot4 row 0 = %v, one-row kernel %v", n, out[1], row0)
	}
}

// TestDotZeroLength: n = 0 reads nothing and gives 0.
func TestDotZeroLength(t *testing.T) {
	for _, typ := range dotTypes {
		for _, v := range variants(typ) {
			if got := v.dot(0, nil, nil); got != 0 {
				t.Errorf("%v/%s: dot of nothing = %v", typ, v.name, got)
			}
		}
	}
}

// TestDotPanics: bad lengths panic like quant.VecDot.
func TestDotPanics(t *testing.T) {
	for _, typ := range dotTypes {
		for _, v := range variants(typ) {
			bs := typ.BlockSize()
			w := make([]byte, typ.BlockBytes())
			x := make([]byte, typ.VecDotType().BlockBytes())
			for _, c := range []struct {
				name string
				n    int
				w, x []byte
			}{{"short w", 2 * bs, w, append(x, x...)}, {"short x", 2 * bs, append(w, w...), x}, {"negative", -bs, w, x}} {
				func() {
					defer func() {
						if recover() == nil {
							t.Errorf("%v/%s: %s did not panic", typ, v.name, c.name)
						}
					}()
					v.dot(c.n, c.w, c.x)
				}()
			}
		}
	}
}

// TestQuantizeActVariants checks every activation quantizer byte for byte
// against quant.QuantizeAct (ggml's x86 from_float): normal data, exact rounding ties (x·(1/d) =
// k+0.5), tiny and huge scales, zero blocks, a single non-zero, and the
// largest magnitude present with both signs (the first one decides).
func TestQuantizeActVariants(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, typ := range []quant.Type{quant.Q8_0, quant.Q8_1, quant.Q8_K} {
		vs := quantVariants(typ)
		if len(vs) == 0 || vs[0].name != "generic" {
			t.Fatalf("%v: no generic quantizer first", typ)
		}
		bs := typ.BlockSize()
		for _, v := range vs[1:] {
			t.Run(fmt.Sprintf("%v/%s", typ, v.name), func(t *testing.T) {
				for c := range 12 {
					for _, nb := range []int{1, 2, 3, 8} {
						n := nb * bs
						x := make([]float32, n)
						for i := range x {
							switch c {
							case 0, 1:
								x[i] = float32(r.NormFloat64())
							case 2: // ties: amax 127 gives d = 1, id = 1
								x[i] = float32(r.IntN(254)-127) + 0.5
							case 3: // ties at other scales
								x[i] = (float32(r.IntN(254)-127) + 0.5) * 0.125
							case 4:
								x[i] = float32(r.NormFloat64() * 1e-7) // d is an fp16 subnormal
							case 5:
								x[i] = float32(r.NormFloat64() * 1e5) // d overflows fp16
							case 6: // zero blocks
							case 7:
								if i%bs == 5 {
									x[i] = -3
								}
							case 8: // ±max both present, either first
								x[i] = float32(r.NormFloat64())
								if i%bs == 9 {
									x[i] = 7
								} else if i%bs == 20 {
									x[i] = -7
								}
							case 9:
								x[i] = float32(r.NormFloat64())
								if i%bs == 9 {
									x[i] = -7
								} else if i%bs == 20 {
									x[i] = 7
								}
							case 10: // near-ties just below and above a half
								x[i] = math.Nextafter32(float32(r.IntN(254)-127)+0.5, float32(2*r.IntN(2)-1)*1000)
							case 11: // integers, the max at 127
								x[i] = float32(r.IntN(255) - 127)
							}
						}
						if c == 2 || c == 3 || c == 10 || c == 11 {
							for b := 0; b < nb; b++ {
								x[b*bs+3] = 127 * map[bool]float32{true: 0.125, false: 1}[c == 3]
							}
						}
						rb, _ := typ.RowBytes(n)
						want := make([]byte, rb)
						if err := quant.QuantizeAct(typ, x, want); err != nil {
							t.Fatal(err)
						}
						off := c % 4
						buf := make([]byte, rb+off+8)
						got := buf[off : off+rb]
						for i := range buf {
							buf[i] = 0xa5
						}
						xs := make([]float32, n+1)[1:] // unaligned by 4
						copy(xs, x)
						v.fn(xs, got)
						for i := range want {
							if got[i] != want[i] {
								t.Fatalf("case %d, %d blocks: byte %d (block %d, offset %d) = %#x, want %#x", c, nb, i, i/typ.BlockBytes(), i%typ.BlockBytes(), got[i], want[i])
							}
						}
						for _, g := range buf[off+rb:] {
							if g != 0xa5 {
								t.Fatal("quantizer wrote past dst")
							}
						}
					}
				}
			})
		}
	}
}

func TestChooseLevel(t *testing.T) {
	for _, c := range []struct {
		best level
		env  string
		want level
	}{
		{levelAVX512, "", levelAVX512},
		{levelAVX512, "avx2", levelAVX2},
		{levelAVX512, "GENERIC", levelGeneric},
		{levelAVX2, "avx512", levelAVX2},
		{levelAVX2, "avx512vnni", levelAVX2},
		{levelAVX512, "bogus", levelAVX512},
		{levelAMX, "", levelAMX},
		{levelAMX, "avx512", levelAVX512},
		{levelAMX, "AMX", levelAMX},
		{levelAVX512, "amx", levelAVX512},
		{levelGeneric, "avx2", levelGeneric},
	} {
		if got := chooseLevel(c.best, c.env); got != c.want {
			t.Errorf("chooseLevel(%v, %q) = %v, want %v", c.best, c.env, got, c.want)
		}
	}
	if Level() != activeLevel.String() {
		t.Errorf("Level() = %q", Level())
	}
	for _, typ := range dotTypes {
		if DotLevel(typ) == "none" {
			t.Errorf("%v has no dot kernel", typ)
		}
	}
}

// TestMatMulBatchInvariant checks, for every type and variant, that a
// token's outputs are bit-identical whether it is multiplied alone or with
// 69 others (crossing the token tile), with 1 and 2 threads and a row count
// that leaves a tail after the four-row groups.
func TestMatMulBatchInvariant(t *testing.T) {
	r := rand.New(rand.NewPCG(21, 22))
	const rows, cols, n = 37, 512, 70
	for _, typ := range dotTypes {
		m := quantizeMatrix(t, r, typ, rows, cols)
		x := randVec(r, n*cols)
		for _, v := range variants(typ) {
			mm := *m
			mm.dot, mm.dot4, mm.gemm = v.dot, v.dot4, v.gemm
			mm.quant = quantVariantAt(typ.VecDotType(), v.name)
			for _, threads := range []int{1, 2} {
				p := NewPool(threads)
				var s Scratch
				all := make([]float32, n*rows)
				MatMul(p, &s, all, &mm, x, n)
				one := make([]float32, rows)
				for tok := 0; tok < n; tok += 7 {
					MatMul(p, &s, one, &mm, x[tok*cols:(tok+1)*cols], 1)
					for row := range one {
						if math.Float32bits(one[row]) != math.Float32bits(all[tok*rows+row]) {
							t.Fatalf("%v/%s/%d threads: token %d row %d: %v alone, %v batched", typ, v.name, threads, tok, row, one[row], all[tok*rows+row])
						}
					}
				}
				p.Close()
			}
		}
	}
}

// dotF32Ref is ggml_vec_dot_f32's arithmetic (AVX-512 build) in plain Go:
// 64 lanes of FMAs over the first n/64·64, reduced (0+2, 1+3, both, then
// the sixteen lanes halves first), the rest as rounded products added
// one by one.
func dotF32Ref(a, b []float32) float32 {
	np := len(a) &^ 63
	var sum float32
	if np > 0 {
		var acc [4][16]float32
		for i := 0; i < np; i += 64 {
			for j := range 4 {
				for l := range 16 {
					acc[j][l] = quant.FMA32(a[i+16*j+l], b[i+16*j+l], acc[j][l])
				}
			}
		}
		var x [16]float32
		for l := range x {
			x[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l])
		}
		var h [8]float32
		for i := range h {
			h[i] = x[i] + x[i+8]
		}
		sum = ((h[0] + h[4]) + (h[2] + h[6])) + ((h[1] + h[5]) + (h[3] + h[7]))
	}
	for i := np; i < len(a); i++ {
		sum += float32(a[i] * b[i])
	}
	return sum
}

// dotF32TinyRef is tinyBLAS's sum: sixteen lanes of FMAs, then reduce16.
func dotF32TinyRef(a, b []float32) float32 {
	var acc [16]float32
	for i := range a {
		acc[i%16] = quant.FMA32(a[i], b[i], acc[i%16])
	}
	var h [8]float32
	for i := range h {
		h[i] = acc[i] + acc[i+8]
	}
	return ((h[0] + h[4]) + (h[2] + h[6])) + ((h[1] + h[5]) + (h[3] + h[7]))
}

// TestDotF32: DotF32 and dotF32Tiny (their AVX2 loops where the CPU has
// them) give ggml's sums bit for bit, at every length around the lane
// groups.
func TestDotF32(t *testing.T) {
	r := rand.New(rand.NewPCG(5, 6))
	for n := range 300 {
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i], b[i] = float32(r.NormFloat64()), float32(r.NormFloat64()*100)
		}
		if got, want := DotF32(a, b), dotF32Ref(a, b); math.Float32bits(got) != math.Float32bits(want) {
			t.Fatalf("n %d: %v, want %v", n, got, want)
		}
		if n%16 == 0 {
			if got, want := dotF32Tiny(a, b), dotF32TinyRef(a, b); math.Float32bits(got) != math.Float32bits(want) {
				t.Fatalf("tiny n %d: %v, want %v", n, got, want)
			}
		}
	}
}
