package cpu

import "github.com/hearth-llm/hearth/quant"

// AxpyF16 adds w·v[i] to dst[i] for the float16 values v (len(dst) of
// them): the weighted sum of value rows in attention.
func AxpyF16(dst []float32, w float32, v []uint16) {
	v = v[:len(dst)]
	n8 := 0
	if activeLevel >= levelAVX2 {
		n8 = axpyF16Asm(dst, w, v)
	}
	axpyF16Generic(dst[n8:], w, v[n8:])
}

// axpyF16Generic is the reference: one multiply-add per element in float32.
func axpyF16Generic(dst []float32, w float32, v []uint16) {
	for i, x := range v {
		dst[i] += w * quant.F16ToF32(x)
	}
}

// AxpyF16x4 adds, for k = 0, 1, 2, 3 in turn, w[k]·v[k·stride+i] to
// dst[i]: four rows of len(dst) float16 values, stride values apart (a
// LoRA's Bᵀ rows times its coefficients). The bits of AxpyF16 on each row
// in turn, with dst read and written once instead of four times.
func AxpyF16x4(dst []float32, w *[4]float32, v []uint16, stride int) {
	n := len(dst)
	if n == 0 {
		return
	}
	_ = v[3*stride+n-1] // the four rows are in v
	n8 := 0
	if activeLevel >= levelAVX2 {
		n8 = axpyF16x4Asm(dst, w, v, stride)
	}
	for k := range 4 {
		axpyF16Generic(dst[n8:], w[k], v[k*stride+n8:k*stride+n])
	}
}
