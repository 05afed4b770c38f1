package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"

	"github.com/hearth-llm/hearth/quant"
)

// Writer builds a GGUF v3 file: metadata in the order set, then tensors in
// the order added. It is not safe for concurrent use.
type Writer struct {
	kv      []KV
	kvIndex map[string]int
	tensors []pendingTensor
	names   map[string]bool
}

type pendingTensor struct {
	info  TensorInfo
	write func(io.Writer) error
}

// NewWriter returns an empty Writer.
func NewWriter() *Writer {
	return &Writer{kvIndex: map[string]int{}, names: map[string]bool{}}
}

// Set adds or replaces a metadata entry; a replaced entry keeps its place.
func (w *Writer) Set(key string, v Value) {
	if i, ok := w.kvIndex[key]; ok {
		w.kv[i].Value = v
		return
	}
	w.kvIndex[key] = len(w.kv)
	w.kv = append(w.kv, KV{key, v})
}

// CopyMetadata sets every metadata entry of f, for rewriting a file.
func (w *Writer) CopyMetadata(f *File) {
	for _, kv := range f.KV {
		w.Set(kv.Key, kv.Value)
	}
}

// CopyTensors adds every tensor of f with its data, in f's order, for
// rewriting a file (with CopyMetadata, and Set for what changes).
func (w *Writer) CopyTensors(f *File) error {
	for i := range f.Tensors {
		ti := &f.Tensors[i]
		if err := w.AddTensor(ti.Name, ti.Type, ti.Dims, f.Data(ti)); err != nil {
			return err
		}
	}
	return nil
}

// AddTensor adds a tensor whose bytes are already in memory. dims are
// ggml's ne (dims[0] is the row length).
func (w *Writer) AddTensor(name string, typ quant.Type, dims []uint64, data []byte) error {
	info, err := w.describe(name, typ, dims)
	if err != nil {
		return err
	}
	if uint64(len(data)) != info.Size {
		return fmt.Errorf("gguf: tensor %q: %d bytes of data for a %s tensor of %v, want %d", name, len(data), typ, dims, info.Size)
	}
	w.add(info, func(out io.Writer) error { _, err := out.Write(data); return err })
	return nil
}

// AddTensorFunc adds a tensor whose bytes write produces when the file is
// written, so large files need not be held in memory. write must emit
// exactly the tensor's size; WriteTo checks it.
func (w *Writer) AddTensorFunc(name string, typ quant.Type, dims []uint64, write func(io.Writer) error) error {
	info, err := w.describe(name, typ, dims)
	if err != nil {
		return err
	}
	w.add(info, write)
	return nil
}

func (w *Writer) describe(name string, typ quant.Type, dims []uint64) (TensorInfo, error) {
	if w.names[name] {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %q added twice", name)
	}
	if len(dims) == 0 || len(dims) > MaxDims {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %q: %d dimensions (want 1..%d)", name, len(dims), MaxDims)
	}
	if !typ.Known() {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %q: unknown type %v", name, typ)
	}
	n := uint64(1)
	for _, d := range dims {
		if d != 0 && n > math.MaxInt64/d {
			return TensorInfo{}, fmt.Errorf("gguf: tensor %q: element count overflows", name)
		}
		n *= d
	}
	bs := uint64(typ.BlockSize())
	if dims[0]%bs != 0 {
		return TensorInfo{}, fmt.Errorf("gguf: tensor %q: row length %d is not a multiple of the %v block size %d", name, dims[0], typ, bs)
	}
	return TensorInfo{Name: name, Dims: append([]uint64(nil), dims...), Type: typ,
		Size: n / bs * uint64(typ.BlockBytes())}, nil
}

func (w *Writer) add(info TensorInfo, write func(io.Writer) error) {
	w.names[info.Name] = true
	w.tensors = append(w.tensors, pendingTensor{info, write})
}

func (w *Writer) alignment() uint64 {
	if i, ok := w.kvIndex["general.alignment"]; ok {
		if a, ok := w.kv[i].Value.Uint(); ok && a > 0 && a&(a-1) == 0 {
			return a
		}
	}
	return DefaultAlignment
}

// countingWriter counts bytes so WriteTo can pad to the alignment.
type countingWriter struct {
	w   *bufio.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}

