package cpu

import (
	"fmt"
	"testing"
	"time"
)

// BenchmarkPoolRun times Run of two ranges after the caller has been busy
// for a while alone (as between two matrix products of a decode step,
// while the worker is idle): run-ns is the time from the call until both
// ranges are done, when each range only records when it started; late-ns is
// how long after the call the worker's range began.
func BenchmarkPoolRun(b *testing.B) {
	p := NewPool(2)
	defer p.Close()
	for _, gap := range []time.Duration{0, 20 * time.Microsecond, 100 * time.Microsecond, time.Millisecond} {
		b.Run(fmt.Sprintf("gap%v", gap), func(b *testing.B) {
			var spent, late time.Duration
			var started [2]time.Time
			for b.Loop() {
				t := time.Now()
				for time.Since(t) < gap {
				}
				t = time.Now()
				p.Run(2, 1, func(s, e int) { started[s] = time.Now() })
				spent += time.Since(t)
				late += started[1].Sub(t)
			}
			b.ReportMetric(float64(spent.Nanoseconds())/float64(b.N), "run-ns")
			b.ReportMetric(float64(late.Nanoseconds())/float64(b.N), "late-ns")
		})
	}
}
