package cuda

import (
	"errors"
	"fmt"
	"math"
	"path/filepath"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	kcuda "github.com/hearth-llm/hearth/kernels/cuda"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// recurrentOps compares backend.Recurrent's operations on both backends:
// CausalConv and GatedDeltaNet over three sequences in one state pool
// (prefills of different lengths interleaved in one batch, decode steps,
// a sequence joining later), a snapshot continued from its copy
// (CopyState), ResetState, and the position rule (ErrStateLost on both,
// with nothing changed); per head size, one a multiple of 32 and one not.
// Also the σ gates: GLU with ActSigmoid and ScaleSigmoid.
func (e *opEnv) recurrentOps() {
	t, cpuBE, devBE, note, read, both, table, randVals := e.t, e.cpu, e.dev, e.note, e.read, e.both, e.table, e.randVals
	t.Helper()
	cr, ok1 := cpuBE.(backend.Recurrent)
	dr, ok2 := devBE.(backend.Recurrent)
	if !ok1 || !ok2 {
		t.Fatal("a backend without backend.Recurrent")
	}
	for _, c := range []struct{ kh, vh, hd, k int }{{2, 4, 32, 4}, {1, 2, 48, 3}, {2, 2, 128, 4}} {
		p := backend.DeltaNetParams{KHeads: c.kh, VHeads: c.vh, HeadDim: c.hd, Eps: 1e-6}
		ch := (2*c.kh + c.vh) * c.hd
		sizes := []int{(c.k - 1) * ch, c.vh * c.hd * c.hd}
		const slots = 4
		pc, err := cr.NewStatePool(slots, sizes)
		if err != nil {
			t.Fatal(err)
		}
		pd, err := dr.NewStatePool(slots, sizes)
		if err != nil {
			t.Fatal(err)
		}
		kvs := func(pool backend.StatePool, slot ...int) []backend.KV {
			var out []backend.KV
			for _, s := range slot {
				out = append(out, &backend.PagedKV{States: pool, Slot: s})
			}
			return out
		}
		taps := randVals(ch * c.k)
		tc, td := table(cpuBE, ch, c.k, taps), table(devBE, ch, c.k, taps)
		av, dt := randVals(c.vh), randVals(c.vh)
		for i := range av {
			av[i] = -float32(math.Exp(float64(av[i]) * 0.5))
		}
		ac, ad := table(cpuBE, 1, c.vh, av), table(devBE, 1, c.vh, av)
		dc, dd := table(cpuBE, 1, c.vh, dt), table(devBE, 1, c.vh, dt)
		// step runs one conv and one delta-net on both backends over the
		// sequences' slots (seq indexes slots), and returns the errors.
		step := func(label string, slotOf []int, seq, pos []int32) (error, error) {
			n := len(seq)
			xc, xd := both(n, ch, randVals(n*ch))
			oc, od := cpuBE.NewTensor(n, ch), devBE.NewTensor(n, ch)
			qc, qd := both(n, ch, randVals(n*ch))
			alc, ald := both(n, c.vh, randVals(n*c.vh))
			bec, bed := both(n, c.vh, randVals(n*c.vh))
			gc, gd := cpuBE.NewTensor(n, c.vh*c.hd), devBE.NewTensor(n, c.vh*c.hd)
			cr.CausalConv(oc, xc, tc, kvs(pc, slotOf...), seq, pos, 0)
			dr.CausalConv(od, xd, td, kvs(pd, slotOf...), seq, pos, 0)
			cr.GatedDeltaNet(gc, qc, alc, bec, ac, dc, kvs(pc, slotOf...), seq, pos, 1, p)
			dr.GatedDeltaNet(gd, qd, ald, bed, ad, dd, kvs(pd, slotOf...), seq, pos, 1, p)
			ec, ed := cpuBE.Err(), devBE.Err()
			if ec == nil && ed == nil {
				name := fmt.Sprintf("hd=%d %s", c.hd, label)
				note("causal conv "+name, read(devBE, od), read(cpuBE, oc))
				note("gated delta net "+name, read(devBE, gd), read(cpuBE, gc))
			}
			for _, x := range []any{xc, oc, qc, alc, bec, gc} {
				cpuBE.Free(x)
			}
			for _, x := range []any{xd, od, qd, ald, bed, gd} {
				devBE.Free(x)
			}
			return ec, ed
		}
		ok := func(label string, slotOf []int, seq, pos []int32) {
			if ec, ed := step(label, slotOf, seq, pos); ec != nil || ed != nil {
				t.Fatalf("hd=%d %s: cpu %v, cuda %v", c.hd, label, ec, ed)
			}
		}
		lost := func(label string, slotOf []int, seq, pos []int32) {
			ec, ed := step(label, slotOf, seq, pos)
			if !errors.Is(ec, backend.ErrStateLost) || !errors.Is(ed, backend.ErrStateLost) {
				t.Fatalf("hd=%d %s: cpu %v, cuda %v; want ErrStateLost from both", c.hd, label, ec, ed)
			}
		}
		// Prefill: sequence 0 (slot 0) 7 tokens, sequence 1 (slot 2) 5,
		// interleaved.
		ok("prefill", []int{0, 2}, []int32{0, 1, 0, 0, 1, 1, 0, 0, 1, 0, 0, 1}, []int32{0, 0, 1, 2, 1, 2, 3, 4, 3, 5, 6, 4})
		ok("decode", []int{0, 2}, []int32{1, 0}, []int32{5, 7})
		// A third sequence joins (slot 1) while the others decode.
		ok("join", []int{2, 1, 0}, []int32{0, 1, 1, 1, 2}, []int32{6, 0, 1, 2, 8})
		// The position rule: a gap, a repeat, a stale slot; nothing changes.
		lost("gap", []int{0}, []int32{0}, []int32{10})
		lost("repeat", []int{0, 2}, []int32{1, 0}, []int32{9, 8})
		// A snapshot: slot 0 copied to slot 3, then both continued alike.
		cr.CopyState(pc, 3, pc, 0)
		dr.CopyState(pd, 3, pd, 0)
		ok("copy continued", []int{0, 3}, []int32{0, 0, 1, 1}, []int32{9, 10, 9, 10})
		// Reset: slot 2 must restart at 0.
		cr.ResetState(pc, 2)
		dr.ResetState(pd, 2)
		lost("after reset", []int{2}, []int32{0}, []int32{7})
		ok("restart", []int{2, 1}, []int32{0, 0, 1}, []int32{0, 1, 3})
		// A restart in the middle of a sequence's tokens of one step.
		ok("restart within a step", []int{1}, []int32{0, 0, 0, 0}, []int32{4, 5, 0, 1})
		cpuBE.Free(pc)
		devBE.Free(pd)
	}

	// σ gates.
	const n, cols = 37, 256
	xc, xd := both(n, cols, randVals(n*cols))
	yc, yd := both(n, cols, randVals(n*cols))
	oc, od := cpuBE.NewTensor(n, cols), devBE.NewTensor(n, cols)
	cpuBE.GLU(oc, xc, yc, backend.Act{Kind: backend.ActSigmoid})
	devBE.GLU(od, xd, yd, backend.Act{Kind: backend.ActSigmoid})
	note("glu sigmoid", read(devBE, od), read(cpuBE, oc))
	g := randVals(n)
	for i := range g {
		g[i] *= 4
	}
	gc, gd := both(n, 1, g)
	cpuBE.(backend.SigmoidScaler).ScaleSigmoid(yc, gc)
	devBE.(backend.SigmoidScaler).ScaleSigmoid(yd, gd)
	note("scale sigmoid", read(devBE, yd), read(cpuBE, yc))
}

// TestScaleSigmoidIsHostGate: the CPU's ScaleSigmoid gives bit for bit
// what the decoder computed before it (σ of each logit read to the host
// in float64, then Scale).
func TestScaleSigmoidIsHostGate(t *testing.T) {
	b := newCPU(t)
	const n, cols = 9, 70
	vals := make([]float32, n*cols)
	for i := range vals {
		vals[i] = float32(math.Sin(float64(i))) * 3
	}
	logits := []float32{-30, -4.5, -1, -0.1, 0, 0.3, 2, 7.25, 40}
	put := func(rows, cols int, v []float32) backend.Tensor {
		x := b.NewTensor(rows, cols)
		b.Write(x, 0, v)
		return x
	}
	x, y, g := put(n, cols, vals), put(n, cols, vals), put(n, 1, logits)
	b.ScaleSigmoid(x, g)
	probs := make([]float32, n)
	for i, v := range logits {
		probs[i] = float32(1 / (1 + math.Exp(-float64(v))))
	}
	b.Scale(y, probs...)
	got, want := make([]float32, n*cols), make([]float32, n*cols)
	b.Read(x, 0, got)
	b.Read(y, 0, want)
	for i := range got {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
			t.Fatalf("value %d: %g, want %g", i, got[i], want[i])
		}
	}
}

