package cuda

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/kernels/cuda/internal/ptxgen"
	"github.com/hearth-llm/hearth/quant"
)

// TestPTXMatchesSources fails when a .cu (or a header it includes) changed
// since its .ptx was generated, when a source has no PTX or a PTX no
// source: run `make kernels` and commit the result.
func TestPTXMatchesSources(t *testing.T) {
	cus, err := ptxgen.CUFiles(".")
	if err != nil {
		t.Fatal(err)
	}
	if len(cus) == 0 {
		t.Fatal("no .cu sources")
	}
	var compilers []string
	for _, cu := range cus {
		ptx, err := os.ReadFile(ptxgen.PTXName(cu))
		if err != nil {
			t.Errorf("%s has no PTX (run `make kernels`): %v", cu, err)
			continue
		}
		h, err := ptxgen.ParseHeader(ptx)
		if err != nil {
			t.Errorf("%s: %v", ptxgen.PTXName(cu), err)
			continue
		}
		want, err := ptxgen.Hashes(".", cu)
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(h.Sources, want) {
			t.Errorf("%s is stale: it records\n  %v\nbut the sources are\n  %v\nrun `make kernels` (needs clang-16) and commit the PTX",
				ptxgen.PTXName(cu), h.Sources, want)
		}
		compilers = append(compilers, h.Compiler)
	}
	distinct := slices.Compact(slices.Sorted(slices.Values(compilers)))
	if len(distinct) > 1 {
		t.Errorf("the PTX files were made by different compilers: %q", distinct)
	}
	if c := compilers[0]; !strings.Contains(c, "clang version 16.") {
		t.Errorf("PTX made by %q, want Debian's clang 16 (DESIGN.md)", c)
	}
	for _, m := range Modules() {
		if !slices.Contains(cus, m+".cu") {
			t.Errorf("%s.ptx is embedded but has no %s.cu", m, m)
		}
	}
}

// TestLaunchTable fails when launch_table.go differs from what the
// committed PTX's .entry lines and .param lists give (run `make kernels`),
// and when an entry point runtime/cuda composes from a weight format
// (embed_*, matvec_*, matmul_*, mma_*) is missing or takes other
// parameters than its family.
func TestLaunchTable(t *testing.T) {
	want, err := ptxgen.Table(".")
	if err != nil {
		t.Fatal(err)
	}
	got, err := os.ReadFile(ptxgen.TableFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s is stale: run `make kernels` and commit it", ptxgen.TableFile)
	}
	seen := map[string]bool{}
	for _, k := range Kernels {
		if seen[k.Name] {
			t.Errorf("%s listed twice", k.Name)
		}
		seen[k.Name] = true
	}
	family := func(prefix string, types []quant.Type) {
		var first Kernel
		for _, ty := range types {
			suf, _ := Suffix(ty)
			k, ok := Lookup(prefix + suf)
			switch {
			case !ok:
				t.Errorf("no kernel %s%s for %v", prefix, suf, ty)
			case first.Name == "":
				first = k
			case !slices.Equal(k.Params, first.Params):
				t.Errorf("%s takes %v, %s takes %v", k.Name, k.Params, first.Name, first.Params)
			}
		}
	}
	var all []quant.Type
	for _, ty := range Types {
		all = append(all, ty.Type)
	}
	family("embed_", all)
	family("matvec_", all)
	family("matmul_", all)
	family("mma_", MMATypes)
	if k, _ := Lookup("matvec_q4_0"); !slices.Equal(k.Params, mustLookup(t, "mma_q4_0").Params) || !slices.Equal(k.Params, mustLookup(t, "matmul_q4_0").Params) {
		t.Error("matvec, matmul and mma take different parameters: runtime/cuda passes them one list")
	}
}

func mustLookup(t *testing.T, name string) Kernel {
	k, ok := Lookup(name)
	if !ok {
		t.Fatalf("no kernel %s", name)
	}
	return k
}

// TestPTXPortable checks what lets the driver JIT the PTX anywhere from
// CUDA 11 on: ISA 7.0, target sm_80, 64-bit addresses, and no external
// function (a libdevice call left unresolved by -nocudalib).
func TestPTXPortable(t *testing.T) {
	ext := regexp.MustCompile(`(?m)^\s*\.extern\s+\.func`)
	for _, m := range Modules() {
		ptx, _ := PTX(m)
		for _, want := range []string{"\n.version 7.0\n", "\n.target sm_80\n", "\n.address_size 64\n"} {
			if !bytes.Contains(ptx, []byte(want)) {
				t.Errorf("%s.ptx lacks %q", m, strings.TrimSpace(want))
			}
		}
		if loc := ext.FindIndex(ptx); loc != nil {
			t.Errorf("%s.ptx calls an external function: %s", m, ptx[loc[0]:min(len(ptx), loc[1]+60)])
		}
	}
}

// TestEntriesParser pins the .entry parser on the shapes clang writes.
func TestEntriesParser(t *testing.T) {
	src := `
.visible .entry a(
	.param .u64 a_param_0,
	.param .f32 a_param_1
)
{
	ret;
}
.visible .entry b()
{
	ret;
}
.entry c(
	.param .align 8 .b8 c_param_0[16]
)
`
	got, err := ptxgen.Entries([]byte(src))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]int{"a": 2, "b": 0, "c": 1}
	if len(got) != len(want) {
		t.Fatalf("got %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: %d parameters, want %d", k, got[k], v)
		}
	}
}

// TestRegenerate compiles the sources with clang-16 into a temporary
// folder and compares the result with the committed PTX byte for byte. It
// skips when clang-16 is not installed (`apt-get install clang-16`); the
// hash check above still catches a source edited without regenerating.
func TestRegenerate(t *testing.T) {
	clang := os.Getenv("HEARTH_CLANG")
	if clang == "" {
		clang = ptxgen.Compiler
	}
	if _, err := exec.LookPath(clang); err != nil {
		t.Skipf("%s is not installed: the PTX is not regenerated (the hash records are still checked)", clang)
	}
	dir := t.TempDir()
	if err := ptxgen.Generate(clang, ".", dir); err != nil {
		t.Fatal(err)
	}
	cus, _ := ptxgen.CUFiles(".")
	names := []string{ptxgen.TableFile}
	for _, cu := range cus {
		names = append(names, ptxgen.PTXName(cu))
	}
	for _, name := range names {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from what %s makes of the sources: run `make kernels` and commit the result", name, clang)
		}
	}
}
