package quant

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// randomRow returns n standard-normal values times scale, with a few
// outliers (as in the shared vectors) that give some blocks a large scale.
func randomRow(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	for range max(1, n/200) {
		s := 6 + 10*rng.Float64()
		if rng.IntN(2) == 0 {
			s = -s
		}
		x[rng.IntN(n)] = float32(s * scale)
	}
	return x
}

// subGrid is one group of elements that share their representable values.
type subGrid struct {
	first, n int       // element range within the block
	levels   []float64 // every value the group can decode to
	slop     float64   // allowed excess over the distance to the nearest level
}

// grids decodes the scales of one block of a quantized type and returns
// the representable values of each group of its elements. The slop allows
// for quantizers that pick quants with the float32 scale and then store it
// rounded to fp16, which moves the chosen and the best level each by up to
// qmax times the rounding error of the scale.
func grids(t Type, b []byte) []subGrid {
	lin := func(first, n int, d, m float64, lo, hi int) subGrid {
		g := subGrid{first: first, n: n}
		for q := lo; q <= hi; q++ {
			g.levels = append(g.levels, d*float64(q)+m)
		}
		span := math.Abs(d)*float64(max(-lo, hi)) + math.Abs(m)
		g.slop = 1e-6 * span // float32 arithmetic only
		return g
	}
	// nl is an IQ4 group with scale d = mult*d16, d16 a stored fp16.
	nl := func(first, n int, d16 float64, mult int) subGrid {
		g := subGrid{first: first, n: n}
		d := d16 * float64(mult)
		for _, v := range kvaluesIQ4NL {
			g.levels = append(g.levels, d*float64(v))
		}
		g.slop = 2*127*math.Abs(float64(mult))*fp16Err(d16) + 1e-6*127*math.Abs(d)
		return g
	}
	f16 := func(o int) float64 { return float64(f16le(b[o:])) }
	withFP16Scale := func(g subGrid, d, m float64, qmax int) subGrid {
		g.slop += 2*float64(qmax)*fp16Err(d) + 2*fp16Err(m)
		return g
	}
	switch t {
	case Q4_0:
		return []subGrid{withFP16Scale(lin(0, 32, f16(0), 0, -8, 7), f16(0), 0, 8)}
	case Q4_1:
		return []subGrid{withFP16Scale(lin(0, 32, f16(0), f16(2), 0, 15), f16(0), f16(2), 15)}
	case Q5_0:
		return []subGrid{withFP16Scale(lin(0, 32, f16(0), 0, -16, 15), f16(0), 0, 16)}
	case Q5_1:
		return []subGrid{withFP16Scale(lin(0, 32, f16(0), f16(2), 0, 31), f16(0), f16(2), 31)}
	case Q8_0, Q8_1:
		return []subGrid{withFP16Scale(lin(0, 32, f16(0), 0, -127, 127), f16(0), 0, 127)}
	case Q8_K:
		d := float64(math.Float32frombits(binary.LittleEndian.Uint32(b)))
		return []subGrid{lin(0, 256, d, 0, -127, 127)}
	case IQ4_NL:
		return []subGrid{nl(0, 32, f16(0), 1)}
	case MXFP4: // exact levels; the errors compared are float32 roundings
		g := subGrid{first: 0, n: 32}
		d := float64(e8m0Half(b[0]))
		for _, v := range kvaluesMXFP4 {
			g.levels = append(g.levels, d*float64(v))
		}
		g.slop = 1e-6 * 12 * d
		return []subGrid{g}
	case Q2_K:
		var gs []subGrid
		for j := range 16 {
			gs = append(gs, lin(16*j, 16, f16(80)*float64(b[j]&0xf), -f16(82)*float64(b[j]>>4), 0, 3))
		}
		return gs
	case Q3_K:
		var sc [16]int8
		q3Scales((*[12]byte)(b[96:]), &sc)
		var gs []subGrid
		for j := range 16 {
			gs = append(gs, lin(16*j, 16, f16(108)*float64(sc[j]), 0, -4, 3))
		}
		return gs
	case Q4_K, Q5_K:
		qmax := 15
		if t == Q5_K {
			qmax = 31
		}
		var gs []subGrid
		for j := range 8 {
			sc, m := scaleMinK4(j, (*[12]byte)(b[4:]))
			gs = append(gs, lin(32*j, 32, f16(0)*float64(sc), -f16(2)*float64(m), 0, qmax))
		}
		return gs
	case Q6_K:
		var gs []subGrid
		for j := range 16 {
			gs = append(gs, lin(16*j, 16, f16(208)*float64(int8(b[192+j])), 0, -32, 31))
		}
		return gs
	case IQ4_XS:
		var gs []subGrid
		for ib := range 8 {
			gs = append(gs, nl(32*ib, 32, f16(0), iq4xsScale((*[136]byte)(b), ib)))
		}
		return gs
	}
	return nil
}

