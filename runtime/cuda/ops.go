package cuda

import (
	"fmt"
	"math"
	"slices"
	"unsafe"

	kcuda "github.com/hearth-llm/hearth/kernels/cuda"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// Launch geometry helpers.
func grid1(x int) [3]uint32    { return [3]uint32{uint32(max(x, 1)), 1, 1} }
func grid2(x, y int) [3]uint32 { return [3]uint32{uint32(max(x, 1)), uint32(max(y, 1)), 1} }
func block(x int) [3]uint32    { return [3]uint32{uint32(x), 1, 1} }
func ceilDiv(a, b int) int     { return (a + b - 1) / b }

// stride is the grid of a grid-stride loop over n elements, 256 a block.
func stride(n int64) [3]uint32 { return grid1(int(min((n+255)/256, 1<<20))) }

func (b *Backend) Embed(dst backend.Tensor, table backend.Weight, ids []int32) {
	d, w := dst.(*tensor), table.(*weight)
	if !b.ready(d) {
		return
	}
	for _, id := range ids {
		if id < 0 || int(id) >= w.rows {
			b.fail(fmt.Errorf("token id %d out of range [0, %d)", id, w.rows))
			return
		}
	}
	if len(ids) == 0 {
		return
	}
	if d.cols != w.cols || d.rows < len(ids) {
		b.fail(fmt.Errorf("cuda: embed of %d ids of width %d into %dx%d", len(ids), w.cols, d.rows, d.cols))
		return
	}
	p := b.stepInput(&b.ids, int32Bytes(ids))
	suf, _ := kcuda.Suffix(w.dev)
	b.launch("embed_"+suf, grid2(len(ids), ceilDiv(w.cols, 8*128)), block(128),
		argPtr(d.ptr()), argPtr(w.buf.ptr), argU64(uint64(w.rowBytes)), argPtr(p), argInt(len(ids)), argInt(w.cols))
}

// RMSNorm normalises each run of w's width (whole rows, or the heads of
// per-head norms when w is narrower): one block per run.
func (b *Backend) RMSNorm(dst, x backend.Tensor, w backend.Weight, eps float32) {
	d, s, nw := dst.(*tensor), x.(*tensor), w.(*weight)
	if !b.ready(d, s) {
		return
	}
	seg := nw.cols
	if nw.dev != quant.F32 || nw.rows != 1 || seg == 0 || s.cols%seg != 0 {
		panic(fmt.Sprintf("cuda: rmsnorm weight %s is %v of %dx%d for rows of %d", nw.name, nw.dev, nw.rows, nw.cols, s.cols))
	}
	if d.cols != s.cols || d.rows < s.rows {
		panic(fmt.Sprintf("cuda: rmsnorm of %dx%d into %dx%d", s.rows, s.cols, d.rows, d.cols))
	}
	if s.rows == 0 {
		return
	}
	b.launch("rmsnorm_f32", grid1(s.rows*(s.cols/seg)), block(normThreads(seg)),
		argPtr(d.ptr()), argPtr(s.ptr()), argPtr(nw.buf.ptr), argInt(seg), argF32(eps))
}

// normThreads is the block size of a norm over rows of cols values: 256,
// or the multiple of 32 that covers a shorter row (a head of 64 or 128).
func normThreads(cols int) int { return min(256, max(32, (cols+31)&^31)) }

func (b *Backend) MatMul(dst, x backend.Tensor, w backend.Weight) {
	d, s, m := dst.(*tensor), x.(*tensor), w.(*weight)
	if !b.ready(d, s) {
		return
	}
	n := s.rows
	if s.cols != m.cols || d.cols != m.rows || d.rows < n {
		panic(fmt.Sprintf("cuda: matmul of %dx%d by %s (%dx%d) into %dx%d", s.rows, s.cols, m.name, m.rows, m.cols, d.rows, d.cols))
	}
	if n == 0 {
		return
	}
	suf, _ := kcuda.Suffix(m.dev)
	var aq, ad DevicePtr
	if m.dev != quant.F32 && m.dev != quant.F16 && m.dev != quant.BF16 {
		// Quantized weights read int8 activations with a scale per 32.
		total := s.n()
		aq = b.scratch(&b.aq, uint64(total))
		ad = b.scratch(&b.ad, uint64(4*(total/32)))
		b.launch("quantize_q8", grid1(int((total+255)/256)), block(256),
			argPtr(aq), argPtr(ad), argPtr(s.ptr()), argU64(uint64(total)))
	}
	args := []arg{argPtr(d.ptr()), argPtr(m.buf.ptr), argU64(uint64(m.rowBytes)), argInt(m.rows), argInt(m.cols),
		argPtr(aq), argPtr(ad), argPtr(s.ptr()), argInt(n)}
	switch {
	case n <= kcuda.MaxMatvecTokens:
		b.launch("matvec_"+suf, grid1(ceilDiv(m.rows, 4)), block(128), args...)
	case b.useMMA(m, n):
		b.launch("mma_"+suf, grid2(ceilDiv(m.rows, kcuda.MMATileRows), ceilDiv(n, kcuda.MMATileTokens)),
			block(kcuda.MMAThreads), args...)
	default:
		b.launch("matmul_"+suf, grid2(ceilDiv(m.rows, 64), ceilDiv(n, 64)), block(256), args...)
	}
}

// useMMA reports whether an n-token product with m goes to the tensor-core
// kernel: on, enough tokens, a format it reads, a width it tiles.
func (b *Backend) useMMA(m *weight, n int) bool {
	return b.mma && n >= kcuda.MinMMATokens && kcuda.HasMMA(m.dev) && m.cols%kcuda.MMAColsMultiple == 0
}

// ropeTable is the cos/sin table of one set of RoPE parameters on the
// device, for positions 0..n-1.
type ropeTable struct {
	buf *buffer
	n   int
}

func ropeKey(r *backend.RoPE) string {
	return fmt.Sprintf("%d/%v/%v/%v/%v/%v/%v/%v/%v/%d", r.Dims, r.Base, r.Scale, r.NeoX, r.Factors, r.ExtFactor,
		r.AttnFactor, r.BetaFast, r.BetaSlow, r.CtxOrig)
}

// ropeTableFor returns a table covering positions 0..maxPos, computed on
// the host with the CPU backend's own RoPE.Tables (so the angles are
// bitwise the CPU's) and grown by doubling; nil when memory ran out (the
// failure is recorded).
func (b *Backend) ropeTableFor(r *backend.RoPE, maxPos int) *ropeTable {
	key := ropeKey(r)
	t := b.ropes[key]
	if t != nil && maxPos < t.n {
		return t
	}
	n := 256
	for n <= maxPos {
		n *= 2
	}
	half := r.Dims / 2
	tab := make([]float32, n*half*2)
	cos, sin := make([]float32, half), make([]float32, half)
	for p := range n {
		r.Tables(int32(p), cos, sin)
		for i := range half {
			tab[2*(p*half+i)] = cos[i]
			tab[2*(p*half+i)+1] = sin[i]
		}
	}
	buf := b.allocOp(uint64(4 * len(tab)))
	if buf == nil {
		return nil
	}
	if t != nil {
		b.free(t.buf) // outgrown: freed after the work that reads it
	}
	t = &ropeTable{buf: buf, n: n}
	if len(tab) > 0 {
		b.upload(t.buf.ptr, unsafe.Slice((*byte)(unsafe.Pointer(&tab[0])), 4*len(tab)))
	}
	b.ropes[key] = t
	return t
}

func (b *Backend) RoPE(x backend.Tensor, heads, headDim int, pos []int32, r *backend.RoPE) {
	s := x.(*tensor)
	if s.rows == 0 || r.Dims == 0 || !b.ready(s) {
		return
	}
	if len(pos) < s.rows || heads*headDim > s.cols || r.Dims > headDim {
		panic(fmt.Sprintf("cuda: rope of %dx%d with %d positions, %d heads of %d, %d dims", s.rows, s.cols, len(pos), heads, headDim, r.Dims))
	}
	maxPos := 0
	for _, p := range pos[:s.rows] {
		if p < 0 {
			b.fail(fmt.Errorf("cuda: rope at negative position %d", p))
			return
		}
		maxPos = max(maxPos, int(p))
	}
	tab := b.ropeTableFor(r, maxPos)
	if tab == nil {
		return
	}
	// The positions are the same for q and k and for every layer of a
	// forward pass: uploaded when they change (or when the step-input
	// slot they were in is gone).
	if ep := b.dev.inputEpoch(); b.ropeDev == 0 || ep != b.ropeEpoch || !slices.Equal(b.ropePos, pos[:s.rows]) {
		b.ropeDev = b.stepInput(&b.i32, int32Bytes(pos[:s.rows]))
		b.ropeEpoch = b.dev.inputEpoch()
		b.ropePos = append(b.ropePos[:0], pos[:s.rows]...)
	}
	pp := b.ropeDev
	neox := 0
	if r.NeoX {
		neox = 1
	}
	b.launch("rope_f32", grid1(s.rows), block(128),
		argPtr(s.ptr()), argPtr(tab.buf.ptr), argPtr(pp), argInt(heads), argInt(headDim), argInt(r.Dims/2), argInt(neox), argInt(s.cols))
}

func (b *Backend) Gather(dst, x backend.Tensor, idx []int) {
	d, s := dst.(*tensor), x.(*tensor)
	if len(idx) == 0 || !b.ready(d, s) {
		return
	}
	if d.cols != s.cols || d.rows < len(idx) {
		panic(fmt.Sprintf("cuda: gather of %d rows of %dx%d into %dx%d", len(idx), s.rows, s.cols, d.rows, d.cols))
	}
	ix := make([]int32, len(idx))
	for i, r := range idx {
		if r < 0 || r >= s.rows {
			b.fail(fmt.Errorf("cuda: gather of row %d of %d", r, s.rows))
			return
		}
		ix[i] = int32(r)
	}
	p := b.stepInput(&b.ids, int32Bytes(ix))
	b.launch("gather_rows", grid2(len(ix), ceilDiv(s.cols, 256)), block(256),
		argPtr(d.ptr()), argPtr(s.ptr()), argPtr(p), argInt(len(ix)), argInt(s.cols))
}

func (b *Backend) SwiGLU(dst, gate, up backend.Tensor) {
	d, g, u := dst.(*tensor), gate.(*tensor), up.(*tensor)
	if !b.ready(d, g, u) {
		return
	}
	if g.n() < d.n() || u.n() < d.n() {
		panic(fmt.Sprintf("cuda: swiglu of %dx%d and %dx%d into %dx%d", g.rows, g.cols, u.rows, u.cols, d.rows, d.cols))
	}
	if d.n() == 0 {
		return
	}
	b.launch("swiglu_f32", stride(d.n()), block(256), argPtr(d.ptr()), argPtr(g.ptr()), argPtr(u.ptr()), argU64(uint64(d.n())))
}

func (b *Backend) Add(dst, x backend.Tensor) {
	d, s := dst.(*tensor), x.(*tensor)
	if !b.ready(d, s) {
		return
	}
	if s.n() < d.n() {
		panic(fmt.Sprintf("cuda: add of %dx%d into %dx%d", s.rows, s.cols, d.rows, d.cols))
	}
	if d.n() == 0 {
		return
	}
	b.launch("add_f32", stride(d.n()), block(256), argPtr(d.ptr()), argPtr(s.ptr()), argU64(uint64(d.n())))
}

// Argmax writes the index of the largest value of each row of x into out
// (len rows), the first one on ties, NaN never winning (sample.Greedy's
// rule): greedy sampling without copying the logits back.
func (b *Backend) Argmax(x backend.Tensor, out []int32) error {
	s := x.(*tensor)
	if len(out) < s.rows {
		return fmt.Errorf("cuda: argmax of %d rows into %d", s.rows, len(out))
	}
	if s.rows == 0 {
		return nil
	}
	if !b.ready(s) {
		return b.Err()
	}
	p := b.scratch(&b.ids, uint64(4*s.rows))
	if p == 0 {
		return b.Err()
	}
	b.launch("argmax_f32", grid1(s.rows), block(256), argPtr(p), argPtr(s.ptr()), argInt(s.cols))
	if err := b.download(int32Bytes(out[:s.rows]), p); err != nil {
		return err
	}
	return b.Err()
}

// The operations the model families beyond Llama need (Qwen, Gemma, Phi-3,
// gpt-oss, MoE, BERT): layer norms, GELU and gpt-oss's clamped SwiGLU,
// biases, scaling, the weighted sum of the experts' rows. Their kernels
// are in kernels/cuda norm.cu, act.cu and add.cu; runtime/cpu is the
// reference of each.

// vector is the device address of a 1 × cols weight (norm vectors, biases,
// sinks: Weight keeps every one-row weight as F32), or 0 for a nil weight.
func vector(op string, w backend.Weight, cols int) DevicePtr {
	if w == nil {
		return 0
	}
	v := w.(*weight)
	if v.dev != quant.F32 || v.rows != 1 || v.cols != cols {
		panic(fmt.Sprintf("cuda: %s weight %s is %v of %dx%d, want 1x%d", op, v.name, v.dev, v.rows, v.cols, cols))
	}
	return v.buf.ptr
}

// elementwise checks that every input of an element-wise operation has
// the values dst needs and reports whether there is anything to do.
func elementwise(op string, d *tensor, in ...*tensor) bool {
	for _, x := range in {
		if x.n() < d.n() {
			panic(fmt.Sprintf("cuda: %s of %dx%d into %dx%d", op, x.rows, x.cols, d.rows, d.cols))
		}
	}
	return d.n() > 0
}

func f32Bytes(v []float32) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 4*len(v))
}

