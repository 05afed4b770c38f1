package bench

import (
	"bufio"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"time"
)

// System describes the machine a run measured.
type System struct {
	CPU   string `json:"cpu_info"` // model name from /proc/cpuinfo
	Cores int    `json:"cores"`    // logical CPUs
	SIMD  string `json:"simd"`     // widest SIMD extension
	OS    string `json:"os"`       // GOOS/GOARCH
	Go    string `json:"go"`       // Go version
	// Memory bandwidth measured in the same run (MeasureBandwidth).
	ReadGBs          float64 `json:"read_gbs,omitempty"` // sum over a buffer: the decode roofline's denominator
	CopyGBs          float64 `json:"copy_gbs,omitempty"` // bytes read + written by copy
	BandwidthBytes   int64   `json:"bandwidth_bytes,omitempty"`
	BandwidthThreads int     `json:"bandwidth_threads,omitempty"`
}

// Describe reads the CPU model, core count and SIMD level.
func Describe() System {
	return System{CPU: cpuModel(), Cores: runtime.NumCPU(), SIMD: simdLevel(),
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
// (<= 0: one per CPU): the best of three passes of a read (a sum of every
// word) and of a copy of one half onto the other (bytes read plus bytes
// written). The buffer is released afterwards.
func (s *System) MeasureBandwidth(size int64, threads int) {
	if threads <= 0 {
		threads = runtime.NumCPU()
	}
	words := int(size / 8 / int64(16*threads) * int64(16*threads))
	buf := make([]uint64, words)
	parallel(threads, len(buf), func(lo, hi int) { // touch every page first
		for i := lo; i < hi; i++ {
			buf[i] = uint64(i)
		}
	})
	sums := make([]uint64, threads)
	read := best(3, func() {
		chunk := len(buf) / threads
		var wg sync.WaitGroup
		for t := range threads {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sums[t] = sumWords(buf[t*chunk : (t+1)*chunk])
			}()
		}
		wg.Wait()
	})
	half := len(buf) / 2
	cp := best(3, func() {
		parallel(threads, half, func(lo, hi int) { copy(buf[half+lo:half+hi], buf[lo:hi]) })
	})
	n := int64(len(buf)) * 8
	s.ReadGBs = float64(n) / read.Seconds() / 1e9
	s.CopyGBs = float64(n) / cp.Seconds() / 1e9 // half read + half written
	s.BandwidthBytes, s.BandwidthThreads = n, threads
	sink = sums[0]
	buf = nil
	runtime.GC()
	debug.FreeOSMemory()
}

var sink uint64

// sumWords adds up x with eight independent sums, so the loop is bound by
// loads, not by the latency of one chain of additions.
func sumWords(x []uint64) uint64 {
	var s0, s1, s2, s3, s4, s5, s6, s7 uint64
	for len(x) >= 8 {
		s0 += x[0]
		s1 += x[1]
		s2 += x[2]
		s3 += x[3]
		s4 += x[4]
		s5 += x[5]
		s6 += x[6]
		s7 += x[7]
		x = x[8:]
	}
	for _, v := range x {
		s0 += v
	}
	return s0 + s1 + s2 + s3 + s4 + s5 + s6 + s7
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
