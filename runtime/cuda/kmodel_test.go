package cuda

// A Go model of kernels/cuda's weight-format code (quant.cuh), line for
// line: dq8 and the matvec units, with dp4a emulated. The fake driver runs
// the backend's launches through these, and the tests below hold them to
// package quant, so the index arithmetic of the units (the part of the
// kernels most likely to be wrong) is checked on the CPU. The CUDA source
// itself is checked only on a GPU (gpu_test.go).

import (
	"encoding/binary"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hearth-llm/hearth/quant"
)

func h2f(b []byte) float32 { return quant.F16ToF32(binary.LittleEndian.Uint16(b)) }
func ld32(b []byte) uint32 { return binary.LittleEndian.Uint32(b) }

// dp4a is PTX dp4a.s32.s32: c + the dot product of the signed bytes.
func dp4a(a, b uint32, c int32) int32 {
	for i := 0; i < 4; i++ {
		c += int32(int8(a>>(8*i))) * int32(int8(b>>(8*i)))
	}
	return c
}

func scaleMinK4(j int, s []byte) (int, int) {
	if j < 4 {
		return int(s[j] & 63), int(s[j+4] & 63)
	}
	return int(s[j+4]&15 | (s[j-4]>>6)<<4), int(s[j+4]>>4 | (s[j]>>6)<<4)
}

// dq8 is quant.cuh's T::dq8 for each format.
func dq8(t quant.Type, row []byte, k0, cols int, v *[8]float32) {
	switch t {
	case quant.Q4_0:
		b := row[(k0>>5)*18:]
		d := h2f(b)
		j := k0 & 31
		sh := 0
		if j >= 16 {
			sh = 4
		}
		for i := 0; i < 8; i++ {
			v[i] = float32(int(b[2+j&15+i]>>sh&15)-8) * d
		}
	case quant.Q8_0:
		b := row[(k0>>5)*34:]
		d := h2f(b)
		for i := 0; i < 8; i++ {
			v[i] = float32(int8(b[2+k0&31+i])) * d
		}
	case quant.Q4_K:
		b := row[(k0>>8)*144:]
		d, dmin := h2f(b), h2f(b[2:])
		e := k0 & 255
		k, hi, l := e>>6, (e>>5)&1, e&31
		sc, m := scaleMinK4(2*k+hi, b[4:])
		d1, m1 := d*float32(sc), dmin*float32(m)
		for i := 0; i < 8; i++ {
			v[i] = float32(d1*float32(b[16+32*k+l+i]>>(4*hi)&15)) - m1
		}
	case quant.Q6_K:
		b := row[(k0>>8)*210:]
		d := h2f(b[208:])
		e := k0 & 255
		h, g, l := e>>7, (e>>5)&3, e&31
		ql := b[64*h+32*(g&1)+l:]
		qh := b[128+32*h+l:]
		sc := b[192+8*h+2*g:]
		sh := 0
		if g >= 2 {
			sh = 4
		}
		for i := 0; i < 8; i++ {
			q := int(ql[i]>>sh&15|(qh[i]>>(2*g)&3)<<4) - 32
			v[i] = float32(d*float32(int8(sc[(l+i)>>4]))) * float32(q)
		}
	default:
		for i := 0; i < 8; i++ {
			v[i] = 0
			if k0+i < cols {
				v[i] = loadFloat(t, row, k0+i)
			}
		}
	}
}

func loadFloat(t quant.Type, row []byte, e int) float32 {
	switch t {
	case quant.F32:
		return math.Float32frombits(ld32(row[4*e:]))
	case quant.F16:
		return h2f(row[2*e:])
	case quant.BF16:
		return quant.BF16ToF32(binary.LittleEndian.Uint16(row[2*e:]))
	}
	panic("loadFloat: " + t.String())
}

// actRound is quant.cuh's L::act: activations rounded to the format of
// F16 and BF16 weights.
func actRound(t quant.Type, x float32) float32 {
	switch t {
	case quant.F16:
		return quant.F16ToF32(quant.F32ToF16(x))
	case quant.BF16:
		return quant.BF16ToF32(quant.F32ToBF16(x))
	}
	return x
}

