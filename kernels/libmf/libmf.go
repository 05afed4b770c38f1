// Package libmf computes the float32 functions sinf, cosf, expf and logf
// bit for bit as glibc (2.28 to 2.40) does on x86-64, and ggml's own
// vectorised e^x (ExpGGML): llama.cpp calls them
// for RoPE's cos/sin tables, sigmoid, softplus and the gated delta rule's
// decay, and a result one ulp off is, now and then, a Q8_0 activation that
// rounds the other way. The algorithms are ARM's optimized-routines ones
// that glibc ships (MIT OR Apache-2.0 WITH LLVM-exception): the arguments
// are taken to float64, reduced, evaluated with a short polynomial in
// float64 (its multiply-adds fused, as glibc's FMA variants on x86-64
// compile them) and rounded once to float32. Their coefficients and the
// log table are that code's data; the exp table and the bits of 4/π are
// computed here. Tests compare with glibc's own results (testdata).
//
// Go's math package rounds the float64 functions to float32 correctly
// rounded nearly always; glibc's float versions differ from that in about
// 1% (sin, cos), 0.1% (exp) and 1% (log) of inputs.
package libmf

import (
	"math"
	"math/big"
)

// The sine and cosine polynomials; the second set has the cosine's
// negated (quadrants 2 and 3).
var sincos = [2]struct{ c [5]float64 }{
	{[5]float64{0x1p0, -0x1.ffffffd0c621cp-2, 0x1.55553e1068f19p-5, -0x1.6c087e89a359dp-10, 0x1.99343027bf8c3p-16}},
	{[5]float64{-0x1p0, 0x1.ffffffd0c621cp-2, -0x1.55553e1068f19p-5, 0x1.6c087e89a359dp-10, -0x1.99343027bf8c3p-16}},
}

var sinPoly = [3]float64{-0x1.555545995a603p-3, 0x1.1107605230bc4p-7, -0x1.994eb3774cf24p-13}

var quadSign = [4]float64{1, -1, -1, 1}

const (
	hpiInv = 0x1.45F306DC9C883p+23 // 2/π·2^24: the quadrant lands in bits 24..31
	hpi    = 0x1.921FB54442D18p0   // π/2
	pi63   = 0x1.921FB54442D18p-62 // 2π·2^-64
	pio4   = float32(0x1.921FB6p-1)
)

// invPio4 holds the bits of 4/π, eight new bits per entry (entry i is the
// 32 bits from bit 8i−24 of 2/π), for the reduction of large arguments.
var invPio4 = func() (t [24]uint32) {
	// 2/π to 256 bits, from Machin's formula π = 16·atan(1/5) − 4·atan(1/239).
	const prec = 320
	atanInv := func(x int64) *big.Float {
		sum := new(big.Float).SetPrec(prec)
		xf := new(big.Float).SetPrec(prec).SetInt64(x)
		x2 := new(big.Float).SetPrec(prec).Mul(xf, xf)
		term := new(big.Float).SetPrec(prec).Quo(big.NewFloat(1).SetPrec(prec), xf)
		eps := new(big.Float).SetPrec(prec).SetMantExp(big.NewFloat(1), -300)
		for n := int64(1); ; n += 2 {
			q := new(big.Float).SetPrec(prec).Quo(term, new(big.Float).SetPrec(prec).SetInt64(n))
			if q.Cmp(eps) < 0 {
				break
			}
			if n%4 == 1 {
				sum.Add(sum, q)
			} else {
				sum.Sub(sum, q)
			}
			term.Quo(term, x2)
		}
		return sum
	}
	pi := new(big.Float).SetPrec(prec).Mul(big.NewFloat(16).SetPrec(prec), atanInv(5))
	pi.Sub(pi, new(big.Float).SetPrec(prec).Mul(big.NewFloat(4).SetPrec(prec), atanInv(239)))
	twoPi := new(big.Float).SetPrec(prec).Quo(big.NewFloat(2).SetPrec(prec), pi)
	for i := range t {
		v := new(big.Float).SetPrec(prec).SetMantExp(twoPi, 8*(i-3)+32)
		n, _ := v.Int(nil)
		t[i] = uint32(n.Uint64())
	}
	return t
}()

func abstop12(f float32) uint32 { return math.Float32bits(f) >> 20 & 0x7ff }

