//go:build !linux

package cpu

import "testing"

// guarded returns a copy of b (no guard page on this system).
func guarded(t testing.TB, b []byte) []byte { return append([]byte(nil), b...) }
