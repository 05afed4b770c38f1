package synth

import (
	"fmt"
	"strings"

	"github.com/hearth-llm/hearth/quant"
)

// FileType is a llama.cpp file type (llama_ftype): the type most weights
// get, and the mix llama-quantize applies around it.
type FileType struct {
	Name    string     // as llama-quantize spells it, lower case: "q4_k_m"
	ID      uint32     // general.file_type
	Default quant.Type // the type of most weights
	Desc    string     // llama.cpp's llama_model_ftype_name: "Q4_K - Medium"
}

// The llama_ftype ids used here.
const (
	ftypeF32    = 0
	ftypeF16    = 1
	ftypeQ4_0   = 2
	ftypeQ4_1   = 3
	ftypeQ8_0   = 7
	ftypeQ5_0   = 8
	ftypeQ5_1   = 9
	ftypeQ2_K   = 10
	ftypeQ3_K_S = 11
	ftypeQ3_K_M = 12
	ftypeQ3_K_L = 13
	ftypeQ4_K_S = 14
	ftypeQ4_K_M = 15
	ftypeQ5_K_S = 16
	ftypeQ5_K_M = 17
	ftypeQ6_K   = 18
	ftypeIQ4_NL = 25
	ftypeIQ4_XS = 30
	ftypeBF16   = 32
	ftypeMXFP4  = 38 // LLAMA_FTYPE_MOSTLY_MXFP4_MOE
)

var fileTypes = []FileType{
	{"f32", ftypeF32, quant.F32, "all F32"},
	{"f16", ftypeF16, quant.F16, "F16"},
	{"bf16", ftypeBF16, quant.BF16, "BF16"},
	{"q8_0", ftypeQ8_0, quant.Q8_0, "Q8_0"},
	{"q4_0", ftypeQ4_0, quant.Q4_0, "Q4_0"},
	{"q4_1", ftypeQ4_1, quant.Q4_1, "Q4_1"},
	{"q5_0", ftypeQ5_0, quant.Q5_0, "Q5_0"},
	{"q5_1", ftypeQ5_1, quant.Q5_1, "Q5_1"},
	{"q2_k", ftypeQ2_K, quant.Q2_K, "Q2_K - Medium"},
	{"q3_k_s", ftypeQ3_K_S, quant.Q3_K, "Q3_K - Small"},
	{"q3_k_m", ftypeQ3_K_M, quant.Q3_K, "Q3_K - Medium"},
	{"q3_k_l", ftypeQ3_K_L, quant.Q3_K, "Q3_K - Large"},
	{"q4_k_s", ftypeQ4_K_S, quant.Q4_K, "Q4_K - Small"},
	{"q4_k_m", ftypeQ4_K_M, quant.Q4_K, "Q4_K - Medium"},
	{"q5_k_s", ftypeQ5_K_S, quant.Q5_K, "Q5_K - Small"},
	{"q5_k_m", ftypeQ5_K_M, quant.Q5_K, "Q5_K - Medium"},
	{"q6_k", ftypeQ6_K, quant.Q6_K, "Q6_K"},
	{"iq4_nl", ftypeIQ4_NL, quant.IQ4_NL, "IQ4_NL - 4.5 bpw"},
	{"iq4_xs", ftypeIQ4_XS, quant.IQ4_XS, "IQ4_XS - 4.25 bpw"},
	{"mxfp4_moe", ftypeMXFP4, quant.MXFP4, "MXFP4 MoE"},
}

// FileTypes lists the file types Write can produce.
func FileTypes() []FileType { return append([]FileType(nil), fileTypes...) }

// LookupFileType returns the file type with the given name, case-insensitively
// ("q4_k_m", "Q4_K_M").
func LookupFileType(name string) (FileType, error) {
	for _, ft := range fileTypes {
		if strings.EqualFold(ft.Name, name) {
			return ft, nil
		}
	}
	var names []string
	for _, ft := range fileTypes {
		names = append(names, ft.Name)
	}
	return FileType{}, fmt.Errorf("synth: unknown quantization %q (known: %s)", name, strings.Join(names, ", "))
}

// Tensor roles, as llama-quantize's tensor_category, and the tensors it
// never quantizes.
type role int

const (
	roleOther role = iota
	roleTokenEmbd
	roleOutput
	roleAttnQ
	roleAttnK
	roleAttnV
	roleAttnOut
	roleFFNGate   // ffn_gate and ffn_gate_exps
	roleFFNUp     // ffn_up and ffn_up_exps
	roleFFNDown   // ffn_down and ffn_down_exps
	roleNorm      // *_norm.weight: F32, ones
	roleRouter    // ffn_gate_inp.weight: F32 (convert_hf_to_gguf keeps it so, llama-quantize leaves it)
	roleVector    // biases and attention sinks: F32 (not named *.weight, or 1-D)
	roleAttnQKV   // a hybrid's attn_qkv (llama.cpp's attn_qkv rule)
	roleDecay     // ssm_a: F32, negative (a decay rate, -exp(A_log))
	roleRopeFreqs // rope_freqs: F32, Gemma 4's proportional RoPE (1, then 1e30 on the unrotated pairs)
)

// useMoreBits is llama-quantize's choice of the layers whose attn_v and
// ffn_down get more bits in the _M mixes: the first and last eighth, and
// every third layer between.
func useMoreBits(i, n int) bool {
	return i < n/8 || i >= 7*n/8 || (i-n/8)%3 == 2
}

