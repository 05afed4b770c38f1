package split_test

import (
	"encoding/binary"
	"errors"
	"math"
	"math/rand/v2"
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
	"github.com/hearth-llm/hearth/runtime/split"
)

func TestPlace(t *testing.T) {
	type sides struct{ host, dev bool }
	for _, c := range []struct {
		n    int
		tied bool
		want map[string]sides
	}{
		{0, false, map[string]sides{
			"blk.0.attn_q.weight": {true, false}, "blk.3.ffn_down.weight": {true, false},
			"output.weight": {true, false}, "output_norm.weight": {true, false}, "token_embd.weight": {true, false},
		}},
		{1, false, map[string]sides{
			"blk.0.attn_q.weight": {true, false}, "blk.2.ffn_up.weight": {true, false}, "blk.3.ffn_down.weight": {false, true},
			"output.weight": {true, false}, "token_embd.weight": {true, false},
		}},
		{4, true, map[string]sides{
			"blk.0.attn_q.weight": {false, true}, "blk.3.attn_norm.weight": {false, true},
			"output_norm.weight": {true, false}, "token_embd.weight": {true, false}, "rope_freqs.weight": {true, false},
		}},
		{5, true, map[string]sides{
			"blk.0.attn_q.weight": {false, true}, "output_norm.weight": {false, true}, "token_embd.weight": {true, true},
		}},
		{99, false, map[string]sides{
			"blk.1.attn_k.weight": {false, true}, "output.weight": {false, true}, "output_norm.weight": {false, true},
			"token_embd.weight": {true, false}, "blk.x.weight": {true, false}, "blk.7": {true, false},
		}},
	} {
		p := split.Layers(4, c.n, c.tied)
		for name, w := range c.want {
			if h, d := p.Place(name); h != w.host || d != w.dev {
				t.Errorf("-ngl %d (tied %v): %s on host %v, device %v; want %v, %v", c.n, c.tied, name, h, d, w.host, w.dev)
			}
		}
	}
	if p := split.Layers(32, 20, false); p.OnDevice(11) || !p.OnDevice(12) || !p.OnDevice(31) || p.OnDevice(32) || p.N() != 20 {
		t.Errorf("-ngl 20 of 32: %+v", p)
	}
	if p := split.Layers(32, 33, false); !p.All() || p.N() != 33 {
		t.Errorf("-ngl 33 of 32: %+v", p)
	}
	if p := split.Layers(32, -1, false); !p.None() {
		t.Errorf("-ngl -1: %+v", p)
	}
}

func TestFit(t *testing.T) {
	fp := split.Footprint{Layer: []uint64{100, 100, 100, 100}, Output: 50}
	r := split.Reserve{KVPerLayer: 10, Scratch: 20, Output: 5}
	for _, c := range []struct {
		free     uint64
		n        int
		needHint uint64
	}{
		{0, 0, 0}, {129, 0, 0}, {130, 1, 130}, {239, 1, 130}, {240, 2, 240},
		{460, 4, 460}, {514, 4, 460}, {515, 5, 515}, {1 << 40, 5, 515},
	} {
		n, need := split.Fit(fp, r, c.free)
		if n != c.n || need != c.needHint {
			t.Errorf("Fit in %d bytes: %d layers needing %d, want %d needing %d", c.free, n, need, c.n, c.needHint)
		}
	}
	// Layers are taken from the last: a big last layer costs first.
	fp.Layer[3] = 1000
	if n, _ := split.Fit(fp, r, 500); n != 0 {
		t.Errorf("Fit with a big last layer: %d layers", n)
	}
}

func TestMeasure(t *testing.T) {
	path := filepath.Join(testdata.Dir(t, "models"), "tiny-llama-spm-Q4_0.gguf")
	f, err := gguf.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	size := func(t quant.Type, rows, cols int) uint64 { rb, _ := t.RowBytes(cols); return uint64(rows * rb) }
	fp := split.Measure(f, size)
	var total uint64
	for i := range f.Tensors {
		total += f.Tensors[i].Size
	}
	te, _ := f.Tensor("token_embd.weight")
	on, _ := f.Tensor("output_norm.weight")
	var sum uint64
	for _, l := range fp.Layer {
		sum += l
	}
	// Tied: the output matrix is the embedding table.
	if len(fp.Layer) != 4 || fp.Output != te.Size+on.Size || sum+te.Size+on.Size != total {
		t.Errorf("footprint %+v: layers sum %d, output %d; the file has %d bytes of tensors, token_embd %d", fp, sum, fp.Output, total, te.Size)
	}
}

// recorder counts the operations a backend runs.
type recorder struct {
	backend.Backend
	ops map[string]int
}

