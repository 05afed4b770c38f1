package gguf

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"math/bits"
	"os"
	"slices"
	"unicode/utf8"

	"github.com/hearth-llm/hearth/quant"
)

// ErrInvalid is wrapped by every error that reports a malformed file.
var ErrInvalid = errors.New("invalid GGUF file")

const (
	magic = 0x46554747 // "GGUF" read as a little-endian uint32

	// MaxDims is the most dimensions a tensor may have (GGML_MAX_DIMS).
	MaxDims = 4
	// DefaultAlignment applies when general.alignment is absent.
	DefaultAlignment = 32
	// maxNesting bounds nested arrays so a hostile file cannot recurse deeply.
	maxNesting = 8
	// maxKeyLen bounds key and tensor-name lengths (llama.cpp has the same
	// order of limit); real keys are well under 100 bytes.
	maxKeyLen = 1 << 16
)

// KV is one metadata entry.
type KV struct {
	Key   string
	Value Value
}

// TensorInfo describes one tensor of the directory.
type TensorInfo struct {
	Name string
	// Dims are ggml's ne: Dims[0] is the row length (contiguous), Dims[1]
	// the number of rows, and so on.
	Dims []uint64
	Type quant.Type
	// Offset is relative to the start of the data section.
	Offset uint64
	// Size is the byte size of the tensor's data.
	Size uint64
}

// Elements returns the number of elements.
func (t *TensorInfo) Elements() uint64 {
	n := uint64(1)
	for _, d := range t.Dims {
		n *= d
	}
	return n
}

// File is a parsed GGUF file. Its methods are safe for concurrent use; the
// slices returned by Data are valid until Close.
type File struct {
	Version   uint32
	Alignment uint64
	KV        []KV
	Tensors   []TensorInfo
	// DataOffset is the file offset of the data section.
	DataOffset uint64

	kvIndex     map[string]int
	tensorIndex map[string]int
	data        []byte // the whole file
	unmap       func() error
}

// Open maps the file at path read-only and parses it.
func Open(path string) (*File, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	st, err := fh.Stat()
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fmt.Errorf("gguf: %s: not a regular file", path)
	}
	data, unmap, err := mapFile(fh, st.Size())
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	f, err := Parse(data)
	if err != nil {
		unmap()
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	f.unmap = unmap
	return f, nil
}

// Close releases the memory map. Slices returned by Data must not be used
// afterwards.
func (f *File) Close() error {
	if f.unmap == nil {
		return nil
	}
	err := f.unmap()
	f.unmap, f.data = nil, nil
	return err
}

// Parse reads a GGUF file held in memory. The File keeps b; b must not
// change while the File is in use.
func Parse(b []byte) (*File, error) {
	r := &reader{b: b}
	f := &File{data: b}
	if err := f.parse(r); err != nil {
		return nil, err
	}
	return f, nil
}

