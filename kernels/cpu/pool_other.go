//go:build !linux

package cpu

// osYield is a no-op where sched_yield is not at hand (see pool_linux.go).
func osYield() {}