// fp16Err bounds the error of rounding a float32 to v, a binary16: half an
// ulp, 2^-11 relative for normals, 2^-25 absolute in the subnormal range.
func fp16Err(v float64) float64 {
	return math.Max(0x1p-11*math.Abs(v), 0x1p-25)
}

// qualityLimits bound the round-trip error on randomRow data. worst is the
// largest error relative to the largest magnitude in its block and follows
// from the level spacing: half a step (Q8_0: 0.5/127 of amax; Q5_1: amax/31,
// half of a step of up to 2amax/31), one full step where the value of
// largest magnitude takes the extreme level and its opposite is clipped
// (Q4_0: amax/8, Q5_0: amax/16), plus the fp16 rounding of the scale, which
// at the smallest test scale (1e-3) is subnormal. For the K-quants and IQ4
// the scales are themselves quantized, so the limits sit above the measured
// values (Q2_K 0.32, Q3_K 0.15, Q4_K 0.081, Q5_K 0.033, Q6_K 0.016, IQ4_NL
// 0.089, IQ4_XS 0.097). MXFP4's block exponent puts amax in [8, 16)·d with
// levels 8d and 12d at the top, so amax just under 16d decodes to 12d: the
// worst error approaches amax/4 (0.215 measured). rms is the RMS error relative to the RMS of the
// data, dominated by the outlier blocks: a regression bound set 25% above
// the value measured on this seeded data.
var qualityLimits = map[Type]struct{ rms, worst float64 }{
	F16:    {0.0003, 0x1p-11},
	BF16:   {0.0025, 0x1p-8},
	Q8_0:   {0.011, 0.0055},
	Q8_1:   {0.013, 0.0055},
	Q8_K:   {0.023, 0.0040},
	Q6_K:   {0.032, 0.025},
	Q5_0:   {0.082, 0.07},
	Q5_1:   {0.057, 0.04},
	Q5_K:   {0.056, 0.05},
	Q4_0:   {0.21, 0.13},
	Q4_1:   {0.12, 0.075},
	Q4_K:   {0.113, 0.10},
	IQ4_NL: {0.143, 0.11},
	IQ4_XS: {0.122, 0.12},
	MXFP4:  {0.212, 0.25},
	Q3_K:   {0.245, 0.20},
	Q2_K:   {0.40, 0.40},
}

func TestRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, typ := range supportedTypes {
		if typ == F32 {
			continue
		}
		t.Run(typ.String(), func(t *testing.T) {
			lim := qualityLimits[typ]
			var sumErr2, sumX2, worstRel float64
			for _, scale := range []float64{1, 1e-3, 300} {
				bs := max(typ.BlockSize(), 32)
				for _, nb := range []int{1, 3, 16} {
					x := randomRow(rng, nb*bs, scale)
					dq := roundTrip(t, typ, x)
					rb, _ := typ.RowBytes(len(x))
					q := make([]byte, rb)
					QuantizeRow(typ, x, q)
					for blk := 0; blk < nb*bs/typ.BlockSize(); blk++ {
						bsz := typ.BlockSize()
						xb, db := x[blk*bsz:(blk+1)*bsz], dq[blk*bsz:(blk+1)*bsz]
						checkNearest(t, typ, q[blk*typ.BlockBytes():(blk+1)*typ.BlockBytes()], xb, db)
					}
					for g := 0; g < len(x); g += bs {
						var amax, worst float64
						for i := g; i < g+bs; i++ {
							e := float64(x[i]) - float64(dq[i])
							sumErr2 += e * e
							sumX2 += float64(x[i]) * float64(x[i])
							amax = math.Max(amax, math.Abs(float64(x[i])))
							worst = math.Max(worst, math.Abs(e))
						}
						worstRel = math.Max(worstRel, worst/amax)
					}
				}
			}
			rms := math.Sqrt(sumErr2 / sumX2)
			t.Logf("relative RMS error %.4f (limit %.4f), worst error / block amax %.4f (limit %.4f)", rms, lim.rms, worstRel, lim.worst)
			if rms > lim.rms {
				t.Errorf("relative RMS error %.4f over %.4f", rms, lim.rms)
			}
			if worstRel > lim.worst {
				t.Errorf("worst error %.4f of the block amax, over %.4f", worstRel, lim.worst)
			}
		})
	}
}

