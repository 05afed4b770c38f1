package cpu

import (
	"fmt"
	"runtime/debug"
	"unsafe"

	"github.com/hearth-llm/hearth/quant"
)

// Matrix is a weight matrix in one of quant's block formats: Rows rows of
// Cols elements, each row RowBytes long. Data usually points into a
// read-only memory map and is never written.
//
// A Matrix made by NewMatrix carries the dot-product kernels for its type,
// chosen once for this CPU (see Dot); a Matrix built by hand gets them on
// first use by MatMul.
type Matrix struct {
	Type       quant.Type
	Rows, Cols int
	RowBytes   int
	Data       []byte

	dot   DotFunc
	dot4  Dot4Func
	gemm  *gemmImpl                     // tile kernels; nil: dot and dot4 only
	quant func(x []float32, dst []byte) // QuantizeAct for the vec-dot type
	// packed is Data in the layout of packedFor's kernels, where its
	// kernels want their own (gemmImpl.repack): see weights.
	packed    []byte
	packedFor *gemmImpl
}

// NewMatrix checks that data holds rows × cols elements of type t.
func NewMatrix(t quant.Type, rows, cols int, data []byte) (*Matrix, error) {
	if t != quant.F32 && !t.Supported() {
		return nil, fmt.Errorf("%w: %v", quant.ErrUnsupported, t)
	}
	rb, err := t.RowBytes(cols)
	if err != nil {
		return nil, err
	}
	if len(data) != rows*rb {
		return nil, fmt.Errorf("cpu: %v matrix %dx%d needs %d bytes, got %d", t, rows, cols, rows*rb, len(data))
	}
	m := &Matrix{Type: t, Rows: rows, Cols: cols, RowBytes: rb, Data: data}
	if err := readGuard(m.resolve); err != nil {
		return nil, fmt.Errorf("cpu: %v matrix %dx%d: %w", t, rows, cols, err)
	}
	return m, nil
}

// readGuard runs f, which reads weights (a repack does, at load), with
// faults turned into an error: data mapped from a file that shrank under
// it raises SIGBUS, which must not take the process down (the pool's
// workers guard the kernels the same way).
func readGuard(f func()) (err error) {
	defer debug.SetPanicOnFault(debug.SetPanicOnFault(true))
	defer func() {
		if r := recover(); r != nil {
			if f, ok := r.(interface{ Addr() uintptr }); ok { // a memory fault
				err = fmt.Errorf("reading the weights faulted at %#x (was the model file truncated?)", f.Addr())
				return
			}
			panic(r)
		}
	}()
	f()
	return nil
}

// resolve picks the kernels for m.Type (not for F32, which MatMul does with
// DotF32).
func (m *Matrix) resolve() {
	if m.Type != quant.F32 && m.dot == nil {
		m.dot, m.dot4, m.quant = Dot(m.Type), Dot4(m.Type), quantizer(m.Type.VecDotType())
		m.gemm = gemmOf(m.Type)
		if m.gemm != nil {
			m.weights()
		}
	}
}

// Row returns the bytes of row r.
func (m *Matrix) Row(r int) []byte { return m.Data[r*m.RowBytes : (r+1)*m.RowBytes] }

// DequantizeRow writes row r as float32 into dst (len Cols).
func (m *Matrix) DequantizeRow(r int, dst []float32) {
	if m.Type == quant.F32 {
		copy(dst, f32s(m.Row(r)))
		return
	}
	if err := quant.DequantizeRow(m.Type, m.Row(r), dst[:m.Cols]); err != nil {
		panic(err) // NewMatrix checked type and sizes
	}
}

// f32s views little-endian float32 bytes as floats (all supported targets
// are little-endian; GGUF data is 32-byte aligned).
func f32s(b []byte) []float32 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*float32)(unsafe.Pointer(&b[0])), len(b)/4)
}

// Scratch holds reusable buffers for MatMul so that a forward pass does not
// allocate per call. The zero value is ready to use; not safe for concurrent
// use.
type Scratch struct {
	xq []byte
	xp []byte // prepared activations (tile kernels)
	xa []byte // activations laid out for an AMX kernel
	// multi holds the activations of MatMulGrouped's matrices beyond the
	// first.
	multi []Scratch
	units []int
	loops []func(u0, u1 int)
	acts  []preparedActs // per matrix of MatMulGrouped
	xs    [][]float32    // MatMulMulti's inputs, one per matrix
	ns    []int
}

// Tiling of the quantized product for types without tile kernels (those
// with them go through matMulGemm, gemm.go). A thread takes a range of
// rows and walks it in tiles of about tileBytes of weights; within a tile
// it runs every token of a chunk of tokenTile tokens, four rows at a time,
// so that the tile is read from memory once per chunk and then from cache,
// and the chunk's activations stay in L2. Each (row, token) result is one
// call of the type's kernel whatever the tiling, so results do not depend
// on the batch (the four-row kernel gives the one-row kernel's bits).
const (
	tileBytes = 32 << 10
	tokenTile = 64
)

