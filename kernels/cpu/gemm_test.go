package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"unsafe"

	"github.com/hearth-llm/hearth/quant"
)

// gemmX lays out the activation rows of ntok tokens as the tile kernels of g
// read them (prepared, or the quantized rows back to back), ending at an
// unreadable page; it returns the buffer and the token stride.
func gemmX(t *testing.T, g *gemmImpl, typ quant.Type, nb int, xs [][]byte) ([]byte, int) {
	t.Helper()
	if g.prep == nil {
		stride := len(xs[0])
		b := make([]byte, 0, stride*len(xs))
		for _, x := range xs {
			b = append(b, x...)
		}
		return guarded(t, b), stride
	}
	stride := g.prepBytes(nb)
	b := make([]byte, stride*len(xs)+64)
	p := align64(b)
	off := int(uintptr(unsafe.Pointer(p)) - uintptr(unsafe.Pointer(&b[0])))
	b = b[off : off+stride*len(xs)]
	for i, x := range xs {
		g.prep(&x[0], nb, &b[i*stride])
	}
	// guarded keeps the length: a multiple of 64, so the copy ends at a page
	// boundary and stays 64-byte aligned.
	return guarded(t, b), stride
}

// TestGemmTiles checks every tile kernel of every variant against the
// variant's one-row kernel, bit for bit, for each (row, token), and that
// one against quant.VecDot to TestDotVariants' tolerance (Q8_0: bit for
// bit, ggml's order): row lengths
// with partial groups and several Dot chunks, every tile width at every
// token offset, the three kinds of data, rows and activations ending at an
// unreadable page, guard values around the outputs; and that splitting a
// row into chunks (the gemmLoad/gemmFinish flags) changes nothing.
func TestGemmTiles(t *testing.T) {
	r := rand.New(rand.NewPCG(31, 32))
	const ntok = 19
	for _, typ := range dotTypes {
		for _, v := range variants(typ) {
			if v.gemm == nil {
				continue
			}
			g := v.gemm
			t.Run(fmt.Sprintf("%v/%s", typ, v.name), func(t *testing.T) {
				bs := typ.BlockSize()
				nbs := []int{1, 2, 15, 16, 17, 33, 64, 150}
				if bs == 256 {
					nbs = []int{1, 2, 3, 5, 8}
				}
				for _, nb := range nbs {
					for mode := range numModes {
						n := nb * bs
						w := guarded(t, makeRow(r, typ, n, mode, mode == modeExtreme))
						xs := make([][]byte, ntok)
						want := make([]float32, ntok)
						for i := range xs {
							xs[i] = makeRow(r, typ.VecDotType(), n, mode, i%2 == 1)
							want[i] = v.dot(n, w, xs[i])
							// The reference, to TestDotVariants' tolerance.
							ref := float64(quant.VecDot(typ, n, w, xs[i]))
							if d := math.Abs(float64(want[i]) - ref); d > 1e-5*dotMag(typ, n, w, xs[i]) || math.IsNaN(float64(want[i])) {
								t.Fatalf("nb=%d %v token %d: %v, quant.VecDot %v", nb, mode, i, want[i], ref)
							}
							// Q8_0 sums in ggml's order at every level:
							// the bits of quant.VecDot.
							if typ == quant.Q8_0 && !q8Lanes && want[i] != float32(ref) {
								t.Fatalf("nb=%d %v token %d: %v, quant.VecDot %v (not bit for bit)", nb, mode, i, want[i], ref)
							}
						}
						X, stride := gemmX(t, g, typ, nb, xs)
						wk := kernelWeights(t, g, w)
						for _, k := range g.tiles {
							for t0 := 0; t0+k.t <= ntok; t0++ {
								X := pairedAt(t, g, nb, X, stride, t0, k.t)
								// dst: the k.t results ldd apart, guards between.
								const ldd = 3
								out := make([]float32, ldd*k.t+2)
								for i := range out {
									out[i] = 12345
								}
								k.fn(&wk[0], nb, &X[t0*stride], stride, nil, &out[1], 4*ldd, gemmFinish)
								for i := range out {
									if (i-1)%ldd == 0 && i >= 1 && i < 1+ldd*k.t {
										tok := t0 + (i-1)/ldd
										if math.Float32bits(out[i]) != math.Float32bits(want[tok]) {
											t.Fatalf("nb=%d %v T=%d token %d: tile %v, one-row %v", nb, mode, k.t, tok, out[i], want[tok])
										}
									} else if out[i] != 12345 {
										t.Fatalf("nb=%d %v T=%d at %d: tile wrote outside its results", nb, mode, k.t, t0)
									}
								}
								if t0 == 0 {
									checkChunked(t, g, typ, k, wk, X, stride, nb, want)
								}
							}
						}
					}
				}
			})
		}
	}
}

