package quant

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// Type is a ggml tensor element type, numbered as ggml's enum ggml_type and
// therefore as the type field of a GGUF tensor info. The zero value is F32.
type Type uint32

// The ggml type ids. Ids 4, 5, 31-33 and 36-38 were used by formats ggml has
// removed; they are not Known.
const (
	F32     Type = 0
	F16     Type = 1
	Q4_0    Type = 2
	Q4_1    Type = 3
	Q5_0    Type = 6
	Q5_1    Type = 7
	Q8_0    Type = 8
	Q8_1    Type = 9
	Q2_K    Type = 10
	Q3_K    Type = 11
	Q4_K    Type = 12
	Q5_K    Type = 13
	Q6_K    Type = 14
	Q8_K    Type = 15
	IQ2_XXS Type = 16
	IQ2_XS  Type = 17
	IQ3_XXS Type = 18
	IQ1_S   Type = 19
	IQ4_NL  Type = 20
	IQ3_S   Type = 21
	IQ2_S   Type = 22
	IQ4_XS  Type = 23
	I8      Type = 24
	I16     Type = 25
	I32     Type = 26
	I64     Type = 27
	F64     Type = 28
	IQ1_M   Type = 29
	BF16    Type = 30
	TQ1_0   Type = 34
	TQ2_0   Type = 35
	MXFP4   Type = 39
	NVFP4   Type = 40
	Q1_0    Type = 41
	Q2_0    Type = 42
)

// ErrUnsupported is returned (wrapped) by DequantizeRow, QuantizeRow and
// RowBytes for a type this package cannot handle. Test with errors.Is.
var ErrUnsupported = errors.New("quant: unsupported type")

// qk is the super-block size of the K-quants, IQ4_XS and Q8_K (ggml's QK_K).
const qk = 256

// traits describes one type's geometry and what this package can do with it.
type traits struct {
	name       string
	blockSize  int  // elements per block
	blockBytes int  // bytes per block
	vecDot     Type // type of the activation row in VecDot
	supported  bool // DequantizeRow, QuantizeRow and VecDot all work
}

// typeTable is indexed by Type. Entries with an empty name are unknown ids.
// Geometry follows ggml-common.h (block structs) and ggml.c (type_traits).
var typeTable = [...]traits{
	F32:     {"F32", 1, 4, F32, true},
	F16:     {"F16", 1, 2, F16, true},
	Q4_0:    {"Q4_0", 32, 18, Q8_0, true},
	Q4_1:    {"Q4_1", 32, 20, Q8_1, true},
	Q5_0:    {"Q5_0", 32, 22, Q8_0, true},
	Q5_1:    {"Q5_1", 32, 24, Q8_1, true},
	Q8_0:    {"Q8_0", 32, 34, Q8_0, true},
	Q8_1:    {"Q8_1", 32, 36, Q8_1, true},
	Q2_K:    {"Q2_K", qk, 84, Q8_K, true},
	Q3_K:    {"Q3_K", qk, 110, Q8_K, true},
	Q4_K:    {"Q4_K", qk, 144, Q8_K, true},
	Q5_K:    {"Q5_K", qk, 176, Q8_K, true},
	Q6_K:    {"Q6_K", qk, 210, Q8_K, true},
	Q8_K:    {"Q8_K", qk, 292, Q8_K, true},
	IQ2_XXS: {"IQ2_XXS", qk, 66, Q8_K, false},
	IQ2_XS:  {"IQ2_XS", qk, 74, Q8_K, false},
	IQ3_XXS: {"IQ3_XXS", qk, 98, Q8_K, false},
	IQ1_S:   {"IQ1_S", qk, 50, Q8_K, false},
	IQ4_NL:  {"IQ4_NL", 32, 18, Q8_0, true},
	IQ3_S:   {"IQ3_S", qk, 110, Q8_K, false},
	IQ2_S:   {"IQ2_S", qk, 82, Q8_K, false},
	IQ4_XS:  {"IQ4_XS", qk, 136, Q8_K, true},
	I8:      {"I8", 1, 1, I8, false},
	I16:     {"I16", 1, 2, I16, false},
	I32:     {"I32", 1, 4, I32, false},
	I64:     {"I64", 1, 8, I64, false},
	F64:     {"F64", 1, 8, F64, false},
	IQ1_M:   {"IQ1_M", qk, 56, Q8_K, false},
	BF16:    {"BF16", 1, 2, BF16, true},
	TQ1_0:   {"TQ1_0", qk, 54, Q8_K, false},
	TQ2_0:   {"TQ2_0", qk, 66, Q8_K, false},
	MXFP4:   {"MXFP4", 32, 17, Q8_0, true},
	NVFP4:   {"NVFP4", 64, 36, Q8_0, false},
	Q1_0:    {"Q1_0", 128, 18, Q8_0, false},
	Q2_0:    {"Q2_0", 64, 18, Q8_0, false},
}

