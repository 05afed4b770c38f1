package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/hearth-llm/hearth/quant"
)

// pagedKV is a paged cache as runtime/cpu keeps one: blocks of bs rows,
// the positions' blocks given by a shuffled table, runs to a block's end.
type pagedKV struct {
	k, v     []byte
	table    []int
	bs, rowB int
}

func (c pagedKV) off(p int) int        { return (c.table[p/c.bs]*c.bs + p%c.bs) * c.rowB }
func (c pagedKV) K(p int) []byte       { return c.k[c.off(p) : c.off(p)+c.rowB] }
func (c pagedKV) V(p int) []byte       { return c.v[c.off(p) : c.off(p)+c.rowB] }
func (c pagedKV) Run(p int) (int, int) { return c.rowB, c.bs - p%c.bs }

func newPagedKV(r *rand.Rand, typ quant.Type, ctx, kvw, bs int) pagedKV {
	rb, _ := typ.RowBytes(kvw)
	blocks := (ctx + bs - 1) / bs
	c := pagedKV{k: make([]byte, blocks*bs*rb), v: make([]byte, blocks*bs*rb), table: r.Perm(blocks), bs: bs, rowB: rb}
	for p := range ctx {
		StoreKV(typ, c.K(p), randVec(r, kvw))
		StoreKV(typ, c.V(p), randVec(r, kvw))
	}
	return c
}

// TestAttentionF16Kernels checks the F16 score and value kernels against
// qkF16Generic and pvF16Generic, bit for bit (the same float32 adds in the
// same order, ggml's): group sizes 1 to 8 (split into kernels of
// 4, 2 and 1 heads), head sizes 16 to 128, runs of 1 to 37 rows at a stride
// wider than a row, guard values around the outputs.
func TestAttentionF16Kernels(t *testing.T) {
	if !attnF16Asm(64) {
		t.Skip("no F16 attention kernels at this level")
	}
	r := rand.New(rand.NewPCG(61, 62))
	for _, hd := range []int{16, 64, 80, 128} {
		for _, group := range []int{1, 2, 3, 4, 5, 8} {
			for _, n := range []int{1, 2, 7, 16, 37} {
				t.Run(fmt.Sprintf("hd%d/g%d/n%d", hd, group, n), func(t *testing.T) {
					stride := 2*hd + 2*16 // rows of a wider cache row
					k := make([]byte, n*stride)
					for i := 0; i+1 < len(k); i += 2 {
						h := quant.F32ToF16(float32(r.NormFloat64()))
						k[i], k[i+1] = byte(h), byte(h>>8)
					}
					q := make([]float32, group*hd)
					for i := range q {
						q[i] = quant.F16ToF32(quant.F32ToF16(float32(r.NormFloat64())))
					}
					ldo := n + 3
					want := make([]float32, group*ldo)
					got := make([]float32, group*ldo+1)
					for i := range got {
						got[i] = 12345
					}
					qkF16Generic(q, group, hd, k, stride, n, want, ldo)
					qkF16Asm(q, group, hd, &k[0], stride, n, got, ldo)
					for g := range group {
						for j := range ldo {
							w, x := want[g*ldo+j], got[g*ldo+j]
							if j >= n {
								if x != 12345 {
									t.Fatalf("score g%d j%d written: %v", g, j, x)
								}
								continue
							}
							if w != x {
								t.Fatalf("score g%d j%d: %v, generic %v", g, j, x, w)
							}
						}
					}
					if got[group*ldo] != 12345 {
						t.Fatal("scores written past the end")
					}
					// Values: into lanes that start nonzero (the kernels
					// add), from a lane other than 0 so that they wrap.
					p := make([]float32, group*ldo)
					for i := range p {
						// Weights are float16 values, as Attention's: the
						// products are exact and an FMA is an add.
						p[i] = quant.F16ToF32(quant.F32ToF16(r.Float32()))
					}
					wantV := make([]float32, group*16*hd+1)
					for i := range wantV {
						wantV[i] = float32(r.NormFloat64())
					}
					gotV := append([]float32(nil), wantV...)
					pvF16Generic(p, ldo, group, hd, k, stride, n, wantV, 5)
					pvF16Asm(p, ldo, group, hd, &k[0], stride, n, gotV, 5)
					for i := range wantV {
						if wantV[i] != gotV[i] {
							t.Fatalf("lane value %d: %v, generic %v", i, gotV[i], wantV[i])
						}
					}
				})
			}
		}
	}
}

