package cpu

import (
	"syscall"
	"testing"
)

// guarded returns a copy of b that ends where an unreadable page begins, so
// that a kernel reading past the end of its row faults. Rows of odd block
// sizes start at odd addresses this way, which tests unaligned loads too.
func guarded(t testing.TB, b []byte) []byte {
	t.Helper()
	ps := syscall.Getpagesize()
	n := (len(b)+ps-1)/ps*ps + ps
	m, err := syscall.Mmap(-1, 0, n, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Munmap(m) })
	if err := syscall.Mprotect(m[n-ps:], syscall.PROT_NONE); err != nil {
		t.Fatal(err)
	}
	g := m[n-ps-len(b) : n-ps : n-ps]
	copy(g, b)
	return g
}