// unit is quant.cuh's T::unit for the quantized formats: unit u of a row
// against nt activation rows (aq int8, ad a float per 32), into acc.
func unit(t quant.Type, row []byte, u int, aq []int8, ad []float32, cols, nt int, acc []float32) {
	a32 := func(tk, e int) uint32 { // the four int8 activations at element e of token tk
		i := tk*cols + e
		return uint32(uint8(aq[i])) | uint32(uint8(aq[i+1]))<<8 | uint32(uint8(aq[i+2]))<<16 | uint32(uint8(aq[i+3]))<<24
	}
	const ones = 0x01010101
	switch t {
	case quant.Q4_0:
		blk, i := u>>2, u&3
		b := row[blk*18:]
		d := h2f(b)
		q := ld32(b[2+4*i:])
		lo, hi := q&0x0F0F0F0F, (q>>4)&0x0F0F0F0F
		for tk := 0; tk < nt; tk++ {
			a0, a1 := a32(tk, blk*32+4*i), a32(tk, blk*32+16+4*i)
			s := dp4a(hi, a1, dp4a(lo, a0, 0))
			sa := dp4a(ones, a1, dp4a(ones, a0, 0))
			acc[tk] += d * ad[(tk*cols>>5)+blk] * float32(s-8*sa)
		}
	case quant.Q8_0:
		blk, i := u>>2, u&3
		b := row[blk*34:]
		d := h2f(b)
		w0, w1 := ld32(b[2+8*i:]), ld32(b[6+8*i:])
		for tk := 0; tk < nt; tk++ {
			e := blk*32 + 8*i
			s := dp4a(w1, a32(tk, e+4), dp4a(w0, a32(tk, e), 0))
			acc[tk] += d * ad[(tk*cols>>5)+blk] * float32(s)
		}
	case quant.Q4_K:
		sb, w := u>>5, u&31
		k, i := w>>3, w&7
		b := row[sb*144:]
		d, dmin := h2f(b), h2f(b[2:])
		sc0, m0 := scaleMinK4(2*k, b[4:])
		sc1, m1 := scaleMinK4(2*k+1, b[4:])
		q := ld32(b[16+32*k+4*i:])
		lo, hi := q&0x0F0F0F0F, (q>>4)&0x0F0F0F0F
		ds0, dm0, ds1, dm1 := d*float32(sc0), dmin*float32(m0), d*float32(sc1), dmin*float32(m1)
		e := sb*256 + 64*k + 4*i
		for tk := 0; tk < nt; tk++ {
			a0, a1 := a32(tk, e), a32(tk, e+32)
			da := ad[(tk*cols>>5)+(e>>5):]
			s0 := ds0*float32(dp4a(lo, a0, 0)) - dm0*float32(dp4a(ones, a0, 0))
			s1 := ds1*float32(dp4a(hi, a1, 0)) - dm1*float32(dp4a(ones, a1, 0))
			acc[tk] += da[0]*s0 + da[1]*s1
		}
	case quant.Q6_K:
		sb, w := u>>5, u&31
		h, p, l0 := w>>4, (w>>3)&1, 4*(w&7)
		b := row[sb*210:]
		d := h2f(b[208:])
		ql := ld32(b[64*h+32*p+l0:])
		qh := ld32(b[128+32*h+l0:])
		lo := ql&0x0F0F0F0F | (qh>>(2*p)&0x03030303)<<4
		hi := (ql>>4)&0x0F0F0F0F | (qh>>(2*p+4)&0x03030303)<<4
		sc := b[192+8*h+(l0>>4):]
		dlo, dhi := d*float32(int8(sc[2*p])), d*float32(int8(sc[2*p+4]))
		e := sb*256 + 128*h + 32*p + l0
		for tk := 0; tk < nt; tk++ {
			a0, a1 := a32(tk, e), a32(tk, e+64)
			da := ad[(tk*cols>>5)+(e>>5):]
			s0 := dp4a(lo, a0, 0) - 32*dp4a(ones, a0, 0)
			s1 := dp4a(hi, a1, 0) - 32*dp4a(ones, a1, 0)
			acc[tk] += da[0]*dlo*float32(s0) + da[2]*dhi*float32(s1)
		}
	default:
		panic("unit: " + t.String())
	}
}

