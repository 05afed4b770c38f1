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