func newRecorder(be backend.Backend) *recorder { return &recorder{Backend: be, ops: map[string]int{}} }

func (r *recorder) MatMul(dst, x backend.Tensor, w backend.Weight) {
	r.ops["MatMul"]++
	r.Backend.MatMul(dst, x, w)
}
func (r *recorder) RMSNorm(dst, x backend.Tensor, w backend.Weight, eps float32) {
	r.ops["RMSNorm"]++
	r.Backend.RMSNorm(dst, x, w, eps)
}
func (r *recorder) Embed(dst backend.Tensor, w backend.Weight, ids []int32) {
	r.ops["Embed"]++
	r.Backend.Embed(dst, w, ids)
}
func (r *recorder) Attention(dst, q, k, v backend.Tensor, kvs []backend.KV, seq []int32, layer int, pos []int32, p backend.AttentionParams) {
	r.ops["Attention"]++
	r.Backend.Attention(dst, q, k, v, kvs, seq, layer, pos, p)
}
func (r *recorder) Weight(name string, t quant.Type, rows, cols int, data []byte) (backend.Weight, error) {
	r.ops["Weight"]++
	return r.Backend.Weight(name, t, rows, cols, data)
}
func (r *recorder) NewTensor(rows, cols int) backend.Tensor {
	r.ops["NewTensor"]++
	return r.Backend.NewTensor(rows, cols)
}
func (r *recorder) reset() { clear(r.ops) }

// splitModels are the shared models the split is checked on: untied
// (stories260K, 5 layers) and tied output (tiny-llama, 4 layers), several
// weight formats.
var splitModels = []string{"stories260K-q4_0", "stories260K-f32", "tiny-llama-spm-Q4_K_M", "tiny-llama-bpe-Q4_0"}

func randomIDs(r *rand.Rand, n, vocab int) []int32 {
	ids := make([]int32, n)
	for i := range ids {
		ids[i] = int32(1 + r.IntN(vocab-1))
	}
	return ids
}

func f32Bytes(v []float32) []byte {
	b := make([]byte, 4*len(v))
	for i, x := range v {
		binary.LittleEndian.PutUint32(b[4*i:], math.Float32bits(x))
	}
	return b
}