func (t Type) traits() *traits {
	if int(t) < len(typeTable) && typeTable[t].name != "" {
		return &typeTable[t]
	}
	return nil
}

// String returns ggml's upper-case name ("Q4_K", "BF16"), or "type(N)" for
// an id ggml does not define.
func (t Type) String() string {
	if tr := t.traits(); tr != nil {
		return tr.name
	}
	return "type(" + strconv.FormatUint(uint64(t), 10) + ")"
}

// ParseType returns the type with the given name, compared case-insensitively
// ("q4_k", "Q4_K", "bf16").
func ParseType(s string) (Type, error) {
	for i := range typeTable {
		if typeTable[i].name != "" && strings.EqualFold(typeTable[i].name, s) {
			return Type(i), nil
		}
	}
	return 0, fmt.Errorf("quant: unknown type name %q", s)
}

// Known reports whether t is a type ggml defines, so that its block geometry
// (and so the size of a tensor of it) is known.
func (t Type) Known() bool { return t.traits() != nil }

// Supported reports whether this package can dequantize, quantize and
// dot-product rows of t: F32, F16, BF16, Q4_0, Q4_1, Q5_0, Q5_1, Q8_0, Q2_K,
// Q3_K, Q4_K, Q5_K, Q6_K, IQ4_NL, IQ4_XS, MXFP4, and the activation types
// Q8_1 and Q8_K.
func (t Type) Supported() bool {
	tr := t.traits()
	return tr != nil && tr.supported
}

// BlockSize returns the number of elements per block (1 for plain types,
// 32 or 256 for the block formats), or 0 for an unknown type.
func (t Type) BlockSize() int {
	if tr := t.traits(); tr != nil {
		return tr.blockSize
	}
	return 0
}

// BlockBytes returns the size in bytes of one block, or 0 for an unknown type.
func (t Type) BlockBytes() int {
	if tr := t.traits(); tr != nil {
		return tr.blockBytes
	}
	return 0
}

// RowBytes returns the bytes taken by n consecutive elements of type t. It
// fails for an unknown type (wrapping ErrUnsupported), a negative n, an n that
// is not a multiple of t.BlockSize(), or a size that overflows int.
func (t Type) RowBytes(n int) (int, error) {
	tr := t.traits()
	if tr == nil {
		return 0, fmt.Errorf("%w: %v", ErrUnsupported, t)
	}
	if n < 0 {
		return 0, fmt.Errorf("quant: %v: negative element count %d", t, n)
	}
	if n%tr.blockSize != 0 {
		return 0, fmt.Errorf("quant: %v: %d elements is not a multiple of the block size %d", t, n, tr.blockSize)
	}
	nb := n / tr.blockSize
	if nb > maxInt/tr.blockBytes {
		return 0, fmt.Errorf("quant: %v: %d elements overflow the row size", t, n)
	}
	return nb * tr.blockBytes, nil
}

const maxInt = int(^uint(0) >> 1)

// VecDotType returns the type the activation row must be quantized to for
// VecDot with a weight row of type t, as ggml's CPU backend does: Q8_0 for
// Q4_0, Q5_0, Q8_0, IQ4_NL and MXFP4; Q8_1 for Q4_1 and Q5_1; Q8_K for the K-quants
// and IQ4_XS; the type itself for F32, F16 and BF16. For unknown types it
// returns t.
func (t Type) VecDotType() Type {
	if tr := t.traits(); tr != nil {
		return tr.vecDot
	}
	return t
}
