package quant

import "math"

// The K-quant reference quantizers (ggml's quantize_row_q{2..6}_K_ref). Each
// fits per-sub-block scales (and mins) with an iterative search, quantizes
// those scales to 4, 6 or 8 bits against one fp16 super-block scale, then
// requantizes every element against its final, rounded sub-block scale.
// Every product that feeds a sum is wrapped in float32(...) so that Go never
// fuses it into an FMA; see the note in dequant.go.

// groupMaxEps is ggml's GROUP_MAX_EPS: groups with a smaller amax are zero.
const groupMaxEps = float32(1e-15)

// makeQXQuants fits a symmetric scale for signed quants in [-nmax, nmax-1],
// weighting each element by x² (ggml's make_qx_quants with rmse_type 1 and
// no importance weights). It stores quants offset by nmax in L and returns
// the scale.
func makeQXQuants(x []float32, nmax int, L []int8) float32 {
	L = L[:len(x)]
	amax, max := absMax(x)
	if amax < groupMaxEps {
		clear(L)
		return 0
	}
	fnmax := float32(nmax)
	iscale := -fnmax / max
	var sumlx, suml2 float32
	for i, v := range x {
		l := clampInt(nearestInt(iscale*v), -nmax, nmax-1)
		L[i] = int8(l + nmax)
		w := v * v
		fl := float32(l)
		sumlx += float32(w * v * fl)
		suml2 += float32(w * fl * fl)
	}
	var scale float32
	if suml2 != 0 {
		scale = sumlx / suml2
	}
	best := scale * sumlx
	for is := -9; is <= 9; is++ {
		if is == 0 {
			continue
		}
		iscale = -(fnmax + float32(0.1*float32(is))) / max
		sumlx, suml2 = 0, 0
		for _, v := range x {
			fl := float32(clampInt(nearestInt(iscale*v), -nmax, nmax-1))
			w := v * v
			sumlx += float32(w * v * fl)
			suml2 += float32(w * fl * fl)
		}
		if suml2 > 0 && sumlx*sumlx > best*suml2 {
			for i, v := range x {
				L[i] = int8(nmax + clampInt(nearestInt(iscale*v), -nmax, nmax-1))
			}
			scale = sumlx / suml2
			best = scale * sumlx
		}
	}
	return scale
}

// makeQ3Quants fits a symmetric scale for quants in [-nmax, nmax-1] by
// coordinate descent on the x²-weighted error (ggml's make_q3_quants with
// do_rmse). It stores quants offset by nmax in L and returns the scale.
func makeQ3Quants(x []float32, nmax int, L []int8) float32 {
	L = L[:len(x)]
	amax, max := absMax(x)
	if amax < groupMaxEps {
		clear(L)
		return 0
	}
	iscale := -float32(nmax) / max
	var sumlx, suml2 float32
	for i, v := range x {
		l := clampInt(nearestInt(iscale*v), -nmax, nmax-1)
		L[i] = int8(l)
		w := v * v
		fl := float32(l)
		sumlx += float32(w * v * fl)
		suml2 += float32(w * fl * fl)
	}
	for range 5 {
		changed := false
		for i, v := range x {
			w := v * v
			fl := float32(L[i])
			slx := sumlx - float32(w*v*fl)
			if slx > 0 {
				sl2 := suml2 - float32(w*fl*fl)
				newL := clampInt(nearestInt(v*sl2/slx), -nmax, nmax-1)
				if newL != int(L[i]) {
					fn := float32(newL)
					slx += float32(w * v * fn)
					sl2 += float32(w * fn * fn)
					if sl2 > 0 && slx*slx*suml2 > sumlx*sumlx*sl2 {
						L[i] = int8(newL)
						sumlx, suml2 = slx, sl2
						changed = true
					}
				}
			}
		}
		if !changed {
			break
		}
	}
	for i := range L {
		L[i] += int8(nmax)
	}
	if suml2 > 0 {
		return sumlx / suml2
	}
	return 0
}

