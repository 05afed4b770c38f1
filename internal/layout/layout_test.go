// Package layout holds the test that keeps the dependency direction of
// DESIGN.md's layout: leaves stay leaves.
package layout

import (
	"encoding/json"
	"io"
	"os/exec"
	"strings"
	"testing"
)

const module = "github.com/hearth-llm/hearth/"

// allowed maps a package prefix to the prefixes of ours it may import.
var allowed = []struct {
	pkg string
	may []string
}{
	{"quant", nil},
	{"loader", []string{"quant", "loader"}},
	{"kernels", []string{"quant", "kernels"}},
	{"kernels/libmf", nil},                      // float math, glibc's and ggml's, bit for bit
	{"kernels/rope", []string{"kernels/libmf"}}, // shared by every backend and the interface
	// The backend interface names no implementation.
	{"runtime/backend", []string{"quant", "kernels/rope", "kernels/libmf"}},
	// The host's memory, read by the server too: it must not pull in the backends.
	{"runtime/device/hostmem", nil},
	{"scheduler", []string{"scheduler"}},
	{"runtime", []string{"loader", "quant", "kernels", "scheduler", "runtime"}},
}

func TestImportDirection(t *testing.T) {
	out, err := exec.Command("go", "list", "-json", "github.com/hearth-llm/hearth/...").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	for {
		var p struct {
			ImportPath string
			Imports    []string
		}
		if err := dec.Decode(&p); err == io.EOF {
			break
		} else if err != nil {
			t.Fatal(err)
		}
		rel := strings.TrimPrefix(p.ImportPath, module)
		for _, rule := range allowed {
			if rel != rule.pkg && !strings.HasPrefix(rel, rule.pkg+"/") {
				continue
			}
			for _, imp := range p.Imports {
				if !strings.HasPrefix(imp, module) {
					continue
				}
				dep := strings.TrimPrefix(imp, module)
				// Test support (finding the shared test data) is open to all.
				ok := dep == "internal/testdata"
				for _, m := range rule.may {
					if dep == m || strings.HasPrefix(dep, m+"/") {
						ok = true
					}
				}
				if !ok {
					t.Errorf("%s imports %s: %s may import only %v", rel, dep, rule.pkg, rule.may)
				}
			}
		}
	}
}