// pairedAt returns X, or where g pairs tokens (gemmImpl.pair) a copy in
// which the T tokens from t0 on are paired as MatMul pairs them from 0.
func pairedAt(t testing.TB, g *gemmImpl, nb int, X []byte, stride, t0, T int) []byte {
	if g.pair == nil || T < 2 {
		return X
	}
	c := append([]byte(nil), X...)
	for i := t0; i+1 < t0+T; i += 2 {
		g.pair(&c[i*stride], &c[(i+1)*stride], nb)
	}
	return guarded(t, c)
}

// kernelWeights returns w as g's kernels read it: repacked where g says so
// (guarded again, ending at an unreadable page).
func kernelWeights(t testing.TB, g *gemmImpl, w []byte) []byte {
	if g.repack == nil {
		return w
	}
	p := make([]byte, len(w))
	g.repack(p, w)
	return guarded(t, p)
}

// checkChunked runs tile k over the first k.t tokens in chunks of whole
// groups (or blocks), passing the accumulators between calls.
func checkChunked(t *testing.T, g *gemmImpl, typ quant.Type, k tileT, w, X []byte, stride, nb int, want []float32) {
	t.Helper()
	step := 1
	if g.prep != nil {
		step = g.group
	}
	if nb <= step {
		return
	}
	wb, xb := typ.BlockBytes(), typ.VecDotType().BlockBytes()
	acc := make([]float32, 16*k.t)
	out := make([]float32, k.t)
	for b0, i := 0, 0; b0 < nb; i++ {
		c := min(nb-b0, step*(1+i%2)) // chunks of one and two groups
		xo := b0 * xb
		if g.prep != nil {
			xo = b0 / g.group * g.groupBytes
		}
		flags := 0
		if b0 > 0 {
			flags |= gemmLoad
		}
		if b0+c == nb {
			flags |= gemmFinish
		}
		k.fn(&w[b0*wb], c, &X[xo], stride, &acc[0], &out[0], 4, flags)
		b0 += c
	}
	for i := range out {
		if math.Float32bits(out[i]) != math.Float32bits(want[i]) {
			t.Fatalf("nb=%d T=%d chunked: token %d = %v, one-row %v", nb, k.t, i, out[i], want[i])
		}
	}
}

// TestMatMulChunked checks that cutting rows into chunks (k-blocking, the
// smallest chunks here) gives MatMul the same bits, for every variant with
// tiles, with 1 and 2 threads.
func TestMatMulChunked(t *testing.T) {
	r := rand.New(rand.NewPCG(41, 42))
	const rows, n = 37, 21
	defer func(c int) { gemmChunkBytes = c }(gemmChunkBytes)
	for _, typ := range dotTypes {
		cols := 83 * 32 // a partial group after five of sixteen
		if typ.BlockSize() == 256 {
			cols = 7 * 256
		}
		m := quantizeMatrix(t, r, typ, rows, cols)
		x := randVec(r, n*cols)
		for _, v := range variants(typ) {
			if v.gemm == nil {
				continue
			}
			mm := *m
			mm.dot, mm.dot4, mm.gemm = v.dot, v.dot4, v.gemm
			mm.quant = quantVariantAt(typ.VecDotType(), v.name)
			for _, threads := range []int{1, 2} {
				p := NewPool(threads)
				var s Scratch
				gemmChunkBytes = 1 << 30 // no chunks
				whole := make([]float32, n*rows)
				MatMul(p, &s, whole, &mm, x, n)
				gemmChunkBytes = 1
				chunked := make([]float32, n*rows)
				MatMul(p, &s, chunked, &mm, x, n)
				p.Close()
				for i := range whole {
					if math.Float32bits(whole[i]) != math.Float32bits(chunked[i]) {
						t.Fatalf("%v/%s/%d threads: token %d row %d: %v whole, %v chunked", typ, v.name, threads, i/rows, i%rows, whole[i], chunked[i])
					}
				}
			}
		}
	}
}

