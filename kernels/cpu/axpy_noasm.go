//go:build !amd64 || purego

package cpu

func axpyF16Asm(dst []float32, w float32, v []uint16) int { return 0 }

func axpyF16x4Asm(dst []float32, w *[4]float32, v []uint16, stride int) int { return 0 }

func swigluAsm(dst, gate, up []float32) int { return 0 }

func expShiftAsm(x []float32, m float32) int { return 0 }

func attnF16Asm(hd int) bool { return false }

func qkF16Asm(q []float32, group, hd int, k *byte, stride, n int, out []float32, ldo int) {
	panic("cpu: no F16 attention kernels")
}

func pvF16Asm(p []float32, ldp, group, hd int, v *byte, stride, n int, lanes []float32, lane0 int) {
	panic("cpu: no F16 attention kernels")
}

func dotF32Lanes(a, b []float32, acc []float32) int { return 0 }

func sumGroups16Asm(x []float32) (float64, bool) { return 0, false }

func roundF16Asm(x []float32) int { return 0 }

func reduceLanesAsm(out, lanes []float32, group, hd int) bool { return false }

func madAsm(y, x []float32, v float32) int { return 0 }

func scaleAsm(x []float32, v float32) int { return 0 }

func vecDotF32Asm(a, b []float32) (float32, bool) { return 0, false }

func siluAsm(dst, x []float32) int { return 0 }

func convStepAsm(dst, x, w, state []float32, c, k int) bool { return false }
