package cuda

// Differential checks of a CUDA backend against the CPU backend, shared by
// the CPU-only tests (over the fake driver, cuda_test.go) and the device
// tests (gpu_test.go, build tag gpu).

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hearth-llm/hearth/internal/golden"
	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
	_ "github.com/hearth-llm/hearth/runtime/arch/all"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// maxDiff returns max |a-b| and whether any value is not finite.
func maxDiff(a, b []float32) (float32, bool) {
	var d float32
	bad := false
	for i := range a {
		if math.IsNaN(float64(a[i])) || math.IsInf(float64(a[i]), 0) {
			bad = true
		}
		d = max(d, float32(math.Abs(float64(a[i]-b[i]))))
	}
	return d, bad
}

func argmaxRow(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// pair is one model bound on the CPU and on the backend under test.
type pair struct {
	name     string
	cpu, dev arch.Model
	vocab    int
	tol      float32
}

func loadPair(t testing.TB, path string, cpuBE *cpu.Backend, devBE backend.Backend) *pair {
	t.Helper()
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	mc, err := arch.Load(f, cpuBE)
	if err != nil {
		t.Fatal(err)
	}
	md, err := arch.Load(f, devBE)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(path)
	name = name[:len(name)-len(filepath.Ext(name))]
	return &pair{name: name, cpu: mc, dev: md, vocab: mc.Info().VocabSize, tol: golden.ToleranceCUDA(name)}
}

// forwardBoth runs a batch on both models (each with its own caches) and
// returns the worst |Δ logit| and the rows whose top-1 differs while the
// CPU's margin exceeds the tolerance.
func (p *pair) forwardBoth(t testing.TB, bc, bd *arch.Batch) (float32, []int) {
	t.Helper()
	lc, err := p.cpu.Forward(bc)
	if err != nil {
		t.Fatal(err)
	}
	lc = append([]float32(nil), lc...)
	ld, err := p.dev.Forward(bd)
	if err != nil {
		t.Fatalf("%s: forward on the device: %v", p.name, err)
	}
	d, bad := maxDiff(ld, lc)
	if bad {
		t.Fatalf("%s: the device produced non-finite logits", p.name)
	}
	var flips []int
	for r := 0; r < len(lc)/p.vocab; r++ {
		rc, rd := lc[r*p.vocab:(r+1)*p.vocab], ld[r*p.vocab:(r+1)*p.vocab]
		if a, b := argmaxRow(rc), argmaxRow(rd); a != b {
			m := rc[a] - rc[b]
			if m > p.tol {
				flips = append(flips, r)
			}
		}
	}
	return d, flips
}

// checkSequence runs a prompt (all logits: the batched matmul path) and
// then steps decode steps (one token: the matvec path) on both backends
// and holds the logits to the model's golden tolerance.
func checkSequence(t testing.TB, p *pair, prompt []int32, steps int) string {
	t.Helper()
	kc, err := p.cpu.NewKV(len(prompt) + steps + 1)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := p.dev.NewKV(len(prompt) + steps + 1)
	if err != nil {
		t.Fatal(err)
	}
	worst, flips := p.forwardBoth(t, arch.Single(prompt, 0, kc, true), arch.Single(prompt, 0, kd, true))
	prefill := worst
	if len(flips) > 0 {
		t.Errorf("%s: prompt rows %v: top-1 differs from the CPU's by more than the tolerance", p.name, flips)
	}
	next := int32(1)
	var decode float32
	for s := 0; s < steps; s++ {
		ids := []int32{next}
		d, fl := p.forwardBoth(t, arch.Single(ids, len(prompt)+s, kc, false), arch.Single(ids, len(prompt)+s, kd, false))
		decode = max(decode, d)
		if len(fl) > 0 {
			t.Errorf("%s: decode step %d: top-1 differs", p.name, s)
		}
		next = int32((s*7919 + 13) % p.vocab)
	}
	if prefill > p.tol || decode > p.tol {
		t.Errorf("%s: max|Δ logit| prefill %.4g, decode %.4g > tolerance %.2g", p.name, prefill, decode, p.tol)
	}
	return fmt.Sprintf("%-26s prefill(%d) max|Δ| %.2e  decode(%d) max|Δ| %.2e  tol %.2g", p.name, len(prompt), prefill, steps, decode, p.tol)
}

// checkBatch runs three sequences in one forward pass on both backends:
// two in one paged pool with scattered, interleaved block tables (one a
// prompt chunk, one a decode step after its prompt) and one in a cache of
// its own, then one decode step of all three together.
func checkBatch(t testing.TB, p *pair, cpuBE, devBE backend.Backend) string {
	t.Helper()
	info := p.cpu.Info()
	mk := func(be backend.Backend) []backend.KV {
		pool, err := be.NewKVPool(info.Layers, 16, 4, info.KVDim)
		if err != nil {
			t.Fatal(err)
		}
		own, err := be.NewKV(info.Layers, 40, info.KVDim)
		if err != nil {
			t.Fatal(err)
		}
		return []backend.KV{
			&backend.PagedKV{Pool: pool, Table: []int32{7, 2, 11, 5}},
			&backend.PagedKV{Pool: pool, Table: []int32{3, 8, 0, 14}},
			own,
		}
	}
	kvc, kvd := mk(cpuBE), mk(devBE)
	r := rand.New(rand.NewPCG(5, 6))
	tok := func() int32 { return int32(1 + r.IntN(p.vocab-1)) }
	// Sequence 1 gets a prompt of 5 first.
	pre := &arch.Batch{Outputs: []int{4}}
	for i := range 5 {
		pre.IDs, pre.Pos, pre.Seq = append(pre.IDs, tok()), append(pre.Pos, int32(i)), append(pre.Seq, 1)
	}
	pc, pd := *pre, *pre
	pc.KVs, pd.KVs = kvc, kvd
	worst, _ := p.forwardBoth(t, &pc, &pd)
	// Then: sequence 0 a prompt of 9, sequence 1 its decode step at 5,
	// sequence 2 a prompt of 3; logits of every row.
	b := &arch.Batch{}
	add := func(seq, pos int32) {
		b.IDs, b.Pos, b.Seq = append(b.IDs, tok()), append(b.Pos, pos), append(b.Seq, seq)
		b.Outputs = append(b.Outputs, len(b.IDs)-1)
	}
	for i := range 9 {
		add(0, int32(i))
	}
	add(1, 5)
	for i := range 3 {
		add(2, int32(i))
	}
	bc, bd := *b, *b
	bc.KVs, bd.KVs = kvc, kvd
	d, flips := p.forwardBoth(t, &bc, &bd)
	worst = max(worst, d)
	// One decode step of all three.
	s := &arch.Batch{IDs: []int32{tok(), tok(), tok()}, Pos: []int32{9, 6, 3}, Seq: []int32{0, 1, 2}, Outputs: []int{0, 1, 2}}
	sc, sd := *s, *s
	sc.KVs, sd.KVs = kvc, kvd
	d, fl := p.forwardBoth(t, &sc, &sd)
	worst = max(worst, d)
	flips = append(flips, fl...)
	if worst > p.tol || len(flips) > 0 {
		t.Errorf("%s: batch of three sequences: max|Δ logit| %.4g (tolerance %.2g), top-1 flips %v", p.name, worst, p.tol, flips)
	}
	return fmt.Sprintf("%-26s batch of 3 (paged + own cache) max|Δ| %.2e", p.name, worst)
}

// parityModels are the shared models the differential tests run: every
// weight format with a kernel, and one (Q5_0 inside stories260K-q4_k_m)
// that goes through the F16 conversion.
var parityModels = []string{
	"stories260K-f32", "stories260K-f16", "stories260K-bf16", "stories260K-q4_0", "stories260K-q8_0",
	"stories260K-q4_k_m", "tiny-llama-spm-Q4_0", "tiny-llama-spm-Q8_0", "tiny-llama-spm-Q4_K_M", "tiny-llama-spm-Q6_K",
}

// goldenPrompt returns the prompt ids of the model's longest golden case,
// cut to n tokens.
func goldenPrompt(t testing.TB, model string, n int) []int32 {
	t.Helper()
	return goldenPromptIn(t, "golden", model, n)
}

// goldenPromptIn is goldenPrompt over the golden cases in the shared
// folder dir ("golden", "arch/golden").
func goldenPromptIn(t testing.TB, dir, model string, n int) []int32 {
	t.Helper()
	cases, err := golden.Load(testdata.Dir(t, dir))
	if err != nil {
		t.Fatal(err)
	}
	var best []int32
	for _, c := range cases {
		if c.Model == model && len(c.PromptIDs) > len(best) {
			best = c.PromptIDs
		}
	}
	if len(best) == 0 {
		t.Fatalf("no golden case for %s", model)
	}
	return best[:min(n, len(best))]
}

// randomWeight makes a random rows × cols weight of type typ.
func randomWeight(r *rand.Rand, typ quant.Type, rows, cols int) []byte {
	var out []byte
	for range rows {
		b, _ := randomRow(typ, r, cols)
		out = append(out, b...)
	}
	return out
}

// opErrors runs every backend operation on random inputs on both backends
// and returns the worst relative error per operation. read copies a tensor
// back.
func opErrors(t testing.TB, cpuBE, devBE backend.Backend) map[string]float64 {
	t.Helper()
	r := rand.New(rand.NewPCG(7, 8))
	errs := map[string]float64{}
	note := func(op string, got, want []float32) {
		var num, den float64
		for i := range want {
			d := float64(got[i] - want[i])
			num += d * d
			den += float64(want[i]) * float64(want[i])
		}
		e := math.Sqrt(num / max(den, 1e-30))
		if math.IsNaN(e) {
			e = math.Inf(1)
		}
		errs[op] = max(errs[op], e)
	}
	read := func(be backend.Backend, x backend.Tensor) []float32 {
		rows, cols := x.Shape()
		out := make([]float32, rows*cols)
		for i := range rows {
			be.Read(x, i, out[i*cols:(i+1)*cols])
		}
		return out
	}
	put := func(be backend.Backend, rows, cols int, vals []float32, table backend.Weight) backend.Tensor {
		// Tensors are filled through Embed of an F32 table (the only way
		// in through the interface): row i = table row i.
		x := be.NewTensor(rows, cols)
		ids := make([]int32, rows)
		for i := range ids {
			ids[i] = int32(i)
		}
		be.Embed(x, table, ids)
		if err := be.Err(); err != nil {
			t.Fatal(err)
		}
		return x
	}
	f32Table := func(be backend.Backend, rows, cols int, vals []float32) backend.Weight {
		b := make([]byte, 4*len(vals))
		for i, v := range vals {
			u := math.Float32bits(v)
			b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
		}
		w, err := be.Weight("x", quant.F32, rows, cols, b)
		if err != nil {
			t.Fatal(err)
		}
		return w
	}
	randVals := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64())
		}
		return v
	}
	both := func(rows, cols int, vals []float32) (backend.Tensor, backend.Tensor) {
		return put(cpuBE, rows, cols, vals, f32Table(cpuBE, rows, cols, vals)), put(devBE, rows, cols, vals, f32Table(devBE, rows, cols, vals))
	}

	// Embed and MatMul for every format, decode (3 tokens) and prefill (70).
	for _, typ := range kernelTypes {
		rows, cols := 300, 512
		data := randomWeight(r, typ, rows, cols)
		wc, err := cpuBE.Weight("w", typ, rows, cols, data)
		if err != nil {
			t.Fatal(err)
		}
		wd, err := devBE.Weight("w", typ, rows, cols, data)
		if err != nil {
			t.Fatal(err)
		}
		ids := []int32{5, 0, 299, 17}
		ec, ed := cpuBE.NewTensor(4, cols), devBE.NewTensor(4, cols)
		cpuBE.Embed(ec, wc, ids)
		devBE.Embed(ed, wd, ids)
		if err := devBE.Err(); err != nil {
			t.Fatal(err)
		}
		note("embed "+typ.String(), read(devBE, ed), read(cpuBE, ec))
		// Decode (matvec), prefill through the tensor-core kernel where
		// the format has one (a token tail at 70, two token tiles and a
		// tail at 200; 300 rows: a row tail) and through the FMA tiles.
		cb, _ := devBE.(*Backend)
		if cb != nil { // both kernels, whatever the default
			defer func(on bool) { cb.mma = on }(cb.mma)
			cb.mma = cb.Device().CC[0] >= 8
		}
		for _, n := range []int{3, 16, 70, 200} {
			vals := randVals(n * cols)
			xc, xd := both(n, cols, vals)
			oc, od := cpuBE.NewTensor(n, rows), devBE.NewTensor(n, rows)
			cpuBE.MatMul(oc, xc, wc)
			want := read(cpuBE, oc)
			devBE.MatMul(od, xd, wd)
			label := fmt.Sprintf("matmul %v n=%d", typ, n)
			if cb != nil && cb.useMMA(wd.(*weight), n) {
				label += " mma"
				cb.mma = false // the FMA tiles on the same inputs
				devBE.MatMul(od, xd, wd)
				note(fmt.Sprintf("matmul %v n=%d fma", typ, n), read(devBE, od), want)
				cb.mma = true
				devBE.MatMul(od, xd, wd)
			}
			note(label, read(devBE, od), want)
		}
	}
	// Row-wise operations on 37 rows of 256.
	const n, cols = 37, 256
	xc, xd := both(n, cols, randVals(n*cols))
	yc, yd := both(n, cols, randVals(n*cols))
	normVals := randVals(cols)
	nc, nd := f32Table(cpuBE, 1, cols, normVals), f32Table(devBE, 1, cols, normVals)
	oc, od := cpuBE.NewTensor(n, cols), devBE.NewTensor(n, cols)
	cpuBE.RMSNorm(oc, xc, nc, 1e-5)
	devBE.RMSNorm(od, xd, nd, 1e-5)
	note("rmsnorm", read(devBE, od), read(cpuBE, oc))
	cpuBE.SwiGLU(oc, xc, yc)
	devBE.SwiGLU(od, xd, yd)
	note("swiglu", read(devBE, od), read(cpuBE, oc))
	cpuBE.Add(oc, yc)
	devBE.Add(od, yd)
	note("add", read(devBE, od), read(cpuBE, oc))
	env := &opEnv{t: t, cpu: cpuBE, dev: devBE, note: note, read: read, both: both, table: f32Table, randVals: randVals}
	env.familyOps()
	env.expertOps(r)
	env.recurrentOps()
	env.loraOps(r)
	pos := make([]int32, n)
	for i := range pos {
		pos[i] = int32(r.IntN(3000))
	}
	for _, neox := range []bool{false, true} {
		rp := &backend.RoPE{Dims: 24, Base: 10000, Scale: 1, AttnFactor: 1, NeoX: neox, BetaFast: 32, BetaSlow: 1, CtxOrig: 4096}
		cpuBE.RoPE(oc, 8, 32, pos, rp)
		devBE.RoPE(od, 8, 32, pos, rp)
		note(fmt.Sprintf("rope neox=%v", neox), read(devBE, od), read(cpuBE, oc))
	}
	gc, gd := cpuBE.NewTensor(3, cols), devBE.NewTensor(3, cols)
	cpuBE.Gather(gc, oc, []int{36, 0, 5})
	devBE.Gather(gd, od, []int{36, 0, 5})
	note("gather", read(devBE, gd), read(cpuBE, gc))
	if am, ok := devBE.(Argmaxer); ok {
		got := make([]int32, n)
		if err := am.Argmax(od, got); err != nil {
			t.Fatal(err)
		}
		all := read(cpuBE, oc)
		for i := range n {
			if want := argmaxRow(all[i*cols : (i+1)*cols]); int(got[i]) != want {
				t.Errorf("argmax row %d: %d, want %d", i, got[i], want)
			}
		}
	}
	// Attention: 2 sequences in one paged pool (GQA 8 heads over 2),
	// prefill of 20 tokens and 11 tokens, then a decode token each; plain
	// causal, then each variant of the model families and a mix.
	heads := 8
	sinkVals := randVals(heads)
	for i := range sinkVals {
		sinkVals[i] *= 3
	}
	for _, c := range []struct {
		name string
		hds  []int
		set  func(p *backend.AttentionParams, be backend.Backend)
	}{
		{"", []int{8, 64, 128}, func(*backend.AttentionParams, backend.Backend) {}},
		{" window=5", []int{64}, func(p *backend.AttentionParams, _ backend.Backend) { p.Window = 5 }},
		{" window=1", []int{8}, func(p *backend.AttentionParams, _ backend.Backend) { p.Window = 1 }},
		{" softcap=1.5", []int{64}, func(p *backend.AttentionParams, _ backend.Backend) { p.SoftCap = 1.5 }},
		{" sinks", []int{64}, func(p *backend.AttentionParams, be backend.Backend) { p.Sinks = f32Table(be, 1, heads, sinkVals) }},
		{" noncausal", []int{32, 128}, func(p *backend.AttentionParams, _ backend.Backend) { p.NonCausal = true }},
		{" window=4 softcap=2 sinks", []int{128}, func(p *backend.AttentionParams, be backend.Backend) {
			p.Window, p.SoftCap, p.Sinks = 4, 2, f32Table(be, 1, heads, sinkVals)
		}},
	} {
		for _, hd := range c.hds {
			env.attention(hd, 1, c.name, c.set)
		}
	}
	// A layer narrower than the pool's rows (Gemma 4's sliding layers)
	// fills their front; heads of 512 (its global layers) take
	// attention_f16_h512.
	env.attention(64, 3, " in rows of 3× its width", func(*backend.AttentionParams, backend.Backend) {})
	env.attention(512, 1, "", func(*backend.AttentionParams, backend.Backend) {})
	env.attention(512, 2, " window=5 in rows of 2× its width", func(p *backend.AttentionParams, _ backend.Backend) { p.Window = 5 })
	return errs
}