// MatMul computes dst[t*m.Rows + r] = dot(row r of m, row t of x) for the n
// rows (tokens) of x, each m.Cols long. Activations are first converted to
// m.Type's vec-dot type with QuantizeAct, as ggml does. Several tokens go
// through the type's tile kernels where it has them (Q4_0, Q8_0, Q4_K,
// Q6_K on amd64), with the bits of the one-row kernel.
func MatMul(p *Pool, s *Scratch, dst []float32, m *Matrix, x []float32, n int) {
	cols, rows := m.Cols, m.Rows
	if len(x) < n*cols || len(dst) < n*rows {
		panic(fmt.Sprintf("cpu.MatMul: x %d, dst %d for %d tokens of a %dx%d matrix", len(x), len(dst), n, rows, cols))
	}
	if m.Type == quant.F32 {
		// ggml's order for a batch of tokens: tinyBLAS where its shape
		// rules take the product (k a multiple of 16, rows of 4), its
		// vec_dot_f32 otherwise. ggml itself takes vec_dot_f32 for a
		// batch of one token; Hearth keeps the batch order for every
		// token, so that a token's result does not depend on what else
		// the step holds (batch invariance).
		dot := DotF32
		if cols%16 == 0 && rows%4 == 0 {
			dot = dotF32Tiny
		}
		p.Run(rows, 16, func(r0, r1 int) {
			for r := r0; r < r1; r++ {
				w := f32s(m.Row(r))
				for t := 0; t < n; t++ {
					dst[t*rows+r] = dot(w, x[t*cols:(t+1)*cols])
				}
			}
		})
		return
	}
	m.resolve()
	// Tiles for prefill; one token too where the level has block lanes
	// (gemmImpl.single) or decode kernels (gemmImpl.dec4).
	if g := m.gemm; g != nil && (n > 1 || g.single || g.dec4 != nil) {
		matMulGemm(p, s, dst, m, x, n)
		return
	}
	vt := m.Type.VecDotType()
	xrb, err := vt.RowBytes(cols)
	if err != nil {
		panic(err)
	}
	if cap(s.xq) < n*xrb {
		s.xq = make([]byte, n*xrb)
	}
	xq := s.xq[:n*xrb]
	quantize := m.quant
	p.Run(n, 4, func(t0, t1 int) {
		for t := t0; t < t1; t++ {
			quantize(x[t*cols:(t+1)*cols], xq[t*xrb:(t+1)*xrb])
		}
	})
	rb := m.RowBytes
	tileRows := max(4, tileBytes/max(rb, 1)&^3)
	dot, dot4 := m.dot, m.dot4
	// Work is split in groups of four rows.
	p.Run((rows+3)/4, 4, func(g0, g1 int) {
		var out [4]float32
		r0, r1 := 4*g0, min(rows, 4*g1)
		for t0 := 0; t0 < n; t0 += tokenTile {
			t1 := min(n, t0+tokenTile)
			for tr := r0; tr < r1; tr += tileRows {
				tr1 := min(r1, tr+tileRows)
				for t := t0; t < t1; t++ {
					xt := xq[t*xrb : (t+1)*xrb]
					d := dst[t*rows : (t+1)*rows]
					r := tr
					for ; r+4 <= tr1; r += 4 {
						dot4(cols, m.Data[r*rb:(r+4)*rb], rb, xt, &out)
						d[r], d[r+1], d[r+2], d[r+3] = out[0], out[1], out[2], out[3]
					}
					for ; r < tr1; r++ {
						d[r] = dot(cols, m.Data[r*rb:(r+1)*rb], xt)
					}
				}
			}
		}
	})
}

// MatMulMulti computes, for every i, what MatMul(p, s, dsts[i], ms[i], x,
// n) computes, with the same bits, for matrices that multiply the same
// activations (a layer's Wq, Wk, Wv; gate and up): MatMulGrouped with x
// and n for every matrix, so the activations are quantized once per
// weight type.
func MatMulMulti(p *Pool, s *Scratch, dsts [][]float32, ms []*Matrix, x []float32, n int) {
	if len(dsts) != len(ms) {
		panic(fmt.Sprintf("cpu.MatMulMulti: %d outputs for %d matrices", len(dsts), len(ms)))
	}
	s.xs, s.ns = s.xs[:0], s.ns[:0]
	for range ms {
		s.xs, s.ns = append(s.xs, x), append(s.ns, n)
	}
	MatMulGrouped(p, s, dsts, ms, s.xs, s.ns)
}