// makeQKX2Quants fits x ≈ scale*L - min with L in [0, nmax] and min >= 0,
// minimizing the weighted squared (or, with useMAD, absolute) error over a
// grid of nstep+1 trial scales (ggml's make_qkx2_quants). It returns the
// scale and min. laux is scratch space of len(x).
func makeQKX2Quants(x, weights []float32, nmax int, L, laux []uint8,
	rmin, rdelta float32, nstep int, useMAD bool) (scale, theMin float32) {
	n := len(x)
	weights, L, laux = weights[:n], L[:n], laux[:n]
	min, max := x[0], x[0]
	sumW := weights[0]
	sumX := sumW * x[0]
	for i := 1; i < n; i++ {
		if x[i] < min {
			min = x[i]
		}
		if x[i] > max {
			max = x[i]
		}
		w := weights[i]
		sumW += w
		sumX += float32(w * x[i])
	}
	if min > 0 {
		min = 0
	}
	if max == min {
		clear(L)
		return 0, -min
	}
	fnmax := float32(nmax)
	iscale := fnmax / (max - min)
	scale = 1 / iscale
	var bestErr float32
	for i, v := range x {
		l := clampInt(nearestInt(iscale*(v-min)), 0, nmax)
		L[i] = uint8(l)
		diff := float32(scale*float32(l)) + min - v
		if useMAD {
			diff = abs32(diff)
		} else {
			diff = diff * diff
		}
		bestErr += float32(weights[i] * diff)
	}
	if nstep < 1 {
		return scale, -min
	}
	for is := 0; is <= nstep; is++ {
		iscale = (rmin + float32(rdelta*float32(is)) + fnmax) / (max - min)
		var sumL, sumL2, sumXL float32
		for i, v := range x {
			l := clampInt(nearestInt(iscale*(v-min)), 0, nmax)
			laux[i] = uint8(l)
			w := weights[i]
			fl := float32(l)
			sumL += float32(w * fl)
			sumL2 += float32(w * fl * fl)
			sumXL += float32(w * fl * v)
		}
		D := float32(sumW*sumL2) - float32(sumL*sumL)
		if D > 0 {
			thisScale := (float32(sumW*sumXL) - float32(sumX*sumL)) / D
			thisMin := (float32(sumL2*sumX) - float32(sumL*sumXL)) / D
			if thisMin > 0 {
				thisMin = 0
				thisScale = sumXL / sumL2
			}
			var curErr float32
			for i, v := range x {
				diff := float32(thisScale*float32(laux[i])) + thisMin - v
				if useMAD {
					diff = abs32(diff)
				} else {
					diff = diff * diff
				}
				curErr += float32(weights[i] * diff)
			}
			if curErr < bestErr {
				copy(L, laux)
				bestErr = curErr
				scale = thisScale
				min = thisMin
			}
		}
	}
	return scale, -min
}

func clampInt(v, lo, hi int) int {
	return max(lo, min(hi, v))
}

// packQ2 stores 256 2-bit values (in 0-3) as ggml's Q2_K/Q3_K qs: byte
// 32*(e/128) + e%32, bit pair (e/32)%4 holds element e.
func packQ2(L *[qk]uint8, qs *[64]byte) {
	for j := 0; j < qk; j += 128 {
		for l := range 32 {
			qs[j/4+l] = L[j+l] | L[j+l+32]<<2 | L[j+l+64]<<4 | L[j+l+96]<<6
		}
	}
}

// Q2_K block (84 bytes): scales[16], qs[64], d, dmin.
func quantQ2_K(src []float32, dst []byte) {
	var (
		L       [qk]uint8
		laux    [16]uint8
		weights [16]float32
		mins    [16]float32
		scales  [16]float32
	)
	const q4scale = 15
	for i := 0; i < len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		b := (*[84]byte)(dst[i/qk*84:])
		var maxScale, maxMin float32
		for j := range 16 {
			xs := x[16*j : 16*j+16]
			for l, v := range xs {
				weights[l] = abs32(v)
			}
			scales[j], mins[j] = makeQKX2Quants(xs, weights[:], 3, L[16*j:], laux[:], -0.5, 0.1, 15, true)
			maxScale = max(maxScale, scales[j])
			maxMin = max(maxMin, mins[j])
		}
		sc := (*[16]byte)(b[0:16])
		if maxScale > 0 {
			iscale := q4scale / maxScale
			for j := range 16 {
				sc[j] = byte(nearestInt(iscale * scales[j]))
			}
			putF16le(b[80:], maxScale/q4scale)
		} else {
			clear(sc[:])
			putF16le(b[80:], 0)
		}
		if maxMin > 0 {
			iscale := q4scale / maxMin
			for j := range 16 {
				sc[j] |= byte(nearestInt(iscale*mins[j]) << 4)
			}
			putF16le(b[82:], maxMin/q4scale)
		} else {
			putF16le(b[82:], 0)
		}
		d, dmin := f16le(b[80:]), f16le(b[82:])
		for j := range 16 {
			dl := d * float32(sc[j]&0xf)
			if dl == 0 {
				continue
			}
			dm := float32(dmin * float32(sc[j]>>4))
			for ii := range 16 {
				L[16*j+ii] = uint8(clampInt(nearestInt((x[16*j+ii]+dm)/dl), 0, 3))
			}
		}
		packQ2(&L, (*[64]byte)(b[16:80]))
	}
}