// recipe is what llama-quantize's choice of a tensor's type depends on
// besides the tensor: the file type and the model's hyperparameters.
type recipe struct {
	ft      FileType
	layers  int
	gqa     int // n_head / n_head_kv
	experts int // n_expert (0: dense)
	tied    bool
}

// tensorType returns the type llama-quantize (without an importance matrix
// or overrides) gives t. It follows llama_tensor_get_type_impl and
// tensor_type_fallback in llama.cpp's src/llama-quant.cpp for the file
// types in FileTypes (the rule for 70B models aside): the stacked experts
// follow the ffn_* rules, except in MXFP4_MOE files, where every tensor
// with ne[2] > 1 is MXFP4 and every other quantized one Q8_0.
func (rc recipe) tensorType(t Tensor) quant.Type {
	switch t.role {
	case roleNorm, roleRouter, roleVector, roleDecay, roleRopeFreqs:
		return quant.F32
	}
	ft, cols, layer := rc.ft, int(t.Dims[0]), t.layer
	typ := ft.Default
	if !isBlockQuant(typ) {
		return typ // F32, F16, BF16 files keep every weight in that type
	}
	more := useMoreBits(layer, rc.layers)
	eight := rc.experts == 8 // llama.cpp's special case for Mixtral 8x7B
	switch {
	case t.role == roleOutput || (rc.tied && t.role == roleTokenEmbd):
		switch {
		case ft.ID == ftypeMXFP4:
			typ = quant.Q8_0
		case cols%typ.BlockSize() != 0:
			typ = quant.Q8_0
		case typ != quant.Q8_0:
			typ = quant.Q6_K
		}
	case ft.ID == ftypeMXFP4:
		typ = quant.Q8_0
		if len(t.Dims) > 2 && t.Dims[2] > 1 {
			typ = quant.MXFP4
		}
	case t.role == roleTokenEmbd:
		// untied token embeddings keep the default type
	case t.role == roleAttnV:
		switch {
		case ft.ID == ftypeQ2_K:
			typ = quant.Q3_K
			if rc.gqa >= 4 {
				typ = quant.Q4_K
			}
		case ft.ID == ftypeQ3_K_M:
			typ = quant.Q4_K
			if layer < 2 {
				typ = quant.Q5_K
			}
		case ft.ID == ftypeQ3_K_L:
			typ = quant.Q5_K
		case (ft.ID == ftypeIQ4_NL || ft.ID == ftypeIQ4_XS) && rc.gqa >= 4:
			typ = quant.Q5_K
		case (ft.ID == ftypeQ4_K_M || ft.ID == ftypeQ5_K_M) && more:
			typ = quant.Q6_K
		case ft.ID == ftypeQ4_K_S && layer < 4:
			typ = quant.Q5_K
		}
		if eight {
			typ = quant.Q8_0
		}
	case t.role == roleAttnQKV:
		switch ft.ID {
		case ftypeQ3_K_M, ftypeQ3_K_L:
			typ = quant.Q4_K
		case ftypeQ4_K_M:
			typ = quant.Q5_K
		case ftypeQ5_K_M:
			typ = quant.Q6_K
		}
	case t.role == roleAttnK:
		if eight {
			typ = quant.Q8_0
		}
	case t.role == roleFFNDown:
		switch {
		case ft.ID == ftypeQ2_K:
			typ = quant.Q3_K
		case ft.ID == ftypeQ3_K_M:
			typ = quant.Q4_K
			if layer < rc.layers/16 {
				typ = quant.Q5_K
			}
		case ft.ID == ftypeQ3_K_L:
			typ = quant.Q5_K
		case ft.ID == ftypeQ4_K_M:
			if more {
				typ = quant.Q6_K
			}
		case layer < rc.layers/8 && (ft.ID == ftypeIQ4_NL || ft.ID == ftypeIQ4_XS):
			typ = quant.Q5_K
		case ft.ID == ftypeQ5_K_M && more:
			typ = quant.Q6_K
		case ft.ID == ftypeQ4_K_S && layer < rc.layers/8:
			typ = quant.Q5_K
		}
	case t.role == roleAttnOut:
		if eight {
			switch ft.ID {
			case ftypeQ2_K, ftypeQ3_K_S, ftypeQ3_K_M, ftypeIQ4_NL, ftypeQ4_K_S, ftypeQ4_K_M, ftypeIQ4_XS:
				typ = quant.Q5_K
			}
			break
		}
		switch ft.ID {
		case ftypeQ2_K:
			typ = quant.Q3_K
		case ftypeQ3_K_M:
			typ = quant.Q4_K
		case ftypeQ3_K_L:
			typ = quant.Q5_K
		}
	}
	return fallback(typ, cols)
}

// fallback is llama-quantize's tensor_type_fallback: a row length that is
// not a whole number of the type's blocks takes a 32-element type instead.
func fallback(t quant.Type, cols int) quant.Type {
	if cols%t.BlockSize() == 0 {
		return t
	}
	switch t {
	case quant.IQ4_XS:
		t = quant.IQ4_NL
	case quant.Q2_K, quant.Q3_K:
		t = quant.Q4_0
	case quant.Q4_K:
		t = quant.Q5_0
	case quant.Q5_K:
		t = quant.Q5_1
	case quant.Q6_K:
		t = quant.Q8_0
	}
	if cols%t.BlockSize() != 0 {
		t = quant.F16
	}
	return t
}

func isBlockQuant(t quant.Type) bool { return t.BlockSize() > 1 }
