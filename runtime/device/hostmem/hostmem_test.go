package hostmem

import (
	"runtime"
	"testing"
)

func TestAvailable(t *testing.T) {
	n, ok := Available()
	if runtime.GOOS == "linux" && (!ok || n == 0) {
		t.Errorf("Available() = %d, %v on Linux", n, ok)
	}
}
