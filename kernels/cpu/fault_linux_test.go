package cpu

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/hearth-llm/hearth/quant"
)

// TestNewMatrixFault: weights mapped from a file that was truncated after
// mapping make NewMatrix return an error where it reads them at load (the
// repacking levels), never crash the process.
func TestNewMatrixFault(t *testing.T) {
	if g := gemmOf(quant.Q4_K); g == nil || g.repack == nil {
		t.Skip("this level reads no weights at load")
	}
	r := rand.New(rand.NewPCG(71, 72))
	// 16,384 blocks: repacked in parallel (repackParallel) where there are
	// several CPUs.
	const rows, cols = 2048, 2048
	m := quantizeMatrix(t, r, quant.Q4_K, rows, cols)
	path := filepath.Join(t.TempDir(), "w")
	if err := os.WriteFile(path, m.Data, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	data, err := syscall.Mmap(int(f.Fd()), 0, len(m.Data), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(data)
	if err := os.Truncate(path, 4096); err != nil {
		t.Fatal(err)
	}
	if _, err := NewMatrix(quant.Q4_K, rows, cols, data); err == nil {
		t.Fatal("NewMatrix read a truncated mapping without an error")
	} else {
		t.Log(err)
	}
}