func roundTrip(t *testing.T, typ Type, x []float32) []float32 {
	t.Helper()
	rb, err := typ.RowBytes(len(x))
	if err != nil {
		t.Fatal(err)
	}
	q := make([]byte, rb)
	for i := range q {
		q[i] = 0xa5 // every byte must be written
	}
	if err := QuantizeRow(typ, x, q); err != nil {
		t.Fatal(err)
	}
	q2 := make([]byte, rb)
	if err := QuantizeRow(typ, x, q2); err != nil {
		t.Fatal(err)
	}
	if string(q) != string(q2) {
		t.Fatal("quantization depends on the destination's previous contents")
	}
	out := make([]float32, len(x))
	if err := DequantizeRow(typ, q, out); err != nil {
		t.Fatal(err)
	}
	for i, v := range out {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			t.Fatalf("element %d decodes to %v", i, v)
		}
	}
	return out
}

// checkNearest verifies that every element decodes to the level of its
// group nearest to the input, up to the group's slop.
func checkNearest(t *testing.T, typ Type, blk []byte, x, dq []float32) {
	t.Helper()
	if typ == F16 || typ == BF16 {
		for i := range x {
			want := F16ToF32(F32ToF16(x[i]))
			if typ == BF16 {
				want = BF16ToF32(F32ToBF16(x[i]))
			}
			if dq[i] != want {
				t.Fatalf("element %d: %v -> %v, want %v", i, x[i], dq[i], want)
			}
		}
		return
	}
	for _, g := range grids(typ, blk) {
		for i := g.first; i < g.first+g.n; i++ {
			v, got := float64(x[i]), float64(dq[i])
			best := math.Inf(1)
			for _, l := range g.levels {
				best = math.Min(best, math.Abs(v-l))
			}
			if e := math.Abs(v - got); e > best+g.slop {
				t.Fatalf("element %d: %v decodes to %v (error %.4g), but a level lies %.4g away (slop %.3g)",
					i, v, got, e, best, g.slop)
			}
		}
	}
}

func TestRoundTripSpecialBlocks(t *testing.T) {
	for _, typ := range supportedTypes {
		n := typ.BlockSize() * 2
		if n < 64 {
			n = 64
		}
		cases := map[string][]float32{
			"zeros":    make([]float32, n),
			"constant": fill(n, func(int) float32 { return 0.75 }),
			"negative": fill(n, func(int) float32 { return -3 }),
			"one spike": fill(n, func(i int) float32 {
				if i == 5 {
					return -7
				}
				return 0
			}),
			"tiny":  fill(n, func(i int) float32 { return float32(i%7-3) * 1e-30 }),
			"ramp":  fill(n, func(i int) float32 { return float32(i) - float32(n)/2 }),
			"large": fill(n, func(i int) float32 { return float32((i*37)%101-50) * 100 }),
		}
		for name, x := range cases {
			t.Run(fmt.Sprintf("%v/%s", typ, name), func(t *testing.T) {
				dq := roundTrip(t, typ, x)
				rb, _ := typ.RowBytes(len(x))
				q := make([]byte, rb)
				QuantizeRow(typ, x, q)
				bs, bb := typ.BlockSize(), typ.BlockBytes()
				if typ != F32 {
					for blk := 0; blk < len(x)/bs; blk++ {
						checkNearest(t, typ, q[blk*bb:(blk+1)*bb], x[blk*bs:(blk+1)*bs], dq[blk*bs:(blk+1)*bs])
					}
				}
				if name == "zeros" {
					for i, v := range dq {
						if v != 0 {
							t.Fatalf("zeros: element %d decodes to %v", i, v)
						}
					}
				}
			})
		}
	}
}

func fill(n int, f func(int) float32) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = f(i)
	}
	return x
}

