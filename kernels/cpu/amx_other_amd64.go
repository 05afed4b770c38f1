//go:build !linux && !purego

package cpu

// amxPermit: the amx level is used on Linux only (other systems grant the
// tile state differently, or not at all).
func amxPermit() bool { return false }