func (f *File) parse(r *reader) error {
	m, err := r.u32("magic")
	if err != nil {
		return err
	}
	if m != magic {
		if m == 0x47475546 {
			return r.errorf(0, "magic", "big-endian GGUF files are not supported")
		}
		return r.errorf(0, "magic", "got %q, want \"GGUF\"", r.b[:4])
	}
	if f.Version, err = r.u32("version"); err != nil {
		return err
	}
	if f.Version != 2 && f.Version != 3 {
		return r.errorf(4, "version", "unsupported version %d (want 2 or 3)", f.Version)
	}
	nTensors, err := r.u64("tensor count")
	if err != nil {
		return err
	}
	nKV, err := r.u64("metadata count")
	if err != nil {
		return err
	}
	// Each KV takes at least a key length, a type and a one-byte value; each
	// tensor at least a name length, n_dims, type and offset.
	if err := r.fits(nKV, 8+4+1, "metadata count"); err != nil {
		return err
	}
	if err := r.fits(nTensors, 8+4+8+4+8, "tensor count"); err != nil {
		return err
	}

	f.KV = make([]KV, 0, nKV)
	f.kvIndex = make(map[string]int, nKV)
	for i := uint64(0); i < nKV; i++ {
		at := r.off
		key, err := r.str(fmt.Sprintf("metadata[%d].key", i), maxKeyLen)
		if err != nil {
			return err
		}
		if !utf8.ValidString(key) {
			return r.errorf(at, fmt.Sprintf("metadata[%d].key", i), "%q is not valid UTF-8", key)
		}
		field := fmt.Sprintf("metadata %q", key)
		if _, dup := f.kvIndex[key]; dup {
			return r.errorf(at, field, "duplicate key")
		}
		tag, err := r.u32(field + " type")
		if err != nil {
			return err
		}
		v, err := r.value(ValueType(tag), field, 0)
		if err != nil {
			return err
		}
		f.kvIndex[key] = len(f.KV)
		f.KV = append(f.KV, KV{Key: key, Value: v})
	}

	f.Alignment = DefaultAlignment
	if v, ok := f.Get("general.alignment"); ok {
		a, ok := v.Uint()
		if !ok || v.Type != TypeUint32 || a == 0 || a&(a-1) != 0 {
			return fmt.Errorf("gguf: metadata \"general.alignment\": %v is not a power of two (uint32): %w", v, ErrInvalid)
		}
		f.Alignment = a
	}

	f.Tensors = make([]TensorInfo, 0, nTensors)
	f.tensorIndex = make(map[string]int, nTensors)
	for i := uint64(0); i < nTensors; i++ {
		t, err := r.tensorInfo(i)
		if err != nil {
			return err
		}
		if _, dup := f.tensorIndex[t.Name]; dup {
			return fmt.Errorf("gguf: tensor %q: duplicate name: %w", t.Name, ErrInvalid)
		}
		f.tensorIndex[t.Name] = len(f.Tensors)
		f.Tensors = append(f.Tensors, t)
	}

	// The data section starts at the next multiple of the alignment. A file
	// without tensors (a vocab-only GGUF) may end right after the header.
	f.DataOffset = alignUp(uint64(r.off), f.Alignment)
	if len(f.Tensors) == 0 {
		return nil
	}
	return f.checkTensorData()
}

// checkTensorData verifies that every tensor's bytes lie inside the file, are
// aligned, and do not overlap.
func (f *File) checkTensorData() error {
	size := uint64(len(f.data))
	if f.DataOffset > size {
		return fmt.Errorf("gguf: data section at offset %d is past the end of the file (%d bytes): %w", f.DataOffset, size, ErrInvalid)
	}
	avail := size - f.DataOffset
	order := make([]int, len(f.Tensors))
	for i := range order {
		order[i] = i
	}
	for _, i := range order {
		t := &f.Tensors[i]
		if t.Offset%f.Alignment != 0 {
			return fmt.Errorf("gguf: tensor %q: data offset %d is not a multiple of the alignment %d: %w", t.Name, t.Offset, f.Alignment, ErrInvalid)
		}
		if t.Offset > avail || t.Size > avail-t.Offset {
			return fmt.Errorf("gguf: tensor %q: data [%d, +%d) at file offset %d runs past the end of the file (%d bytes): %w",
				t.Name, t.Offset, t.Size, f.DataOffset+t.Offset, size, ErrInvalid)
		}
	}
	slices.SortFunc(order, func(a, b int) int {
		oa, ob := f.Tensors[a].Offset, f.Tensors[b].Offset
		switch {
		case oa < ob:
			return -1
		case oa > ob:
			return 1
		}
		return 0
	})
	for k := 1; k < len(order); k++ {
		prev, cur := &f.Tensors[order[k-1]], &f.Tensors[order[k]]
		if prev.Offset+prev.Size > cur.Offset && cur.Size > 0 && prev.Size > 0 {
			return fmt.Errorf("gguf: tensor %q: data at offset %d overlaps tensor %q [%d, +%d): %w",
				cur.Name, cur.Offset, prev.Name, prev.Offset, prev.Size, ErrInvalid)
		}
	}
	return nil
}

// Get returns the metadata value for key.
func (f *File) Get(key string) (Value, bool) {
	i, ok := f.kvIndex[key]
	if !ok {
		return Value{}, false
	}
	return f.KV[i].Value, true
}

// String returns a string metadata value.
func (f *File) String(key string) (string, bool) {
	v, ok := f.Get(key)
	if !ok || v.Type != TypeString {
		return "", false
	}
	return v.v.(string), true
}