// opEnv is what opErrors' comparisons share: the two backends and
// opErrors' helpers (note records an error, read copies a tensor back,
// both puts the same values in a tensor of each backend, table makes an
// F32 weight, randVals draws normal values).
type opEnv struct {
	t        testing.TB
	cpu, dev backend.Backend
	note     func(op string, got, want []float32)
	read     func(be backend.Backend, x backend.Tensor) []float32
	both     func(rows, cols int, vals []float32) (backend.Tensor, backend.Tensor)
	table    func(be backend.Backend, rows, cols int, vals []float32) backend.Weight
	randVals func(n int) []float32
}

// attention compares one attention configuration (set applies it to each
// backend's parameters) on both backends: two sequences in one paged
// pool (GQA 8 heads over 2), prefill of 20 tokens and 11 tokens, then a
// decode token each, over two layers, in a pool whose rows are wide times
// the layer's KV width.
func (e *opEnv) attention(hd, wide int, variant string, set func(*backend.AttentionParams, backend.Backend)) {
	t, cpuBE, devBE, note, read, both, randVals := e.t, e.cpu, e.dev, e.note, e.read, e.both, e.randVals
	t.Helper()
	{
		heads, kvHeads := 8, 2
		ap := backend.AttentionParams{Heads: heads, KVHeads: kvHeads, HeadDim: hd, Scale: float32(1 / math.Sqrt(float64(hd)))}
		apc, apd := ap, ap
		set(&apc, cpuBE)
		set(&apd, devBE)
		var effect float32 // how far the variant moves the CPU's output from plain attention
		mk := func(be backend.Backend) []backend.KV {
			pool, err := be.NewKVPool(2, 12, 4, wide*kvHeads*hd)
			if err != nil {
				t.Fatal(err)
			}
			return []backend.KV{&backend.PagedKV{Pool: pool, Table: []int32{9, 1, 4, 6, 11, 0}},
				&backend.PagedKV{Pool: pool, Table: []int32{2, 10, 3, 7}}}
		}
		kvc, kvd := mk(cpuBE), mk(devBE)
		for _, step := range [][2][]int32{
			{{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1},
				{0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10}},
			{{1, 0}, {11, 20}},
		} {
			seq, ps := step[0], step[1]
			m := len(seq)
			qv, kv, vv := randVals(m*heads*hd), randVals(m*kvHeads*hd), randVals(m*kvHeads*hd)
			qc, qd := both(m, heads*hd, qv)
			kc, kd := both(m, kvHeads*hd, kv)
			vc, vd := both(m, kvHeads*hd, vv)
			ac, ad := cpuBE.NewTensor(m, heads*hd), devBE.NewTensor(m, heads*hd)
			for layer := range 2 {
				cpuBE.Attention(ac, qc, kc, vc, kvc, seq, layer, ps, apc)
				devBE.Attention(ad, qd, kd, vd, kvd, seq, layer, ps, apd)
				if err := errors.Join(cpuBE.Err(), devBE.Err()); err != nil {
					t.Fatal(err)
				}
				want := read(cpuBE, ac)
				note(fmt.Sprintf("attention headDim=%d%s", hd, variant), read(devBE, ad), want)
				if variant != "" {
					cpuBE.Attention(ac, qc, kc, vc, kvc, seq, layer, ps, ap)
					if err := cpuBE.Err(); err != nil {
						t.Fatal(err)
					}
					d, _ := maxDiff(read(cpuBE, ac), want)
					effect = max(effect, d)
				}
			}
		}
		if variant != "" && !strings.HasPrefix(variant, " in rows") && effect < 1e-3 {
			t.Errorf("attention%s: the CPU's output is plain attention's (max |Δ| %g): the case tests nothing", variant, effect)
		}
	}
}

