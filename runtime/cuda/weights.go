package cuda

import (
	"fmt"
	"runtime"
	"unsafe"

	kcpu "github.com/hearth-llm/hearth/kernels/cpu"
	kcuda "github.com/hearth-llm/hearth/kernels/cuda"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// weight is a parameter tensor on the device. Types without kernels are
// stored as F16 (dequantized on the host at load), MXFP4 as the Q8_0
// blocks of the same values, 1-row weights (norm vectors) as F32.
type weight struct {
	name       string
	typ        quant.Type // as in the file
	dev        quant.Type // as stored on the device
	rows, cols int
	rowBytes   int
	buf        *buffer
}

func (w *weight) Name() string            { return w.name }
func (w *weight) Type() quant.Type        { return w.typ }
func (w *weight) Shape() (rows, cols int) { return w.rows, w.cols }

func (b *Backend) Weight(name string, t quant.Type, rows, cols int, data []byte) (backend.Weight, error) {
	m, err := kcpu.NewMatrix(t, rows, cols, data) // checks the type and the size
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	w := &weight{name: name, typ: t, dev: t, rows: rows, cols: cols, rowBytes: m.RowBytes}
	_, ok := kcuda.Suffix(t)
	var q8 []byte
	if t == quant.MXFP4 && rows > 1 {
		// Q8_0 holds MXFP4's values exactly (while the block scales fit
		// float16): the Q8_0 kernels then form MXFP4's integer sums.
		q8 = make([]byte, rows*cols/32*34)
		if !quant.MXFP4AsQ8_0(q8, data) {
			q8 = nil
		}
	}
	switch {
	case q8 != nil:
		w.dev, w.rowBytes, data = quant.Q8_0, cols/32*34, q8
	case (rows == 1 || cols < 32) && t != quant.F32:
		// Norm vectors, and narrow matrices (a recurrent layer's conv
		// taps): float32 for the kernels that read them as such (exact:
		// dequantization).
		f := make([]float32, rows*cols)
		for r := range rows {
			m.DequantizeRow(r, f[r*cols:(r+1)*cols])
		}
		w.dev, w.rowBytes, data = quant.F32, 4*cols, unsafe.Slice((*byte)(unsafe.Pointer(&f[0])), 4*len(f))
	case !ok:
		// No kernel reads this format: store it as F16, row by row.
		f := make([]float32, cols)
		h := make([]uint16, rows*cols)
		for r := range rows {
			m.DequantizeRow(r, f)
			kcpu.ToF16(h[r*cols:(r+1)*cols], f)
		}
		w.dev, w.rowBytes = quant.F16, 2*cols
		data = unsafe.Slice((*byte)(unsafe.Pointer(&h[0])), 2*len(h))
	}
	if len(data) == 0 {
		return nil, fmt.Errorf("tensor %q: empty", name)
	}
	buf, err := b.alloc(uint64(len(data)))
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", name, err)
	}
	w.buf = buf
	err = b.dev.Do(func(drv Driver, s Stream) error {
		// Synchronous: data (often the model's memory map) is only
		// borrowed for this call.
		if err := drv.MemcpyHtoDAsync(buf.ptr, unsafe.Pointer(&data[0]), uint64(len(data)), s); err != nil {
			return err
		}
		return drv.StreamSynchronize(s)
	})
	runtime.KeepAlive(data)
	if err != nil {
		b.free(buf)
		return nil, fmt.Errorf("tensor %q: upload: %w", name, err)
	}
	return w, nil
}

// WeightBytes is the device memory a weight of type t and shape rows ×
// cols takes once uploaded (Weight's storage rules: norm vectors as F32,
// formats without kernels as F16, the rest as in the file), for planning
// what fits before anything is uploaded. 0 for a type it cannot size.
func WeightBytes(t quant.Type, rows, cols int) uint64 {
	_, ok := kcuda.Suffix(t)
	switch {
	case t == quant.MXFP4 && rows > 1:
		return uint64(rows) * uint64(cols/32*34) // as Q8_0 (as F16 when a scale does not fit: rare)
	case rows == 1 && t != quant.F32, t == quant.F32:
		return 4 * uint64(rows) * uint64(cols)
	case !ok:
		return 2 * uint64(rows) * uint64(cols)
	}
	rb, err := t.RowBytes(cols)
	if err != nil {
		return 0
	}
	return uint64(rows) * uint64(rb)
}