// Uint returns an integer metadata value that is not negative.
func (f *File) Uint(key string) (uint64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	return v.Uint()
}

// Int returns an integer metadata value.
func (f *File) Int(key string) (int64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	return v.Int()
}

// Float returns a float (or integer) metadata value.
func (f *File) Float(key string) (float64, bool) {
	v, ok := f.Get(key)
	if !ok {
		return 0, false
	}
	return v.Float()
}

// Bool returns a bool metadata value.
func (f *File) Bool(key string) (bool, bool) {
	v, ok := f.Get(key)
	if !ok || v.Type != TypeBool {
		return false, false
	}
	return v.v.(bool), true
}

// Array returns an array metadata value.
func (f *File) Array(key string) (Array, bool) {
	v, ok := f.Get(key)
	if !ok || v.Type != TypeArray {
		return Array{}, false
	}
	return v.v.(Array), true
}

// Strings returns an array of strings.
func (f *File) Strings(key string) ([]string, bool) {
	a, ok := f.Array(key)
	if !ok {
		return nil, false
	}
	s, ok := a.Values.([]string)
	return s, ok
}

// Float32s returns an array of float32 (float64 arrays are converted).
func (f *File) Float32s(key string) ([]float32, bool) {
	a, ok := f.Array(key)
	if !ok {
		return nil, false
	}
	switch s := a.Values.(type) {
	case []float32:
		return s, true
	case []float64:
		out := make([]float32, len(s))
		for i, x := range s {
			out[i] = float32(x)
		}
		return out, true
	}
	return nil, false
}

// Int32s returns an array of any integer type as int32; false when a value
// does not fit.
func (f *File) Int32s(key string) ([]int32, bool) {
	a, ok := f.Array(key)
	if !ok {
		return nil, false
	}
	if s, ok := a.Values.([]int32); ok {
		return s, true
	}
	n := a.Len()
	out := make([]int32, n)
	for i := 0; i < n; i++ {
		var x int64
		switch s := a.Values.(type) {
		case []uint8:
			x = int64(s[i])
		case []int8:
			x = int64(s[i])
		case []uint16:
			x = int64(s[i])
		case []int16:
			x = int64(s[i])
		case []uint32:
			x = int64(s[i])
		case []int64:
			x = s[i]
		case []uint64:
			if s[i] > math.MaxInt32 {
				return nil, false
			}
			x = int64(s[i])
		default:
			return nil, false
		}
		if x < math.MinInt32 || x > math.MaxInt32 {
			return nil, false
		}
		out[i] = int32(x)
	}
	return out, true
}

// Tensor returns the directory entry of the named tensor.
func (f *File) Tensor(name string) (*TensorInfo, bool) {
	i, ok := f.tensorIndex[name]
	if !ok {
		return nil, false
	}
	return &f.Tensors[i], true
}

// Data returns the bytes of a tensor: a read-only slice of the mapped file,
// valid until Close.
func (f *File) Data(t *TensorInfo) []byte {
	start := f.DataOffset + t.Offset
	return f.data[start : start+t.Size : start+t.Size]
}

// Size returns the file's size in bytes.
func (f *File) Size() int64 { return int64(len(f.data)) }

func alignUp(x, a uint64) uint64 { return (x + a - 1) &^ (a - 1) }

// reader decodes little-endian values from b, tracking the offset for errors.
type reader struct {
	b   []byte
	off int
}

func (r *reader) errorf(at int, field, format string, args ...any) error {
	return fmt.Errorf("gguf: %s at offset %d: %s: %w", field, at, fmt.Sprintf(format, args...), ErrInvalid)
}

func (r *reader) need(n int, field string) error {
	if n < 0 || n > len(r.b)-r.off {
		return r.errorf(r.off, field, "truncated: need %d bytes, %d left", n, len(r.b)-r.off)
	}
	return nil
}

// fits rejects a count whose elements, at minSize bytes each, cannot fit in
// the bytes left.
func (r *reader) fits(count uint64, minSize int, field string) error {
	left := uint64(len(r.b) - r.off)
	hi, lo := bits.Mul64(count, uint64(minSize))
	if hi != 0 || lo > left {
		return r.errorf(r.off-8, field, "%d entries cannot fit in the %d bytes left", count, left)
	}
	return nil
}

