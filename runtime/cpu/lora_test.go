package cpu

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// TestAddLoRA holds AddLoRA and AddLoRAMulti to a float64 reference
// (activations rounded to f16 for F16 pairs, as the products do) over
// three products of one x with adapters of several ranks (an odd one, one
// above the 64 coefficients kept on the stack) and types, rows in runs
// longer than a tile, rows of no adapter left alone; and AddLoRAMulti to
// one AddLoRA per product, bit for bit.
func TestAddLoRA(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	vals := func(n int, s float64) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(r.NormFloat64() * s)
		}
		return v
	}
	const n, in = 41, 96
	outs := []int{64, 32, 40}
	type pair struct {
		a, b []float32
		rank int
		t    quant.Type
	}
	for _, threads := range []int{1, 2, 3} {
		be := New(threads)
		x := be.NewTensor(n, in)
		copy(Data(x), vals(n*in, 1))
		// Adapter k of each product: ranks 16, 3, 80, 8; types mixed.
		ranks := []int{16, 3, 80, 8}
		types := []quant.Type{quant.F16, quant.F32, quant.F16, quant.F32}
		pairs := make([][]pair, len(outs))
		ws := make([][]backend.LoRAWeight, len(outs))
		for p, out := range outs {
			for k, rank := range ranks {
				pr := pair{vals(rank*in, 0.3), vals(out*rank, 0.3), rank, types[k]}
				w, err := be.BindLoRA("p", pr.a, pr.b, out, in, rank, pr.t)
				if err != nil {
					t.Fatal(err)
				}
				pairs[p], ws[p] = append(pairs[p], pr), append(ws[p], w)
			}
		}
		// Rows: 0-19 adapter 0 (a run longer than a tile), 20-22 none,
		// 23-30 alternate 1 and 2, 31-40 adapter 3 but row 35 none.
		var rows [4][]int32
		for i := range n {
			switch {
			case i < 20:
				rows[0] = append(rows[0], int32(i))
			case i < 23, i == 35:
			case i < 31:
				rows[1+i%2] = append(rows[1+i%2], int32(i))
			default:
				rows[3] = append(rows[3], int32(i))
			}
		}
		scales := []float32{0.5, 1.25, 0.1, 2}
		dss := make([][]backend.LoRADelta, len(outs))
		for p := range outs {
			for k := range ranks {
				dss[p] = append(dss[p], backend.LoRADelta{W: ws[p][k], Scale: scales[k], Rows: rows[k]})
			}
		}
		base := func(out int) backend.Tensor {
			d := be.NewTensor(n, out)
			for i := range Data(d) {
				Data(d)[i] = float32(i%7) - 3
			}
			return d
		}
		var multi, single []backend.Tensor
		for _, out := range outs {
			multi, single = append(multi, base(out)), append(single, base(out))
		}
		be.AddLoRAMulti(multi, x, dss)
		for p := range outs {
			be.AddLoRA(single[p], x, dss[p])
		}
		for p, out := range outs {
			if !slices.Equal(Data(multi[p]), Data(single[p])) {
				t.Errorf("threads %d, product %d: AddLoRAMulti differs from AddLoRA", threads, p)
			}
			want := Data(base(out))
			for k, pr := range pairs[p] {
				for _, row := range rows[k] {
					xr := Data(x)[int(row)*in : (int(row)+1)*in]
					for o := range out {
						var d float64
						for j := range pr.rank {
							var dot float64
							for i, xv := range xr {
								if pr.t == quant.F16 {
									xv = quant.F16ToF32(quant.F32ToF16(xv))
									dot += float64(quant.F16ToF32(quant.F32ToF16(pr.a[j*in+i]))) * float64(xv)
								} else {
									dot += float64(pr.a[j*in+i]) * float64(xv)
								}
							}
							bv := float64(pr.b[o*pr.rank+j])
							if pr.t == quant.F16 {
								bv = float64(quant.F16ToF32(quant.F32ToF16(pr.b[o*pr.rank+j])))
							}
							d += bv * dot
						}
						want[int(row)*out+o] += float32(float64(scales[k]) * d)
					}
				}
			}
			got := Data(multi[p])
			for i := range want {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-4*(1+math.Abs(float64(want[i]))) {
					t.Fatalf("threads %d, product %d, row %d col %d: %g, want %g", threads, p, i/out, i%out, got[i], want[i])
				}
			}
			for _, row := range []int{20, 21, 22, 35} {
				for o := range out {
					if got[row*out+o] != float32(((row*out+o)%7)-3) {
						t.Fatalf("row %d of no adapter changed", row)
					}
				}
			}
		}
		be.Close()
	}
}