// MatMulGrouped computes, for every i, what MatMul(p, s, dsts[i], ms[i],
// xs[i], ns[i]) computes, with the same bits: the products of several
// matrices, each with its own activations (the experts of a mixture, each
// over the tokens routed to it; ns[i] may be 0). Where they all go through
// tile or decode kernels, the products run as one Pool loop, so that a
// step starts and joins the threads once instead of once per matrix (a
// 512×2048 product takes ~30 µs, of which the start of a loop is a
// noticeable part), and matrices of one weight type that share their
// activations (the same slice and count) quantize them once. Otherwise it
// calls MatMul for each.
func MatMulGrouped(p *Pool, s *Scratch, dsts [][]float32, ms []*Matrix, xs [][]float32, ns []int) {
	if len(dsts) != len(ms) || len(xs) != len(ms) || len(ns) != len(ms) {
		panic(fmt.Sprintf("cpu.MatMulGrouped: %d outputs, %d inputs, %d counts for %d matrices", len(dsts), len(xs), len(ns), len(ms)))
	}
	fused := len(ms) > 1
	for i, m := range ms {
		if m.Type == quant.F32 {
			fused = false
			break
		}
		m.resolve()
		if g := m.gemm; g == nil || !(ns[i] > 1 || g.single || g.dec4 != nil) {
			fused = false
		}
	}
	if !fused {
		for i, m := range ms {
			if ns[i] > 0 {
				MatMul(p, s, dsts[i], m, xs[i], ns[i])
			}
		}
		return
	}
	for i, m := range ms {
		if len(xs[i]) < ns[i]*m.Cols || len(dsts[i]) < ns[i]*m.Rows {
			panic(fmt.Sprintf("cpu.MatMulGrouped: x %d, dst %d for %d tokens of a %dx%d matrix", len(xs[i]), len(dsts[i]), ns[i], m.Rows, m.Cols))
		}
	}
	if len(s.multi) < len(ms)-1 {
		s.multi = make([]Scratch, len(ms)-1)
	}
	s.units, s.loops, s.acts = s.units[:0], s.loops[:0], s.acts[:0]
	total := 0
	for i, m := range ms {
		if ns[i] == 0 {
			s.acts = append(s.acts, preparedActs{})
			continue
		}
		j := 0
		for ; j < i; j++ {
			if ms[j].Type == m.Type && ms[j].gemm == m.gemm && ms[j].Cols == m.Cols && ns[j] == ns[i] && &xs[j][0] == &xs[i][0] {
				break
			}
		}
		var a preparedActs
		if j < i {
			a = s.acts[j]
		} else {
			sc := s
			if i > 0 {
				sc = &s.multi[i-1]
			}
			a = gemmActs(p, sc, m, xs[i], ns[i])
		}
		s.acts = append(s.acts, a)
		u, fn := gemmLoop(dsts[i], m, ns[i], a)
		s.units, s.loops = append(s.units, u), append(s.loops, fn)
		total += u
	}
	units, loops := s.units, s.loops
	p.Run(total, 4, func(u0, u1 int) {
		off := 0
		for i, u := range units {
			if lo, hi := max(u0, off), min(u1, off+u); lo < hi {
				loops[i](lo-off, hi-off)
			}
			off += u
		}
	})
}

// preparedActs are activations quantized (and laid out) for a matrix's
// tile or decode kernels, xs bytes per token.
type preparedActs struct {
	xb []byte
	xs int
	xa []byte // the AMX kernel's layout (gemmActs), or nil
}

// DotF32 is the float32 dot product as ggml_vec_dot_f32 sums it on an
// AVX-512 build (a matrix product of one token, the gated delta rule),
// bit for bit: the first n/64·64 elements in four sixteen-lane FMA
// accumulators (element i in accumulator i/16 mod 4, lane i mod 16)
// reduced as GGML_F32_VEC_REDUCE (0+2, 1+3, then those two, then
// reduce16), then the rest one product and one add each (GCC leaves that
// loop-carried chain unfused).
func DotF32(a, b []float32) float32 {
	b = b[:len(a)]
	if s, ok := vecDotF32Asm(a, b); ok {
		return s
	}
	var sum float32
	np := len(a) &^ 63
	if np > 0 {
		var acc [64]float32
		i := dotF32Lanes(a[:np], b[:np], acc[:])
		for ; i < np; i++ {
			acc[i%64] = quant.FMA32(a[i], b[i], acc[i%64])
		}
		var r [16]float32
		for l := range r {
			r[l] = (acc[l] + acc[l+32]) + (acc[l+16] + acc[l+48])
		}
		sum = reduce16(&r)
	}
	for i := np; i < len(a); i++ {
		sum += float32(a[i] * b[i]) // the conversion keeps the product unfused
	}
	return sum
}

// dotF32Tiny is the float32 dot product as ggml's tinyBLAS sums each
// output of an F32 matrix product of two tokens or more (len(a) a multiple
// of 16): element i in lane i mod 16, one FMA each, then reduce16.
func dotF32Tiny(a, b []float32) float32 {
	b = b[:len(a)]
	var acc [16]float32
	i := dotF32Lanes(a, b, acc[:])
	for ; i < len(a); i++ {
		acc[i%16] = quant.FMA32(a[i], b[i], acc[i%16])
	}
	return reduce16(&acc)
}
