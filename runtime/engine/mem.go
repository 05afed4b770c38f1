package engine

import "github.com/hearth-llm/hearth/runtime/device/hostmem"

// memAvailable is a variable so tests can fake the machine's memory.
var memAvailable = hostmem.Available