// Q3_K block (110 bytes): hmask[32], qs[64], scales[12], d.
func quantQ3_K(src []float32, dst []byte) {
	var (
		L      [qk]int8
		scales [16]float32
		sc     [16]int8
		L2     [qk]uint8
	)
	for i := 0; i < len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		b := (*[110]byte)(dst[i/qk*110:])
		var maxScale, amax float32
		for j := range 16 {
			scales[j] = makeQ3Quants(x[16*j:16*j+16], 4, L[16*j:])
			if a := abs32(scales[j]); a > amax {
				amax, maxScale = a, scales[j]
			}
		}
		s := (*[12]byte)(b[96:108])
		clear(s[:])
		if maxScale != 0 {
			iscale := -32 / maxScale
			for j := range 16 {
				l := clampInt(int(int8(nearestInt(iscale*scales[j]))), -32, 31) + 32
				if j < 8 {
					s[j] = byte(l & 0xf)
				} else {
					s[j-8] |= byte(l&0xf) << 4
				}
				s[8+j%4] |= byte(l>>4) << (2 * (j / 4))
			}
			putF16le(b[108:], 1/iscale)
		} else {
			putF16le(b[108:], 0)
		}
		d := f16le(b[108:])
		q3Scales(s, &sc)
		for j := range 16 {
			dl := d * float32(sc[j])
			if dl == 0 {
				continue
			}
			for ii := range 16 {
				L[16*j+ii] = int8(clampInt(nearestInt(x[16*j+ii]/dl), -4, 3) + 4)
			}
		}
		hmask := (*[32]byte)(b[0:32])
		clear(hmask[:])
		for j := range qk {
			l := uint8(L[j])
			if l > 3 {
				hmask[j%32] |= 1 << (j / 32)
				l -= 4
			}
			L2[j] = l
		}
		packQ2(&L2, (*[64]byte)(b[32:96]))
	}
}

// packScaleMinK4 stores the 6-bit scale ls and min lm of sub-block j as
// scaleMinK4 reads them back.
func packScaleMinK4(s *[12]byte, j int, ls, lm uint8) {
	if j < 4 {
		s[j] = ls
		s[j+4] = lm
	} else {
		s[j+4] = ls&0xf | (lm&0xf)<<4
		s[j-4] |= (ls >> 4) << 6
		s[j] |= (lm >> 4) << 6
	}
}

// quantK4Scales fits the eight sub-blocks of 32 of a Q4_K or Q5_K super-block
// (quants in [0, nmax]), writes d, dmin and the packed scales into
// b[0:16], and requantizes x into L against the rounded scales.
func quantK4Scales(x *[qk]float32, b *[16]byte, L *[qk]uint8, nmax int, rmin, rdelta float32, nstep int) {
	var (
		laux    [32]uint8
		weights [32]float32
		mins    [8]float32
		scales  [8]float32
	)
	var maxScale, maxMin float32
	for j := range 8 {
		xs := x[32*j : 32*j+32]
		var sumX2 float32
		for _, v := range xs {
			sumX2 += float32(v * v)
		}
		avX := float32(math.Sqrt(float64(sumX2 / 32)))
		for l, v := range xs {
			weights[l] = avX + abs32(v)
		}
		scales[j], mins[j] = makeQKX2Quants(xs, weights[:], nmax, L[32*j:], laux[:], rmin, rdelta, nstep, false)
		maxScale = max(maxScale, scales[j])
		maxMin = max(maxMin, mins[j])
	}
	var invScale, invMin float32
	if maxScale > 0 {
		invScale = 63 / maxScale
	}
	if maxMin > 0 {
		invMin = 63 / maxMin
	}
	s := (*[12]byte)(b[4:16])
	for j := range 8 {
		ls := min(63, uint8(nearestInt(invScale*scales[j])))
		lm := min(63, uint8(nearestInt(invMin*mins[j])))
		packScaleMinK4(s, j, ls, lm)
	}
	putF16le(b[0:], maxScale/63)
	putF16le(b[2:], maxMin/63)
	d, dmin := f16le(b[0:]), f16le(b[2:])
	for j := range 8 {
		sc, m := scaleMinK4(j, s)
		dl := d * float32(sc)
		if dl == 0 {
			continue
		}
		dm := float32(dmin * float32(m))
		for ii := range 32 {
			L[32*j+ii] = uint8(clampInt(nearestInt((x[32*j+ii]+dm)/dl), 0, nmax))
		}
	}
}