// poly is the sine (n even) or cosine (n odd) polynomial at x (x2 = x²)
// with coefficient set p.
func poly(x, x2 float64, p int, n int) float32 {
	if n&1 == 0 {
		x3 := x * x2
		s1 := math.FMA(x2, sinPoly[2], sinPoly[1])
		x7 := x3 * x2
		s := math.FMA(x3, sinPoly[0], x)
		return float32(math.FMA(x7, s1, s))
	}
	c := &sincos[p].c
	x4 := x2 * x2
	c2 := math.FMA(x2, c[4], c[3])
	c1 := math.FMA(x2, c[1], c[0])
	x6 := x4 * x2
	cc := math.FMA(x4, c[2], c1)
	return float32(math.FMA(x6, c2, cc))
}

// reduce returns x − n·π/2 in [−π/4, π/4] and the quadrant n.
func reduce(y float32) (float64, int) {
	if abstop12(y) < abstop12(120) {
		x := float64(y)
		n := (int32(x*hpiInv) + 0x800000) >> 24
		return math.FMA(-float64(n), hpi, x), int(n)
	}
	// Large: a 32×96-bit product with the bits of 4/π gives the exact
	// fixed-point remainder (2.62 bits).
	xi := math.Float32bits(y)
	arr := invPio4[(xi>>26)&15:]
	shift := (xi >> 23) & 7
	m := uint64((xi&0xffffff)|0x800000) << shift & 0xffffffff
	res0 := m * uint64(arr[0]) & 0xffffffff
	res1 := m * uint64(arr[4])
	res2 := m * uint64(arr[8])
	res0 = res2>>32 | res0<<32
	res0 += res1
	n := (res0 + 1<<61) >> 62
	res0 -= n << 62
	return float64(int64(res0)) * pi63, int(n)
}

// sincosf is sinf (cos false) or cosf (cos true).
func sincosf(y float32, cos bool) float32 {
	odd := 0
	if cos {
		odd = 1
	}
	if abstop12(y) < abstop12(pio4) {
		if abstop12(y) < abstop12(0x1p-12) {
			if cos {
				return 1
			}
			return y
		}
		x := float64(y)
		return poly(x, x*x, 0, odd)
	}
	if abstop12(y) >= abstop12(float32(math.Inf(1))) {
		return float32(math.NaN())
	}
	x, n := reduce(y)
	q := n
	if abstop12(y) >= abstop12(120) {
		q += int(math.Float32bits(y) >> 31) // the large path takes the sign here
	}
	p := 0
	if q&2 != 0 {
		p = 1
	}
	return poly(x*quadSign[q&3], x*x, p, n^odd)
}

// Sinf is glibc's sinf.
func Sinf(y float32) float32 { return sincosf(y, false) }

// Cosf is glibc's cosf.
func Cosf(y float32) float32 { return sincosf(y, true) }

// expTab[i] is the bits of 2^(i/32), correctly rounded, minus i<<47, so
// that adding k<<47 for k ≡ i mod 32 makes 2^(k/32).
var expTab = func() (t [32]uint64) {
	// 2^(1/2^j) by repeated square roots at 200 bits, then products.
	const prec = 200
	var roots [5]*big.Float
	r := big.NewFloat(2).SetPrec(prec)
	for j := range roots {
		r = new(big.Float).SetPrec(prec).Sqrt(r)
		roots[j] = r // 2^(1/2^(j+1))
	}
	for i := range t {
		v := big.NewFloat(1).SetPrec(prec)
		for j := range 5 {
			if i>>(4-j)&1 != 0 {
				v.Mul(v, roots[j])
			}
		}
		f, _ := v.Float64()
		t[i] = math.Float64bits(f) - uint64(i)<<47
	}
	return t
}()

const (
	expInvLn2N = 0x1.71547652b82fep+0 * 32
	expShift   = 0x1.8p+52
	expC0      = 0x1.c6af84b912394p-5 / 32 / 32 / 32
	expC1      = 0x1.ebfce50fac4f3p-3 / 32 / 32
	expC2      = 0x1.62e42ff0c52d6p-1 / 32
)

// Expf is glibc's expf.
func Expf(x float32) float32 {
	if abstop12(x) >= abstop12(88) {
		switch {
		case math.IsInf(float64(x), -1):
			return 0
		case math.IsNaN(float64(x)) || math.IsInf(float64(x), 1):
			return x + x
		case x > 0x1.62e42ep6:
			return float32(math.Inf(1))
		case x < -0x1.9fe368p6:
			return 0
		}
	}
	z := float64(expInvLn2N * float64(x)) // unfused: glibc adds the shift apart
	kd := z + expShift
	ki := math.Float64bits(kd)
	kd -= expShift
	r := z - kd
	s := math.Float64frombits(expTab[ki%32] + ki<<47)
	zz := math.FMA(expC0, r, expC1)
	r2 := r * r
	y := math.FMA(expC2, r, 1)
	y = math.FMA(zz, r2, y)
	return float32(y * s)
}

