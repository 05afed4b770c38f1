package quant

import (
	"errors"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// supportedTypes are the types with a decoder, quantizer and dot product.
var supportedTypes = []Type{F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q8_1,
	Q2_K, Q3_K, Q4_K, Q5_K, Q6_K, Q8_K, IQ4_NL, IQ4_XS, MXFP4}

func TestTypeNames(t *testing.T) {
	want := map[Type]string{
		F32: "F32", F16: "F16", Q4_0: "Q4_0", Q4_1: "Q4_1", Q5_0: "Q5_0", Q5_1: "Q5_1",
		Q8_0: "Q8_0", Q8_1: "Q8_1", Q2_K: "Q2_K", Q3_K: "Q3_K", Q4_K: "Q4_K", Q5_K: "Q5_K",
		Q6_K: "Q6_K", Q8_K: "Q8_K", IQ2_XXS: "IQ2_XXS", IQ2_XS: "IQ2_XS", IQ3_XXS: "IQ3_XXS",
		IQ1_S: "IQ1_S", IQ4_NL: "IQ4_NL", IQ3_S: "IQ3_S", IQ2_S: "IQ2_S", IQ4_XS: "IQ4_XS",
		I8: "I8", I16: "I16", I32: "I32", I64: "I64", F64: "F64", IQ1_M: "IQ1_M", BF16: "BF16",
		TQ1_0: "TQ1_0", TQ2_0: "TQ2_0", MXFP4: "MXFP4", NVFP4: "NVFP4", Q1_0: "Q1_0", Q2_0: "Q2_0",
	}
	for typ := Type(0); typ < 100; typ++ {
		name, known := want[typ]
		if typ.Known() != known {
			t.Errorf("%d: Known() = %v", typ, typ.Known())
		}
		if !known {
			if s := typ.String(); s != "type("+strconv.Itoa(int(typ))+")" {
				t.Errorf("unknown %d: String() = %q", typ, s)
			}
			if typ.BlockSize() != 0 || typ.BlockBytes() != 0 || typ.Supported() {
				t.Errorf("unknown %d has geometry or support", typ)
			}
			if _, err := typ.RowBytes(0); !errors.Is(err, ErrUnsupported) {
				t.Errorf("unknown %d: RowBytes error %v", typ, err)
			}
			continue
		}
		if typ.String() != name {
			t.Errorf("%d: String() = %q, want %q", typ, typ.String(), name)
		}
		for _, s := range []string{name, strings.ToLower(name), " " + name} {
			got, err := ParseType(s)
			if s[0] == ' ' {
				if err == nil {
					t.Errorf("ParseType(%q) accepted", s)
				}
				continue
			}
			if err != nil || got != typ {
				t.Errorf("ParseType(%q) = %v, %v", s, got, err)
			}
		}
	}
	if _, err := ParseType("Q4_2"); err == nil {
		t.Error("ParseType accepted a removed type")
	}
	if Type(123).String() != "type(123)" {
		t.Errorf("Type(123).String() = %q", Type(123).String())
	}
}

func TestTypeGeometry(t *testing.T) {
	geom := []struct {
		typ        Type
		size, by   int
		vecDot     Type
		supported  bool
		activation bool
	}{
		{F32, 1, 4, F32, true, false},
		{F16, 1, 2, F16, true, false},
		{BF16, 1, 2, BF16, true, false},
		{Q4_0, 32, 18, Q8_0, true, false},
		{Q4_1, 32, 20, Q8_1, true, false},
		{Q5_0, 32, 22, Q8_0, true, false},
		{Q5_1, 32, 24, Q8_1, true, false},
		{Q8_0, 32, 34, Q8_0, true, false},
		{Q8_1, 32, 36, Q8_1, true, true},
		{Q2_K, 256, 84, Q8_K, true, false},
		{Q3_K, 256, 110, Q8_K, true, false},
		{Q4_K, 256, 144, Q8_K, true, false},
		{Q5_K, 256, 176, Q8_K, true, false},
		{Q6_K, 256, 210, Q8_K, true, false},
		{Q8_K, 256, 292, Q8_K, true, true},
		{IQ4_NL, 32, 18, Q8_0, true, false},
		{IQ4_XS, 256, 136, Q8_K, true, false},
		{IQ2_XXS, 256, 66, Q8_K, false, false},
		{IQ2_XS, 256, 74, Q8_K, false, false},
		{IQ3_XXS, 256, 98, Q8_K, false, false},
		{IQ1_S, 256, 50, Q8_K, false, false},
		{IQ3_S, 256, 110, Q8_K, false, false},
		{IQ2_S, 256, 82, Q8_K, false, false},
		{IQ1_M, 256, 56, Q8_K, false, false},
		{I8, 1, 1, I8, false, false},
		{I16, 1, 2, I16, false, false},
		{I32, 1, 4, I32, false, false},
		{I64, 1, 8, I64, false, false},
		{F64, 1, 8, F64, false, false},
		{TQ1_0, 256, 54, Q8_K, false, false},
		{TQ2_0, 256, 66, Q8_K, false, false},
		{MXFP4, 32, 17, Q8_0, true, false},
		{NVFP4, 64, 36, Q8_0, false, false},
		{Q1_0, 128, 18, Q8_0, false, false},
		{Q2_0, 64, 18, Q8_0, false, false},
	}
	for _, g := range geom {
		typ := g.typ
		if typ.BlockSize() != g.size || typ.BlockBytes() != g.by {
			t.Errorf("%v: block %d/%d, want %d/%d", typ, typ.BlockSize(), typ.BlockBytes(), g.size, g.by)
		}
		if typ.VecDotType() != g.vecDot {
			t.Errorf("%v: VecDotType %v, want %v", typ, typ.VecDotType(), g.vecDot)
		}
		if typ.Supported() != g.supported {
			t.Errorf("%v: Supported() = %v", typ, typ.Supported())
		}
		// A loader can size any known tensor, supported or not.
		if rb, err := typ.RowBytes(4 * 256); err != nil || rb != 4*256/g.size*g.by {
			t.Errorf("%v: RowBytes(1024) = %d, %v", typ, rb, err)
		}
		if g.size > 1 {
			if _, err := typ.RowBytes(g.size + 1); err == nil || !strings.Contains(err.Error(), "multiple of the block size") {
				t.Errorf("%v: RowBytes(%d) error %v", typ, g.size+1, err)
			}
		}
		if _, err := typ.RowBytes(-g.size); err == nil {
			t.Errorf("%v: RowBytes of a negative count accepted", typ)
		}
	}
	if _, err := F32.RowBytes(maxInt / 2); err == nil {
		t.Error("RowBytes overflow not detected")
	}
}

func TestRowErrors(t *testing.T) {
	for _, typ := range supportedTypes {
		bs := typ.BlockSize()
		rb, _ := typ.RowBytes(4 * bs)
		src := make([]float32, 4*bs)
		dst := make([]byte, rb)
		if err := QuantizeRow(typ, src, dst); err != nil {
			t.Errorf("%v: QuantizeRow: %v", typ, err)
		}
		if err := DequantizeRow(typ, dst, src); err != nil {
			t.Errorf("%v: DequantizeRow: %v", typ, err)
		}
		if err := QuantizeRow(typ, src, dst[:rb-1]); err == nil {
			t.Errorf("%v: QuantizeRow accepted a short destination", typ)
		}
		if err := DequantizeRow(typ, append(dst, 0), src); err == nil {
			t.Errorf("%v: DequantizeRow accepted a long source", typ)
		}
		if bs > 1 {
			if err := QuantizeRow(typ, src[:bs+1], dst); err == nil || !strings.Contains(err.Error(), "multiple of the block size") {
				t.Errorf("%v: QuantizeRow of %d elements: %v", typ, bs+1, err)
			}
			if err := DequantizeRow(typ, dst, src[:3*bs-1]); err == nil {
				t.Errorf("%v: DequantizeRow of a partial block accepted", typ)
			}
		}
		// Empty rows are fine.
		if err := QuantizeRow(typ, nil, nil); err != nil {
			t.Errorf("%v: empty QuantizeRow: %v", typ, err)
		}
		if got := VecDot(typ, 0, nil, nil); got != 0 {
			t.Errorf("%v: empty VecDot = %v", typ, got)
		}
	}
	for _, typ := range []Type{IQ2_XXS, I32, TQ1_0, Type(4), Type(99)} {
		if err := QuantizeRow(typ, make([]float32, 256), make([]byte, 1024)); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%v: QuantizeRow error %v, want ErrUnsupported", typ, err)
		}
		if err := DequantizeRow(typ, make([]byte, 1024), make([]float32, 256)); !errors.Is(err, ErrUnsupported) {
			t.Errorf("%v: DequantizeRow error %v, want ErrUnsupported", typ, err)
		}
	}
}

