package quant

import (
	"bytes"
	"math"
	"testing"
)

// Tests against ggml's own outputs (shared/quant): geometry, bit-exact
// dequantization, byte-exact quantization and dot products to float rounding.

func TestVectorsGeometry(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.cases {
		t.Run(c.Name, func(t *testing.T) {
			typ := parseCaseType(t, c.Name)
			if uint32(typ) != c.ID {
				t.Errorf("id %d, ggml %d", typ, c.ID)
			}
			if got, err := ParseType(c.TypeName); err != nil || got != typ {
				t.Errorf("ParseType(%q) = %v, %v", c.TypeName, got, err)
			}
			if typ.BlockSize() != c.BlockSize || typ.BlockBytes() != c.BlockBytes {
				t.Errorf("block %d elements / %d bytes, ggml %d / %d", typ.BlockSize(), typ.BlockBytes(), c.BlockSize, c.BlockBytes)
			}
			if rb, err := typ.RowBytes(vecCols); err != nil || rb != c.RowBytes {
				t.Errorf("RowBytes(%d) = %d, %v; ggml %d", vecCols, rb, err, c.RowBytes)
			}
			vdt := typ.VecDotType()
			if vdt.String() != c.VecDotType {
				t.Errorf("VecDotType %v, ggml %s", vdt, c.VecDotType)
			}
			if rb, err := vdt.RowBytes(vecCols); err != nil || rb != c.XqRowBytes {
				t.Errorf("activation RowBytes = %d, %v; ggml %d", rb, err, c.XqRowBytes)
			}
			if !typ.Supported() || !vdt.Supported() {
				t.Errorf("%v / %v not supported", typ, vdt)
			}
		})
	}
}

func TestVectorsDequantize(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.cases {
		t.Run(c.Name, func(t *testing.T) {
			typ := parseCaseType(t, c.Name)
			wq := v.bytes(t, c, "Wq.bin")
			want := v.floats(t, c, "Wdeq.f32")
			got := make([]float32, vecRows*vecCols)
			if err := DequantizeRow(typ, wq, got); err != nil {
				t.Fatal(err)
			}
			bad := 0
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
					if bad < 5 {
						t.Errorf("row %d col %d: got %v (%#08x), ggml %v (%#08x)", i/vecCols, i%vecCols,
							got[i], math.Float32bits(got[i]), want[i], math.Float32bits(want[i]))
					}
					bad++
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d values differ from ggml's to_float", bad, len(got))
			}
			// Row by row gives the same bits as the whole matrix at once.
			rb, _ := typ.RowBytes(vecCols)
			row := make([]float32, vecCols)
			for r := range vecRows {
				if err := DequantizeRow(typ, wq[r*rb:(r+1)*rb], row); err != nil {
					t.Fatal(err)
				}
				for i := range row {
					if math.Float32bits(row[i]) != math.Float32bits(got[r*vecCols+i]) {
						t.Fatalf("row %d decoded alone differs at %d", r, i)
					}
				}
			}
		})
	}
}

func TestVectorsQuantize(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.cases {
		t.Run(c.Name, func(t *testing.T) {
			typ := parseCaseType(t, c.Name)
			w := v.floats(t, c, "W.f32")
			want := v.bytes(t, c, "Wq.bin")
			got := make([]byte, len(want))
			if err := QuantizeRow(typ, w, got); err != nil {
				t.Fatal(err)
			}
			compareBlocks(t, typ, "W", got, want)

			vdt := typ.VecDotType()
			x := v.floats(t, c, "x.f32")
			wantX := v.bytes(t, c, "xq.bin")
			gotX := make([]byte, len(wantX))
			if err := QuantizeRow(vdt, x, gotX); err != nil {
				t.Fatal(err)
			}
			compareBlocks(t, vdt, "x", gotX, wantX)
		})
	}
}

// compareBlocks reports the blocks in which got and want differ.
func compareBlocks(t *testing.T, typ Type, what string, got, want []byte) {
	t.Helper()
	if bytes.Equal(got, want) {
		return
	}
	bb := typ.BlockBytes()
	bad := 0
	for b := 0; b < len(want)/bb; b++ {
		g, w := got[b*bb:(b+1)*bb], want[b*bb:(b+1)*bb]
		if !bytes.Equal(g, w) {
			if bad < 3 {
				i := 0
				for g[i] == w[i] {
					i++
				}
				t.Errorf("%s as %v: block %d first differs at byte %d: got %#02x, ggml %#02x", what, typ, b, i, g[i], w[i])
			}
			bad++
		}
	}
	t.Errorf("%s as %v: %d of %d blocks differ from ggml", what, typ, bad, len(want)/bb)
}

func TestVectorsVecDot(t *testing.T) {
	v := loadVectors(t)
	for _, c := range v.cases {
		t.Run(c.Name, func(t *testing.T) {
			typ := parseCaseType(t, c.Name)
			wq := v.bytes(t, c, "Wq.bin")
			xq := v.bytes(t, c, "xq.bin")
			y := v.floats(t, c, "y.f32")
			rb, _ := typ.RowBytes(vecCols)
			var maxY float64
			for _, f := range y {
				maxY = math.Max(maxY, math.Abs(float64(f)))
			}
			// ggml's AVX2 kernels sum in another order; README: within
			// 1e-5 of max|y| is float rounding.
			tol := 1e-5 * maxY
			var worst float64
			for r := range vecRows {
				got := VecDot(typ, vecCols, wq[r*rb:(r+1)*rb], xq)
				d := math.Abs(float64(got) - float64(y[r]))
				worst = math.Max(worst, d)
				if d > tol {
					t.Errorf("row %d: VecDot = %v, ggml %v (|diff| %.3g > %.3g)", r, got, y[r], d, tol)
				}
			}
			t.Logf("%v: max|y| %.4g, worst |y-ggml| %.3g (%.2g relative)", typ, maxY, worst, worst/maxY)
		})
	}
}
