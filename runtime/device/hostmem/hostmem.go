// Package hostmem reports the host's available memory, for every fit
// check that weighs a model or a KV cache against RAM (the engine's
// sequences and batched cache, the server's memory budget). It imports
// nothing of ours, so the HTTP server can use it without the backends.
package hostmem

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// Available is the memory the kernel says can be allocated without
// swapping (MemAvailable in /proc/meminfo, Linux); false where the figure
// cannot be read, and then callers skip their check.
func Available() (uint64, bool) {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0, false
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && fields[0] == "MemAvailable:" {
			kb, err := strconv.ParseUint(fields[1], 10, 64)
			return kb << 10, err == nil
		}
	}
	return 0, false
}