func TestVecDotPanics(t *testing.T) {
	w := make([]byte, 1024)
	cases := []struct {
		name string
		f    func()
	}{
		{"unsupported", func() { VecDot(IQ2_XXS, 256, w, w) }},
		{"partial block", func() { VecDot(Q4_0, 33, w, w) }},
		{"negative", func() { VecDot(F32, -1, w, w) }},
		{"short weights", func() { VecDot(Q4_K, 512, w[:287], w) }},
		{"short activations", func() { VecDot(Q4_0, 64, w, w[:67]) }},
	}
	for _, c := range cases {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("%s: VecDot did not panic", c.name)
				}
			}()
			c.f()
		}()
	}
}

// TestStdlibOnly keeps quant a leaf: its non-test files import only the
// standard library.
func TestStdlibOnly(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	for _, f := range files {
		if strings.HasSuffix(f, "_test.go") {
			continue
		}
		af, err := parser.ParseFile(fset, f, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range af.Imports {
			path := strings.Trim(imp.Path.Value, `"`)
			if first, _, _ := strings.Cut(path, "/"); strings.Contains(first, ".") {
				t.Errorf("%s imports %s; quant may use only the standard library", f, path)
			}
		}
	}
}

// TestNoFusedMultiplyAdd compiles the package for targets where Go fuses
// x*y+z into one instruction (arm64 always, amd64 at GOAMD64=v3) and checks
// that only the dot-product kernels contain fused operations. Anywhere else
// a fusion would change results that must match ggml bit for bit.
func TestNoFusedMultiplyAdd(t *testing.T) {
	if testing.Short() {
		t.Skip("compiles the package for other targets")
	}
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Skip("go tool not found")
	}
	fused := regexp.MustCompile(`\t(FN?M(ADD|SUB)[SD]|VFN?M(ADD|SUB)\d+S[SD])\t`)
	fn := regexp.MustCompile(`^\S*quant\.(\S+) STEXT`)
	for _, env := range [][]string{{"GOARCH=arm64"}, {"GOARCH=amd64", "GOAMD64=v3"}} {
		cmd := exec.Command(goTool, "build", "-gcflags=-S", "-o", os.DevNull, ".")
		cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), env...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("%v: go build: %v\n%s", env, err, out)
		}
		cur, seen := "", 0
		for _, line := range strings.Split(string(out), "\n") {
			if m := fn.FindStringSubmatch(line); m != nil {
				cur = m[1]
				continue
			}
			if fused.MatchString(line) {
				seen++
				if !strings.HasPrefix(cur, "dot") && cur != "VecDot" {
					t.Errorf("%v: fused multiply-add in %s: %s", env, cur, strings.TrimSpace(line))
				}
			}
		}
		if seen == 0 {
			t.Errorf("%v: no fused operations found at all; the check is not seeing the listing", env)
		}
	}
}
