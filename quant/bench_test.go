package quant

import (
	"math/rand/v2"
	"testing"
)

// benchN is the row length of the benchmarks: a typical hidden size.
const benchN = 4096

var sinkF32 float32

// BenchmarkVecDot/<type> times one weight row of benchN elements against a
// quantized activation row; SetBytes counts the weight bytes, so MB/s is the
// weight bandwidth a matrix-vector product would reach on one core.
func BenchmarkVecDot(b *testing.B) {
	rng := rand.New(rand.NewPCG(7, 8))
	w, x := randomRow(rng, benchN, 1), randomRow(rng, benchN, 1)
	for _, typ := range supportedTypes {
		b.Run(typ.String(), func(b *testing.B) {
			wq, xq := benchQuantize(b, typ, w), benchQuantize(b, typ.VecDotType(), x)
			b.SetBytes(int64(len(wq)))
			for b.Loop() {
				sinkF32 = VecDot(typ, benchN, wq, xq)
			}
		})
	}
}

// BenchmarkQuantizeRow/<type> times quantizing one row; for the activation
// types (Q8_0, Q8_1, Q8_K, F16, BF16) this runs once per matrix-vector
// product. SetBytes counts the float32 input.
func BenchmarkQuantizeRow(b *testing.B) {
	rng := rand.New(rand.NewPCG(9, 10))
	x := randomRow(rng, benchN, 1)
	for _, typ := range supportedTypes {
		b.Run(typ.String(), func(b *testing.B) {
			q := benchQuantize(b, typ, x)
			b.SetBytes(4 * benchN)
			for b.Loop() {
				if err := QuantizeRow(typ, x, q); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDequantizeRow/<type> times decoding one row; SetBytes counts the
// encoded input.
func BenchmarkDequantizeRow(b *testing.B) {
	rng := rand.New(rand.NewPCG(11, 12))
	x := randomRow(rng, benchN, 1)
	out := make([]float32, benchN)
	for _, typ := range supportedTypes {
		b.Run(typ.String(), func(b *testing.B) {
			q := benchQuantize(b, typ, x)
			b.SetBytes(int64(len(q)))
			for b.Loop() {
				if err := DequantizeRow(typ, q, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func benchQuantize(b *testing.B, typ Type, x []float32) []byte {
	b.Helper()
	rb, err := typ.RowBytes(len(x))
	if err != nil {
		b.Fatal(err)
	}
	q := make([]byte, rb)
	if err := QuantizeRow(typ, x, q); err != nil {
		b.Fatal(err)
	}
	return q
}