func (b *Backend) LayerNorm(dst, x backend.Tensor, w, bias backend.Weight, eps float32) {
	d, s := dst.(*tensor), x.(*tensor)
	if !b.ready(d, s) {
		return
	}
	if d.cols != s.cols || d.rows < s.rows {
		panic(fmt.Sprintf("cuda: layernorm of %dx%d into %dx%d", s.rows, s.cols, d.rows, d.cols))
	}
	wp, bp := vector("layernorm", w, s.cols), vector("layernorm bias", bias, s.cols)
	if s.rows == 0 || s.cols == 0 {
		return
	}
	b.launch("layernorm_f32", grid1(s.rows), block(normThreads(s.cols)),
		argPtr(d.ptr()), argPtr(s.ptr()), argPtr(wp), argPtr(bp), argInt(s.cols), argF32(eps))
}

func (b *Backend) GLU(dst, gate, up backend.Tensor, a backend.Act) {
	d, g, u := dst.(*tensor), gate.(*tensor), up.(*tensor)
	if !b.ready(d, g, u) {
		return
	}
	switch a.Kind {
	case backend.ActSiLU:
		b.SwiGLU(dst, gate, up)
	case backend.ActGELU:
		if elementwise("geglu", d, g, u) {
			b.launch("geglu_f32", stride(d.n()), block(256), argPtr(d.ptr()), argPtr(g.ptr()), argPtr(u.ptr()), argU64(uint64(d.n())))
		}
	case backend.ActSwiGLUOAI:
		if elementwise("swiglu_oai", d, g, u) {
			b.launch("swiglu_oai_f32", stride(d.n()), block(256), argPtr(d.ptr()), argPtr(g.ptr()), argPtr(u.ptr()), argU64(uint64(d.n())),
				argF32(a.Alpha), argF32(a.Limit))
		}
	case backend.ActSigmoid:
		if elementwise("sigmoid_glu", d, g, u) {
			b.launch("sigmoid_glu_f32", stride(d.n()), block(256), argPtr(d.ptr()), argPtr(g.ptr()), argPtr(u.ptr()), argU64(uint64(d.n())))
		}
	default:
		panic(fmt.Sprintf("cuda: GLU with activation %d", a.Kind))
	}
}

