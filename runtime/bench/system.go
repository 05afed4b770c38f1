package bench

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	kcpu "github.com/hearth-llm/hearth/kernels/cpu"
)

// System describes the machine a run measured.
type System struct {
	CPU   string `json:"cpu_info"` // model name from /proc/cpuinfo
	Cores int    `json:"cores"`    // logical CPUs
	SIMD  string `json:"simd"`     // widest SIMD extension of the CPU
	// Kernels is the CPU kernel level in use (kernels/cpu.Level).
	Kernels string `json:"kernels"`
	OS      string `json:"os"` // GOOS/GOARCH
	Go      string `json:"go"` // Go version
	// Memory bandwidth measured in the same run (MeasureBandwidth).
	ReadGBs          float64 `json:"read_gbs,omitempty"` // sum over a buffer: the decode roofline's denominator
	CopyGBs          float64 `json:"copy_gbs,omitempty"` // bytes read + written by copy
	BandwidthBytes   int64   `json:"bandwidth_bytes,omitempty"`
	BandwidthThreads int     `json:"bandwidth_threads,omitempty"`
}

// Describe reads the CPU model, core count and SIMD level.
func Describe() System {
	return System{CPU: cpuModel(), Cores: runtime.NumCPU(), SIMD: simdLevel(), Kernels: kcpu.Level(),
		OS: runtime.GOOS + "/" + runtime.GOARCH, Go: runtime.Version()}
}

func cpuModel() string {
	f, err := os.Open("/proc/cpuinfo")
	if err != nil {
		return runtime.GOARCH
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		k = strings.TrimSpace(k)
		if ok && (k == "model name" || k == "Model" || k == "cpu model") {
			return strings.TrimSpace(v)
		}
	}
	return runtime.GOARCH
}

// MeasureBandwidth measures memory bandwidth on a buffer of size bytes (at
// least 1 GiB is meaningful: far past every cache) with threads goroutines
// (<= 0: one per CPU), each on its own contiguous part: the best of three
// passes of a read (bytes.IndexByte for a byte the buffer lacks: the
// runtime's SIMD scan, the same wide loads a decode kernel streams weights
// with) and of a copy of one half onto the other (memmove; bytes read plus
// bytes written). The buffer is released afterwards.
func (s *System) MeasureBandwidth(size int64, threads int) {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	n := int(size / int64(64*threads) * int64(64*threads))
	buf := make([]byte, n)
	parallel(threads, n, func(lo, hi int) { // touch every page; no byte is 0xff
		for i := lo; i < hi; i++ {
			buf[i] = byte(i) & 0x7f
		}
	})
	found := make([]int, threads)
	read := best(3, func() {
		parallel(threads, n, func(lo, hi int) { found[lo*threads/n] = bytes.IndexByte(buf[lo:hi], 0xff) })
	})
	half := n / 2
	cp := best(3, func() {
		parallel(threads, half, func(lo, hi int) { copy(buf[half+lo:half+hi], buf[lo:hi]) })
	})
	s.ReadGBs = float64(n) / read.Seconds() / 1e9
	s.CopyGBs = float64(n) / cp.Seconds() / 1e9 // half read + half written
	s.BandwidthBytes, s.BandwidthThreads = int64(n), threads
	runtime.KeepAlive(found) // the scan's results are kept, so it is not optimised away
	buf = nil
	runtime.GC()
	debug.FreeOSMemory()
}

// parallel splits [0, n) into threads contiguous ranges run concurrently.
func parallel(threads, n int, fn func(lo, hi int)) {
	var wg sync.WaitGroup
	chunk := (n + threads - 1) / threads
	for lo := 0; lo < n; lo += chunk {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fn(lo, min(n, lo+chunk))
		}()
	}
	wg.Wait()
}

func best(n int, fn func()) time.Duration {
	var b time.Duration
	for i := range n {
		t0 := time.Now()
		fn()
		if d := time.Since(t0); i == 0 || d < b {
			b = d
		}
	}
	return b
}
