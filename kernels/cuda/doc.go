// Package cuda holds Hearth's CUDA kernels: the CUDA C sources (*.cu, one
// file per kernel family, each headed by what it computes, the CPU
// reference it must match, its launch geometry and its napkin math) and the
// PTX that Debian's clang-16 generates from them, committed and embedded
// here with go:embed. runtime/cuda loads the PTX with cuModuleLoadData and
// launches the entry points of Kernels; no CUDA toolkit is needed to build
// or to run.
//
// `make kernels` regenerates the PTX (kernels/cuda/cmd/ptxgen, with
// DESIGN.md's exact flags). Every .ptx begins with the SHA-256 of each
// source file that went into it (the .cu and the headers it includes) and
// the compiler version; the tests fail when a source's hash differs from
// the record, when the launch table (launch_table.go, generated from the
// .entry lines and their .param lists) differs from what the PTX gives,
// and, where clang-16 is installed, when regenerating gives other bytes.
//
// Layouts and conventions (common.cuh): activations are row-major float32,
// one row per token, tokens on grid x; weights stay in ggml's block layout
// (quant/doc.go), rows contiguous and rowBytes apart; f16 values are
// uint16 bits; the paged KV cache is runtime/cpu's (position p of a
// sequence at physical row table[p/blockSize]·blockSize + p%blockSize).
// Kernels that dequantize match quant.DequantizeRow bit for bit; the
// others match kernels/cpu to float rounding (each .cu says how).
package cuda

import (
	"embed"
	"fmt"
	"slices"
	"strings"

	"github.com/hearth-llm/hearth/quant"
)

//go:embed *.ptx
var files embed.FS

// PTX returns the PTX text of a module ("matvec" for matvec.ptx).
func PTX(module string) ([]byte, error) {
	b, err := files.ReadFile(module + ".ptx")
	if err != nil {
		return nil, fmt.Errorf("kernels/cuda: no module %q", module)
	}
	return b, nil
}

// Modules lists the embedded modules, sorted.
func Modules() []string {
	ents, _ := files.ReadDir(".")
	var out []string
	for _, e := range ents {
		out = append(out, strings.TrimSuffix(e.Name(), ".ptx"))
	}
	slices.Sort(out)
	return out
}

// Param is the type of a kernel parameter as its PTX declares it, which
// fixes how a value is passed: U64 (pointers, 64-bit sizes), U32 (int),
// F32 (float).
type Param uint8

// The parameter types of the kernels.
const (
	U64 Param = iota + 1
	U32
	F32
)

func (p Param) String() string {
	switch p {
	case U64:
		return "u64"
	case U32:
		return "u32"
	case F32:
		return "f32"
	}
	return fmt.Sprintf("Param(%d)", uint8(p))
}

// Kernel is one launch-table entry: an entry point of a module and the
// types of its parameters (each passed as a pointer to its value to
// cuLaunchKernel, so count and widths must be exact). The table,
// Kernels, is generated from the PTX by `make kernels` (launch_table.go).
type Kernel struct {
	Module string
	Name   string
	Params []Param
}

// Types are the weight formats with kernels (embed_*, matvec_*, matmul_*;
// mma_* for MMATypes),
// by the suffix of their entry points. Other formats are converted to F16
// when a weight is bound.
var Types = []struct {
	Type   quant.Type
	Suffix string
}{
	{quant.F32, "f32"}, {quant.F16, "f16"}, {quant.BF16, "bf16"},
	{quant.Q4_0, "q4_0"}, {quant.Q8_0, "q8_0"}, {quant.Q4_K, "q4_K"}, {quant.Q6_K, "q6_K"},
}

// Suffix returns the entry-point suffix of a weight format, or false when
// no kernel reads it.
func Suffix(t quant.Type) (string, bool) {
	for _, x := range Types {
		if x.Type == t {
			return x.Suffix, true
		}
	}
	return "", false
}

// MMATypes are the weight formats with a tensor-core matmul (mma.cu:
// mma_<suffix>, mma.sync.m16n8k16 on f16 tiles, sm_80 and later).
var MMATypes = []quant.Type{quant.Q4_0, quant.Q8_0, quant.Q4_K, quant.Q6_K, quant.F16}

// HasMMA reports whether a weight format has a tensor-core matmul.
func HasMMA(t quant.Type) bool { return slices.Contains(MMATypes, t) }

// The tensor-core matmul's geometry (mma.cu): a block of MMAThreads
// computes an MMATileRows × MMATileTokens tile of the output; cols must be
// a multiple of MMAColsMultiple. MinMMATokens is the smallest batch the
// backend sends to it (below, matvec and matmul's FMA tiles).
const (
	MMATileRows     = 128
	MMATileTokens   = 128
	MMAThreads      = 256
	MMAColsMultiple = 32
	MinMMATokens    = 16
)

var index = func() map[string]int {
	m := make(map[string]int, len(Kernels))
	for i, k := range Kernels {
		m[k.Name] = i
	}
	return m
}()

// Lookup returns the table entry of a kernel name.
func Lookup(name string) (Kernel, bool) {
	i, ok := index[name]
	if !ok {
		return Kernel{}, false
	}
	return Kernels[i], true
}

// MaxMatvecTokens is the most tokens one matvec launch handles (MAXT in
// quant.cuh); larger batches go through matmul.
const MaxMatvecTokens = 8
