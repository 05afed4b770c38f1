package cuda

// Go models of kernels/cuda recurrent.cu, operation for operation, as the
// fake driver runs them; sigmoidKernel is act.cu's and add.cu's σ.

import (
	"fmt"
	"math"
)

// sigmoidKernel is 1/(1+fast_exp(-x)) (div.rn).
func sigmoidKernel(x float32) float32 { return 1 / (1 + fastExp(-x)) }

// fma32 is fma.rn.f32 (through float64: a double rounding that differs
// from the device's single one only when the float64 result lands on a
// float32 midpoint).
func fma32(a, b, c float32) float32 { return float32(math.FMA(float64(a), float64(b), float64(c))) }

// warpSumF64 is recurrent.cu's warp_sum_d: common.cuh's butterfly in
// float64.
func warpSumF64(v [32]float64) float64 {
	for o := 16; o > 0; o >>= 1 {
		var n [32]float64
		for i := range v {
			n[i] = v[i] + v[i^o]
		}
		v = n
	}
	return v[0]
}

// stateSeqs reads a pass's sequence table (recurrent.cu, runtime/cuda
// stateMeta): per sequence its slot address and its tokens (2t, +1 at a
// restart).
func stateSeqs(f *fakeDriver, meta uint64, ns int) (slots []uint64, toks [][]int32) {
	slots = f.u64s(meta, ns)
	start := f.i32s(meta+uint64(8*ns), ns+1)
	all := f.i32s(meta+uint64(8*ns+4*(ns+1)), int(start[ns]))
	for s := range ns {
		toks = append(toks, all[start[s]:start[s+1]])
	}
	return slots, toks
}

// causalConvKernel is causal_conv_f32(dst, x, w, meta, ns, part, c, k).
func causalConvKernel(f *fakeDriver, grid [3]uint32, a []uint64) {
	ns, part, c, k := i32(a[4]), a[5], i32(a[6]), i32(a[7])
	if want := [3]uint32{uint32(ns), uint32(ceilDiv(c, 128)), 1}; grid != want {
		panic(fmt.Sprintf("fake: causal conv grid %v, want %v", grid, want))
	}
	slots, toks := stateSeqs(f, a[3], ns)
	w := f.f32s(a[2], c*k)
	for s := range ns {
		st := f.f32s(slots[s]+4*part, (k-1)*c)
		win := make([]float32, k-1)
		for ch := range c {
			for i := range k - 1 {
				win[i] = st[i*c+ch]
			}
			wr := w[ch*k : (ch+1)*k]
			for _, tok := range toks[s] {
				t := int(tok >> 1)
				if tok&1 != 0 {
					clear(win)
				}
				xv := f.f32s(a[1]+uint64(4*(t*c+ch)), 1)[0]
				var sum float32
				for i := range k - 1 {
					sum += float32(win[i] * wr[i])
				}
				sum += float32(xv * wr[k-1])
				f.f32s(a[0]+uint64(4*(t*c+ch)), 1)[0] = sum
				copy(win, win[1:])
				win[k-2] = xv
			}
			for i := range k - 1 {
				st[i*c+ch] = win[i]
			}
		}
	}
}

// l2NormKernel is recurrent.cu's l2_normalize over one warp.
func l2NormKernel(out, src []float32, eps float32) {
	var lanes [32]float64
	for i, v := range src {
		lanes[i%32] += float64(float32(v * v))
	}
	s := warpSumF64(lanes)
	scale := 1 / max(float32(math.Sqrt(s)), eps)
	for i, v := range src {
		out[i] = float32(v * scale)
	}
}

// deltaNetKernel is gated_delta_net_f32(dst, qkv, alpha, beta, a, dtb,
// meta, ns, part, kh, vh, hd, eps, scale): per (sequence, head) block,
// per row j of S a warp's lanes (columns l, l+32, ...) summed by the
// butterfly.
func deltaNetKernel(f *fakeDriver, grid [3]uint32, a []uint64) {
	ns, part, kh, vh, hd := i32(a[7]), a[8], i32(a[9]), i32(a[10]), i32(a[11])
	eps, scale := f32(a[12]), f32(a[13])
	if want := [3]uint32{uint32(ns), uint32(vh), 1}; grid != want || hd > 128 {
		panic(fmt.Sprintf("fake: delta net grid %v, want %v (head %d)", grid, want, hd))
	}
	slots, toks := stateSeqs(f, a[6], ns)
	av, dtb := f.f32s(a[4], vh), f.f32s(a[5], vh)
	width := (2*kh + vh) * hd
	qn, kn := make([]float32, hd), make([]float32, hd)
	for s := range ns {
		for h := range vh {
			st := f.f32s(slots[s]+4*(part+uint64(h*hd*hd)), hd*hd)
			S := append([]float32(nil), st...)
			kq := h % kh
			for _, tok := range toks[s] {
				t := int(tok >> 1)
				row := f.f32s(a[1]+uint64(4*t*width), width)
				l2NormKernel(qn, row[kq*hd:(kq+1)*hd], eps)
				l2NormKernel(kn, row[(kh+kq)*hd:(kh+kq+1)*hd], eps)
				v := row[(2*kh+h)*hd : (2*kh+h+1)*hd]
				x := f.f32s(a[2]+uint64(4*(t*vh+h)), 1)[0] + dtb[h]
				sp := x
				if x <= 20 {
					sp = float32(float32(math.Log2(float64(1+fastExp(x)))) * float32(math.Ln2))
				}
				eg := fastExp(float32(sp * av[h]))
				bt := sigmoidKernel(f.f32s(a[3]+uint64(4*(t*vh+h)), 1)[0])
				if tok&1 != 0 {
					clear(S)
				}
				out := f.f32s(a[0]+uint64(4*(t*vh*hd+h*hd)), hd)
				for j := range hd {
					r := S[j*hd : (j+1)*hd]
					var lanes [32]float32
					for i := range r {
						r[i] = float32(r[i] * eg)
						lanes[i%32] = fma32(r[i], kn[i], lanes[i%32])
					}
					delta := float32((v[j] - warpSum(lanes)) * bt)
					lanes = [32]float32{}
					for i := range r {
						r[i] += float32(kn[i] * delta)
						lanes[i%32] = fma32(r[i], qn[i], lanes[i%32])
					}
					out[j] = float32(warpSum(lanes) * scale)
				}
			}
			copy(st, S)
		}
	}
}