func (b *Backend) Activate(dst, x backend.Tensor, a backend.Act) {
	d, s := dst.(*tensor), x.(*tensor)
	if !b.ready(d, s) {
		return
	}
	var name string
	switch a.Kind {
	case backend.ActSiLU:
		name = "silu_f32"
	case backend.ActGELU:
		name = "gelu_f32"
	default:
		panic(fmt.Sprintf("cuda: activation %d on its own", a.Kind))
	}
	if elementwise("activate", d, s) {
		b.launch(name, stride(d.n()), block(256), argPtr(d.ptr()), argPtr(s.ptr()), argU64(uint64(d.n())))
	}
}

func (b *Backend) AddBias(x backend.Tensor, bias backend.Weight) {
	s := x.(*tensor)
	if !b.ready(s) {
		return
	}
	p := vector("bias", bias, s.cols)
	if s.n() == 0 {
		return
	}
	b.launch("add_bias_f32", grid2(s.rows, ceilDiv(s.cols, 256)), block(256),
		argPtr(s.ptr()), argPtr(p), argInt(s.rows), argInt(s.cols))
}

// Scale multiplies by one scale (a kernel argument) or by one per row
// (uploaded with the step's other inputs).
func (b *Backend) Scale(x backend.Tensor, sc ...float32) {
	s := x.(*tensor)
	if !b.ready(s) {
		return
	}
	if len(sc) != 1 && len(sc) != s.rows {
		panic(fmt.Sprintf("cuda: %d scales for %d rows", len(sc), s.rows))
	}
	if s.n() == 0 {
		return
	}
	var p DevicePtr
	var s0 float32
	if len(sc) == 1 {
		s0 = sc[0]
	} else {
		p = b.stepInput(&b.rowIn, f32Bytes(sc))
	}
	b.launch("scale_f32", grid2(s.rows, ceilDiv(s.cols, 256)), block(256),
		argPtr(s.ptr()), argPtr(p), argF32(s0), argInt(s.rows), argInt(s.cols))
}