// Q4_K block (144 bytes): d, dmin, scales[12], qs[128].
func quantQ4_K(src []float32, dst []byte) {
	var L [qk]uint8
	for i := 0; i < len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		b := (*[144]byte)(dst[i/qk*144:])
		quantK4Scales(x, (*[16]byte)(b[0:16]), &L, 15, -1, 0.1, 20)
		for k := range 4 {
			q := (*[32]byte)(b[16+32*k:])
			for l := range 32 {
				q[l] = L[64*k+l] | L[64*k+l+32]<<4
			}
		}
	}
}

// Q5_K block (176 bytes): d, dmin, scales[12], qh[32], qs[128].
func quantQ5_K(src []float32, dst []byte) {
	var L [qk]uint8
	for i := 0; i < len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		b := (*[176]byte)(dst[i/qk*176:])
		quantK4Scales(x, (*[16]byte)(b[0:16]), &L, 31, -0.5, 0.1, 15)
		qh := (*[32]byte)(b[16:48])
		clear(qh[:])
		for k := range 4 {
			q := (*[32]byte)(b[48+32*k:])
			for l := range 32 {
				l1, l2 := L[64*k+l], L[64*k+l+32]
				qh[l] |= (l1>>4)<<(2*k) | (l2>>4)<<(2*k+1)
				q[l] = l1&0xf | (l2&0xf)<<4
			}
		}
	}
}

// Q6_K block (210 bytes): ql[128], qh[64], scales[16] (int8), d.
func quantQ6_K(src []float32, dst []byte) {
	var (
		L      [qk]int8
		scales [16]float32
	)
	for i := 0; i < len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		b := (*[210]byte)(dst[i/qk*210:])
		var maxScale, maxAbsScale float32
		for ib := range 16 {
			scales[ib] = makeQXQuants(x[16*ib:16*ib+16], 32, L[16*ib:])
			if a := abs32(scales[ib]); a > maxAbsScale {
				maxAbsScale, maxScale = a, scales[ib]
			}
		}
		if maxAbsScale < groupMaxEps {
			clear(b[:])
			continue
		}
		iscale := -128 / maxScale
		putF16le(b[208:], 1/iscale)
		sc := (*[16]byte)(b[192:208])
		for ib := range 16 {
			sc[ib] = byte(int8(min(127, nearestInt(iscale*scales[ib]))))
		}
		d := f16le(b[208:])
		for j := range 16 {
			dl := d * float32(int8(sc[j]))
			if dl == 0 {
				continue
			}
			for ii := range 16 {
				L[16*j+ii] = int8(clampInt(nearestInt(x[16*j+ii]/dl), -32, 31) + 32)
			}
		}
		for h := range 2 {
			ql := (*[64]byte)(b[64*h:])
			qh := (*[32]byte)(b[128+32*h:])
			l0 := (*[128]int8)(L[128*h:])
			for l := range 32 {
				q1, q2, q3, q4 := byte(l0[l]), byte(l0[l+32]), byte(l0[l+64]), byte(l0[l+96])
				ql[l] = q1&0xf | (q3&0xf)<<4
				ql[l+32] = q2&0xf | (q4&0xf)<<4
				qh[l] = q1>>4 | (q2>>4)<<2 | (q3>>4)<<4 | (q4>>4)<<6
			}
		}
	}
}
