package cpu

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGeneratedAsm regenerates dot_amd64.s and its Go declarations,
// dot_stubs_amd64.go, with the avo program in _asm and fails if either
// committed file differs (run `go generate ./kernels/cpu/`). The first line
// of each, which names the command, is not compared. It skips when the go
// tool is missing or the generator's module cannot be fetched.
func TestGeneratedAsm(t *testing.T) {
	if testing.Short() {
		t.Skip("regenerating the assembly needs the go tool; skipped in -short mode")
	}
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go tool in PATH")
	}
	dir := t.TempDir()
	files := []string{"dot_amd64.s", "dot_stubs_amd64.go"}
	cmd := exec.Command(gobin, "-C", "_asm", "run", ".", "-out", filepath.Join(dir, files[0]),
		"-stubs", filepath.Join(dir, files[1]), "-pkg", "cpu")
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod", "GOOS=", "GOARCH=")
	msg, err := cmd.CombinedOutput()
	if err != nil {
		s := string(msg)
		if strings.Contains(s, "dial tcp") || strings.Contains(s, "proxy") || strings.Contains(s, "no required module") ||
			strings.Contains(s, "missing go.sum") {
			t.Skipf("cannot fetch the generator's dependencies: %s", s)
		}
		t.Fatalf("generator failed: %v\n%s", err, s)
	}
	body := func(b []byte) []byte {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			return b[i:]
		}
		return b
	}
	for _, name := range files {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(body(got), body(want)) {
			t.Errorf("%s is stale: run `go generate ./kernels/cpu/` and commit the result", name)
		}
	}
}