func (r *reader) u32(field string) (uint32, error) {
	if err := r.need(4, field); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v, nil
}

func (r *reader) u64(field string) (uint64, error) {
	if err := r.need(8, field); err != nil {
		return 0, err
	}
	v := binary.LittleEndian.Uint64(r.b[r.off:])
	r.off += 8
	return v, nil
}

func (r *reader) str(field string, limit uint64) (string, error) {
	at := r.off
	n, err := r.u64(field + " length")
	if err != nil {
		return "", err
	}
	if n > uint64(len(r.b)-r.off) {
		return "", r.errorf(at, field, "string length %d is larger than the %d bytes left", n, len(r.b)-r.off)
	}
	if n > limit {
		return "", r.errorf(at, field, "string length %d exceeds the limit %d", n, limit)
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s, nil
}

// value reads one value of type t.
func (r *reader) value(t ValueType, field string, depth int) (Value, error) {
	at := r.off
	if !t.valid() {
		return Value{}, r.errorf(at-4, field, "unknown value type %d", uint32(t))
	}
	if t == TypeArray {
		a, err := r.array(field, depth)
		return Value{TypeArray, a}, err
	}
	if t == TypeString {
		// Keys and string values are text; only the elements of arrays
		// (token lists) may hold raw bytes, as some vocabularies do.
		s, err := r.str(field, math.MaxUint64)
		if err == nil && !utf8.ValidString(s) {
			return Value{}, r.errorf(at, field, "string value is not valid UTF-8")
		}
		return Value{TypeString, s}, err
	}
	n := t.fixedSize()
	if err := r.need(n, field); err != nil {
		return Value{}, err
	}
	b := r.b[r.off : r.off+n]
	r.off += n
	var v any
	switch t {
	case TypeUint8:
		v = b[0]
	case TypeInt8:
		v = int8(b[0])
	case TypeBool:
		if b[0] > 1 {
			return Value{}, r.errorf(at, field, "bool value %d is neither 0 nor 1", b[0])
		}
		v = b[0] == 1
	case TypeUint16:
		v = binary.LittleEndian.Uint16(b)
	case TypeInt16:
		v = int16(binary.LittleEndian.Uint16(b))
	case TypeUint32:
		v = binary.LittleEndian.Uint32(b)
	case TypeInt32:
		v = int32(binary.LittleEndian.Uint32(b))
	case TypeFloat32:
		v = math.Float32frombits(binary.LittleEndian.Uint32(b))
	case TypeUint64:
		v = binary.LittleEndian.Uint64(b)
	case TypeInt64:
		v = int64(binary.LittleEndian.Uint64(b))
	case TypeFloat64:
		v = math.Float64frombits(binary.LittleEndian.Uint64(b))
	}
	return Value{t, v}, nil
}

func (r *reader) array(field string, depth int) (Array, error) {
	if depth >= maxNesting {
		return Array{}, r.errorf(r.off, field, "arrays nested deeper than %d", maxNesting)
	}
	tag, err := r.u32(field + " element type")
	if err != nil {
		return Array{}, err
	}
	elem := ValueType(tag)
	if !elem.valid() {
		return Array{}, r.errorf(r.off-4, field, "unknown array element type %d", tag)
	}
	n, err := r.u64(field + " array length")
	if err != nil {
		return Array{}, err
	}
	if err := r.fits(n, elem.minSize(), field+" array length"); err != nil {
		return Array{}, err
	}
	count := int(n)
	if sz := elem.fixedSize(); sz > 0 && elem != TypeBool {
		raw := r.b[r.off : r.off+count*sz]
		r.off += count * sz
		return Array{Elem: elem, Values: decodeFixed(elem, raw, count)}, nil
	}
	switch elem {
	case TypeBool:
		out := make([]bool, count)
		for i := range out {
			b := r.b[r.off+i]
			if b > 1 {
				return Array{}, r.errorf(r.off+i, fmt.Sprintf("%s[%d]", field, i), "bool value %d is neither 0 nor 1", b)
			}
			out[i] = b == 1
		}
		r.off += count
		return Array{Elem: elem, Values: out}, nil
	case TypeString:
		out := make([]string, count)
		for i := range out {
			if out[i], err = r.str(field, math.MaxUint64); err != nil {
				return Array{}, fmt.Errorf("element %d: %w", i, err)
			}
		}
		return Array{Elem: elem, Values: out}, nil
	default: // TypeArray
		out := make([]Array, count)
		for i := range out {
			sub := fmt.Sprintf("%s[%d]", field, i)
			if out[i], err = r.array(sub, depth+1); err != nil {
				return Array{}, err
			}
		}
		return Array{Elem: elem, Values: out}, nil
	}
}

func decodeFixed(t ValueType, b []byte, n int) any {
	le := binary.LittleEndian
	switch t {
	case TypeUint8:
		return append([]uint8(nil), b...)
	case TypeInt8:
		return decodeEach(b, n, 1, func(b []byte) int8 { return int8(b[0]) })
	case TypeUint16:
		return decodeEach(b, n, 2, le.Uint16)
	case TypeInt16:
		return decodeEach(b, n, 2, func(b []byte) int16 { return int16(le.Uint16(b)) })
	case TypeUint32:
		return decodeEach(b, n, 4, le.Uint32)
	case TypeInt32:
		return decodeEach(b, n, 4, func(b []byte) int32 { return int32(le.Uint32(b)) })
	case TypeFloat32:
		return decodeEach(b, n, 4, func(b []byte) float32 { return math.Float32frombits(le.Uint32(b)) })
	case TypeUint64:
		return decodeEach(b, n, 8, le.Uint64)
	case TypeInt64:
		return decodeEach(b, n, 8, func(b []byte) int64 { return int64(le.Uint64(b)) })
	default: // TypeFloat64
		return decodeEach(b, n, 8, func(b []byte) float64 { return math.Float64frombits(le.Uint64(b)) })
	}
}

// decodeEach decodes n values of size bytes each from b.
func decodeEach[T any](b []byte, n, size int, dec func([]byte) T) []T {
	out := make([]T, n)
	for i := range out {
		out[i] = dec(b[i*size:])
	}
	return out
}

func (r *reader) tensorInfo(i uint64) (TensorInfo, error) {
	var t TensorInfo
	name, err := r.str(fmt.Sprintf("tensor[%d].name", i), maxKeyLen)
	if err != nil {
		return t, err
	}
	t.Name = name
	field := fmt.Sprintf("tensor %q", name)
	at := r.off
	nDims, err := r.u32(field + " n_dims")
	if err != nil {
		return t, err
	}
	if nDims == 0 || nDims > MaxDims {
		return t, r.errorf(at, field+" n_dims", "%d dimensions (want 1..%d)", nDims, MaxDims)
	}
	t.Dims = make([]uint64, nDims)
	elems := uint64(1)
	for d := range t.Dims {
		at := r.off
		if t.Dims[d], err = r.u64(fmt.Sprintf("%s dim %d", field, d)); err != nil {
			return t, err
		}
		if t.Dims[d] > math.MaxInt64 {
			return t, r.errorf(at, fmt.Sprintf("%s dim %d", field, d), "%d is out of range", t.Dims[d])
		}
		hi, lo := bits.Mul64(elems, t.Dims[d])
		if hi != 0 || lo > math.MaxInt64 {
			return t, r.errorf(at, fmt.Sprintf("%s dim %d", field, d), "element count overflows")
		}
		elems = lo
	}
	at = r.off
	typ, err := r.u32(field + " type")
	if err != nil {
		return t, err
	}
	t.Type = quant.Type(typ)
	if !t.Type.Known() {
		return t, r.errorf(at, field+" type", "unknown tensor type %d", typ)
	}
	bs := uint64(t.Type.BlockSize())
	if t.Dims[0]%bs != 0 {
		return t, r.errorf(at, field+" type", "row length %d is not a multiple of the %s block size %d", t.Dims[0], t.Type, bs)
	}
	hi, size := bits.Mul64(elems/bs, uint64(t.Type.BlockBytes()))
	if hi != 0 || size > math.MaxInt64 {
		return t, r.errorf(at, field, "byte size overflows")
	}
	t.Size = size
	if t.Offset, err = r.u64(field + " offset"); err != nil {
		return t, err
	}
	return t, nil
}