// logTab: per subinterval of [0x3f330000, 2·0x3f330000) 1/c and log(c).
var logTab = [16][2]float64{
	{0x1.661ec79f8f3bep+0, -0x1.57bf7808caadep-2},
	{0x1.571ed4aaf883dp+0, -0x1.2bef0a7c06ddbp-2},
	{0x1.49539f0f010bp+0, -0x1.01eae7f513a67p-2},
	{0x1.3c995b0b80385p+0, -0x1.b31d8a68224e9p-3},
	{0x1.30d190c8864a5p+0, -0x1.6574f0ac07758p-3},
	{0x1.25e227b0b8eap+0, -0x1.1aa2bc79c81p-3},
	{0x1.1bb4a4a1a343fp+0, -0x1.a4e76ce8c0e5ep-4},
	{0x1.12358f08ae5bap+0, -0x1.1973c5a611cccp-4},
	{0x1.0953f419900a7p+0, -0x1.252f438e10c1ep-5},
	{0x1p+0, 0x0p+0},
	{0x1.e608cfd9a47acp-1, 0x1.aa5aa5df25984p-5},
	{0x1.ca4b31f026aap-1, 0x1.c5e53aa362eb4p-4},
	{0x1.b2036576afce6p-1, 0x1.526e57720db08p-3},
	{0x1.9c2d163a1aa2dp-1, 0x1.bc2860d22477p-3},
	{0x1.886e6037841edp-1, 0x1.1058bc8a07ee1p-2},
	{0x1.767dcf5534862p-1, 0x1.4043057b6ee09p-2},
}

const (
	logLn2 = 0x1.62e42fefa39efp-1
	logA0  = -0x1.00ea348b88334p-2
	logA1  = 0x1.5575b0be00b6ap-2
	logA2  = -0x1.ffffef20a4123p-2
	logOff = 0x3f330000
)

// Logf is glibc's logf.
func Logf(x float32) float32 {
	ix := math.Float32bits(x)
	if ix == 0x3f800000 {
		return 0
	}
	if ix-0x00800000 >= 0x7f800000-0x00800000 {
		switch {
		case ix*2 == 0:
			return float32(math.Inf(-1))
		case ix == 0x7f800000:
			return x
		case ix&0x80000000 != 0 || ix*2 >= 0xff000000:
			return float32(math.NaN())
		}
		ix = math.Float32bits(x*0x1p23) - 23<<23 // subnormal: normalize
	}
	tmp := ix - logOff
	i := (tmp >> 19) % 16
	k := int32(tmp) >> 23
	iz := ix - tmp&(0x1ff<<23)
	invc, logc := logTab[i][0], logTab[i][1]
	z := float64(math.Float32frombits(iz))
	r := math.FMA(z, invc, -1)
	y0 := math.FMA(float64(k), logLn2, logc)
	r2 := r * r
	y := math.FMA(logA1, r, logA2)
	y = math.FMA(logA0, r2, y)
	y = math.FMA(y, r2, y0+r)
	return float32(y)
}

