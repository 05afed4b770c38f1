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

	kcpu "github.com/hearth-llm/hearth/kernels/cpu"
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
	if amax != 0 {
		id = 127 / amax
	}
	for i, v := range x[:32] {
		q[i] = int8(math.RoundToEven(float64(v * id)))
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

// f16r rounds to f16 and back (cvt.rn.f16.f32 then cvt.f32.f16).
func f16r(x float32) float32 { return quant.F16ToF32(quant.F32ToF16(x)) }

// mmaAct is mma.cu's MmaAct: activation e of token t as the tensor-core
// kernel sees it, f16-rounded (the int8 value times its scale for the
// quantized formats, x for F16).
func mmaAct(typ quant.Type, aq []int8, ad, x []float32, t, e, cols int) float32 {
	i := t*cols + e
	if typ == quant.F16 {
		return f16r(x[i])
	}
	return f16r(float32(aq[i]) * ad[i>>5])
}

// mmaReference is what mma_<type> computes, in a plain loop: f16-rounded
// weights (dq8) times f16-rounded activations, summed in float32. The
// fake driver runs it for the kernel; mmaKernel below, the kernel's own
// loop structure, is held to it.
func mmaReference(typ quant.Type, dst []float32, w []byte, rb, rows, cols int, aq []int8, ad, x []float32, n int) {
	wr := make([]float32, cols)
	act := make([]float32, n*cols)
	for t := 0; t < n; t++ {
		for k := 0; k < cols; k++ {
			act[t*cols+k] = mmaAct(typ, aq, ad, x, t, k, cols)
		}
	}
	var v [8]float32
	for r := 0; r < rows; r++ {
		row := w[r*rb : (r+1)*rb]
		for k0 := 0; k0 < cols; k0 += 8 {
			dq8(typ, row, k0, cols, &v)
			for i := range v {
				wr[k0+i] = f16r(v[i])
			}
		}
		for t := 0; t < n; t++ {
			var s float32
			for k, a := range act[t*cols : (t+1)*cols] {
				s += wr[k] * a
			}
			dst[t*rows+r] = s
		}
	}
}

// mmaSync is mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 over one
// warp, with the operands spread over the lanes as the PTX ISA lays them
// out (g = lane/4, q = lane%4): A elements a0..a7 of a lane in registers
// a[0..3] (low half first), row g for a0,a1,a4,a5 and g+8 for the others,
// column 2q+(i%2), +8 for a4..a7; B elements b0..b3 at k = 2q+(i%2), +8
// for b2,b3, column g; C c0..c3 at row g (c0,c1) or g+8, column 2q+(i%2).
func mmaSync(c *[32][4]float32, a *[32][4]uint32, b *[32][2]uint32) {
	var A [16][16]float32
	var B [16][8]float32
	half := func(r uint32, hi int) float32 { return quant.F16ToF32(uint16(r >> (16 * hi))) }
	for lane := range 32 {
		g, q := lane>>2, lane&3
		for i := range 8 {
			row, col := g, 2*q+i%2
			if i%4 >= 2 {
				row += 8
			}
			if i >= 4 {
				col += 8
			}
			A[row][col] = half(a[lane][i/2], i%2)
		}
		for i := range 4 {
			k := 2*q + i%2
			if i >= 2 {
				k += 8
			}
			B[k][g] = half(b[lane][i/2], i%2)
		}
	}
	for lane := range 32 {
		g, q := lane>>2, lane&3
		for i := range 4 {
			row, col := g+8*(i/2), 2*q+i%2
			var s float32
			for k := range 16 {
				s += A[row][k] * B[k][col]
			}
			c[lane][i] += s
		}
	}
}

// mmaKernel runs mma.cu's mma_matmul line for line: every block, every
// thread's loads and shared-memory stores, every warp's fragment loads,
// mma.sync emulated (mmaSync), every lane's output. Shared memory starts
// as f16 NaNs, so a fragment read of anything the loader did not write
// shows in the result.
func mmaKernel(typ quant.Type, dst []float32, w []byte, rb, rows, cols int, aq []int8, ad, x []float32, n int) {
	const BM, BN, BK, LD, threads = 128, 128, 32, 40, 256
	pack := func(lo, hi float32) uint32 {
		return uint32(quant.F32ToF16(lo)) | uint32(quant.F32ToF16(hi))<<16
	}
	for bx := 0; bx < (rows+BM-1)/BM; bx++ {
		for by := 0; by < (n+BN-1)/BN; by++ {
			r0, t0 := bx*BM, by*BN
			var ws, xs [2][BM * LD]uint16
			for s := range 2 {
				for i := range ws[s] {
					ws[s][i], xs[s][i] = 0x7e00, 0x7e00
				}
			}
			var wreg, xreg [threads][8]uint32
			var acc [8][32][4][4][4]float32
			load := func(tid, k0 int) {
				lrow, lk := tid>>1, (tid&1)*16
				var v [16]float32
				if r0+lrow < rows {
					row := w[(r0+lrow)*rb : (r0+lrow+1)*rb]
					dq8(typ, row, k0+lk, cols, (*[8]float32)(v[0:8]))
					dq8(typ, row, k0+lk+8, cols, (*[8]float32)(v[8:16]))
				}
				for i := range 8 {
					wreg[tid][i] = pack(v[2*i], v[2*i+1])
				}
				for i := range 8 {
					xreg[tid][i] = 0
					if t0+lrow < n {
						xreg[tid][i] = pack(mmaAct(typ, aq, ad, x, t0+lrow, k0+lk+2*i, cols), mmaAct(typ, aq, ad, x, t0+lrow, k0+lk+2*i+1, cols))
					}
				}
			}
			store := func(tid, s int) {
				lrow, lk := tid>>1, (tid&1)*16
				for i := range 8 {
					p := lrow*LD + lk + 2*i
					ws[s][p], ws[s][p+1] = uint16(wreg[tid][i]), uint16(wreg[tid][i]>>16)
					xs[s][p], xs[s][p+1] = uint16(xreg[tid][i]), uint16(xreg[tid][i]>>16)
				}
			}
			u32 := func(sm *[BM * LD]uint16, p int) uint32 { return uint32(sm[p]) | uint32(sm[p+1])<<16 }
			for tid := range threads {
				load(tid, 0)
				store(tid, 0)
			}
			nk := cols / BK
			for kt := 0; kt < nk; kt++ {
				cur := kt & 1
				if kt+1 < nk {
					for tid := range threads {
						load(tid, (kt+1)*BK)
					}
				}
				for kk := 0; kk < BK; kk += 16 {
					for warp := range 8 {
						wm, wn := (warp>>2)*64, (warp&3)*32
						var b [4][32][2]uint32
						for lane := range 32 {
							g, q := lane>>2, lane&3
							for ni := range 4 {
								p := (wn+8*ni+g)*LD + kk + 2*q
								b[ni][lane] = [2]uint32{u32(&xs[cur], p), u32(&xs[cur], p+8)}
							}
						}
						for mi := range 4 {
							var a [32][4]uint32
							for lane := range 32 {
								g, q := lane>>2, lane&3
								p := (wm+16*mi+g)*LD + kk + 2*q
								a[lane] = [4]uint32{u32(&ws[cur], p), u32(&ws[cur], p+8*LD), u32(&ws[cur], p+8), u32(&ws[cur], p+8*LD+8)}
							}
							for ni := range 4 {
								var c [32][4]float32
								for lane := range 32 {
									c[lane] = acc[warp][lane][mi][ni]
								}
								mmaSync(&c, &a, &b[ni])
								for lane := range 32 {
									acc[warp][lane][mi][ni] = c[lane]
								}
							}
						}
					}
				}
				if kt+1 < nk {
					for tid := range threads {
						store(tid, cur^1)
					}
				}
			}
			for warp := range 8 {
				wm, wn := (warp>>2)*64, (warp&3)*32
				for lane := range 32 {
					g, q := lane>>2, lane&3
					for mi := range 4 {
						for ni := range 4 {
							r, t := r0+wm+16*mi+g, t0+wn+8*ni+2*q
							for c := range 4 {
								rr, tt := r+(c>>1)*8, t+(c&1)
								if rr < rows && tt < n {
									dst[tt*rows+rr] = acc[warp][lane][mi][ni][c]
								}
							}
						}
					}
				}
			}
		}
	}
}

// TestKernelModelMMA holds mma.cu's structure (mmaKernel) to the plain
// model the fake driver runs (mmaReference), over row and token tails and
// every format, and both to a float64 dot product of the same f16 inputs:
// every output element written once, from the right rows, tokens and k.
func TestKernelModelMMA(t *testing.T) {
	r := rand.New(rand.NewPCG(9, 10))
	for _, typ := range []quant.Type{quant.Q4_0, quant.Q8_0, quant.Q4_K, quant.Q6_K, quant.F16} {
		for _, sh := range [][3]int{{300, 512, 200}, {130, 256, 16}, {128, 256, 70}} {
			rows, cols, n := sh[0], sh[1], sh[2]
			if testing.Short() && rows == 300 {
				continue
			}
			var w []byte
			for range rows {
				b, _ := randomRow(typ, r, cols)
				w = append(w, b...)
			}
			rb := len(w) / rows
			xv := make([]float32, n*cols)
			for i := range xv {
				xv[i] = float32(r.NormFloat64())
			}
			aq := make([]int8, n*cols)
			ad := make([]float32, n*cols/32)
			for b := range ad {
				ad[b] = quantizeQ8(xv[32*b:], aq[32*b:])
			}
			got, want := make([]float32, n*rows), make([]float32, n*rows)
			for i := range got {
				got[i], want[i] = float32(math.NaN()), float32(math.NaN())
			}
			mmaKernel(typ, got, w, rb, rows, cols, aq, ad, xv, n)
			mmaReference(typ, want, w, rb, rows, cols, aq, ad, xv, n)
			var v [8]float32
			for rr := 0; rr < rows; rr++ {
				for tt := 0; tt < n; tt++ {
					var exact, mag float64
					for k0 := 0; k0 < cols; k0 += 8 {
						dq8(typ, w[rr*rb:(rr+1)*rb], k0, cols, &v)
						for i := range v {
							p := float64(f16r(v[i])) * float64(mmaAct(typ, aq, ad, xv, tt, k0+i, cols))
							exact += p
							mag += math.Abs(p)
						}
					}
					g, wv := got[tt*rows+rr], want[tt*rows+rr]
					if math.IsNaN(float64(g)) || math.Abs(float64(g)-exact) > 1e-5*mag+1e-6 || math.Abs(float64(wv)-exact) > 1e-5*mag+1e-6 {
						t.Fatalf("%v %dx%d n=%d: dst[%d][%d] kernel model %v, reference %v, float64 %v", typ, rows, cols, n, tt, rr, g, wv, exact)
					}
				}
			}
		}
	}
}

// fastExp is common.cuh's fast_exp: ex2.approx of x·log2(e) rounded to
// float32. The product's rounding is modelled (the larger error for large
// |x|), ex2.approx's own ~2 ulp are not.
func fastExp(x float32) float32 {
	return float32(math.Exp2(float64(x * 1.4426950408889634)))
}

// geluKernel is act.cu's gelu, operation for operation.
func geluKernel(x float32) float32 {
	switch {
	case x <= -10:
		return 0
	case x >= 10:
		return x
	}
	h := f16r(x)
	u := float32(float32(0.7978845608028654*h) * (1 + float32(float32(0.044715*h)*h)))
	return f16r(h / (1 + fastExp(-2*u)))
}

// swigluOAIKernel is act.cu's swiglu_oai_f32 for one element.
func swigluOAIKernel(g, u, alpha, limit float32) float32 {
	x, y := g, u
	if x > limit {
		x = limit
	}
	if y > limit {
		y = limit
	} else if y < -limit {
		y = -limit
	}
	return x / (1 + fastExp(-(alpha * x))) * (y + 1)
}

// tanhKernel is attention.cu's tanh_f32 (the kernel may fuse the
// polynomial's products and sums; this rounds each).
func tanhKernel(x float32) float32 {
	a := float32(math.Abs(float64(x)))
	if a < 0.625 {
		z := x * x
		return ((((-5.70498872745e-3*z+2.06390887954e-2)*z-5.37397155531e-2)*z+1.33314422036e-1)*z-3.33332819422e-1)*z*x + x
	}
	return float32(math.Copysign(float64(1-2/(fastExp(2*a)+1)), float64(x)))
}

// attnWeights is attention_f16's softmax over the scores of one query
// head (s, already scaled and capped), with sink (-Inf: none) in the max
// and the sum: each weight exp(s-M)·(1/L) rounded to f16, in place.
func attnWeights(s []float32, sink float32) {
	m := sink
	for _, v := range s {
		m = max(m, v)
	}
	var l float32
	for _, v := range s {
		l += fastExp(v - m)
	}
	if !math.IsInf(float64(sink), -1) {
		l += fastExp(sink - m)
	}
	inv := 1 / l
	for j, v := range s {
		s[j] = f16r(fastExp(v-m) * inv)
	}
}

// addScaledRowsKernel is add.cu's add_scaled_rows_f32 over its whole grid:
// each destination of the plan gets its pairs' products in order.
func addScaledRowsKernel(f *fakeDriver, dstP, xP uint64, plan []int32, m, n, cols int) {
	start := plan[m : 2*m+1]
	src := plan[2*m+1 : 2*m+1+n]
	w := plan[2*m+1+n:]
	for k := 0; k < m; k++ {
		d := f.f32s(dstP+uint64(4*int(plan[k])*cols), cols)
		for c := range d {
			acc := d[c]
			for j := start[k]; j < start[k+1]; j++ {
				x := f.f32s(xP+uint64(4*(int(src[j])*cols+c)), 1)[0]
				acc += float32(math.Float32frombits(uint32(w[j])) * x)
			}
			d[c] = acc
		}
	}
}

// TestKernelModelGELU holds act.cu's GELU to the CPU's f16 table for
// every f16 input and its neighbours in float32: equal; or, in the
// negative tail (x in about [-6, -3], |gelu| < 1e-4) where the CPU's
// 1+tanh(u) cancels in float32 and the kernel's sigmoid form does not,
// within 2^-22 absolute (a few f16 subnormal steps); or elsewhere one f16
// step apart, where the exact value lies within a few f32 ulps of an f16
// rounding boundary (a handful of inputs).
func TestKernelModelGELU(t *testing.T) {
	var steps, tail int
	for i := 0; i < 1<<16; i++ {
		x := quant.F16ToF32(uint16(i))
		if math.IsNaN(float64(x)) {
			continue
		}
		for _, v := range []float32{x, math.Nextafter32(x, 0), math.Nextafter32(x, float32(math.Inf(1)))} {
			got, want := geluKernel(v), kcpu.GELU(v)
			if got == want {
				continue
			}
			hg, hw := quant.F32ToF16(got), quant.F32ToF16(want)
			switch d := int(hg) - int(hw); {
			case math.Abs(float64(got-want)) <= 0x1p-22:
				tail++
			case hg>>15 == hw>>15 && (d == 1 || d == -1):
				steps++
			default:
				t.Fatalf("gelu(%g): kernel %g, CPU %g", v, got, want)
			}
		}
	}
	t.Logf("of ~196k inputs: %d one f16 step apart, %d apart by < 2^-22 in the tail", steps, tail)
	if steps > 50 {
		t.Errorf("%d inputs one f16 step apart: more than rounding-boundary cases", steps)
	}
}

// TestKernelModelTanh holds attention.cu's tanh_f32 to float64 tanh.
func TestKernelModelTanh(t *testing.T) {
	var worst float64
	for x := float32(-12); x <= 12; x += 0.000731 {
		got, want := float64(tanhKernel(x)), math.Tanh(float64(x))
		worst = max(worst, math.Abs(got-want))
	}
	for _, x := range []float32{0, -0, 1e-30, -1e-30, 0.625, -0.625, 100, -100, float32(math.Inf(1)), float32(math.Inf(-1))} {
		got, want := float64(tanhKernel(x)), math.Tanh(float64(x))
		worst = max(worst, math.Abs(got-want))
	}
	t.Logf("max |tanh_f32 - tanh| %.3g", worst)
	if worst > 3e-7 {
		t.Errorf("tanh_f32 is off by %.3g", worst)
	}
}

// attentionKernel runs attention_f16's block for one token and query head
// as the kernel is structured: groups of S lanes, the 128/S groups
// striding over positions lo..n-1 (a position past n scored as lo's and
// dropped), pass 1's running (m, l) per group, their combination with the
// sink, pass 2's f16 weights times V per group, the groups' accumulators
// summed. k and v return a position's head row (f16). The lanes' partial
// dot products are summed in lane order (the kernel's butterfly order
// differs in the last bits).
func attentionKernel(q []float32, k, v func(j int) []uint16, lo, n int, scale, softCap float32, sinks bool, sink float32) []float32 {
	headDim := len(q)
	S := 32
	for S > 1 && S/2 >= headDim {
		S >>= 1
	}
	G := 128 / S
	score := func(j int) float32 {
		jj := j
		if j >= n {
			jj = lo
		}
		kr := k(jj)
		var sum float32
		for lane := range S {
			var part float32
			for d := lane; d < headDim; d += S {
				part += f16r(q[d]) * quant.F16ToF32(kr[d])
			}
			sum += part
		}
		s := sum * scale
		if softCap > 0 {
			s = softCap * tanhKernel(s/softCap)
		}
		return s
	}
	gm, gl := make([]float32, G), make([]float32, G)
	for g := range G {
		m, l := float32(math.Inf(-1)), float32(0)
		for j0 := lo; j0 < n; j0 += G {
			j := j0 + g
			s := score(j)
			if j < n {
				if s > m {
					l = l*fastExp(m-s) + 1
					m = s
				} else {
					l += fastExp(s - m)
				}
			}
		}
		gm[g], gl[g] = m, l
	}
	M := float32(math.Inf(-1))
	for _, m := range gm {
		M = max(M, m)
	}
	sk := float32(math.Inf(-1))
	if sinks {
		sk = sink
	}
	M = max(M, sk)
	var L float32
	for i := range G {
		if gl[i] > 0 {
			L += gl[i] * fastExp(gm[i]-M)
		}
	}
	if sinks {
		L += fastExp(sk - M)
	}
	inv := 1 / L
	red := make([]float32, G*headDim)
	for g := range G {
		for j0 := lo; j0 < n; j0 += G {
			j := j0 + g
			s := score(j)
			if j < n {
				if p := f16r(fastExp(s-M) * inv); p != 0 {
					for d, x := range v(j) {
						red[g*headDim+d] += p * quant.F16ToF32(x)
					}
				}
			}
		}
	}
	out := make([]float32, headDim)
	for d := range out {
		for g := range G {
			out[d] += red[g*headDim+d]
		}
	}
	return out
}

// TestKernelModelAttention holds attention_f16's structure (attentionKernel)
// to the plain model the fake driver runs (scores, attnWeights, the
// weighted sum of V) for head sizes that give 1 to 32 lanes per group,
// windows that cut the range at any group boundary, soft-capping and
// sinks: every position in lo..n-1 counted once, in the max, the sum and
// the output.
func TestKernelModelAttention(t *testing.T) {
	r := rand.New(rand.NewPCG(13, 14))
	for _, hd := range []int{1, 8, 24, 64, 128, 256, 512} {
		const npos = 75
		keys, vals := make([][]uint16, npos), make([][]uint16, npos)
		for j := range npos {
			keys[j], vals[j] = make([]uint16, hd), make([]uint16, hd)
			for d := range hd {
				keys[j][d] = quant.F32ToF16(float32(r.NormFloat64()))
				vals[j][d] = quant.F32ToF16(float32(r.NormFloat64()))
			}
		}
		q := make([]float32, hd)
		for d := range q {
			q[d] = float32(r.NormFloat64())
		}
		qh := make([]uint16, hd)
		kcpu.ToF16(qh, q)
		scale := float32(1 / math.Sqrt(float64(hd)))
		for _, c := range []struct {
			lo, n   int
			softCap float32
			sinks   bool
		}{{0, 1, 0, false}, {0, 75, 0, false}, {70, 75, 0, false}, {17, 50, 0, true}, {0, 33, 1.5, false}, {3, 75, 2, true}} {
			sink := float32(r.NormFloat64() * 3)
			got := attentionKernel(q, func(j int) []uint16 { return keys[j] }, func(j int) []uint16 { return vals[j] },
				c.lo, c.n, scale, c.softCap, c.sinks, sink)
			s := make([]float32, c.n-c.lo)
			for j := range s {
				s[j] = kcpu.DotF16(qh, keys[c.lo+j]) * scale
				if c.softCap > 0 {
					s[j] = c.softCap * tanhKernel(s[j]/c.softCap)
				}
			}
			sk := float32(math.Inf(-1))
			if c.sinks {
				sk = sink
			}
			attnWeights(s, sk)
			want := make([]float32, hd)
			var mag float64
			for j, p := range s {
				kcpu.AxpyF16(want, p, vals[c.lo+j])
				mag += math.Abs(float64(p))
			}
			for d := range want {
				if e := math.Abs(float64(got[d] - want[d])); e > 2e-3*max(mag, 1e-3) || math.IsNaN(float64(got[d])) {
					t.Fatalf("headDim %d, positions %d..%d, cap %g, sinks %v: out[%d] kernel %v, model %v", hd, c.lo, c.n-1, c.softCap, c.sinks, d, got[d], want[d])
				}
			}
		}
	}
}