func (c *countingWriter) u32(v uint32) { c.Write(binary.LittleEndian.AppendUint32(nil, v)) }
func (c *countingWriter) u64(v uint64) { c.Write(binary.LittleEndian.AppendUint64(nil, v)) }
func (c *countingWriter) str(s string) { c.u64(uint64(len(s))); io.WriteString(c, s) }
func (c *countingWriter) pad(align uint64) {
	if r := uint64(c.n) % align; r != 0 {
		c.Write(make([]byte, align-r))
	}
}

// WriteTo writes the file.
func (w *Writer) WriteTo(out io.Writer) (int64, error) {
	align := w.alignment()
	c := &countingWriter{w: bufio.NewWriterSize(out, 1<<20)}
	c.u32(magic)
	c.u32(3)
	c.u64(uint64(len(w.tensors)))
	c.u64(uint64(len(w.kv)))
	for _, kv := range w.kv {
		c.str(kv.Key)
		c.u32(uint32(kv.Value.Type))
		if err := writeValue(c, kv.Value.v); err != nil {
			return c.n, fmt.Errorf("gguf: metadata %q: %w", kv.Key, err)
		}
	}
	var off uint64
	for i := range w.tensors {
		t := &w.tensors[i].info
		t.Offset = off
		off = alignUp(off+t.Size, align)
		c.str(t.Name)
		c.u32(uint32(len(t.Dims)))
		for _, d := range t.Dims {
			c.u64(d)
		}
		c.u32(uint32(t.Type))
		c.u64(t.Offset)
	}
	if len(w.tensors) > 0 { // a vocab-only file ends right after its header
		c.pad(align)
	}
	for _, p := range w.tensors {
		start := c.n
		if err := p.write(c); err != nil {
			return c.n, fmt.Errorf("gguf: tensor %q: %w", p.info.Name, err)
		}
		if got := uint64(c.n - start); got != p.info.Size && c.err == nil {
			return c.n, fmt.Errorf("gguf: tensor %q: wrote %d bytes, want %d", p.info.Name, got, p.info.Size)
		}
		c.pad(align)
	}
	if c.err != nil {
		return c.n, c.err
	}
	return c.n, c.w.Flush()
}

// WriteFile writes the file to path through a temporary file in the same
// folder, renamed into place only when complete.
func (w *Writer) WriteFile(path string) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	_, err = w.WriteTo(tmp)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		os.Remove(tmp.Name())
	}
	return err
}

func writeValue(c *countingWriter, v any) error {
	le := binary.LittleEndian
	switch x := v.(type) {
	case uint8:
		c.Write([]byte{x})
	case int8:
		c.Write([]byte{byte(x)})
	case bool:
		b := byte(0)
		if x {
			b = 1
		}
		c.Write([]byte{b})
	case uint16:
		c.Write(le.AppendUint16(nil, x))
	case int16:
		c.Write(le.AppendUint16(nil, uint16(x)))
	case uint32:
		c.u32(x)
	case int32:
		c.u32(uint32(x))
	case float32:
		c.u32(math.Float32bits(x))
	case uint64:
		c.u64(x)
	case int64:
		c.u64(uint64(x))
	case float64:
		c.u64(math.Float64bits(x))
	case string:
		c.str(x)
	case Array:
		c.u32(uint32(x.Elem))
		c.u64(uint64(x.Len()))
		return writeArray(c, x)
	default:
		return errors.New("unsupported value")
	}
	return nil
}

func writeArray(c *countingWriter, a Array) error {
	switch s := a.Values.(type) {
	case []Array:
		for _, e := range s {
			if err := writeValue(c, e); err != nil {
				return err
			}
		}
		return nil
	}
	n := a.Len()
	for i := 0; i < n; i++ {
		var e any
		switch s := a.Values.(type) {
		case []uint8:
			e = s[i]
		case []int8:
			e = s[i]
		case []uint16:
			e = s[i]
		case []int16:
			e = s[i]
		case []uint32:
			e = s[i]
		case []int32:
			e = s[i]
		case []uint64:
			e = s[i]
		case []int64:
			e = s[i]
		case []float32:
			e = s[i]
		case []float64:
			e = s[i]
		case []bool:
			e = s[i]
		case []string:
			e = s[i]
		}
		if err := writeValue(c, e); err != nil {
			return err
		}
	}
	return nil
}
