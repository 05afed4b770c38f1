//go:build !purego

package cpu

import "unsafe"

// axpyF16Asm runs the AVX2 kernel over the first multiple of 8 elements
// and returns how many it did.
func axpyF16Asm(dst []float32, w float32, v []uint16) int {
	n8 := len(v) &^ 7
	if n8 > 0 && hasAVX2 {
		axpyF16AVX2(unsafe.SliceData(dst), (*byte)(unsafe.Pointer(unsafe.SliceData(v))), w, n8)
		return n8
	}
	return 0
}

// axpyF16x4Asm runs the AVX2 kernel over the first multiple of 8
// elements of the four rows and returns how many it did.
func axpyF16x4Asm(dst []float32, w *[4]float32, v []uint16, stride int) int {
	n8 := len(dst) &^ 7
	if n8 > 0 && hasAVX2 {
		axpyF16x4AVX2(unsafe.SliceData(dst), (*byte)(unsafe.Pointer(unsafe.SliceData(v))), 2*stride, &w[0], n8)
		return n8
	}
	return 0
}

// swigluAsm runs the AVX2 kernel over all of dst, the last partial group
// of 8 through a padded copy, so every element takes the same path
// whatever the length (results do not depend on how a batch is split).
// It returns how many it did: len(dst), or 0 without AVX2.
func swigluAsm(dst, gate, up []float32) int {
	if !hasAVX2 {
		return 0
	}
	n8 := len(dst) &^ 7
	if n8 > 0 {
		swigluAVX2(unsafe.SliceData(dst), unsafe.SliceData(gate), unsafe.SliceData(up), n8)
	}
	if tail := len(dst) - n8; tail > 0 {
		var d, g, u [8]float32
		copy(g[:], gate[n8:])
		copy(u[:], up[n8:])
		swigluAVX2(&d[0], &g[0], &u[0], 8)
		copy(dst[n8:], d[:tail])
	}
	return len(dst)
}

// expShiftAsm runs the AVX2 kernel over all of x, the last partial group
// of 8 through a padded copy, and returns how many it did: len(x), or 0
// without AVX2.
func expShiftAsm(x []float32, m float32) int {
	if !hasAVX2 {
		return 0
	}
	n8 := len(x) &^ 7
	if n8 > 0 {
		expShiftAVX2(unsafe.SliceData(x), m, n8)
	}
	if tail := len(x) - n8; tail > 0 {
		var t [8]float32
		copy(t[:], x[n8:])
		expShiftAVX2(&t[0], m, 8)
		copy(x[n8:], t[:tail])
	}
	return len(x)
}

// attnF16Asm reports whether the F16 attention kernels run here for head
// size hd (AVX2 at the active level, hd a multiple of 16).
func attnF16Asm(hd int) bool { return hasAVX2 && activeLevel >= levelAVX2 && hd%16 == 0 && hd > 0 }

// qkF16Asm is qkF16Generic with the kernels, G heads at a time.
func qkF16Asm(q []float32, group, hd int, k *byte, stride, n int, out []float32, ldo int) {
	for g := 0; g < group; {
		qp, op := &q[g*hd], &out[g*ldo]
		switch r := group - g; {
		case r >= 4:
			qkF16G4(qp, hd, k, stride, n, op, 4*ldo)
			g += 4
		case r >= 2:
			qkF16G2(qp, hd, k, stride, n, op, 4*ldo)
			g += 2
		default:
			qkF16G1(qp, hd, k, stride, n, op, 4*ldo)
			g++
		}
	}
}

// pvF16Asm is pvF16Generic with the kernels, G heads at a time.
func pvF16Asm(p []float32, ldp, group, hd int, v *byte, stride, n int, lanes []float32, lane0 int) {
	for g := 0; g < group; {
		pp, lp := &p[g*ldp], &lanes[g*16*hd]
		switch r := group - g; {
		case r >= 4:
			pvF16G4(pp, 4*ldp, hd, v, stride, n, lp, lane0)
			g += 4
		case r >= 2:
			pvF16G2(pp, 4*ldp, hd, v, stride, n, lp, lane0)
			g += 2
		default:
			pvF16G1(pp, 4*ldp, hd, v, stride, n, lp, lane0)
			g++
		}
	}
}