// quantizeQ8 is matvec.cu's quantize_q8 for one block of 32.
func quantizeQ8(x []float32, q []int8) float32 {
	var amax float32
	for _, v := range x[:32] {
		amax = max(amax, float32(math.Abs(float64(v))))
	}
	d := amax / 127
	var id float32
	if d != 0 {
		id = 1 / d
	}
	for i, v := range x[:32] {
		q[i] = int8(math.Round(float64(v * id)))
	}
	return quant.F16ToF32(quant.F32ToF16(d))
}

var kernelTypes = []quant.Type{quant.F32, quant.F16, quant.BF16, quant.Q4_0, quant.Q8_0, quant.Q4_K, quant.Q6_K}

func randomRow(t quant.Type, r *rand.Rand, cols int) ([]byte, []float32) {
	x := make([]float32, cols)
	for i := range x {
		x[i] = float32(r.NormFloat64())
	}
	rb, err := t.RowBytes(cols)
	if err != nil {
		panic(err)
	}
	b := make([]byte, rb)
	if err := quant.QuantizeRow(t, x, b); err != nil {
		panic(err)
	}
	return b, x
}

// TestKernelModelDequant holds dq8 to quant.DequantizeRow bit for bit.
func TestKernelModelDequant(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for _, typ := range kernelTypes {
		cols := 512
		if typ == quant.F16 || typ == quant.F32 || typ == quant.BF16 {
			cols = 172 // not a multiple of 8: the tail is zero
		}
		row, _ := randomRow(typ, r, cols)
		want := make([]float32, cols)
		if err := quant.DequantizeRow(typ, row, want); err != nil {
			t.Fatal(err)
		}
		var v [8]float32
		for k0 := 0; k0 < cols; k0 += 8 {
			dq8(typ, row, k0, cols, &v)
			for i := 0; i < 8; i++ {
				w := float32(0)
				if k0+i < cols {
					w = want[k0+i]
				}
				if math.Float32bits(v[i]) != math.Float32bits(w) {
					t.Fatalf("%v: element %d is %v, quant %v", typ, k0+i, v[i], w)
				}
			}
		}
	}
}

// TestKernelModelUnits holds the matvec units, summed over a row, to the
// dot product of the dequantized row with the dequantized activations:
// the units must cover every element exactly once with its own scale.
func TestKernelModelUnits(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	const cols, nt = 1024, 3
	for _, typ := range []quant.Type{quant.Q4_0, quant.Q8_0, quant.Q4_K, quant.Q6_K} {
		row, _ := randomRow(typ, r, cols)
		w := make([]float32, cols)
		quant.DequantizeRow(typ, row, w)
		aq := make([]int8, nt*cols)
		ad := make([]float32, nt*cols/32)
		x := make([]float32, nt*cols)
		for i := range x {
			x[i] = float32(r.NormFloat64())
		}
		for b := 0; b < nt*cols/32; b++ {
			ad[b] = quantizeQ8(x[32*b:], aq[32*b:])
		}
		acc := make([]float32, nt)
		for u := 0; u < cols/8; u++ {
			unit(typ, row, u, aq, ad, cols, nt, acc)
		}
		for tk := 0; tk < nt; tk++ {
			var want, mag float64
			for k := 0; k < cols; k++ {
				a := float64(aq[tk*cols+k]) * float64(ad[(tk*cols+k)/32])
				want += float64(w[k]) * a
				mag += math.Abs(float64(w[k]) * a)
			}
			if d := math.Abs(float64(acc[tk]) - want); d > 1e-5*mag {
				t.Errorf("%v token %d: units sum to %v, the dequantized dot is %v (|Δ| %g, scale %g)", typ, tk, acc[tk], want, d, mag)
			}
		}
	}
}