// FMA32 returns a·b + c rounded once to float32, as an FMA instruction does
// (the product of two float32s is exact in float64; where the float64 sum
// lies exactly halfway between two float32s its exact remainder, by
// TwoSum, moves it one float64 ulp toward the exact value before the
// rounding to float32). quant.FMA32 is the same function for package quant,
// which imports nothing.
func FMA32(a, b, c float32) float32 {
	p := float64(float64(a) * float64(b)) // exact; the conversion keeps it unfused
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

// ExpGGML is e^x as ggml_v_expf computes it on AVX-512 (its soft_max's and
// silu's exponential), bit for bit: x = n·ln2 + b with n rounded by the
// 1.5·2^23 trick, ln2 in two parts, a degree-5 polynomial in b in the FMA
// order below, scaled by 2^n; 0 below n = −192 and +Inf above 192. Within
// 1.5 ulp of e^x.
func ExpGGML(x float32) float32 {
	const r = 0x1.8p23
	z := FMA32(x, 0x1.715476p+0, r)
	n := z - r
	if n > 192 {
		return float32(math.Inf(1))
	}
	if n < -192 {
		return 0
	}
	b := FMA32(-n, 0x1.7f7d1cp-20, FMA32(-n, 0x1.62e4p-1, x))
	u := b * b
	j := FMA32(FMA32(FMA32(0x1.0e4020p-7, b, 0x1.573e2ep-5), u,
		FMA32(0x1.555e66p-3, b, 0x1.fffdb6p-2)), u,
		FMA32(0x1.ffffecp-1, b, 1))
	// scalef: j·2^n, exact in float64, rounded once (subnormals included).
	return float32(math.Ldexp(float64(j), int(n)))
}

// Tanhf is glibc's tanhf (fdlibm's, through expm1f; float32 arithmetic
// throughout): what ggml_tanh, and so Gemma's soft-caps, compute. Go's
// correctly rounded float64 tanh differs from it in one input of seven.
func Tanhf(x float32) float32 {
	jx := math.Float32bits(x)
	ix := jx & 0x7fffffff
	var z float32
	switch {
	case ix >= 0x7f800000: // Inf or NaN
		if jx>>31 == 0 {
			return 1/x + 1
		}
		return 1/x - 1
	case ix >= 0x41b00000: // |x| ≥ 22
		z = 1
	case ix == 0:
		return x
	case ix < 0x24000000: // |x| < 2^-55
		return float32(x * (1 + x))
	case ix >= 0x3f800000: // |x| ≥ 1
		t := expm1f(2 * abs32(x))
		z = 1 - 2/(t+2)
	default:
		t := expm1f(-2 * abs32(x))
		z = -t / (t + 2)
	}
	if jx>>31 != 0 {
		return -z
	}
	return z
}

func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// expm1f is glibc's (fdlibm's) expm1f: e^x − 1 in float32 arithmetic, the
// argument reduced by k·ln2 (ln2 in two parts), a rational approximation,
// then the exponent added in.
func expm1f(x float32) float32 {
	const (
		lnHi   = float32(6.9313812256e-01) // 0x3f317180
		lnLo   = float32(9.0580006145e-06) // 0x3717f7d1
		invLn2 = float32(1.4426950216e+00) // 0x3fb8aa3b
		q1     = float32(-3.3333335072e-02)
		q2     = float32(1.5873016091e-03)
		q3     = float32(-7.9365076090e-05)
		q4     = float32(4.0082177293e-06)
		q5     = float32(-2.0109921195e-07)
	)
	hx := math.Float32bits(x)
	neg := hx>>31 != 0
	hx &= 0x7fffffff
	if hx >= 0x4195b844 { // |x| ≥ 27·ln2
		if hx >= 0x42b17218 {
			if hx > 0x7f800000 {
				return x + x
			}
			if hx == 0x7f800000 {
				if neg {
					return -1
				}
				return x
			}
			if x > 8.8721679688e+01 {
				return float32(math.Inf(1))
			}
		}
		if neg {
			return -1
		}
	}
	var k int32
	var c float32
	switch {
	case hx > 0x3eb17218: // |x| > ln2/2
		var hi, lo float32
		if hx < 0x3F851592 { // and < 1.5·ln2
			if !neg {
				hi, lo, k = x-lnHi, lnLo, 1
			} else {
				hi, lo, k = x+lnHi, -lnLo, -1
			}
		} else {
			half := float32(0.5)
			if neg {
				half = -0.5
			}
			k = int32(float32(invLn2*x) + half)
			t := float32(k)
			hi = x - float32(t*lnHi) // exact here
			lo = t * lnLo
		}
		x = hi - lo
		c = (hi - x) - lo
	case hx < 0x33000000: // |x| < 2^-25
		return x
	}
	// Every product is converted before its add: Go fuses a·b + c on
	// some targets, glibc (baseline x86-64) does not.
	hfx := 0.5 * x
	hxs := x * hfx
	p := q4 + float32(hxs*q5)
	p = q3 + float32(hxs*p)
	p = q2 + float32(hxs*p)
	p = q1 + float32(hxs*p)
	r1 := 1 + float32(hxs*p)
	t := 3 - float32(r1*hfx)
	e := hxs * ((r1 - t) / (6 - float32(x*t)))
	if k == 0 {
		return x - (float32(x*e) - hxs)
	}
	e = float32(x*(e-c)) - c
	e -= hxs
	switch {
	case k == -1:
		return float32(0.5*(x-e)) - 0.5
	case k == 1:
		if x < -0.25 {
			return -2 * (e - (x + 0.5))
		}
		return 1 + float32(2*(x-e))
	case k <= -2 || k > 56:
		y := 1 - (e - x)
		y = math.Float32frombits(math.Float32bits(y) + uint32(k)<<23)
		return y - 1
	case k < 23:
		t := math.Float32frombits(0x3f800000 - (0x1000000 >> k)) // 1 − 2^-k
		y := t - (e - x)
		return math.Float32frombits(math.Float32bits(y) + uint32(k)<<23)
	}
	t = math.Float32frombits(uint32(0x7f-k) << 23) // 2^-k
	y := x - (e + t)
	y += 1
	return math.Float32frombits(math.Float32bits(y) + uint32(k)<<23)
}
