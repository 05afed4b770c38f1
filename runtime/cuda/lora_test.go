package cuda

import (
	"math/rand/v2"

	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// loraOps compares backend.LoRA on both backends: AddLoRA with several
// adapters in one call (ranks 16, 4 and an odd 3, F16 and F32 pairs, one
// adapter over more rows than a task holds, rows of no adapter left
// alone), on a view (Slice) as a mixture's rows are, and AddLoRAEmbed.
func (e *opEnv) loraOps(r *rand.Rand) {
	t, cpuBE, devBE, note, read, both, randVals := e.t, e.cpu, e.dev, e.note, e.read, e.both, e.randVals
	t.Helper()
	cl, ok1 := cpuBE.(backend.LoRA)
	dl, ok2 := devBE.(backend.LoRA)
	if !ok1 || !ok2 {
		t.Fatal("a backend without backend.LoRA")
	}
	type pair struct{ c, d backend.LoRAWeight }
	bind := func(out, in, rank int, typ quant.Type) pair {
		a, b := randVals(rank*in), randVals(out*rank)
		pc, err := cl.BindLoRA("p", a, b, out, in, rank, typ)
		if err != nil {
			t.Fatal(err)
		}
		pd, err := dl.BindLoRA("p", a, b, out, in, rank, typ)
		if err != nil {
			t.Fatal(err)
		}
		if o, i, k := pd.Shape(); o != out || i != in || k != rank {
			t.Fatalf("shape %d×%d rank %d, want %d×%d rank %d", o, i, k, out, in, rank)
		}
		return pair{pc, pd}
	}
	// deltas splits rows 0..n-1 among the pairs (every fourth row none),
	// pair 0 taking more than a task's rows.
	deltas := func(ps []pair, n int) (dc, dd []backend.LoRADelta) {
		rows := make([][]int32, len(ps))
		for i := range n {
			k := 0
			switch {
			case i%4 == 3:
				continue
			case i >= 12:
				k = 1 + i%(len(ps)-1)
			}
			rows[k] = append(rows[k], int32(i))
		}
		for k, p := range ps {
			sc := float32(0.5 + r.Float64())
			dc = append(dc, backend.LoRADelta{W: p.c, Scale: sc, Rows: rows[k]})
			dd = append(dd, backend.LoRADelta{W: p.d, Scale: sc, Rows: rows[k]})
		}
		return dc, dd
	}
	const n, in, out = 29, 96, 80
	for _, typ := range []quant.Type{quant.F16, quant.F32} {
		ps := []pair{bind(out, in, 16, typ), bind(out, in, 4, quant.F32), bind(out, in, 3, typ), bind(out, in, 16, quant.F16)}
		xc, xd := both(n, in, randVals(n*in))
		oc, od := both(n, out, make([]float32, n*out))
		dc, dd := deltas(ps, n)
		cl.AddLoRA(oc, xc, dc)
		dl.AddLoRA(od, xd, dd)
		if err := devBE.Err(); err != nil {
			t.Fatal(err)
		}
		got, want := read(devBE, od), read(cpuBE, oc)
		note("lora "+typ.String(), got, want)
		for i := 3; i < n; i += 4 { // rows of no adapter
			for _, v := range got[i*out : (i+1)*out] {
				if v != 0 {
					t.Fatalf("lora %v: row %d of no adapter changed", typ, i)
				}
			}
		}
		// A view: rows 5.. of x and dst, as a mixture's expert rows.
		sc, sd := cpuBE.Slice(xc, 5, n-5), devBE.Slice(xd, 5, n-5)
		vc, vd := cpuBE.Slice(oc, 5, n-5), devBE.Slice(od, 5, n-5)
		dc, dd = deltas(ps, n-5)
		cl.AddLoRA(vc, sc, dc)
		dl.AddLoRA(vd, sd, dd)
		note("lora view "+typ.String(), read(devBE, od), read(cpuBE, oc))
	}
	// The token embedding: in is the vocabulary, rows gathered by id.
	const vocab, embd = 300, 64
	ps := []pair{bind(embd, vocab, 8, quant.F16), bind(embd, vocab, 5, quant.F32), bind(embd, vocab, 16, quant.F16)}
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(r.IntN(vocab))
	}
	ids[0], ids[1] = 0, vocab-1
	base := randVals(n * embd)
	ec, ed := both(n, embd, base)
	dc, dd := deltas(ps, n)
	cl.AddLoRAEmbed(ec, ids, dc)
	dl.AddLoRAEmbed(ed, ids, dd)
	if err := devBE.Err(); err != nil {
		t.Fatal(err)
	}
	note("lora embed", read(devBE, ed), read(cpuBE, ec))
	// An id out of range is an error, as on the CPU.
	bad := append([]int32(nil), ids...)
	bad[0] = vocab
	dl.AddLoRAEmbed(ed, bad, dd)
	if err := devBE.Err(); err == nil {
		t.Errorf("lora embed of token %d of %d: no error", vocab, vocab)
	}
}
