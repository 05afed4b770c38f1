package lora

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
)

// RandomOptions shape a random adapter (Random): for tests, benchmarks
// and llama.cpp parity, since no real fine-tune can be downloaded here.
type RandomOptions struct {
	Seed uint64
	Rank int
	// Alpha is written as adapter.lora.alpha (0: none, so the scale is
	// the user's alone).
	Alpha float32
	// Parts are the base tensors' kinds to adapt, matched as
	// "blk.N.<part>.weight" or a whole name ("token_embd.weight",
	// "output.weight"): {"attn_q", "attn_k", "attn_v", "attn_output",
	// "ffn_gate", "ffn_up", "ffn_down"} for the usual attention and FFN,
	// Experts for a mixture's expert stacks (3-D pairs, one per expert).
	Parts []string
	// Std is the spread of A's and B's values (uniform in ±Std·√3); 0:
	// 1/√rank for A and 0.02 for B.
	StdA, StdB float64
	// F16 stores A and B as F16 (else F32).
	F16 bool
}

// AttnFFN are the parts of an adapter on attention and the dense FFN.
var AttnFFN = []string{"attn_q", "attn_k", "attn_v", "attn_output", "ffn_gate", "ffn_up", "ffn_down"}

// Experts are the parts of an adapter on a mixture's experts.
var Experts = []string{"ffn_gate_exps", "ffn_up_exps", "ffn_down_exps"}

// Random returns a GGUF adapter for the model in base with random A and
// B (deterministic in o.Seed), in llama.cpp's format (token_embd's pair
// flipped), ready for WriteFile.
func Random(base *gguf.File, o RandomOptions) (*gguf.Writer, error) {
	if o.Rank <= 0 {
		return nil, fmt.Errorf("lora: rank %d", o.Rank)
	}
	arch, _ := base.String("general.architecture")
	w := gguf.NewWriter()
	w.Set("general.architecture", gguf.String(arch))
	w.Set("general.type", gguf.String("adapter"))
	w.Set("adapter.type", gguf.String("lora"))
	if o.Alpha != 0 {
		w.Set("adapter.lora.alpha", gguf.Float32(o.Alpha))
	}
	stdA, stdB := o.StdA, o.StdB
	if stdA == 0 {
		stdA = 1 / math.Sqrt(float64(o.Rank))
	}
	if stdB == 0 {
		stdB = 0.02
	}
	rng := rand.New(rand.NewPCG(o.Seed, 0x6c6f7261))
	typ := quant.F32
	if o.F16 {
		typ = quant.F16
	}
	values := func(n int, std float64) []byte {
		size := 4
		if o.F16 {
			size = 2
		}
		b := make([]byte, n*size)
		for i := range n {
			v := float32((rng.Float64()*2 - 1) * std * math.Sqrt(3))
			if o.F16 {
				binary.LittleEndian.PutUint16(b[2*i:], quant.F32ToF16(v))
			} else {
				binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(v))
			}
		}
		return b
	}
	r := uint64(o.Rank)
	n := 0
	for i := range base.Tensors {
		t := &base.Tensors[i]
		if !wanted(t.Name, o.Parts) || len(t.Dims) != 2 && len(t.Dims) != 3 {
			continue
		}
		in, out := t.Dims[0], t.Dims[1]
		da, db := []uint64{in, r}, []uint64{r, out}
		switch {
		case t.Name == "token_embd.weight":
			da, db = []uint64{r, out}, []uint64{r, in}
		case len(t.Dims) == 3: // experts: a pair per expert along ne[2]
			da, db = append(da, t.Dims[2]), append(db, t.Dims[2])
		}
		count := func(d []uint64) int {
			n := 1
			for _, x := range d {
				n *= int(x)
			}
			return n
		}
		if err := w.AddTensor(t.Name+".lora_a", typ, da, values(count(da), stdA)); err != nil {
			return nil, err
		}
		if err := w.AddTensor(t.Name+".lora_b", typ, db, values(count(db), stdB)); err != nil {
			return nil, err
		}
		n++
	}
	if n == 0 {
		return nil, fmt.Errorf("lora: no tensor of the base matches %v", o.Parts)
	}
	return w, nil
}

// wanted says whether the base tensor name is one of parts.
func wanted(name string, parts []string) bool {
	for _, p := range parts {
		if name == p {
			return true
		}
		if strings.HasPrefix(name, "blk.") && strings.HasSuffix(name, "."+p+".weight") {
			return true
		}
	}
	return false
}