// recurrentModels are the hybrid models (Gated DeltaNet layers) of
// shared/arch-next.
var recurrentModels = []string{"qwen35-h1001-Q8_0", "qwen35moe-h1001-Q8_0"}

// checkRecurrent runs the model at path on both backends: a golden
// prompt of 20 tokens in chunks of at most kcuda.MaxMatvecTokens (the
// device's matvec path, whose activations are quantized as the CPU's: the
// recurrent kernels alone differ) and three decode steps, held to twice
// the golden tolerance as TestForwardFakeFamilies does; the same prompt in
// one batch (the device's matmul tiles, ~3e-4 from the CPU's Q8_0
// product, which the per-head norm of the small delta-rule outputs
// amplifies: 0.17 on qwen35 over the fake driver), to four times; then a
// continuation from a position the state does not hold, which both
// refuse with ErrStateLost, the step it should have been, and a restart
// at position 0, which both run alike.
func checkRecurrent(t *testing.T, path string, cpuBE *cpu.Backend, devBE backend.Backend) string {
	p := loadPair(t, path, cpuBE, devBE)
	name, tol := p.name, 2*p.tol
	prompt := goldenPromptIn(t, "arch-next/golden", name, 20)
	kc, err := p.cpu.NewKV(64)
	if err != nil {
		t.Fatal(err)
	}
	kd, err := p.dev.NewKV(64)
	if err != nil {
		t.Fatal(err)
	}
	var chunked, decode float32
	for i := 0; i < len(prompt); i += kcuda.MaxMatvecTokens {
		ids := prompt[i:min(i+kcuda.MaxMatvecTokens, len(prompt))]
		d, flips := p.forwardBoth(t, arch.Single(ids, i, kc, true), arch.Single(ids, i, kd, true))
		chunked = max(chunked, d)
		if len(flips) > 0 {
			t.Errorf("%s: chunk at %d, rows %v: top-1 differs from the CPU's by more than the tolerance", name, i, flips)
		}
	}
	n := len(prompt)
	for s := range 4 {
		ids := []int32{int32((s*7919 + 13) % p.vocab)}
		if s == 3 { // the position rule: a gap is refused by both, nothing changes
			_, ec := p.cpu.Forward(arch.Single(ids, n+1, kc, false))
			_, ed := p.dev.Forward(arch.Single(ids, n+1, kd, false))
			if !errors.Is(ec, backend.ErrStateLost) || !errors.Is(ed, backend.ErrStateLost) {
				t.Errorf("%s: a step at position %d after %d tokens: cpu %v, cuda %v; want ErrStateLost from both", name, n+1, n, ec, ed)
			}
		}
		d, flips := p.forwardBoth(t, arch.Single(ids, n, kc, false), arch.Single(ids, n, kd, false))
		decode = max(decode, d)
		if len(flips) > 0 {
			t.Errorf("%s: decode step at %d: top-1 differs", name, n)
		}
		n++
	}
	if chunked > tol || decode > tol {
		t.Errorf("%s: max|Δ logit| chunked prompt %.4g, decode %.4g > %.2g", name, chunked, decode, tol)
	}
	// The whole prompt in one batch, restarting the same caches at 0.
	whole, _ := p.forwardBoth(t, arch.Single(prompt, 0, kc, true), arch.Single(prompt, 0, kd, true))
	if whole > 4*p.tol {
		t.Errorf("%s: max|Δ logit| over a %d-token batch %.4g > %.2g", name, len(prompt), whole, 4*p.tol)
	}
	return fmt.Sprintf("%-22s prompt(%d) in chunks of %d max|Δ| %.2e, decode(4, a refused gap) %.2e, tol %.2g; one batch %.2e",
		name, len(prompt), kcuda.MaxMatvecTokens, chunked, decode, tol, whole)
}

// TestForwardFakeRecurrent runs Qwen 3.5 (dense and MoE) over the fake
// driver against the CPU backend (checkRecurrent).
func TestForwardFakeRecurrent(t *testing.T) {
	cpuBE := newCPU(t)
	models := testdata.Dir(t, "arch-next/models")
	for _, m := range recurrentModels {
		t.Run(m, func(t *testing.T) {
			t.Log(checkRecurrent(t, filepath.Join(models, m+".gguf"), cpuBE, newFakeBackend(t, newFake())))
		})
	}
}
