// Package fuzzgguf helps fuzz targets rewrite a model's metadata: which
// entries are numbers, and any 64 bits as a value of an entry's type.
package fuzzgguf

import (
	"math"

	"github.com/hearth-llm/hearth/loader/gguf"
)

// NumericKeys are the indexes of f's numeric metadata entries.
func NumericKeys(f *gguf.File) []int {
	var keys []int
	for i, kv := range f.KV {
		switch kv.Value.Type {
		case gguf.TypeUint8, gguf.TypeInt8, gguf.TypeUint16, gguf.TypeInt16, gguf.TypeUint32, gguf.TypeInt32,
			gguf.TypeUint64, gguf.TypeInt64, gguf.TypeFloat32, gguf.TypeFloat64:
			keys = append(keys, i)
		}
	}
	return keys
}

// Numeric is v as a value of type t (truncated, or as bits for floats).
func Numeric(t gguf.ValueType, v uint64) gguf.Value {
	switch t {
	case gguf.TypeUint8:
		return gguf.Uint8(uint8(v))
	case gguf.TypeInt8:
		return gguf.Int8(int8(v))
	case gguf.TypeUint16:
		return gguf.Uint16(uint16(v))
	case gguf.TypeInt16:
		return gguf.Int16(int16(v))
	case gguf.TypeUint32:
		return gguf.Uint32(uint32(v))
	case gguf.TypeInt32:
		return gguf.Int32(int32(v))
	case gguf.TypeInt64:
		return gguf.Int64(int64(v))
	case gguf.TypeFloat32:
		return gguf.Float32(math.Float32frombits(uint32(v)))
	case gguf.TypeFloat64:
		return gguf.Float64(math.Float64frombits(v))
	}
	return gguf.Uint64(v)
}
