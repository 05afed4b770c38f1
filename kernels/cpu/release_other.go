//go:build !linux

package cpu

// releaseSource is a no-op where there is no MADV_PAGEOUT.
func releaseSource(b []byte) {}