// familyOps compares the operations of the model families beyond Llama
// (per-head RMSNorm, LayerNorm, GLU with GELU and gpt-oss's clamped
// SwiGLU, Activate, AddBias, Scale, AddScaledRows) on both backends.
func (e *opEnv) familyOps() {
	cpuBE, devBE, note, read, both, table, randVals := e.cpu, e.dev, e.note, e.read, e.both, e.table, e.randVals
	const n, cols = 37, 256
	vec := func(vals []float32) (backend.Weight, backend.Weight) {
		return table(cpuBE, 1, len(vals), vals), table(devBE, 1, len(vals), vals)
	}
	scaled := func(k float32) []float32 {
		v := randVals(n * cols)
		for i := range v {
			v[i] = v[i]*k + 0.5
		}
		return v
	}
	xc, xd := both(n, cols, scaled(3))
	yc, yd := both(n, cols, scaled(5))
	oc, od := cpuBE.NewTensor(n, cols), devBE.NewTensor(n, cols)
	// RMSNorm per segment: heads of 64 and of 32 (per-head Q/K norms).
	for _, seg := range []int{64, 32} {
		hc, hd := vec(randVals(seg))
		cpuBE.RMSNorm(oc, xc, hc, 1e-6)
		devBE.RMSNorm(od, xd, hd, 1e-6)
		note(fmt.Sprintf("rmsnorm per %d", seg), read(devBE, od), read(cpuBE, oc))
	}
	wc, wd := vec(randVals(cols))
	bc, bd := vec(randVals(cols))
	cpuBE.LayerNorm(oc, xc, wc, bc, 1e-5)
	devBE.LayerNorm(od, xd, wd, bd, 1e-5)
	note("layernorm", read(devBE, od), read(cpuBE, oc))
	cpuBE.LayerNorm(oc, xc, wc, nil, 1e-12)
	devBE.LayerNorm(od, xd, wd, nil, 1e-12)
	note("layernorm no bias", read(devBE, od), read(cpuBE, oc))
	cpuBE.LayerNorm(oc, oc, nil, nil, 1e-5) // in place, no weight
	devBE.LayerNorm(od, od, nil, nil, 1e-5)
	note("layernorm in place", read(devBE, od), read(cpuBE, oc))
	for _, a := range []struct {
		name string
		act  backend.Act
	}{
		{"gelu", backend.Act{Kind: backend.ActGELU}},
		{"swiglu_oai", backend.Act{Kind: backend.ActSwiGLUOAI, Alpha: 1.702, Limit: 7}}, // gpt-oss's
		{"silu", backend.Act{Kind: backend.ActSiLU}},
	} {
		cpuBE.GLU(oc, xc, yc, a.act)
		devBE.GLU(od, xd, yd, a.act)
		note("glu "+a.name, read(devBE, od), read(cpuBE, oc))
		if a.act.Kind != backend.ActSwiGLUOAI {
			cpuBE.Activate(oc, xc, a.act)
			devBE.Activate(od, xd, a.act)
			note("activate "+a.name, read(devBE, od), read(cpuBE, oc))
		}
	}
	// The exact operations, from equal inputs.
	oc, od = both(n, cols, randVals(n*cols))
	cpuBE.AddBias(oc, bc)
	devBE.AddBias(od, bd)
	note("add bias", read(devBE, od), read(cpuBE, oc))
	cpuBE.Scale(oc, 0.37)
	devBE.Scale(od, 0.37)
	note("scale", read(devBE, od), read(cpuBE, oc))
	rowScales := randVals(n)
	cpuBE.Scale(oc, rowScales...)
	devBE.Scale(od, rowScales...)
	note("scale per row", read(devBE, od), read(cpuBE, oc))
	// The weighted sum of 12 expert rows into 5 token rows, destinations
	// repeating and one (row 2) untouched.
	idx := []int{3, 0, 3, 4, 3, 1, 0, 4, 4, 3, 1, 0}
	ew := randVals(len(idx))
	sc, sd := both(len(idx), cols, randVals(len(idx)*cols))
	dc, dd := both(5, cols, randVals(5*cols))
	cpuBE.AddScaledRows(dc, sc, idx, ew)
	devBE.AddScaledRows(dd, sd, idx, ew)
	note("add scaled rows", read(devBE, dd), read(cpuBE, dc))
}