func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestSplitMatchesCPU binds each model on a split of two CPU backends for
// every -ngl count from 0 to n_layer+1 and holds the logits of a prompt
// (all rows) and of decode steps to the plain CPU forward bit for bit
// (the same kernels run, only on the other backend), while checking where
// the operations ran and that the activations crossed only at the
// boundary: to the device once per forward pass when any layer is there,
// back once when the output layer is not.
func TestSplitMatchesCPU(t *testing.T) {
	models := testdata.Dir(t, "models")
	ref := cpu.New(2)
	defer ref.Close()
	for _, name := range splitModels {
		t.Run(name, func(t *testing.T) {
			f, err := gguf.Open(filepath.Join(models, name+".gguf"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			mc, err := arch.Load(f, ref)
			if err != nil {
				t.Fatal(err)
			}
			info := mc.Info()
			r := rand.New(rand.NewPCG(1, 2))
			prompt := randomIDs(r, 19, info.VocabSize)
			steps := randomIDs(r, 3, info.VocabSize)
			// The reference logits: the prompt, then the steps.
			kc, err := mc.NewKV(32)
			if err != nil {
				t.Fatal(err)
			}
			var want [][]float32
			out, err := mc.Forward(arch.Single(prompt, 0, kc, true))
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, slices.Clone(out))
			for i, id := range steps {
				out, err := mc.Forward(arch.Single([]int32{id}, len(prompt)+i, kc, false))
				if err != nil {
					t.Fatal(err)
				}
				want = append(want, slices.Clone(out))
			}
			tied := split.ForFile(f, 0).TiedOutput
			for n := 0; n <= info.Layers+1; n++ {
				plan := split.ForFile(f, n)
				host, dev := cpu.New(2), cpu.New(2)
				rh, rd := newRecorder(host), newRecorder(dev)
				sb := split.New(rd, rh, plan)
				m, err := arch.Load(f, sb)
				if err != nil {
					t.Fatal(err)
				}
				// Weights: the offloaded layers' 9 each, and the output
				// layer's 2 (a tied table is bound on both sides).
				wantDev := 9 * plan.Offloaded
				if plan.Output {
					wantDev += 2
				}
				if rd.ops["Weight"] != wantDev {
					t.Errorf("-ngl %d: %d weights bound on the device, want %d", n, rd.ops["Weight"], wantDev)
				}
				kv, err := m.NewKV(32)
				if err != nil {
					t.Fatal(err)
				}
				hp, dp := split.Pools(kv.(*backend.PagedKV).Pool)
				if (hp != nil) != (plan.Offloaded < info.Layers) || (dp != nil) != (plan.Offloaded > 0) {
					t.Errorf("-ngl %d: KV on the host %v, on the device %v", n, hp != nil, dp != nil)
				}
				for step := range want {
					ids, start, all := prompt, 0, true
					if step > 0 {
						ids, start, all = steps[step-1:step], len(prompt)+step-1, false
					}
					before := sb.Stats()
					rh.reset()
					rd.reset()
					got, err := m.Forward(arch.Single(ids, start, kv, all))
					if err != nil {
						t.Fatal(err)
					}
					if !sameBits(got, want[step]) {
						d := float32(0)
						for i := range got {
							d = max(d, float32(math.Abs(float64(got[i]-want[step][i]))))
						}
						t.Fatalf("-ngl %d, forward %d: logits differ from the CPU's (max|Δ| %g)", n, step, d)
					}
					st := sb.Stats()
					toDev, toHost := st.ToDevice-before.ToDevice, st.ToHost-before.ToHost
					outRows := 1
					if all {
						outRows = len(ids)
					}
					wantTo, wantBack := 0, 0
					if plan.Offloaded > 0 {
						wantTo = 1
						if !plan.Output {
							wantBack = 1
						}
					}
					if toDev != wantTo || toHost != wantBack {
						t.Errorf("-ngl %d, forward %d: %d copies to the device and %d back, want %d and %d", n, step, toDev, toHost, wantTo, wantBack)
					}
					if wantTo == 1 && st.BytesToDevice-before.BytesToDevice != int64(4*len(ids)*info.Embedding) {
						t.Errorf("-ngl %d: %d bytes to the device for %d tokens", n, st.BytesToDevice-before.BytesToDevice, len(ids))
					}
					if wantBack == 1 && st.BytesToHost-before.BytesToHost != int64(4*outRows*info.Embedding) {
						t.Errorf("-ngl %d: %d bytes back for %d output rows", n, st.BytesToHost-before.BytesToHost, outRows)
					}
					// Where the operations ran.
					out := 0
					if plan.Output {
						out = 1
					}
					wantOps := map[string][2]int{ // host, device
						"Embed":     {1, 0},
						"MatMul":    {7*(info.Layers-plan.Offloaded) + 1 - out, 7*plan.Offloaded + out},
						"RMSNorm":   {2*(info.Layers-plan.Offloaded) + 1 - out, 2*plan.Offloaded + out},
						"Attention": {info.Layers - plan.Offloaded, plan.Offloaded},
					}
					for op, w := range wantOps {
						if rh.ops[op] != w[0] || rd.ops[op] != w[1] {
							t.Errorf("-ngl %d: %s ran %d times on the host and %d on the device, want %d and %d", n, op, rh.ops[op], rd.ops[op], w[0], w[1])
						}
					}
					if plan.None() && rd.ops["NewTensor"] != 0 {
						t.Errorf("-ngl 0: %d tensors made on the device", rd.ops["NewTensor"])
					}
				}
				if err := sb.Close(); err != nil {
					t.Fatal(err)
				}
			}
			t.Logf("%s: %d layers, tied output %v: -ngl 0..%d bit-identical", name, info.Layers, tied, info.Layers+1)
		})
	}
}

// TestSplitPaged runs three sequences in one forward pass, two sharing a
// paged pool with scattered block tables and one with a cache of its own,
// on a split and on the CPU, then a decode step of all three, with F16
// and Q8_0 caches: the logits must be identical.
func TestSplitPaged(t *testing.T) {
	models := testdata.Dir(t, "models")
	ref := cpu.New(2)
	defer ref.Close()
	for _, name := range []string{"stories260K-q8_0", "tiny-llama-spm-Q4_0"} {
		f, err := gguf.Open(filepath.Join(models, name+".gguf"))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		mc, err := arch.Load(f, ref)
		if err != nil {
			t.Fatal(err)
		}
		info := mc.Info()
		for _, kvType := range []quant.Type{quant.F16, quant.Q8_0} {
			if info.HeadDim%32 != 0 && kvType == quant.Q8_0 {
				continue
			}
			for _, n := range []int{1, info.Layers - 1, info.Layers, info.Layers + 1} {
				sb := split.New(cpu.New(2), cpu.New(2), split.ForFile(f, n))
				ms, err := arch.Load(f, sb)
				if err != nil {
					t.Fatal(err)
				}
				mk := func(be backend.Backend) []backend.KV {
					pool, err := be.(backend.TypedKVPools).NewTypedKVPool(info.Layers, 16, 4, info.KVDim, info.HeadDim, kvType)
					if err != nil {
						t.Fatal(err)
					}
					ownPool, err := be.(backend.TypedKVPools).NewTypedKVPool(info.Layers, 1, 40, info.KVDim, info.HeadDim, kvType)
					if err != nil {
						t.Fatal(err)
					}
					own := &backend.PagedKV{Pool: ownPool, Table: []int32{0}}
					return []backend.KV{
						&backend.PagedKV{Pool: pool, Table: []int32{7, 2, 11, 5}},
						&backend.PagedKV{Pool: pool, Table: []int32{3, 8, 0, 14}},
						own,
					}
				}
				kvc, kvs := mk(ref), mk(sb)
				r := rand.New(rand.NewPCG(5, 6))
				tok := func() int32 { return int32(1 + r.IntN(info.VocabSize-1)) }
				var batches []*arch.Batch
				pre := &arch.Batch{Outputs: []int{4}}
				for i := range 5 {
					pre.IDs, pre.Pos, pre.Seq = append(pre.IDs, tok()), append(pre.Pos, int32(i)), append(pre.Seq, 1)
				}
				batches = append(batches, pre)
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
				batches = append(batches, b)
				batches = append(batches, &arch.Batch{IDs: []int32{tok(), tok(), tok()}, Pos: []int32{9, 6, 3}, Seq: []int32{0, 1, 2}, Outputs: []int{0, 1, 2}})
				for i, bt := range batches {
					bc, bs := *bt, *bt
					bc.KVs, bs.KVs = kvc, kvs
					want, err := mc.Forward(&bc)
					if err != nil {
						t.Fatal(err)
					}
					want = slices.Clone(want)
					got, err := ms.Forward(&bs)
					if err != nil {
						t.Fatal(err)
					}
					if !sameBits(got, want) {
						t.Errorf("%s, %v cache, -ngl %d, batch %d: logits differ from the CPU's", name, kvType, n, i)
					}
				}
				sb.Close()
			}
		}
	}
}

// TestSplitKVErrors: a cache of the wrong layer count, and a type a side
// cannot store, are errors.
func TestSplitKVErrors(t *testing.T) {
	sb := split.New(newRecorder(cpu.New(1)), cpu.New(1), split.Layers(4, 2, false))
	defer sb.Close()
	if _, err := sb.NewKVPool(3, 4, 4, 64); err == nil {
		t.Error("a 3-layer pool for a 4-layer plan: no error")
	}
	// The recorder hides the CPU's TypedKVPools: F16 only on the device.
	if _, err := sb.NewTypedKVPool(4, 4, 4, 64, 32, quant.F16); err != nil {
		t.Error(err)
	}
	if _, err := sb.NewTypedKVPool(4, 4, 4, 64, 32, quant.Q8_0); err == nil {
		t.Error("a Q8_0 pool on a side without typed pools: no error")
	} else {
		t.Log(err)
	}
	// The host-only plan makes no device pool at all.
	h := split.New(newRecorder(cpu.New(1)), cpu.New(1), split.Layers(4, 0, false))
	defer h.Close()
	p, err := h.NewTypedKVPool(4, 4, 4, 64, 32, quant.Q8_0)
	if err != nil {
		t.Fatal(err)
	}
	if hp, dp := split.Pools(p); hp == nil || dp != nil {
		t.Errorf("-ngl 0: pools %v, %v", hp, dp)
	}
}

// TestReadWrite checks the composite tensor's bookkeeping directly: rows
// written on one side are read back from either, slices share rows with
// their parent, and a partial overwrite moves only the rows it needs.
func TestReadWrite(t *testing.T) {
	sb := split.New(cpu.New(1), cpu.New(1), split.Layers(2, 3, false))
	defer sb.Close()
	x := sb.NewTensor(4, 3)
	src := []float32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}
	sb.Write(x, 0, src)
	got := make([]float32, 12)
	sb.Read(x, 0, got)
	if !slices.Equal(got, src) {
		t.Fatalf("read %v", got)
	}
	// An identity matrix of layer 1's, so on the device: z = x rows 2, 3
	// there (one copy of two rows), then y rows 1, 2 += z (a tie between
	// the sides: the device, one more copy).
	id := make([]float32, 9)
	id[0], id[4], id[8] = 1, 1, 1
	w, err := sb.Weight("blk.1.attn_q.weight", quant.F32, 3, 3, f32Bytes(id))
	if err != nil {
		t.Fatal(err)
	}
	if !split.OnDevice(w) {
		t.Fatal("layer 1's weight is not on the device")
	}
	y := sb.NewTensor(4, 3)
	sb.Write(y, 0, src)
	z := sb.NewTensor(2, 3)
	sb.MatMul(z, sb.Slice(x, 2, 2), w)
	sb.Add(sb.Slice(y, 1, 2), z) // y rows 1,2 += x rows 2,3
	st := sb.Stats()
	if st.ToDevice != 2 || st.BytesToDevice != 4*4*3 || st.ToHost != 0 {
		t.Errorf("stats after the add: %+v", st)
	}
	sb.Read(y, 0, got)
	want := []float32{1, 2, 3, 4 + 7, 5 + 8, 6 + 9, 7 + 10, 8 + 11, 9 + 12, 10, 11, 12}
	if !slices.Equal(got, want) {
		t.Errorf("y after the add: %v, want %v", got, want)
	}
	// The read found rows 1 and 2 on the device only: one run copied.
	if st := sb.Stats(); st.ToHost != 1 || st.BytesToHost != 2*4*3 {
		t.Errorf("stats after a read split between the sides: %+v", st)
	}
}