// TestVecDotDifferential compares VecDot with a float64 dot product of the
// two decoded rows. For Q8_1 activations the exact value uses the stored
// per-block sum s (VecDot does, like ggml), which can differ from
// d*sum(q) in the last fp16 bit.
func TestVecDotDifferential(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, typ := range supportedTypes {
		t.Run(typ.String(), func(t *testing.T) {
			vdt := typ.VecDotType()
			bs := max(typ.BlockSize(), vdt.BlockSize())
			var worst float64
			for _, nb := range []int{1, 2, 5, 16} {
				n := nb * bs
				w, x := randomRow(rng, n, 1), randomRow(rng, n, 1)
				wq, xq := quantizeNew(t, typ, w), quantizeNew(t, vdt, x)
				wd, xd := dequantizeNew(t, typ, wq, n), dequantizeNew(t, vdt, xq, n)
				var ref, mag, absX float64
				var wmax float64
				for i := range n {
					ref += float64(wd[i]) * float64(xd[i])
					mag += math.Abs(float64(wd[i]) * float64(xd[i]))
					absX += math.Abs(float64(xd[i]))
					wmax = math.Max(wmax, math.Abs(float64(wd[i])))
				}
				if vdt == Q8_1 && (typ == Q4_1 || typ == Q5_1) {
					// Replace m*d_x*sum(q_x) by m*s_x in every block.
					wbb := typ.BlockBytes()
					for blk := range nb * bs / 32 {
						m := float64(f16le(wq[blk*wbb+2:]))
						xb := xq[blk*36:]
						sum := 0
						for _, v := range xb[4:36] {
							sum += int(int8(v))
						}
						ref += m * (float64(f16le(xb[2:])) - float64(f16le(xb[0:]))*float64(sum))
					}
				}
				// Float32 scaling per block, and the decoded rows' own
				// float32 rounding: a few ulps of the magnitudes involved.
				tol := 4e-6 * (mag + wmax*absX)
				got := float64(VecDot(typ, n, wq, xq))
				if d := math.Abs(got - ref); d > tol {
					t.Errorf("n=%d: VecDot = %v, exact %v (|diff| %.3g > %.3g)", n, got, ref, d, tol)
				} else {
					worst = math.Max(worst, d/(mag+wmax*absX))
				}
				// Longer slices and unaligned offsets give the same result.
				wl := append(append([]byte{1}, wq...), 0xff, 0xff)[1:]
				xl := append(append([]byte{1, 2, 3}, xq...), 0xff)[3:]
				if got2 := float64(VecDot(typ, n, wl, xl)); got2 != got {
					t.Errorf("n=%d: VecDot on longer, unaligned slices = %v, want %v", n, got2, got)
				}
			}
			t.Logf("worst |VecDot-exact| / sum|w*x| %.2g", worst)
		})
	}
}

func quantizeNew(t *testing.T, typ Type, x []float32) []byte {
	t.Helper()
	rb, err := typ.RowBytes(len(x))
	if err != nil {
		t.Fatal(err)
	}
	q := make([]byte, rb)
	if err := QuantizeRow(typ, x, q); err != nil {
		t.Fatal(err)
	}
	return q
}

func dequantizeNew(t *testing.T, typ Type, q []byte, n int) []float32 {
	t.Helper()
	out := make([]float32, n)
	if err := DequantizeRow(typ, q, out); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestNoAllocs(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, typ := range supportedTypes {
		vdt := typ.VecDotType()
		n := 512
		x := randomRow(rng, n, 1)
		wq, xq := quantizeNew(t, typ, x), quantizeNew(t, vdt, x)
		out := make([]float32, n)
		allocs := testing.AllocsPerRun(20, func() {
			VecDot(typ, n, wq, xq)
			QuantizeRow(vdt, x, xq)
			QuantizeRow(typ, x, wq)
			DequantizeRow(typ, wq, out)
		})
		if allocs != 0 {
			t.Errorf("%v: %v allocations per VecDot+QuantizeRow+DequantizeRow", typ, allocs)
		}
	}
}

// TestNonFiniteInputs: NaN, infinities and extreme magnitudes give
// unspecified bytes but must never panic or write out of bounds.
func TestNonFiniteInputs(t *testing.T) {
	nan, inf := float32(math.NaN()), float32(math.Inf(1))
	specials := []float32{nan, inf, -inf, 1e38, -1e38, 1e-40, -1e-45, 0}
	for _, typ := range supportedTypes {
		n := max(typ.BlockSize(), 32) * 2
		for _, v := range specials {
			x := fill(n, func(i int) float32 {
				if i%3 == 0 {
					return v
				}
				return float32(i%5) - 2
			})
			q := quantizeNew(t, typ, x)
			dequantizeNew(t, typ, q, n)
			xq := quantizeNew(t, typ.VecDotType(), x)
			VecDot(typ, n, q, xq)
		}
	}
}
