package cpu

import "syscall"

// osYield gives this thread's CPU to another runnable thread, if any
// (sched_yield): a spinning worker must not hold a core that the caller's
// thread, or another process, is waiting for.
func osYield() { syscall.Syscall(syscall.SYS_SCHED_YIELD, 0, 0, 0) }
