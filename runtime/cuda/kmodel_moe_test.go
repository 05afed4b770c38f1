package cuda

// Go models of kernels/cuda moe.cu and matvec.cu's matvec_id_<type>, as
// the fake driver runs them.

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/hearth-llm/hearth/quant"
)

// warpSum is common.cuh's warp_sum over 32 lane values: the butterfly,
// which leaves every lane the same sum (each step adds a symmetric pair).
func warpSum(v [32]float32) float32 {
	for o := 16; o > 0; o >>= 1 {
		var n [32]float32
		for i := range v {
			n[i] = v[i] + v[i^o]
		}
		v = n
	}
	return v[0]
}

// matvecIDKernel is matvec_id_<type>(dst, W, rowBytes, rows, cols, aq, ad,
// x, ids, k, xslot, bias, ne) over its whole grid: per pair, matvec's sum
// for one token (the units for quantized formats, as the matvec model).
func matvecIDKernel(f *fakeDriver, typ quant.Type, grid [3]uint32, a []uint64) {
	rows, cols, rb := i32(a[3]), i32(a[4]), int(a[2])
	k, xslot, ne := i32(a[9]), i32(a[10]), i32(a[12])
	pairs := int(grid[1])
	if want := [3]uint32{uint32(ceilDiv(rows, 4)), uint32(pairs), 1}; grid != want {
		panic(fmt.Sprintf("fake: matvec_id grid %v, want %v", grid, want))
	}
	xrows := pairs / k
	if xslot != 0 {
		xrows = pairs
	}
	ids := f.i32s(a[8], pairs)
	tab := f.u64s(a[1], ne)
	var btab []uint64
	if a[11] != 0 {
		btab = f.u64s(a[11], ne)
	}
	quantAct := typ != quant.F32 && typ != quant.F16 && typ != quant.BF16
	var aq []int8
	var ad, x []float32
	if quantAct {
		aq = unsafe.Slice((*int8)(unsafe.Pointer(&f.mem(a[5], uint64(xrows*cols))[0])), xrows*cols)
		ad = f.f32s(a[6], xrows*cols/32)
	} else {
		x = f.f32s(a[7], xrows*cols)
	}
	dst := f.f32s(a[0], pairs*rows)
	acc := make([]float32, 1)
	var v [8]float32
	for p := 0; p < pairs; p++ {
		e := int(ids[p])
		if e < 0 || e >= ne {
			clear(dst[p*rows : (p+1)*rows])
			continue
		}
		xr := p / k
		if xslot != 0 {
			xr = p
		}
		for r := 0; r < rows; r++ {
			row := f.mem(tab[e]+uint64(r*rb), uint64(rb))
			var s float32
			if quantAct {
				acc[0] = 0
				for u := 0; u < cols/8; u++ {
					unit(typ, row, u, aq[xr*cols:], ad[xr*cols/32:], cols, 1, acc)
				}
				s = acc[0]
			} else {
				for k0 := 0; k0 < cols; k0 += 8 {
					dq8(typ, row, k0, cols, &v)
					for i := 0; i < 8 && k0+i < cols; i++ {
						s += v[i] * actRound(typ, x[xr*cols+k0+i])
					}
				}
			}
			if btab != nil {
				s += f.f32s(btab[e]+uint64(4*r), 1)[0]
			}
			dst[p*rows+r] = s
		}
	}
}

// moeRouteKernel is moe.cu's moe_route_f32(ids, w, logits, scale, ne, k,
// gating, renorm) over its grid, a token per block (NaN logits aside).
func moeRouteKernel(f *fakeDriver, grid [3]uint32, a []uint64) {
	ne, k, gating, renorm := i32(a[4]), i32(a[5]), i32(a[6]), i32(a[7])
	n := int(grid[0])
	if k < 1 || k > 32 || k > ne {
		panic(fmt.Sprintf("fake: route of %d of %d experts", k, ne))
	}
	scale := f.f32sOrNil(a[3], ne)
	for t := 0; t < n; t++ {
		l := f.f32s(a[2]+uint64(4*t*ne), ne)
		m := float32(math.Inf(-1))
		for _, v := range l {
			m = max(m, v)
		}
		inv := float32(1)
		if gating == 0 {
			var lanes [32]float32
			for e, v := range l {
				lanes[e%32] += fastExp(v - m)
			}
			inv = 1 / warpSum(lanes)
		}
		val := func(e int) float32 {
			if gating == 0 {
				return fastExp(l[e]-m) * inv
			}
			return l[e]
		}
		sel, sv := make([]int, 0, k), make([]float32, 0, k)
		for range k {
			be, bv := -1, float32(0)
			for e := range ne {
				chosen := false
				for _, c := range sel {
					chosen = chosen || c == e
				}
				if v := val(e); !chosen && (be < 0 || v > bv) {
					be, bv = e, v
				}
			}
			sel, sv = append(sel, be), append(sv, bv)
		}
		switch {
		case gating == 1:
			mx := float32(math.Inf(-1))
			for _, v := range sv {
				mx = max(mx, v)
			}
			var s float32
			for j := range sv {
				sv[j] = fastExp(sv[j] - mx)
				s += sv[j]
			}
			is := 1 / s
			for j := range sv {
				sv[j] *= is
			}
		case renorm != 0:
			var s float32
			for _, v := range sv {
				s += v
			}
			s = max(s, 6.103515625e-5)
			for j := range sv {
				sv[j] /= s
			}
		}
		for j := 1; j < k; j++ { // increasing ids
			e, v := sel[j], sv[j]
			i := j - 1
			for ; i >= 0 && sel[i] > e; i-- {
				sel[i+1], sv[i+1] = sel[i], sv[i]
			}
			sel[i+1], sv[i+1] = e, v
		}
		ids, w := f.i32s(a[0]+uint64(4*t*k), k), f.f32s(a[1]+uint64(4*t*k), k)
		for j, e := range sel {
			ids[j], w[j] = int32(e), sv[j]
			if scale != nil {
				w[j] = float32(sv[j] * scale[e])
			}
		}
	}
}

// moeSumKernel is moe.cu's moe_sum_f32 over its whole grid.
func moeSumKernel(f *fakeDriver, dstP, yP, wP uint64, n, k, cols int) {
	w := f.f32s(wP, n*k)
	for t := 0; t < n; t++ {
		d := f.f32s(dstP+uint64(4*t*cols), cols)
		for c := range d {
			acc := d[c]
			for j := 0; j < k; j++ {
				acc += float32(w[t*k+j] * f.f32s(yP+uint64(4*((t*k+j)*cols+c)), 1)[0])
			}
			d[c] = acc
		}
	}
}
