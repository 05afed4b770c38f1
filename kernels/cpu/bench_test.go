package cpu

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/hearth-llm/hearth/quant"
)

var sink float32

// benchTypes are the weight types of the benchmark models first (Q4_0,
// Q4_K_M = Q4_K + Q6_K, Q8_0), then the rest.
var benchTypes = []quant.Type{quant.Q4_0, quant.Q4_K, quant.Q6_K, quant.Q8_0, quant.Q5_K, quant.Q3_K, quant.Q2_K,
	quant.Q4_1, quant.Q5_0, quant.Q5_1, quant.IQ4_NL, quant.IQ4_XS, quant.MXFP4, quant.F16, quant.BF16}

// BenchmarkDot/<type>/<level> times one 4096-element row against one
// activation row, both in L1/L2: the kernel's compute throughput. SetBytes
// counts the weight bytes, so MB/s is the weight bandwidth one core could
// feed.
func BenchmarkDot(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 4096
	for _, typ := range benchTypes {
		w := makeRow(r, typ, n, modeQuantized, false)
		x := makeRow(r, typ.VecDotType(), n, modeQuantized, false)
		for _, v := range variants(typ) {
			b.Run(fmt.Sprintf("%v/%s", typ, v.name), func(b *testing.B) {
				b.SetBytes(int64(len(w)))
				for b.Loop() {
					sink = v.dot(n, w, x)
				}
			})
		}
	}
}

// BenchmarkDot4/<type>/<level> times the four-row kernel on four rows;
// SetBytes counts the four rows' weight bytes.
func BenchmarkDot4(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const n = 4096
	for _, typ := range benchTypes {
		w := makeRow(r, typ, 4*n, modeQuantized, false)
		x := makeRow(r, typ.VecDotType(), n, modeQuantized, false)
		rb := len(w) / 4
		for _, v := range variants(typ) {
			b.Run(fmt.Sprintf("%v/%s", typ, v.name), func(b *testing.B) {
				var out [4]float32
				b.SetBytes(int64(len(w)))
				for b.Loop() {
					v.dot4(n, w, rb, x, &out)
				}
			})
		}
	}
}

// BenchmarkQuantizeAct/<type>/<level> times quantizing one 4096-float
// activation row; SetBytes counts the float32 input.
func BenchmarkQuantizeAct(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	x := randVec(r, 4096)
	for _, typ := range []quant.Type{quant.Q8_0, quant.Q8_1, quant.Q8_K} {
		rb, _ := typ.RowBytes(len(x))
		dst := make([]byte, rb)
		for _, v := range quantVariants(typ) {
			b.Run(fmt.Sprintf("%v/%s", typ, v.name), func(b *testing.B) {
				b.SetBytes(int64(4 * len(x)))
				for b.Loop() {
					v.fn(x, dst)
				}
			})
		}
	}
}

