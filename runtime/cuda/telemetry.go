package cuda

// Telemetry is what NVML reports about a GPU, for placement, /api/ps,
// metrics and hearth bench's energy per token.
type Telemetry struct {
	Index      int
	Name       string
	MemTotal   uint64 // bytes
	MemFree    uint64
	MemUsed    uint64
	CC         [2]int  // compute capability
	PowerW     float64 // current board power draw, watts
	UtilGPU    int     // percent of the last sample period a kernel ran
	UtilMemory int     // percent of it the memory was read or written
	TempC      int     // GPU core temperature, °C
}