// AddScaledRows groups the pairs by destination row on the host (add.cu's
// plan) so that one block owns each destination: repeated destinations
// need no atomics and get the CPU's order of additions.
func (b *Backend) AddScaledRows(dst, x backend.Tensor, idx []int, w []float32) {
	d, s := dst.(*tensor), x.(*tensor)
	if !b.ready(d, s) {
		return
	}
	if len(w) != len(idx) || s.rows < len(idx) || d.cols != s.cols {
		panic(fmt.Sprintf("cuda: add of %d scaled rows (%d weights) of %dx%d into %dx%d", len(idx), len(w), s.rows, s.cols, d.rows, d.cols))
	}
	if len(idx) == 0 || d.cols == 0 {
		return
	}
	plan, m := scaledRowsPlan(idx, w, d.rows)
	p := b.stepInput(&b.rowIn, int32Bytes(plan))
	b.launch("add_scaled_rows_f32", grid2(m, ceilDiv(d.cols, 256)), block(256),
		argPtr(d.ptr()), argPtr(s.ptr()), argPtr(p), argInt(m), argInt(len(idx)), argInt(d.cols))
}

// scaledRowsPlan is add_scaled_rows_f32's plan for the pairs (i, idx[i])
// into a tensor of rows rows: dest (the m distinct destinations,
// ascending), start (m+1 offsets), src (the pairs' source rows, grouped by
// destination, ascending within one), w (their weights' bits, likewise).
func scaledRowsPlan(idx []int, w []float32, rows int) (plan []int32, m int) {
	count := make([]int32, rows)
	for _, r := range idx {
		if r < 0 || r >= rows {
			panic(fmt.Sprintf("cuda: scaled row into row %d of %d", r, rows))
		}
		if count[r] == 0 {
			m++
		}
		count[r]++
	}
	n := len(idx)
	plan = make([]int32, 2*m+1+2*n)
	dest, start, src, wb := plan[:m], plan[m:2*m+1], plan[2*m+1:2*m+1+n], plan[2*m+1+n:]
	next := make([]int32, rows) // where row r's next pair goes
	k := 0
	for r, c := range count {
		if c == 0 {
			continue
		}
		dest[k] = int32(r)
		next[r] = start[k]
		start[k+1] = start[k] + c
		k++
	}
	for i, r := range idx {
		j := next[r]
		next[r]++
		src[j] = int32(i)
		wb[j] = int32(math.Float32bits(w[i]))
	}
	return plan, m
}
