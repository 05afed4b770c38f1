package lora_test

import (
	"encoding/binary"
	"errors"
	"math"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	_ "github.com/hearth-llm/hearth/runtime/arch/all"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
	"github.com/hearth-llm/hearth/runtime/lora"
)

func openModel(t testing.TB, name string) *gguf.File {
	t.Helper()
	dir := testdata.Dir(t, "models")
	f, err := gguf.Open(filepath.Join(dir, name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// writeAdapter writes a random adapter for base and reopens it.
func writeAdapter(t testing.TB, base *gguf.File, o lora.RandomOptions) *gguf.File {
	t.Helper()
	w, err := lora.Random(base, o)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "adapter.gguf")
	if err := w.WriteFile(path); err != nil {
		t.Fatal(err)
	}
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func bytesOf(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

// merged writes base (all F32) with every adapted weight replaced by
// W + s·B·A, computed in float64, and opens it.
func merged(t *testing.T, base, ad *gguf.File, user float32) *gguf.File {
	t.Helper()
	c, err := lora.Check(ad, base)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range c.Pairs {
		if w, _ := base.Tensor(p.Name); w.Type != quant.F32 {
			t.Fatalf("%s is %v: the merge test wants an F32 base", p.Name, w.Type)
		}
	}
	_, m := mergedPair(t, base, ad, user)
	return m
}

// mergedPair writes two copies of base with every tensor dequantized to
// F32 (so that no activation is quantized: a last-bit difference in a
// product's input can otherwise move a Q8_0 activation by a step): as it
// is (plain, the base to run the adapter on) and with W + s·B·A merged
// into the tensors ad adapts, computed in float64 (per expert for a
// stack of experts), and opens both.
func mergedPair(t *testing.T, base, ad *gguf.File, user float32) (plain, mergedF *gguf.File) {
	t.Helper()
	c, err := lora.Check(ad, base)
	if err != nil {
		t.Fatal(err)
	}
	deq, repl := map[string][]float32{}, map[string][]float32{}
	for i := range c.Pairs {
		p := &c.Pairs[i]
		w, _ := base.Tensor(p.Name)
		W := dequantize(t, base, w)
		deq[p.Name] = slices.Clone(W)
		A, B := floats(t, ad, p.A), floats(t, ad, p.B)
		s, r := float64(c.Scale(p, user)), p.Rank
		in, out := p.In, p.Out // W is out rows of in (per expert)
		for e := range max(p.Experts, 1) {
			We, Ae, Be := W, A, B
			if p.Experts > 0 {
				We, Ae, Be = W[e*out*in:(e+1)*out*in], A[e*r*in:(e+1)*r*in], B[e*out*r:(e+1)*out*r]
			}
			for o := range out {
				for i := range in {
					var d float64
					for j := range r {
						if p.Embedded { // A: n_vocab(out) rows of r; B: n_embd(in) rows of r
							d += float64(Be[i*r+j]) * float64(Ae[o*r+j])
						} else { // A: r rows of in; B: out rows of r
							d += float64(Be[o*r+j]) * float64(Ae[j*in+i])
						}
					}
					We[o*in+i] = float32(float64(We[o*in+i]) + s*d)
				}
			}
		}
		repl[p.Name] = W
	}
	write := func(name string, vals map[string][]float32) *gguf.File {
		wr := gguf.NewWriter()
		wr.CopyMetadata(base)
		for i := range base.Tensors {
			ti := &base.Tensors[i]
			typ, data := ti.Type, base.Data(ti)
			if v, ok := vals[ti.Name]; ok {
				typ, data = quant.F32, bytesOf(v)
			} else if typ != quant.F32 {
				typ, data = quant.F32, bytesOf(dequantize(t, base, ti))
			}
			if err := wr.AddTensor(ti.Name, typ, ti.Dims, data); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(t.TempDir(), name)
		if err := wr.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	return write("plain.gguf", deq), write("merged.gguf", repl)
}

// dequantize reads a tensor of f as float32.
func dequantize(t *testing.T, f *gguf.File, ti *gguf.TensorInfo) []float32 {
	t.Helper()
	cols := int(ti.Dims[0])
	rb, err := ti.Type.RowBytes(cols)
	if err != nil {
		t.Fatal(err)
	}
	data := f.Data(ti)
	out := make([]float32, len(data)/rb*cols)
	for r := range len(data) / rb {
		if err := quant.DequantizeRow(ti.Type, data[r*rb:(r+1)*rb], out[r*cols:(r+1)*cols]); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// floats reads an adapter tensor (F32 or F16) as float32.
func floats(t *testing.T, f *gguf.File, ti *gguf.TensorInfo) []float32 {
	t.Helper()
	data := f.Data(ti)
	out := make([]float32, len(data)/ti.Type.BlockBytes())
	if err := quant.DequantizeRow(ti.Type, data, out); err != nil {
		t.Fatal(err)
	}
	return out
}

// logits runs prompt then greedy decode steps through m (with ad when
// set) and returns every row it produced.
func logits(t *testing.T, m arch.Model, ad arch.Adapter, prompt []int32, steps int) [][]float32 {
	t.Helper()
	kv, err := m.NewKV(256)
	if err != nil {
		t.Fatal(err)
	}
	vocab := m.Info().VocabSize
	var rows [][]float32
	b := arch.Single(prompt, 0, kv, true)
	pos := len(prompt)
	for k := 0; ; k++ {
		if ad != nil {
			b.Adapters = []arch.Adapter{ad}
		}
		out, err := m.Forward(b)
		if err != nil {
			t.Fatal(err)
		}
		for r := range len(b.Outputs) {
			rows = append(rows, append([]float32(nil), out[r*vocab:(r+1)*vocab]...))
		}
		if k == steps {
			return rows
		}
		last := rows[len(rows)-1]
		best := 0
		for i, v := range last {
			if v > last[best] {
				best = i
			}
		}
		b = arch.Single([]int32{int32(best)}, pos, kv, false)
		pos++
	}
}

func maxDiff(a, b [][]float32) float64 {
	d := 0.0
	for i := range a {
		for j := range a[i] {
			d = max(d, math.Abs(float64(a[i][j]-b[i][j])))
		}
	}
	return d
}

// TestMergedEqual holds an adapter run as a delta (base product once,
// then s·B·(A·x)) to the base model with W + s·B·A merged into an F32
// copy of its weights, on every weight kind Hearth adapts: attention,
// FFN, the untied output and the (flipped) token embedding.
func TestMergedEqual(t *testing.T) {
	base := openModel(t, "stories260K-f32.gguf")
	parts := append([]string{"token_embd.weight", "output.weight"}, lora.AttnFFN...)
	ad := writeAdapter(t, base, lora.RandomOptions{Seed: 7, Rank: 8, Alpha: 16, Parts: parts, StdB: 0.01})
	be := cpu.New(2)
	defer be.Close()
	m, err := arch.Load(base, be)
	if err != nil {
		t.Fatal(err)
	}
	c, err := lora.Check(ad, base)
	if err != nil {
		t.Fatal(err)
	}
	const user = 0.75
	a, err := lora.Bind("t", c, m, be, user)
	if err != nil {
		t.Fatal(err)
	}
	if a.Tensors != 2+7*5 {
		t.Fatalf("%d tensors adapted", a.Tensors)
	}
	mm, err := arch.Load(merged(t, base, ad, user), be)
	if err != nil {
		t.Fatal(err)
	}
	prompt := []int32{1, 403, 407, 261, 378, 429, 58, 284, 300}
	got := logits(t, m, a, prompt, 8)
	want := logits(t, mm, nil, prompt, 8)
	plain := logits(t, m, nil, prompt, 8)
	d, moved := maxDiff(got, want), maxDiff(plain, want)
	t.Logf("adapter vs merged: max |Δ logit| %.2g (the adapter moves the logits by up to %.2g)", d, moved)
	if moved < 0.5 {
		t.Fatalf("the adapter hardly changes the logits (%.3g): the test would prove nothing", moved)
	}
	// Float32 sums in another order: the first rows agree to 4e-6; from
	// the sixth on an input one ulp apart lands on the other side of an
	// f16 rounding (the KV cache and the attention's probabilities are
	// f16), 5e-4 relative, and the worst row ends 4e-3 off (logits ±15).
	if d0 := maxDiff(got[:5], want[:5]); d0 > 2e-5 {
		t.Fatalf("first rows differ from the merged weights by %.3g", d0)
	}
	if d > 1e-2 {
		t.Fatalf("adapter run differs from the merged weights by %.3g", d)
	}
	// WithScale(0) is the base.
	if d := maxDiff(logits(t, m, a.WithScale(0), prompt, 3), plain[:len(prompt)+3]); d != 0 {
		t.Fatalf("scale 0 differs from the base by %g", d)
	}
}

// TestMixedBatch runs two sequences in one forward pass, one with an
// adapter and one on the bare base, and holds each row to the same
// sequence run alone.
func TestMixedBatch(t *testing.T) {
	base := openModel(t, "stories260K-f32.gguf")
	ad := writeAdapter(t, base, lora.RandomOptions{Seed: 3, Rank: 4, Parts: lora.AttnFFN, StdB: 0.05})
	be := cpu.New(2)
	defer be.Close()
	m, err := arch.Load(base, be)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := lora.Check(ad, base)
	a, err := lora.Bind("t", c, m, be, 1)
	if err != nil {
		t.Fatal(err)
	}
	p0, p1 := []int32{1, 403, 407, 261}, []int32{1, 300, 284, 58, 429}
	alone0, alone1 := logits(t, m, a, p0, 0), logits(t, m, nil, p1, 0)
	kv0, _ := m.NewKV(64)
	kv1, _ := m.NewKV(64)
	b := &arch.Batch{KVs: []backend.KV{kv0, kv1}, Adapters: []arch.Adapter{a, nil}}
	for i, id := range p0 {
		b.IDs, b.Pos, b.Seq = append(b.IDs, id), append(b.Pos, int32(i)), append(b.Seq, 0)
	}
	for i, id := range p1 {
		b.IDs, b.Pos, b.Seq = append(b.IDs, id), append(b.Pos, int32(i)), append(b.Seq, 1)
	}
	b.Outputs = []int{len(p0) - 1, len(p0) + len(p1) - 1}
	out, err := m.Forward(b)
	if err != nil {
		t.Fatal(err)
	}
	vocab := m.Info().VocabSize
	if d := maxDiff([][]float32{out[:vocab]}, alone0[len(p0)-1:]); d > 1e-5 {
		t.Errorf("adapted sequence in a mixed batch differs by %g", d)
	}
	if d := maxDiff([][]float32{out[vocab : 2*vocab]}, alone1[len(p1)-1:]); d > 1e-5 {
		t.Errorf("base sequence in a mixed batch differs by %g", d)
	}
}

// TestCheckErrors holds the checks to llama.cpp's, each error naming its
// tensor.
func TestCheckErrors(t *testing.T) {
	base := openModel(t, "stories260K-f32.gguf")
	other := openModel(t, "tiny-llama-spm-Q8_0.gguf")
	ad := writeAdapter(t, other, lora.RandomOptions{Seed: 1, Rank: 4, Parts: []string{"attn_q"}})
	if _, err := lora.Check(ad, base); !errors.Is(err, lora.ErrMismatch) || !strings.Contains(err.Error(), "blk.0.attn_q.weight") {
		t.Errorf("adapter of another model's shapes: %v", err)
	}
	if _, err := lora.Check(base, base); !errors.Is(err, lora.ErrNotAdapter) {
		t.Errorf("a model as adapter: %v", err)
	}
	// A pair without its B, and an unexpected name.
	for _, tc := range []struct{ name, want string }{
		{"blk.0.attn_q.weight.lora_a", "lora_a or lora_b is missing"},
		{"blk.0.attn_q.weight.bias", "unexpected name"},
		{"blk.9.attn_q.weight.lora_a", "has no tensor"},
	} {
		w := gguf.NewWriter()
		w.Set("general.architecture", gguf.String("llama"))
		w.Set("general.type", gguf.String("adapter"))
		w.Set("adapter.type", gguf.String("lora"))
		w.AddTensor(tc.name, quant.F32, []uint64{64, 4}, make([]byte, 64*4*4))
		if strings.HasPrefix(tc.name, "blk.9") {
			w.AddTensor("blk.9.attn_q.weight.lora_b", quant.F32, []uint64{4, 64}, make([]byte, 64*4*4))
		}
		path := filepath.Join(t.TempDir(), "a.gguf")
		if err := w.WriteFile(path); err != nil {
			t.Fatal(err)
		}
		f, err := gguf.Open(path)
		if err != nil {
			t.Fatal(err)
		}
		_, err = lora.Check(f, base)
		f.Close()
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), strings.Join(strings.Split(tc.name, ".")[:4], ".")) {
			t.Errorf("%s: %v, want %q naming the tensor", tc.name, err, tc.want)
		}
	}
	// Scale: alpha/rank × user, user alone without alpha.
	ad = writeAdapter(t, base, lora.RandomOptions{Seed: 1, Rank: 4, Alpha: 8, Parts: []string{"attn_q"}})
	c, err := lora.Check(ad, base)
	if err != nil {
		t.Fatal(err)
	}
	if s := c.Scale(&c.Pairs[0], 0.5); s != 1 {
		t.Errorf("scale %v, want 8/4×0.5", s)
	}
	c.Alpha = 0
	if s := c.Scale(&c.Pairs[0], 0.5); s != 0.5 {
		t.Errorf("scale without alpha %v, want 0.5", s)
	}
}

// openArch opens a model of the shared arch folder.
func openArch(t testing.TB, name string) *gguf.File {
	t.Helper()
	f, err := gguf.Open(filepath.Join(testdata.Dir(t, "arch/models"), name))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// TestExpertsMergedEqual: an adapter on a mixture's experts (3-D pairs,
// one per expert of ffn_gate_exps, ffn_up_exps and ffn_down_exps) and on
// two attention projections, run as deltas on the rows of each selected
// expert, equals the model with W + s·B·A merged per expert: Qwen3-MoE (8
// experts, top 2) and a Mixtral-style llama (4 experts, top 2), prompt
// and greedy decode steps (which route on the host when an adapter adapts
// the experts).
func TestExpertsMergedEqual(t *testing.T) {
	for _, name := range []string{"qwen3moe-h1001-Q8_0.gguf", "llama-moe-h1001-Q8_0.gguf"} {
		t.Run(name, func(t *testing.T) {
			q := openArch(t, name)
			parts := append([]string{"attn_q", "attn_v"}, lora.Experts...)
			ad := writeAdapter(t, q, lora.RandomOptions{Seed: 11, Rank: 8, Alpha: 16, Parts: parts, StdB: 0.05})
			const user = 0.8
			base, mergedF := mergedPair(t, q, ad, user)
			be := cpu.New(2)
			defer be.Close()
			m, err := arch.Load(base, be)
			if err != nil {
				t.Fatal(err)
			}
			c, err := lora.Check(ad, base)
			if err != nil {
				t.Fatal(err)
			}
			experts := 0
			for _, p := range c.Pairs {
				if p.Experts > 0 {
					experts++
				}
			}
			a, err := lora.Bind("t", c, m, be, user)
			if err != nil {
				t.Fatal(err)
			}
			if layers := m.Info().Layers; experts != 3*layers || a.Tensors != 5*layers {
				t.Fatalf("%d expert stacks, %d tensors adapted over %d layers", experts, a.Tensors, layers)
			}
			mm, err := arch.Load(mergedF, be)
			if err != nil {
				t.Fatal(err)
			}
			prompt := []int32{1, 403, 407, 261, 378, 429, 58, 284, 300}
			got := logits(t, m, a, prompt, 8)
			want := logits(t, mm, nil, prompt, 8)
			plain := logits(t, m, nil, prompt, 8)
			d, moved := maxDiff(got, want), maxDiff(plain, want)
			t.Logf("adapter vs merged: max |Δ logit| %.2g (the adapter moves the logits by up to %.2g)", d, moved)
			if moved < 0.2 {
				t.Fatalf("the adapter hardly changes the logits (%.3g): the test would prove nothing", moved)
			}
			// Float32 sums in another order, through F32 weights (no
			// activation quantized) and the f16 KV cache: 3e-4 and 9e-4.
			if d > 5e-3 {
				t.Fatalf("adapter run differs from the merged weights by %.3g", d)
			}
			// Only the experts adapted: still not the base.
			ex := writeAdapter(t, q, lora.RandomOptions{Seed: 12, Rank: 4, Parts: lora.Experts, StdB: 0.05})
			cx, err := lora.Check(ex, base)
			if err != nil {
				t.Fatal(err)
			}
			ax, err := lora.Bind("x", cx, m, be, 1)
			if err != nil {
				t.Fatal(err)
			}
			if d := maxDiff(logits(t, m, ax, prompt, 2), plain[:len(prompt)+2]); d < 1e-3 {
				t.Errorf("an adapter on the experts alone moves the logits by %.3g only", d)
			}
			mixedDecode(t, m, []arch.Adapter{ax, nil, a}, prompt)
		})
	}
}

// mixedDecode runs a prompt per adapter (nil: the base) in one batch,
// then two decode steps of all of them together, and holds every row to
// the same sequence run alone (on a mixture: the batch routes on the host
// for the adapted experts, a sequence alone by id).
func mixedDecode(t *testing.T, m arch.Model, ads []arch.Adapter, prompt []int32) {
	t.Helper()
	vocab := m.Info().VocabSize
	var alone [][][]float32
	for _, ad := range ads {
		alone = append(alone, logits(t, m, ad, prompt, 2))
	}
	var kvs []backend.KV
	for range ads {
		kv, err := m.NewKV(64)
		if err != nil {
			t.Fatal(err)
		}
		kvs = append(kvs, kv)
	}
	b := &arch.Batch{KVs: kvs, Adapters: ads}
	for q := range ads {
		for i, id := range prompt {
			b.IDs, b.Pos, b.Seq = append(b.IDs, id), append(b.Pos, int32(i)), append(b.Seq, int32(q))
		}
		b.Outputs = append(b.Outputs, (q+1)*len(prompt)-1)
	}
	for step := range 3 {
		out, err := m.Forward(b)
		if err != nil {
			t.Fatal(err)
		}
		next := &arch.Batch{KVs: kvs, Adapters: ads}
		for q := range ads {
			row := out[q*vocab : (q+1)*vocab]
			want := alone[q][len(prompt)-1+step]
			if d := maxDiff([][]float32{row}, [][]float32{want}); d > 1e-5 {
				t.Errorf("step %d: sequence %d in a mixed batch differs from alone by %g", step, q, d)
			}
			best := 0
			for i, v := range want {
				if v > want[best] {
					best = i
				}
			}
			next.IDs, next.Pos, next.Seq = append(next.IDs, int32(best)), append(next.Pos, int32(len(prompt)+step)), append(next.Seq, int32(q))
			next.Outputs = append(next.Outputs, q)
		}
		b = next
	}
}
