package bench

import (
	"runtime"

	"golang.org/x/sys/cpu"
)

// simdLevel names the widest SIMD extension the CPU offers (kernels/cpu's
// Level names the kernel family actually in use, which may be lower).
func simdLevel() string {
	switch runtime.GOARCH {
	case "amd64":
		switch {
		case cpu.X86.HasAVX512F && cpu.X86.HasAVX512BW && cpu.X86.HasAVX512VL:
			if cpu.X86.HasAVX512VNNI {
				return "avx512-vnni"
			}
			return "avx512"
		case cpu.X86.HasAVX2 && cpu.X86.HasFMA:
			return "avx2"
		case cpu.X86.HasSSE42:
			return "sse4.2"
		}
		return "sse2"
	case "arm64":
		if cpu.ARM64.HasSVE {
			return "sve"
		}
		if cpu.ARM64.HasASIMDDP {
			return "neon-dotprod"
		}
		return "neon"
	}
	return "none"
}