// TestSplitErrors: the split forwards both sides' recorded errors (a bad
// token id on the host, a position past the cache on the device), joined
// when both have one, and its own (a cache of another placement); Err
// takes them once. Through a model, a pass that failed on either side is
// an error of that pass, and the next one is the CPU's bit for bit.
func TestSplitErrors(t *testing.T) {
	sb := split.New(cpu.New(1), cpu.New(1), split.Layers(2, 1, false))
	defer sb.Close()
	const cols = 8
	te, err := sb.Weight("token_embd.weight", quant.F32, 4, cols, f32Bytes(make([]float32, 4*cols)))
	if err != nil {
		t.Fatal(err)
	}
	x := sb.NewTensor(1, cols)
	kv, err := sb.NewKV(2, 2, cols)
	if err != nil {
		t.Fatal(err)
	}
	p := backend.AttentionParams{Heads: 1, KVHeads: 1, HeadDim: cols, Scale: 1}
	sb.Embed(x, te, []int32{9})                                              // host
	sb.Attention(x, x, x, x, []backend.KV{kv}, []int32{0}, 1, []int32{5}, p) // layer 1: device
	err = sb.Err()
	if err == nil || !strings.Contains(err.Error(), "token id 9 out of range [0, 4)") || !errors.Is(err, backend.ErrContextFull) {
		t.Errorf("Err after errors on both sides: %v", err)
	}
	if err := sb.Err(); err != nil {
		t.Errorf("Err did not clear: %v", err)
	}
	oc := cpu.New(1)
	defer oc.Close()
	other, _ := oc.NewKV(2, 2, cols)
	sb.Attention(x, x, x, x, []backend.KV{other}, []int32{0}, 0, []int32{0}, p)
	if err := sb.Err(); err == nil || !strings.Contains(err.Error(), "split: KV pool of type") {
		t.Errorf("Err after a cache of another backend: %v", err)
	}

	f, err := gguf.Open(filepath.Join(testdata.Dir(t, "models"), "stories260K-q4_0.gguf"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	ref := cpu.New(1)
	defer ref.Close()
	mc, err := arch.Load(f, ref)
	if err != nil {
		t.Fatal(err)
	}
	info := mc.Info()
	prompt := randomIDs(rand.New(rand.NewPCG(3, 4)), 6, info.VocabSize)
	kc, _ := mc.NewKV(8)
	want, err := mc.Forward(arch.Single(prompt, 0, kc, false))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []int{info.Layers / 2, info.Layers + 1} {
		s := split.New(cpu.New(1), cpu.New(1), split.ForFile(f, n))
		m, err := arch.Load(f, s)
		if err != nil {
			t.Fatal(err)
		}
		kv, _ := m.NewKV(8)
		bad := slices.Clone(prompt)
		bad[2] = int32(info.VocabSize)
		if _, err := m.Forward(arch.Single(bad, 0, kv, false)); err == nil || !strings.Contains(err.Error(), "out of range") {
			t.Errorf("-ngl %d: a bad token id: %v", n, err)
		}
		if _, err := m.Forward(arch.Single(prompt, 6, kv, false)); !errors.Is(err, backend.ErrContextFull) {
			t.Errorf("-ngl %d: past the cache: %v", n, err)
		}
		got, err := m.Forward(arch.Single(prompt, 0, kv, false))
		if err != nil {
			t.Fatal(err)
		}
		if !sameBits(got, want) {
			t.Errorf("-ngl %d: logits after failed passes differ from the CPU's", n)
		}
		s.Close()
	}
}