// dotF32Lanes adds a[i]·b[i] into lane i mod len(acc) of acc (16 or 64
// lanes) with one FMA each, over the first multiple of len(acc) elements,
// with the AVX2 kernel, and returns how many it did.
func dotF32Lanes(a, b []float32, acc []float32) int {
	l := len(acc)
	n := len(a) / l * l
	if n == 0 || !hasAVX2 {
		return 0
	}
	if l == 16 {
		dotF32L16(unsafe.SliceData(a), unsafe.SliceData(b), n, &acc[0])
	} else {
		dotF32L64(unsafe.SliceData(a), unsafe.SliceData(b), n, &acc[0])
	}
	return n
}

// sumGroups16Asm is softmaxAt's sum over whole groups of sixteen (len(x)
// a multiple of 16) with the AVX2 kernel; ok false where there is none.
func sumGroups16Asm(x []float32) (sum float64, ok bool) {
	if !hasAVX2 || activeLevel < levelAVX2 {
		return 0, false
	}
	if len(x) == 0 {
		return 0, true
	}
	return sumGroups16(unsafe.SliceData(x), len(x)), true
}

// roundF16Asm rounds the first multiple of 8 of x to float16 values and
// returns how many it did.
func roundF16Asm(x []float32) int {
	n := len(x) &^ 7
	if n == 0 || !hasAVX2 || activeLevel < levelAVX2 {
		return 0
	}
	roundF16(unsafe.SliceData(x), n)
	return n
}

// reduceLanesAsm is reduceLanes for hd a multiple of 8; false where there
// is no kernel.
func reduceLanesAsm(out, lanes []float32, group, hd int) bool {
	if hd%8 != 0 || !hasAVX2 || activeLevel < levelAVX2 {
		return false
	}
	for g := range group {
		reduceLanes16(&out[g*hd], &lanes[g*16*hd], hd)
	}
	return true
}

// madAsm sets y[i] = fma(x[i], v, y[i]) over the first multiple of 8 and
// returns how many it did.
func madAsm(y, x []float32, v float32) int {
	n := len(y) &^ 7
	if n == 0 || !hasAVX2 || activeLevel < levelAVX2 {
		return 0
	}
	madF32(unsafe.SliceData(y), unsafe.SliceData(x[:len(y)]), v, n)
	return n
}

// scaleAsm sets x[i] *= v over the first multiple of 8 and returns how
// many it did.
func scaleAsm(x []float32, v float32) int {
	n := len(x) &^ 7
	if n == 0 || !hasAVX2 || activeLevel < levelAVX2 {
		return 0
	}
	scaleF32(unsafe.SliceData(x), v, n)
	return n
}

// vecDotF32Asm is DotF32 with the AVX2 kernel; ok false where there is none.
func vecDotF32Asm(a, b []float32) (float32, bool) {
	if !hasAVX2 || activeLevel < levelAVX2 || len(a) == 0 {
		return 0, false
	}
	return vecDotF32(unsafe.SliceData(a), unsafe.SliceData(b[:len(a)]), len(a)), true
}

// siluAsm sets dst[i] = SiLU(x[i]) over the first multiple of 8 and
// returns how many it did.
func siluAsm(dst, x []float32) int {
	n := len(dst) &^ 7
	if n == 0 || !hasAVX2 || activeLevel < levelAVX2 {
		return 0
	}
	siluAVX2(unsafe.SliceData(dst), unsafe.SliceData(x[:len(dst)]), n)
	return n
}

// convStepAsm is ConvStep's sums for kernel 4 and c a multiple of 8
// (dst only; the caller shifts the state); false where there is no kernel.
func convStepAsm(dst, x, w, state []float32, c, k int) bool {
	if k != 4 || c%8 != 0 || c == 0 || !hasAVX2 || activeLevel < levelAVX2 {
		return false
	}
	convStep4(&dst[0], &x[0], &w[0], &state[0], c)
	return true
}