// TestMatMulGrouped checks that MatMulGrouped gives every matrix MatMul's
// bits when each matrix has its own activations and token count (zero
// included), some sharing theirs (an expert's gate and up), across types
// and column counts, with 1 and 2 threads.
func TestMatMulGrouped(t *testing.T) {
	r := rand.New(rand.NewPCG(53, 54))
	const cols = 2 * 256
	ms := []*Matrix{
		quantizeMatrix(t, r, quant.Q4_K, 24, cols), quantizeMatrix(t, r, quant.Q4_K, 24, cols),
		quantizeMatrix(t, r, quant.Q6_K, 17, cols), quantizeMatrix(t, r, quant.Q4_0, 9, 2*cols),
		quantizeMatrix(t, r, quant.Q8_0, 5, cols),
	}
	for _, threads := range []int{1, 2} {
		for _, ns := range [][]int{{1, 1, 1, 1, 1}, {3, 3, 0, 5, 17}, {0, 0, 2, 1, 0}, {16, 16, 9, 1, 2}} {
			p := NewPool(threads)
			xs := make([][]float32, len(ms))
			shared := randVec(r, ns[0]*cols) // matrices 0 and 1 share it
			for i, m := range ms {
				xs[i] = randVec(r, ns[i]*m.Cols)
			}
			xs[0], xs[1] = shared, shared[:ns[1]*cols]
			got := make([][]float32, len(ms))
			for i, m := range ms {
				got[i] = make([]float32, ns[i]*m.Rows+1)
				got[i][ns[i]*m.Rows] = 12345 // guard
			}
			var s, s1 Scratch
			MatMulGrouped(p, &s, got, ms, xs, ns)
			for i, m := range ms {
				want := make([]float32, ns[i]*m.Rows)
				if ns[i] > 0 {
					MatMul(p, &s1, want, m, xs[i], ns[i])
				}
				for k := range want {
					if math.Float32bits(want[k]) != math.Float32bits(got[i][k]) {
						t.Fatalf("ns %v threads %d matrix %d (%v): [%d] %v, MatMul %v", ns, threads, i, m.Type, k, got[i][k], want[k])
					}
				}
				if got[i][ns[i]*m.Rows] != 12345 {
					t.Fatalf("ns %v matrix %d: wrote past the end", ns, i)
				}
			}
			p.Close()
		}
	}
}

// TestMatMulMulti checks that MatMulMulti gives every matrix MatMul's bits,
// for sets of matrices fused into one loop (several types, shared and
// separate activations, odd row counts) and for sets it falls back on
// (F32, a type without tiles, different column counts), with 1 and 2
// threads and token counts through the decode, tile and tail paths.
func TestMatMulMulti(t *testing.T) {
	r := rand.New(rand.NewPCG(51, 52))
	const cols = 3 * 256
	mat := func(typ quant.Type, rows, c int) *Matrix { return quantizeMatrix(t, r, typ, rows, c) }
	sets := [][]*Matrix{
		{mat(quant.Q4_K, 37, cols), mat(quant.Q4_K, 9, cols), mat(quant.Q6_K, 13, cols)},
		{mat(quant.Q4_0, 21, cols), mat(quant.Q4_0, 5, cols), mat(quant.Q4_0, 6, cols)},
		{mat(quant.Q8_0, 19, cols), mat(quant.Q6_K, 4, cols)},
		{mat(quant.Q4_K, 11, cols)},
		{mat(quant.Q5_K, 7, cols), mat(quant.Q4_K, 7, cols)},
		{mat(quant.F32, 3, cols), mat(quant.Q4_0, 5, cols)},
		{mat(quant.Q4_0, 5, cols), mat(quant.Q4_0, 5, 2*cols)},
	}
	for si, ms := range sets {
		maxCols := 0
		for _, m := range ms {
			maxCols = max(maxCols, m.Cols)
		}
		for _, threads := range []int{1, 2} {
			for _, n := range []int{1, 2, 3, 8, 17} {
				p := NewPool(threads)
				x := randVec(r, n*maxCols)
				var s, s1 Scratch
				got := make([][]float32, len(ms))
				for i, m := range ms {
					got[i] = make([]float32, n*m.Rows+1)
					got[i][n*m.Rows] = 12345 // guard
				}
				MatMulMulti(p, &s, got, ms, x, n)
				for i, m := range ms {
					want := make([]float32, n*m.Rows)
					MatMul(p, &s1, want, m, x, n)
					for k := range want {
						if math.Float32bits(want[k]) != math.Float32bits(got[i][k]) {
							t.Fatalf("set %d matrix %d (%v) n=%d threads=%d: [%d] %v, MatMul %v", si, i, m.Type, n, threads, k, got[i][k], want[k])
						}
					}
					if got[i][n*m.Rows] != 12345 {
						t.Fatalf("set %d matrix %d: wrote past the end", si, i)
					}
				}
				p.Close()
			}
		}
	}
}
