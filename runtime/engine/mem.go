package engine

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// memAvailable is a variable so tests can fake the machine's memory.
var memAvailable = procMemAvailable

// procMemAvailable reads MemAvailable from /proc/meminfo (Linux); false where
// the figure cannot be read, and then no check is made.
func procMemAvailable() (uint64, bool) {
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
