//go:build !purego

package cpu

import "unsafe"

//go:noescape
func axpyF16AVX2(dst *float32, v *byte, w float32, n int)

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

//go:noescape
func swigluAVX2(dst, gate, up *float32, n int)

// swigluAsm runs the AVX2 kernel over the first multiple of 8 elements and
// returns how many it did.
func swigluAsm(dst, gate, up []float32) int {
	n8 := len(dst) &^ 7
	if n8 > 0 && hasAVX2 {
		swigluAVX2(unsafe.SliceData(dst), unsafe.SliceData(gate), unsafe.SliceData(up), n8)
		return n8
	}
	return 0
}

//go:noescape
func expShiftAVX2(x *float32, m float32, n int)

// expShiftAsm runs the AVX2 kernel over the first multiple of 8 elements
// and returns how many it did.
func expShiftAsm(x []float32, m float32) int {
	n8 := len(x) &^ 7
	if n8 > 0 && hasAVX2 {
		expShiftAVX2(unsafe.SliceData(x), m, n8)
		return n8
	}
	return 0
}