// TestAttentionPaged: Attention over a paged cache (runs to each block's
// end, blocks in shuffled order) gives what it gives over the same rows
// one at a time (a view that does not tell its runs), to float rounding,
// for F16 and Q8_0 and several group and head sizes.
func TestAttentionPaged(t *testing.T) {
	r := rand.New(rand.NewPCG(63, 64))
	for _, typ := range KVTypes {
		for _, c := range []struct{ heads, kvHeads, hd int }{{8, 2, 64}, {4, 4, 32}, {16, 2, 128}, {6, 2, 48}} {
			if c.hd%typ.BlockSize() != 0 {
				continue // a Q8_0 cache holds whole blocks per head
			}
			t.Run(fmt.Sprintf("%v/%d-%d-%d", typ, c.heads, c.kvHeads, c.hd), func(t *testing.T) {
				const ctx, nTok = 45, 3
				paged := newPagedKV(r, typ, ctx, c.kvHeads*c.hd, 16)
				single := paged
				q := randVec(r, nTok*c.heads*c.hd)
				pos := []int32{0, 17, 44}
				p := NewPool(2)
				defer p.Close()
				scale := float32(1 / math.Sqrt(float64(c.hd)))
				a := make([]float32, len(q))
				b := make([]float32, len(q))
				Attention(p, a, q, nTok, pos, []KVView{paged, paged, paged}, typ, c.heads, c.kvHeads, c.hd, scale, nil)
				one := oneByOne{single}
				Attention(p, b, q, nTok, pos, []KVView{one, one, one}, typ, c.heads, c.kvHeads, c.hd, scale, nil)
				for i := range a {
					if math.Abs(float64(a[i]-b[i])) > 1e-5 {
						t.Fatalf("%d: paged %v, row by row %v", i, a[i], b[i])
					}
				}
			})
		}
	}
}

// oneByOne hides a view's runs.
type oneByOne struct{ v KVView }

func (o oneByOne) K(p int) []byte { return o.v.K(p) }
func (o oneByOne) V(p int) []byte { return o.v.V(p) }

// TestAttentionHelpers: the vector softmax sum, float16 rounding and lane
// reduction give their Go loops' bits (where this CPU has them).
func TestAttentionHelpers(t *testing.T) {
	r := rand.New(rand.NewPCG(65, 66))
	x := make([]float32, 16*37)
	for i := range x {
		x[i] = float32(r.ExpFloat64())
	}
	if got, ok := sumGroups16Asm(x); ok {
		var want float64
		for i := 0; i < len(x); i += 16 {
			want += float64(reduce16((*[16]float32)(x[i:])))
		}
		if got != want {
			t.Errorf("sumGroups16: %v, Go %v", got, want)
		}
	}
	y := append([]float32(nil), x[:101]...)
	for i := roundF16Asm(y); i < len(y); i++ {
		y[i] = quant.F16ToF32(quant.F32ToF16(y[i]))
	}
	for i, v := range y {
		if w := quant.F16ToF32(quant.F32ToF16(x[i])); v != w {
			t.Fatalf("roundF16 %d: %v, want %v", i, v, w)
		}
	}
	for _, c := range []struct{ group, hd int }{{1, 64}, {3, 128}, {2, 256}} {
		lanes := make([]float32, c.group*16*c.hd)
		for i := range lanes {
			lanes[i] = float32(r.NormFloat64())
		}
		got, want := make([]float32, c.group*c.hd), make([]float32, c.group*c.hd)
		if !reduceLanesAsm(got, lanes, c.group, c.hd) {
			continue
		}
		for g := range c.group {
			for d := range c.hd {
				var a [16]float32
				for l := range a {
					a[l] = lanes[(g*16+l)*c.hd+d]
				}
				want[g*c.hd+d] = reduce16(&a)
			}
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("reduceLanes g%d hd%d [%d]: %v, Go %v", c.group, c.hd, i, got[i], want[i])
			}
		}
	}
}
