package synth

import (
	"errors"
	"testing"
)

// TestOrdered: chunks are consumed in order whatever the producers'
// timing, and an error from either side stops the pipeline without a
// deadlock.
func TestOrdered(t *testing.T) {
	const n = 50
	size := func(i int) int { return 1 + i%3 }
	produce := func(i int, buf []byte, _ []float32) error {
		for k := range buf {
			buf[k] = byte(i)
		}
		return nil
	}
	var got []byte
	err := ordered(n, 4, 3, size, 1, produce, func(b []byte) error {
		if len(b) != size(int(b[0])) {
			t.Errorf("chunk %d has %d bytes", b[0], len(b))
		}
		got = append(got, b[0])
		return nil
	})
	if err != nil || len(got) != n {
		t.Fatalf("err %v, %d chunks", err, len(got))
	}
	for i, c := range got {
		if int(c) != i {
			t.Fatalf("chunk %d consumed at %d", c, i)
		}
	}
	stop := errors.New("disk full")
	calls := 0
	err = ordered(n, 4, 3, size, 1, produce, func([]byte) error {
		calls++
		if calls == 5 {
			return stop
		}
		return nil
	})
	if !errors.Is(err, stop) || calls != 5 {
		t.Errorf("consume error: %v after %d calls", err, calls)
	}
	bad := errors.New("bad row")
	err = ordered(n, 4, 3, size, 1, func(i int, buf []byte, x []float32) error {
		if i == 7 {
			return bad
		}
		return produce(i, buf, x)
	}, func([]byte) error { return nil })
	if !errors.Is(err, bad) {
		t.Errorf("produce error: %v", err)
	}
}