// BenchmarkMatMul/<type>/2048x2048/n<tokens>/<level> times the whole
// product on all CPUs, activation quantization included (n1: decode; n32,
// n512: prefill, through the tile kernels where the type has them; n512
// not for generic, seconds per call). SetBytes counts the weight bytes
// (read once per call), so MB/s against the machine's read bandwidth is the
// roofline for n1; the GFLOP/s metric (2·rows·cols·n per call) is the
// compute rate that matters for n32 and n512.
func BenchmarkMatMul(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 2))
	const rows, cols = 2048, 2048
	for _, typ := range append([]quant.Type{quant.F32}, benchTypes...) {
		m := quantizeMatrix(b, r, typ, rows, cols)
		for _, n := range []int{1, 8, 32, 512} {
			x := randVec(r, n*cols)
			dst := make([]float32, n*rows)
			vs := variants(typ)
			if typ == quant.F32 {
				vs = []namedDot{{name: "generic"}}
			}
			for _, v := range vs {
				if (n > 32 || n == 8) && v.name == "generic" {
					continue // seconds per call
				}
				b.Run(fmt.Sprintf("%v/%dx%d/n%d/%s", typ, rows, cols, n, v.name), func(b *testing.B) {
					p := NewPool(0)
					defer p.Close()
					mm := *m
					if typ != quant.F32 {
						mm.dot, mm.dot4, mm.gemm = v.dot, v.dot4, v.gemm
						mm.quant = quantVariantAt(typ.VecDotType(), v.name)
					}
					var s Scratch
					b.SetBytes(int64(len(m.Data)))
					for b.Loop() {
						MatMul(p, &s, dst, &mm, x, n)
					}
					b.ReportMetric(2*float64(rows*cols*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
				})
			}
		}
	}
}

// quantVariantAt is the best activation quantizer at or below the named
// level.
func quantVariantAt(t quant.Type, name string) func(x []float32, dst []byte) {
	var fn func(x []float32, dst []byte)
	for _, v := range quantVariants(t) {
		fn = v.fn
		if v.name == name {
			break
		}
	}
	return fn
}

// BenchmarkMemBandwidth measures this machine's memory bandwidth on a
// 1 GiB buffer with 1 and GOMAXPROCS threads: read (bytes.IndexByte for a
// byte that is absent, which the runtime does with 256-bit loads: a pure
// streaming read, what a memory-bound matrix-vector product does) and copy
// (memmove; MB/s counts bytes read plus bytes written). The decode roofline
// in NOTES.md divides the bytes a token reads by the read figure.
func BenchmarkMemBandwidth(b *testing.B) {
	const size = 1 << 30
	buf := make([]byte, size)
	for i := range buf {
		buf[i] = byte(i % 251)
	}
	buf[len(buf)-1] = 0
	dst := make([]byte, size/2)
	for _, threads := range []int{1, runtime.GOMAXPROCS(0)} {
		b.Run(fmt.Sprintf("read/threads%d", threads), func(b *testing.B) {
			b.SetBytes(size)
			for b.Loop() {
				var wg sync.WaitGroup
				chunk := len(buf) / threads
				for t := range threads {
					wg.Add(1)
					go func() {
						defer wg.Done()
						if bytes.IndexByte(buf[t*chunk:(t+1)*chunk], 255) >= 0 {
							panic("absent byte found")
						}
					}()
				}
				wg.Wait()
			}
		})
		b.Run(fmt.Sprintf("copy/threads%d", threads), func(b *testing.B) {
			src := buf[:len(dst)]
			b.SetBytes(2 * int64(len(dst)))
			for b.Loop() {
				var wg sync.WaitGroup
				chunk := len(dst) / threads
				for t := range threads {
					wg.Add(1)
					go func() {
						defer wg.Done()
						copy(dst[t*chunk:(t+1)*chunk], src[t*chunk:(t+1)*chunk])
					}()
				}
				wg.Wait()
			}
		})
	}
}

// BenchmarkMatVecDRAM/<type>/<rows>x<cols>/<level> is one token against a
// matrix larger than this machine's last-level cache (about 300 MB of
// weights for Q4_0), so that it measures the memory-bound decode case the
// 2048×2048 benchmarks (cache-resident) do not. The weights are random
// bytes with finite scales (speed does not depend on the values).
func BenchmarkMatVecDRAM(b *testing.B) {
	if testing.Short() {
		b.Skip("allocates about 300-600 MB")
	}
	r := rand.New(rand.NewPCG(5, 6))
	const rows, cols = 65536, 8192
	for _, typ := range []quant.Type{quant.Q4_0, quant.Q4_K, quant.Q8_0} {
		rb, _ := typ.RowBytes(cols)
		data := make([]byte, rows*rb)
		for i := 0; i+8 <= len(data); i += 8 {
			binary.LittleEndian.PutUint64(data[i:], r.Uint64())
		}
		bb := typ.BlockBytes()
		f := scaleFields[typ]
		for o := 0; o < len(data); o += bb {
			for _, p := range append(append([]int(nil), f.d...), f.min...) {
				putF16(data[o+p:], 0.01)
			}
		}
		m, err := NewMatrix(typ, rows, cols, data)
		if err != nil {
			b.Fatal(err)
		}
		x := randVec(r, cols)
		dst := make([]float32, rows)
		for _, v := range variants(typ) {
			if v.name == "generic" {
				continue
			}
			b.Run(fmt.Sprintf("%v/%dx%d/%s", typ, rows, cols, v.name), func(b *testing.B) {
				p := NewPool(0)
				defer p.Close()
				mm := *m
				mm.dot, mm.dot4, mm.gemm = v.dot, v.dot4, v.gemm
				mm.quant = quantVariantAt(typ.VecDotType(), v.name)
				var s Scratch
				b.SetBytes(int64(len(data)))
				for b.Loop() {
					MatMul(p, &s, dst, &mm, x, 1)
				}
			})
		}
	}
}

// BenchmarkMatMulShapes/<type>/<rows>x<cols>/n<tokens> times prefill-sized
// products with the matrices of llama-1b (Wq/Wo, Wk/Wv, gate/up, down) at
// the active level, all CPUs.
func BenchmarkMatMulShapes(b *testing.B) {
	r := rand.New(rand.NewPCG(7, 8))
	for _, typ := range []quant.Type{quant.Q4_0, quant.Q4_K, quant.Q6_K, quant.Q8_0} {
		for _, sh := range [][2]int{{2048, 2048}, {512, 2048}, {8192, 2048}, {2048, 8192}} {
			rows, cols := sh[0], sh[1]
			m := quantizeMatrix(b, r, typ, rows, cols)
			const n = 512
			x := randVec(r, n*cols)
			dst := make([]float32, n*rows)
			b.Run(fmt.Sprintf("%v/%dx%d/n%d", typ, rows, cols, n), func(b *testing.B) {
				p := NewPool(0)
				defer p.Close()
				var s Scratch
				for b.Loop() {
					MatMul(p, &s, dst, m, x, n)
				}
				b.ReportMetric(2*float64(rows*cols*n)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}

// decodeMatrix is one weight matrix of a decode step.
type decodeMatrix struct {
	name string
	m    *Matrix
}

// decodeModel returns the matrices a llama-1b token multiplies by, in
// forward order, for a model file type (q4_0, q4_k_m, q8_0) as hearth gen
// lays them out: random quants with small finite scales (speed does not
// depend on the values), 16 layers of Wq, Wk, Wv, Wo, gate, up, down, then
// the tied output matrix (Q6_K, Q8_0 for q8_0). Q4_K_M puts Wv and down in
// Q6_K in llama.cpp's "more bits" layers (0, 1, 4, 7, 10, 13, 14, 15).
func decodeModel(b *testing.B, file string) []decodeMatrix {
	const layers, embd, kv, ff, vocab = 16, 2048, 512, 8192, 32000
	r := rand.New(rand.NewPCG(9, 10))
	mk := func(name string, typ quant.Type, rows, cols int) decodeMatrix {
		rb, _ := typ.RowBytes(cols)
		data := make([]byte, rows*rb)
		for i := 0; i+8 <= len(data); i += 8 {
			binary.LittleEndian.PutUint64(data[i:], r.Uint64())
		}
		f := scaleFields[typ]
		fields := append(append([]int(nil), f.d...), f.min...)
		for o := 0; o < len(data); o += typ.BlockBytes() {
			for _, p := range fields {
				putF16(data[o+p:], 0.01)
			}
		}
		m, err := NewMatrix(typ, rows, cols, data)
		if err != nil {
			b.Fatal(err)
		}
		return decodeMatrix{name, m}
	}
	var out []decodeMatrix
	for l := range layers {
		base, more, outT := quant.Q4_0, quant.Q4_0, quant.Q6_K
		switch file {
		case "q4_k_m":
			base, more = quant.Q4_K, quant.Q4_K
			if l < layers/8 || l >= 7*layers/8 || (l-layers/8)%3 == 2 {
				more = quant.Q6_K
			}
		case "q8_0":
			base, more, outT = quant.Q8_0, quant.Q8_0, quant.Q8_0
		}
		out = append(out, mk("q", base, embd, embd), mk("k", base, kv, embd), mk("v", more, kv, embd),
			mk("o", base, embd, embd), mk("gate", base, ff, embd), mk("up", base, ff, embd),
			mk("down", more, embd, ff))
		if l == layers-1 {
			out = append(out, mk("output", outT, vocab, embd))
		}
	}
	return out
}

// BenchmarkDecode/<file>/x<seqs>/<level> runs the matrix products of one
// llama-1b decode step (decodeModel: 584-1,104 MB of weights, more than
// this machine's L3 share, so it streams from DRAM as tg does) for one
// sequence (x1: matrix-vector products) or eight decoded together (x8, as
// hearth bench --parallel 8), on all CPUs at one kernel level, and reports
// tokens/s (all sequences), the weight bandwidth (MB/s) and, per weight
// type, its GB/s and its share of the time. The remaining work of a token
// (attention, norms, SwiGLU: 5-10% for one sequence) is not included.
func BenchmarkDecode(b *testing.B) {
	if testing.Short() {
		b.Skip("allocates up to 1.1 GB")
	}
	for _, file := range []string{"q4_0", "q4_k_m", "q8_0"} {
		ms := decodeModel(b, file)
		var total int64
		for _, d := range ms {
			total += int64(len(d.m.Data))
		}
		for _, lv := range []string{"avx2", "avx512vnni"} {
			for _, seqs := range []int{1, 8} {
				b.Run(fmt.Sprintf("%s/x%d/%s", file, seqs, lv), func(b *testing.B) {
					p := NewPool(0)
					defer p.Close()
					mats := make([]Matrix, len(ms))
					xs := make([][]float32, len(ms))
					r := rand.New(rand.NewPCG(1, 1))
					for i, d := range ms {
						mats[i] = *d.m
						v := variantAt(d.m.Type, lv)
						mats[i].dot, mats[i].dot4, mats[i].gemm = v.dot, v.dot4, v.gemm
						mats[i].quant = quantVariantAt(d.m.Type.VecDotType(), lv)
						xs[i] = randVec(r, seqs*d.m.Cols)
					}
					dst := make([]float32, seqs*32000)
					perType := map[quant.Type]time.Duration{}
					bytesType := map[quant.Type]int64{}
					var s Scratch
					b.SetBytes(total)
					for b.Loop() {
						for i := range mats {
							t0 := time.Now()
							MatMul(p, &s, dst, &mats[i], xs[i], seqs)
							perType[mats[i].Type] += time.Since(t0)
							bytesType[mats[i].Type] += int64(len(mats[i].Data))
						}
					}
					b.ReportMetric(float64(seqs*b.N)/b.Elapsed().Seconds(), "tok/s")
					var sum time.Duration
					for _, d := range perType {
						sum += d
					}
					for t, d := range perType {
						b.ReportMetric(float64(bytesType[t])/d.Seconds()/1e9, t.String()+"-GB/s")
						b.ReportMetric(100*float64(d)/float64(sum), t.String()+"-%")
					}
				})
			}
		}
	}
}

// variantAt is the variant of t at the named level, or the best below it.
func variantAt(t quant.Type, name string) namedDot {
	var v namedDot
	for _, c := range variants(t) {
		v = c
		if c.name == name {
			break
		}
	}
	return v
}

// BenchmarkMatVecL2/<type>/<level> is one token against a 512×2048 matrix
// (295-557 KB: it stays in L2 between iterations), the decode path of
// MatMul at each level with activation quantization and preparation
// included: the kernels' compute rate, ns per row and GB/s of weights.
// Run it with -cpu 1 and compare minimums over -count.
func BenchmarkMatVecL2(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 4))
	const rows, cols = 512, 2048
	for _, typ := range []quant.Type{quant.Q4_0, quant.Q4_K, quant.Q6_K, quant.Q8_0} {
		m := quantizeMatrix(b, r, typ, rows, cols)
		x := randVec(r, cols)
		dst := make([]float32, rows)
		for _, v := range variants(typ) {
			if v.name == "generic" {
				continue
			}
			b.Run(fmt.Sprintf("%v/%s", typ, v.name), func(b *testing.B) {
				p := NewPool(0)
				defer p.Close()
				mm := *m
				mm.dot, mm.dot4, mm.gemm = v.dot, v.dot4, v.gemm
				mm.quant = quantVariantAt(typ.VecDotType(), v.name)
				var s Scratch
				b.SetBytes(int64(len(m.Data)))
				for b.Loop() {
					MatMul(p, &s, dst, &mm, x, 1)
				}
				b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*rows), "ns/row")
			})
		}
	}
}

// BenchmarkTile/<type>/T<n>/<level> times one tile kernel alone: 128 rows
// of 2048 columns (74-139 KB, in L2) against n tokens prepared once, on
// one core. MB/s counts the weight bytes: the rate at which the kernel
// consumes weights for n tokens, to set against the memory read rate
// (about 11.5 GB/s per core) in batched decode. Compare minimums of
// -count runs with -cpu 1.
func BenchmarkTile(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 6))
	const rows, cols = 128, 2048
	for _, typ := range []quant.Type{quant.Q4_0, quant.Q4_K, quant.Q6_K, quant.Q8_0} {
		m := quantizeMatrix(b, r, typ, rows, cols)
		vt := typ.VecDotType()
		xrb, _ := vt.RowBytes(cols)
		nb := cols / typ.BlockSize()
		for _, v := range variants(typ) {
			if v.gemm == nil {
				continue
			}
			g := v.gemm
			for _, k := range g.tiles {
				if k.t != 16 && k.t != 8 && k.t != 1 {
					continue
				}
				b.Run(fmt.Sprintf("%v/T%d/%s", typ, k.t, v.name), func(b *testing.B) {
					quantize := quantVariantAt(vt, v.name)
					xq := make([]byte, k.t*xrb)
					x := randVec(r, k.t*cols)
					for t := range k.t {
						quantize(x[t*cols:(t+1)*cols], xq[t*xrb:(t+1)*xrb])
					}
					xb, xs := xq, xrb
					if g.prep != nil {
						xs = g.prepBytes(nb)
						buf := make([]byte, k.t*xs+64)
						p := align64(buf)
						off := int(uintptr(unsafe.Pointer(p)) - uintptr(unsafe.Pointer(&buf[0])))
						xb = buf[off : off+k.t*xs]
						for t := range k.t {
							g.prep(&xq[t*xrb], nb, &xb[t*xs])
						}
						xb = pairedAt(b, g, nb, xb, xs, 0, k.t)
					}
					dst := make([]float32, k.t*rows)
					wd := kernelWeights(b, g, m.Data)
					b.SetBytes(int64(len(m.Data)))
					for b.Loop() {
						for row := range rows {
							k.fn(&wd[row*m.RowBytes], nb, &xb[0], xs, nil, &dst[row], rows*4, gemmFinish)
						}
					}
				})
			}
			if a := g.amx; a != nil {
				// The AMX kernel on the same rows and 16 tokens, its
				// layouts made beforehand (amxLoop makes them once per
				// product, for all token groups).
				b.Run(fmt.Sprintf("%v/T16/%s-tiles", typ, v.name), func(b *testing.B) {
					quantize := quantVariantAt(vt, v.name)
					xq := make([]byte, 16*xrb)
					x := randVec(r, 16*cols)
					for t := range 16 {
						quantize(x[t*cols:(t+1)*cols], xq[t*xrb:(t+1)*xrb])
					}
					xa := aligned64(make([]byte, nb*a.xBytes+64))
					a.acts(xa, xq, xrb, nb)
					wd := kernelWeights(b, g, m.Data)
					gw := nb * a.wBytes
					wa := aligned64(make([]byte, rows/16*gw+64))
					for gr := range rows / 16 {
						a.unpack(wa[gr*gw:], wd[16*gr*m.RowBytes:], m.RowBytes, nb)
					}
					scr := align64(make([]byte, amxScratch+64))
					dst := make([]float32, 16*rows)
					b.SetBytes(int64(len(m.Data)))
					for b.Loop() {
						for gr := range rows / 16 {
							a.kernel(&wd[16*gr*m.RowBytes], m.RowBytes, &wa[gr*gw], &xa[0], nb, scr, &dst[16*gr], rows*4)
						}
					}
				})
			}
		}
	}
}
