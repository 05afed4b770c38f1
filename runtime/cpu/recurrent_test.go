package cpu

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// f32Weight binds vals (rows × cols) as an F32 weight.
func f32Weight(t *testing.T, b *Backend, rows, cols int, vals []float32) backend.Weight {
	t.Helper()
	buf := make([]byte, 4*len(vals))
	for i, v := range vals {
		binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
	}
	w, err := b.Weight("w", quant.F32, rows, cols, buf)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func randVals(r *rand.Rand, n int, s float64) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(r.NormFloat64() * s)
	}
	return v
}

// refRecurrent is the float64 reference of CausalConv + SiLU-free
// GatedDeltaNet for one sequence of n tokens from a zero state.
type refRecurrent struct {
	c, k, kh, vh, hd int
	taps, a, dt      []float32
}

func (r *refRecurrent) conv(x [][]float32) [][]float64 {
	out := make([][]float64, len(x))
	for t := range x {
		out[t] = make([]float64, r.c)
		for ch := range r.c {
			var s float64
			for i := range r.k {
				src := t - (r.k - 1) + i
				if src >= 0 {
					s += float64(x[src][ch]) * float64(r.taps[ch*r.k+i])
				}
			}
			out[t][ch] = s
		}
	}
	return out
}

func (r *refRecurrent) delta(qkv, alpha, beta [][]float32) [][]float64 {
	d := r.hd
	S := make([][]float64, r.vh) // S[h][i*d+j]: key i, value j
	for h := range S {
		S[h] = make([]float64, d*d)
	}
	norm := func(x []float32) []float64 {
		var s float64
		for _, v := range x {
			s += float64(v) * float64(v)
		}
		n := max(math.Sqrt(s), 1e-6)
		o := make([]float64, len(x))
		for i, v := range x {
			o[i] = float64(v) / n
		}
		return o
	}
	out := make([][]float64, len(qkv))
	for t, row := range qkv {
		out[t] = make([]float64, r.vh*d)
		for h := range r.vh {
			kq := h % r.kh
			q := norm(row[kq*d : (kq+1)*d])
			k := norm(row[(r.kh+kq)*d : (r.kh+kq+1)*d])
			v := row[(2*r.kh+h)*d:]
			bt := 1 / (1 + math.Exp(-float64(beta[t][h])))
			g := math.Log1p(math.Exp(float64(alpha[t][h]+r.dt[h]))) * float64(r.a[h])
			s := S[h]
			for i := range s {
				s[i] *= math.Exp(g)
			}
			for j := range d {
				var sk float64
				for i := range d {
					sk += s[i*d+j] * k[i]
				}
				dj := (float64(v[j]) - sk) * bt
				for i := range d {
					s[i*d+j] += k[i] * dj
				}
			}
			for j := range d {
				var o float64
				for i := range d {
					o += s[i*d+j] * q[i]
				}
				out[t][h*d+j] = o / math.Sqrt(float64(d))
			}
		}
	}
	return out
}

