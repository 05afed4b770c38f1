package all_test

import (
	"encoding/binary"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/golden"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/arch/blocks"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// TestTraceAgainstLlama is a debugging aid, skipped unless
// HEARTH_TRACE_REF names a folder written by internal/golden/testdata's
// dump_tensors (llama.cpp's every graph tensor for one prompt). It runs
// the same prompt in one batch through Hearth's decoder with its Trace
// hook and logs, per traced tensor (llama.cpp's names), the largest |Δ|
// at each position: the first tensor that departs is where to look.
// HEARTH_TRACE_MODEL is the GGUF file, HEARTH_TRACE_CASE a golden JSON
// whose prompt_ids it runs. Set HEARTH_CPU to compare kernel levels.
func TestTraceAgainstLlama(t *testing.T) {
	ref, model, casePath := os.Getenv("HEARTH_TRACE_REF"), os.Getenv("HEARTH_TRACE_MODEL"), os.Getenv("HEARTH_TRACE_CASE")
	if ref == "" || model == "" || casePath == "" {
		t.Skip("HEARTH_TRACE_REF, HEARTH_TRACE_MODEL and HEARTH_TRACE_CASE not set")
	}
	cases, err := golden.Load(filepath.Dir(filepath.Dir(casePath)))
	if err != nil {
		t.Fatal(err)
	}
	var c *golden.Case
	for _, cc := range cases {
		if cc.Model == filepath.Base(filepath.Dir(casePath)) && cc.Slug == strings.TrimSuffix(filepath.Base(casePath), ".json") {
			c = cc
		}
	}
	if c == nil {
		t.Fatalf("no case %s", casePath)
	}
	be := cpu.New(0)
	defer be.Close()
	f, err := gguf.Open(model)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := arch.Load(f, be)
	if err != nil {
		t.Fatal(err)
	}
	d, ok := m.(*blocks.Decoder)
	if !ok {
		t.Skipf("%T has no Trace hook", m)
	}
	n := len(c.PromptIDs)
	// llama.cpp's graph names for Hearth's trace names, tried in order
	// (the families' graphs name some tensors differently: Qwen 3.5 calls
	// its FFN pre-norm attn_post_norm, Gemma 4 ffn_norm).
	rename := map[string][]string{"embd": {"model.input_embed", "inp_scaled"}, "attn_res": {"attn_residual"},
		"ffn_norm": {"ffn_norm", "attn_post_norm"}, "attn_out": {"attn_output", "attn_out"}, "kqv_out": {"attn_pregate", "kqv_out"},
		"q": {"Qcur"}, "k": {"Kcur"}, "v": {"Vcur"}, "Qcur": {"Qcur_pos"}, "Kcur": {"Kcur_pos"},
		"inp_per_layer": {"inp_per_layer_(permuted)_(cont)"}}
	d.Trace = func(name string, il int, x backend.Tensor) {
		rows, cols := x.Shape()
		got := make([]float32, n*cols)
		if rows > n && rows%n == 0 {
			got = make([]float32, rows*cols) // layer-major per-layer inputs: all of it
		}
		be.Read(x, 0, got)
		var want []float32
		err := fmt.Errorf("no file")
		for _, r := range append(rename[name], name) {
			if il >= 0 {
				r = fmt.Sprintf("%s-%d", r, il)
			}
			if want, err = readDump(filepath.Join(ref, r+".bin")); err == nil && len(want) == len(got) {
				name = r
				break
			}
		}
		if err != nil || len(want) != len(got) {
			t.Logf("%-26s no reference of %d values (%v)", name, len(got), err)
			return
		}
		t.Logf("%-26s %s", name, posDiffs(got, want, n))
	}
	kv, err := m.NewKV(2048)
	if err != nil {
		t.Fatal(err)
	}
	logits, err := m.Forward(arch.Single(c.PromptIDs, 0, kv, true))
	if err != nil {
		t.Fatal(err)
	}
	if want, err := readDump(filepath.Join(ref, "_logits.bin")); err == nil && len(want) == len(logits) {
		t.Logf("%-26s %s", "logits", posDiffs(logits, want, n))
	}
}

// posDiffs is the largest |got-want| of each of n rows.
func posDiffs(got, want []float32, n int) string {
	cols := len(got) / n
	var b strings.Builder
	for p := range n {
		var md float64
		for i := p * cols; i < (p+1)*cols; i++ {
			md = max(md, math.Abs(float64(got[i]-want[i])))
		}
		fmt.Fprintf(&b, " %d:%.0e", p, md)
	}
	return b.String()
}

// readDump reads a dump_tensors file: four int64 dims, then float32s.
func readDump(path string) ([]float32, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	if len(b) < 32 || (len(b)-32)%4 != 0 {
		return nil, fmt.Errorf("%s: %d bytes", path, len(b))
	}
	b = b[32:]
	out := make([]float32, len(b)/4)
	for i := range out {
		out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
	}
	return out, nil
}
