//go:build !purego

package cpu

import (
	"syscall"
	"unsafe"
)

// amxPermit asks Linux (5.16 or later) for the AMX tile data state
// (XFEATURE_XTILEDATA) for this process, once, at start-up: without it the
// first tile instruction faults. Go's signal stacks (32 KiB) hold the
// larger signal frame that the tile state needs (about 11 KiB), so the
// request cannot fail for them; it fails on kernels without AMX support,
// and then the amx level is not used.
func amxPermit() bool {
	const (
		archGetXCompPerm  = 0x1022
		archReqXCompPerm  = 0x1023
		xfeatureXTileData = 18
	)
	var perm uint64
	if _, _, e := syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, archGetXCompPerm, uintptr(unsafe.Pointer(&perm)), 0); e == 0 &&
		perm&(1<<xfeatureXTileData) != 0 {
		return true
	}
	if _, _, e := syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, archReqXCompPerm, xfeatureXTileData, 0); e != 0 {
		return false
	}
	_, _, e := syscall.RawSyscall(syscall.SYS_ARCH_PRCTL, archGetXCompPerm, uintptr(unsafe.Pointer(&perm)), 0)
	return e == 0 && perm&(1<<xfeatureXTileData) != 0
}