// opTolerance is the relative error (‖Δ‖/‖ref‖) each operation is held to
// against the CPU backend: float rounding for the exact ones; activation
// quantization (per 32 here, per 256 for the CPU's K-quant Q8_K) and f32
// versus f16/bf16 activations for the matrix products; the f16 rounding of
// probabilities (identical in both, but after slightly different exps)
// for attention.
func opTolerance(op string) float64 {
	switch {
	case len(op) >= 6 && op[:6] == "matmul":
		return 2e-2
	case len(op) >= 9 && op[:9] == "attention":
		return 5e-3
	case len(op) >= 5 && op[:5] == "embed", op == "add bias", op == "scale", op == "scale per row":
		return 0 // bit for bit
	case len(op) >= 11 && op[:11] == "by id exact":
		return 0 // the same kernel loop as MatMul's matvec, or the same arithmetic as AddScaledRows
	case op == "add scaled rows", op == "add weighted by id", strings.HasPrefix(op, "causal conv"):
		// Bit for bit where Go rounds the CPU's w·x before the sum (amd64
		// below GOAMD64=v3); an FMA there moves the last bit.
		return 1e-7
	case op == "glu gelu", op == "activate gelu":
		return 1e-3 // f16 rounding of GELU's input and output: one f16 step apart at a few boundaries
	}
	return 1e-5
}
