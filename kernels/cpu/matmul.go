package cpu

import (
	"fmt"
	"unsafe"

	"github.com/hearth-llm/hearth/quant"
)

// Matrix is a weight matrix in one of quant's block formats: Rows rows of
// Cols elements, each row RowBytes long. Data usually points into a
// read-only memory map and is never written.
type Matrix struct {
	Type       quant.Type
	Rows, Cols int
	RowBytes   int
	Data       []byte
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
	return &Matrix{Type: t, Rows: rows, Cols: cols, RowBytes: rb, Data: data}, nil
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
}

// MatMul computes dst[t*m.Rows + r] = dot(row r of m, row t of x) for the n
// rows (tokens) of x, each m.Cols long. Activations are first converted to
// m.Type's vec-dot type, as ggml does.
func MatMul(p *Pool, s *Scratch, dst []float32, m *Matrix, x []float32, n int) {
	cols, rows := m.Cols, m.Rows
	if len(x) < n*cols || len(dst) < n*rows {
		panic(fmt.Sprintf("cpu.MatMul: x %d, dst %d for %d tokens of a %dx%d matrix", len(x), len(dst), n, rows, cols))
	}
	if m.Type == quant.F32 {
		p.Run(rows, 16, func(r0, r1 int) {
			for r := r0; r < r1; r++ {
				w := f32s(m.Row(r))
				for t := 0; t < n; t++ {
					dst[t*rows+r] = DotF32(w, x[t*cols:(t+1)*cols])
				}
			}
		})
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
	p.Run(n, 1, func(t0, t1 int) {
		for t := t0; t < t1; t++ {
			if err := quant.QuantizeRow(vt, x[t*cols:(t+1)*cols], xq[t*xrb:(t+1)*xrb]); err != nil {
				panic(err)
			}
		}
	})
	p.Run(rows, 16, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			w := m.Row(r)
			for t := 0; t < n; t++ {
				dst[t*rows+r] = quant.VecDot(m.Type, cols, w, xq[t*xrb:(t+1)*xrb])
			}
		}
	})
}

// DotF32 is the float32 dot product, accumulated in float32 with eight
// partial sums (the shape of ggml's SIMD f32 dot).
func DotF32(a, b []float32) float32 {
	b = b[:len(a)]
	var s [8]float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		s[0] += a[i] * b[i]
		s[1] += a[i+1] * b[i+1]
		s[2] += a[i+2] * b[i+2]
		s[3] += a[i+3] * b[i+3]
		s[4] += a[i+4] * b[i+4]
		s[5] += a[i+5] * b[i+5]
		s[6] += a[i+6] * b[i+6]
		s[7] += a[i+7] * b[i+7]
	}
	for ; i < len(a); i++ {
		s[0] += a[i] * b[i]
	}
	return ((s[0] + s[4]) + (s[1] + s[5])) + ((s[2] + s[6]) + (s[3] + s[7]))
}