// TestRecurrentOps runs three sequences' conv and delta rule through the
// backend, batched and interleaved in one step, and chunked (a prefill of
// a few tokens, then one token per step), against the float64 reference
// (1e-4), and requires the two schedules to agree bit for bit.
func TestRecurrentOps(t *testing.T) {
	b := New(2)
	defer b.Close()
	rng := rand.New(rand.NewPCG(1, 2))
	const kh, vh, hd, k = 2, 4, 32, 4
	c := (2*kh + vh) * hd
	ref := &refRecurrent{c: c, k: k, kh: kh, vh: vh, hd: hd,
		taps: randVals(rng, c*k, 0.5), a: randVals(rng, vh, 1), dt: randVals(rng, vh, 0.5)}
	for i := range ref.a {
		ref.a[i] = -float32(math.Abs(float64(ref.a[i])))
	}
	taps, aw, dtw := f32Weight(t, b, c, k, ref.taps), f32Weight(t, b, 1, vh, ref.a), f32Weight(t, b, 1, vh, ref.dt)
	lens := []int{13, 1, 7}
	type seqIn struct{ x, alpha, beta [][]float32 }
	ins := make([]seqIn, len(lens))
	for s, n := range lens {
		for range n {
			ins[s].x = append(ins[s].x, randVals(rng, c, 1))
			ins[s].alpha = append(ins[s].alpha, randVals(rng, vh, 1))
			ins[s].beta = append(ins[s].beta, randVals(rng, vh, 1))
		}
	}
	p := backend.DeltaNetParams{KHeads: kh, VHeads: vh, HeadDim: hd, Eps: 1e-6}
	// run evaluates the tokens (seq, pos) in the given steps and returns
	// each sequence's conv and delta outputs per position.
	run := func(steps [][][2]int) (convs, outs [][][]float32) {
		pool, err := b.NewStatePool(3, []int{(k - 1) * c, vh * hd * hd})
		if err != nil {
			t.Fatal(err)
		}
		kvs := []backend.KV{&backend.PagedKV{States: pool, Slot: 2}, &backend.PagedKV{States: pool, Slot: 0}, &backend.PagedKV{States: pool, Slot: 1}}
		convs, outs = make([][][]float32, len(lens)), make([][][]float32, len(lens))
		for s, n := range lens {
			convs[s], outs[s] = make([][]float32, n), make([][]float32, n)
		}
		for _, step := range steps {
			n := len(step)
			x, cv := b.NewTensor(n, c), b.NewTensor(n, c)
			al, bt, out := b.NewTensor(n, vh), b.NewTensor(n, vh), b.NewTensor(n, vh*hd)
			seq, pos := make([]int32, n), make([]int32, n)
			for i, sp := range step {
				s, ps := sp[0], sp[1]
				seq[i], pos[i] = int32(s), int32(ps)
				b.Write(x, i, ins[s].x[ps])
				b.Write(al, i, ins[s].alpha[ps])
				b.Write(bt, i, ins[s].beta[ps])
			}
			b.CausalConv(cv, x, taps, kvs, seq, pos, 0)
			// The delta rule runs on the conv's output, as in the model.
			b.GatedDeltaNet(out, cv, al, bt, aw, dtw, kvs, seq, pos, 1, p)
			if err := b.Err(); err != nil {
				t.Fatal(err)
			}
			for i, sp := range step {
				convs[sp[0]][sp[1]] = append([]float32(nil), Data(cv)[i*c:(i+1)*c]...)
				outs[sp[0]][sp[1]] = append([]float32(nil), Data(out)[i*vh*hd:(i+1)*vh*hd]...)
			}
		}
		return convs, outs
	}
	var all [][2]int // interleaved: position by position over the sequences
	for ps := range 13 {
		for s, n := range lens {
			if ps < n {
				all = append(all, [2]int{s, ps})
			}
		}
	}
	var chunked [][][2]int
	for s, n := range lens {
		var first [][2]int
		for ps := range min(n, 5) {
			first = append(first, [2]int{s, ps})
		}
		chunked = append(chunked, first)
	}
	for ps := 5; ps < 13; ps++ {
		var step [][2]int
		for s, n := range lens {
			if ps < n {
				step = append(step, [2]int{s, ps})
			}
		}
		chunked = append(chunked, step)
	}
	c1, o1 := run([][][2]int{all})
	c2, o2 := run(chunked)
	worst := 0.0
	for s := range lens {
		rc := ref.conv(ins[s].x)
		cvIn := make([][]float32, lens[s])
		for ps := range lens[s] {
			cvIn[ps] = c1[s][ps]
		}
		ro := ref.delta(cvIn, ins[s].alpha, ins[s].beta)
		for ps := range lens[s] {
			for i := range c {
				if c1[s][ps][i] != c2[s][ps][i] {
					t.Fatalf("seq %d pos %d: conv %d differs between schedules", s, ps, i)
				}
				worst = max(worst, math.Abs(float64(c1[s][ps][i])-rc[ps][i]))
			}
			for i := range vh * hd {
				if o1[s][ps][i] != o2[s][ps][i] {
					t.Fatalf("seq %d pos %d: output %d differs between schedules", s, ps, i)
				}
				worst = max(worst, math.Abs(float64(o1[s][ps][i])-ro[ps][i]))
			}
		}
	}
	t.Logf("worst |Δ| from the float64 reference: %.2g", worst)
	if worst > 1e-4 {
		t.Fatalf("worst |Δ| %g > 1e-4", worst)
	}
}

// TestRecurrentStateLost: continuing a sequence from a position its state
// has not reached is ErrStateLost, and changes nothing.
func TestRecurrentStateLost(t *testing.T) {
	b := New(1)
	defer b.Close()
	pool, err := b.NewStatePool(1, []int{3 * 4})
	if err != nil {
		t.Fatal(err)
	}
	w := f32Weight(t, b, 4, 4, make([]float32, 16))
	kvs := []backend.KV{&backend.PagedKV{States: pool}}
	x, d := b.NewTensor(2, 4), b.NewTensor(2, 4)
	b.CausalConv(d, x, w, kvs, []int32{0, 0}, []int32{0, 1}, 0)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	b.CausalConv(d, x, w, kvs, []int32{0, 0}, []int32{3, 4}, 0)
	if err := b.Err(); !errors.Is(err, backend.ErrStateLost) {
		t.Fatalf("got %v, want ErrStateLost", err)
	}
	b.CausalConv(d, x, w, kvs, []int32{0, 0}, []int32{2, 3}, 0)
	if err := b.Err(); err != nil {
		t.Fatal(err)
	}
	b.ResetState(pool, 0)
	b.CausalConv(b.Slice(d, 0, 1), b.Slice(x, 0, 1), w, kvs, []int32{0}, []int32{4}, 0)
	if err := b.Err(); !errors.Is(err, backend.ErrStateLost) {
		t.Fatalf("after reset: got %v, want ErrStateLost", err)
	}
}
