package cuda

import (
	"fmt"
	"math"
	"unsafe"

	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

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
	if d.cols != s.cols || d.rows < s.rows {
		panic(fmt.Sprintf("cuda: layernorm of %dx%d into %dx%d", s.rows, s.cols, d.rows, d.cols))
	}
	wp, bp := vector("layernorm", w, s.cols), vector("layernorm bias", bias, s.cols)
	if s.rows == 0 || s.cols == 0 {
		return
	}
	b.dev.launch("layernorm_f32", grid1(s.rows), block(normThreads(s.cols)),
		argPtr(d.ptr()), argPtr(s.ptr()), argPtr(wp), argPtr(bp), argInt(s.cols), argF32(eps))
}

func (b *Backend) GLU(dst, gate, up backend.Tensor, a backend.Act) {
	d, g, u := dst.(*tensor), gate.(*tensor), up.(*tensor)
	switch a.Kind {
	case backend.ActSiLU:
		b.SwiGLU(dst, gate, up)
	case backend.ActGELU:
		if elementwise("geglu", d, g, u) {
			b.dev.launch("geglu_f32", stride(d.n()), block(256), argPtr(d.ptr()), argPtr(g.ptr()), argPtr(u.ptr()), argU64(uint64(d.n())))
		}
	case backend.ActSwiGLUOAI:
		if elementwise("swiglu_oai", d, g, u) {
			b.dev.launch("swiglu_oai_f32", stride(d.n()), block(256), argPtr(d.ptr()), argPtr(g.ptr()), argPtr(u.ptr()), argU64(uint64(d.n())),
				argF32(a.Alpha), argF32(a.Limit))
		}
	default:
		panic(fmt.Sprintf("cuda: GLU with activation %d", a.Kind))
	}
}

func (b *Backend) Activate(dst, x backend.Tensor, a backend.Act) {
	d, s := dst.(*tensor), x.(*tensor)
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
		b.dev.launch(name, stride(d.n()), block(256), argPtr(d.ptr()), argPtr(s.ptr()), argU64(uint64(d.n())))
	}
}

func (b *Backend) AddBias(x backend.Tensor, bias backend.Weight) {
	s := x.(*tensor)
	p := vector("bias", bias, s.cols)
	if s.n() == 0 {
		return
	}
	b.dev.launch("add_bias_f32", grid2(s.rows, ceilDiv(s.cols, 256)), block(256),
		argPtr(s.ptr()), argPtr(p), argInt(s.rows), argInt(s.cols))
}

// Scale multiplies by one scale (a kernel argument) or by one per row
// (uploaded with the step's other inputs).
func (b *Backend) Scale(x backend.Tensor, sc ...float32) {
	s := x.(*tensor)
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
	b.dev.launch("scale_f32", grid2(s.rows, ceilDiv(s.cols, 256)), block(256),
		argPtr(s.ptr()), argPtr(p), argF32(s0), argInt(s.rows), argInt(s.cols))
}

// AddScaledRows groups the pairs by destination row on the host (add.cu's
// plan) so that one block owns each destination: repeated destinations
// need no atomics and get the CPU's order of additions.
func (b *Backend) AddScaledRows(dst, x backend.Tensor, idx []int, w []float32) {
	d, s := dst.(*tensor), x.(*tensor)
	if len(w) != len(idx) || s.rows < len(idx) || d.cols != s.cols {
		panic(fmt.Sprintf("cuda: add of %d scaled rows (%d weights) of %dx%d into %dx%d", len(idx), len(w), s.rows, s.cols, d.rows, d.cols))
	}
	if len(idx) == 0 || d.cols == 0 {
		return
	}
	plan, m := scaledRowsPlan(idx, w, d.rows)
	p := b.stepInput(&b.rowIn, int32Bytes(plan))
	b.dev.launch("add_scaled_rows_f32", grid2(m, ceilDiv(d.cols, 256)), block(256),
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
