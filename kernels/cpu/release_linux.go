package cpu

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// releaseSource tells the kernel that the pages of b, whose repacked copy
// the kernels read from now on, can be reclaimed (MADV_PAGEOUT, Linux
// 5.4+): for weights mapped from a file they are dropped and read again
// if ever touched (a row's dequantization, say), so a repacked model is
// not resident twice. The hint never changes b's contents; errors (an
// older kernel, memory that cannot be paged out) are ignored. Only the
// whole pages inside b are named.
func releaseSource(b []byte) {
	if len(b) < 1<<20 {
		return
	}
	ps := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	lo := (start + ps - 1) &^ (ps - 1)
	hi := (start + uintptr(len(b))) &^ (ps - 1)
	if hi <= lo {
		return
	}
	_ = unix.Madvise(b[lo-start:hi-start], unix.MADV_PAGEOUT)
}
