package quant

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// Test vectors computed by ggml live outside the repository, in
// $HEARTH_TESTDATA/quant, by default <module root>/../shared/quant (see
// shared/quant/README.md), and, for types added since (MXFP4), in
// testdata/ggml in the same format (made by its gen_mxfp4.py). Without the
// shared directory the vector tests run on testdata/ggml alone, except
// under CI=true, where a missing directory is a failure.

// sharedDir returns the shared test-data root.
func sharedDir(t testing.TB) string {
	if d := os.Getenv("HEARTH_TESTDATA"); d != "" {
		return d
	}
	dir, err := os.Getwd()
	if err != nil {
		t.Fatalf("getwd: %v", err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return filepath.Join(dir, "..", "shared")
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return ""
		}
		dir = parent
	}
}

// vectorCase is one entry of types.json.
type vectorCase struct {
	Name       string `json:"-"`
	Dir        string `json:"-"` // the directory holding its files
	ID         uint32 `json:"ggml_type_id"`
	TypeName   string `json:"type_name"`
	BlockSize  int    `json:"block_size"`
	BlockBytes int    `json:"block_bytes"`
	RowBytes   int    `json:"row_bytes"`
	VecDotType string `json:"vec_dot_type"`
	XqRowBytes int    `json:"xq_row_bytes"`
}

const (
	vecRows = 8
	vecCols = 512
)

// vectorData holds the per-type test vectors of both directories.
type vectorData struct {
	cases []vectorCase
}

// loadVectors loads testdata/ggml and the shared vectors, verifying each
// directory's SHA256SUMS once.
func loadVectors(t testing.TB) *vectorData {
	t.Helper()
	v := &vectorData{}
	v.load(t, filepath.Join("testdata", "ggml"))
	dir := filepath.Join(sharedDir(t), "quant")
	if _, err := os.Stat(filepath.Join(dir, "types.json")); err != nil {
		msg := "shared quant test vectors not found (" + err.Error() + "); set HEARTH_TESTDATA to the shared test-data directory"
		if os.Getenv("CI") == "true" {
			t.Fatal(msg)
		}
		t.Log(msg + "; testing the vectors in testdata/ggml only")
	} else {
		v.load(t, dir)
	}
	sort.Slice(v.cases, func(i, j int) bool { return v.cases[i].ID < v.cases[j].ID })
	return v
}

// load adds the cases of dir's types.json.
func (v *vectorData) load(t testing.TB, dir string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(dir, "types.json"))
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]vectorCase
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("%s/types.json: %v", dir, err)
	}
	for name, c := range m {
		c.Name, c.Dir = name, dir
		v.cases = append(v.cases, c)
	}
	verifySums(t, dir)
}

// verifySums checks every file listed in SHA256SUMS, so a damaged vector
// reads as a data problem, not a codec bug.
func verifySums(t testing.TB, dir string) {
	t.Helper()
	sums, err := os.ReadFile(filepath.Join(dir, "SHA256SUMS"))
	if err != nil {
		t.Fatalf("SHA256SUMS: %v", err)
	}
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		want, name, ok := strings.Cut(line, "  ")
		if !ok {
			t.Fatalf("SHA256SUMS: bad line %q", line)
		}
		data, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got := sha256.Sum256(data)
		if hex.EncodeToString(got[:]) != want {
			t.Fatalf("%s: SHA-256 mismatch, the test data is damaged", name)
		}
	}
}

func (v *vectorData) bytes(t testing.TB, c vectorCase, suffix string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.Dir, c.Name+"."+suffix))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func (v *vectorData) floats(t testing.TB, c vectorCase, suffix string) []float32 {
	t.Helper()
	b := v.bytes(t, c, suffix)
	if len(b)%4 != 0 {
		t.Fatalf("%s.%s: %d bytes is not float32 data", c.Name, suffix, len(b))
	}
	f := make([]float32, len(b)/4)
	for i := range f {
		f[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return f
}

func parseCaseType(t testing.TB, name string) Type {
	t.Helper()
	typ, err := ParseType(name)
	if err != nil {
		t.Fatal(err)
	}
	return typ
}
