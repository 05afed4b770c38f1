//go:build amd64 && !purego

package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/hearth-llm/hearth/quant"
)

// skipNoAMX skips a test where the CPU or the operating system gives no
// AMX (the amx level is then never chosen).
func skipNoAMX(t testing.TB) {
	t.Helper()
	if !hasAMX {
		t.Skip("no AMX here: needs AMX-TILE and AMX-INT8 (Sapphire Rapids or later) and Linux 5.16+ granting XTILEDATA")
	}
}

// TestAMXDPBUSD runs one TDPBUSD through amxDPBUSD on random and extreme
// bytes (255 × −128 in every product) and checks it against Go's integer
// arithmetic: the encodings, the operand roles (unsigned A, signed B) and
// the OS's tile state.
func TestAMXDPBUSD(t *testing.T) {
	skipNoAMX(t)
	r := rand.New(rand.NewPCG(7, 8))
	for round := range 4 {
		var a, b [16 * 64]byte
		var c, want [16 * 16]int32
		for i := range a {
			a[i], b[i] = byte(r.Uint32()), byte(r.Uint32())
			if round == 1 {
				a[i], b[i] = 255, 0x80
			}
		}
		for i := range c {
			c[i] = int32(r.Uint32() >> 8)
			want[i] = c[i]
		}
		for m := range 16 {
			for n := range 16 {
				for k := range 64 {
					want[16*m+n] += int32(a[64*m+k]) * int32(int8(b[64*(k/4)+4*n+k%4]))
				}
			}
		}
		amxDPBUSD(&a[0], &b[0], &c[0])
		if c != want {
			t.Fatalf("round %d: TDPBUSD differs from Go's integer sums:\n got %v\nwant %v", round, c[:16], want[:16])
		}
	}
}

// TestMatMulAMX checks the amx level's products against the avx512
// level's, bit for bit, for every type with an AMX kernel: row counts with
// and without a partial group of 16, token counts with and without a
// partial token group, one and several super-blocks, 1 and 2 threads, rows
// blocked in several pieces (a matrix of more than amxBlockBytes), and the
// three kinds of data; and that the AMX path was taken.
func TestMatMulAMX(t *testing.T) {
	skipNoAMX(t)
	defer func(n int) { amxMinTokens = n }(amxMinTokens)
	amxMinTokens = 16
	r := rand.New(rand.NewPCG(51, 52))
	for _, typ := range dotTypes {
		var amx, ref namedDot
		for _, v := range variants(typ) {
			switch v.name {
			case "amx":
				amx = v
			case "avx512vnni":
				ref = v
			}
		}
		if amx.gemm == nil || amx.gemm.amx == nil {
			continue
		}
		for _, c := range []struct{ rows, cols, n int }{
			{16, 256, 16}, {37, 512, 70}, {48, 2048, 33}, {64, 7 * 256, 16}, {300, 8192, 40},
		} {
			m := quantizeMatrix(t, r, typ, c.rows, c.cols)
			x := randVec(r, c.n*c.cols)
			if c.rows == 16 {
				for i := range x {
					x[i] = float32(1-2*(i&1)) * 1e3 // extreme activations: ±127 after quantization
				}
			}
			for _, threads := range []int{1, 2} {
				p := NewPool(threads)
				out := func(v namedDot) []float32 {
					mm := *m
					mm.dot, mm.dot4, mm.gemm = v.dot, v.dot4, v.gemm
					mm.quant = quantVariantAt(typ.VecDotType(), v.name)
					var s Scratch
					dst := make([]float32, c.n*c.rows)
					MatMul(p, &s, dst, &mm, x, c.n)
					if v.gemm.amx != nil && s.xa == nil {
						t.Fatalf("%v: the AMX path was not taken", typ)
					}
					return dst
				}
				got, want := out(amx), out(ref)
				p.Close()
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						t.Fatalf("%v %dx%d n=%d %d threads: token %d row %d: amx %v, avx512 %v", typ, c.rows, c.cols, c.n, threads, i/c.rows, i%c.rows, got[i], want[i])
					}
				}
			}
		}
	}
}

// TestAMXPreemption repeats an AMX product on two goroutines while a third
// allocates (garbage collections: the runtime preempts running goroutines
// with signals, whose frames carry the tile state) and checks that every
// repetition gives the first one's bits.
func TestAMXPreemption(t *testing.T) {
	skipNoAMX(t)
	r := rand.New(rand.NewPCG(61, 62))
	const rows, cols, n = 64, 2048, 64
	m := quantizeMatrix(t, r, quant.Q4_K, rows, cols)
	if m.gemm == nil || m.gemm.amx == nil {
		t.Skip("Q4_K has no AMX kernel at the active level (HEARTH_CPU)")
	}
	x := randVec(r, n*cols)
	want := make([]float32, n*rows)
	p := NewPool(1)
	defer p.Close()
	var s Scratch
	MatMul(p, &s, want, m, x, n)
	stop := make(chan struct{})
	var sink [][]byte
	go func() {
		for {
			select {
			case <-stop:
				return
			default:
				sink = append(sink, make([]byte, 1<<16))
				if len(sink) > 256 {
					sink = sink[:0]
				}
			}
		}
	}()
	defer close(stop)
	errs := make(chan string, 2)
	deadline := time.Now().Add(500 * time.Millisecond)
	for range 2 {
		go func() {
			p := NewPool(1)
			defer p.Close()
			var s Scratch
			got := make([]float32, n*rows)
			for time.Now().Before(deadline) {
				MatMul(p, &s, got, m, x, n)
				for i := range got {
					if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
						errs <- fmt.Sprintf("element %d: %v, first run %v", i, got[i], want[i])
						return
					}
				}
			}
			errs <- ""
		}()
	}
	for range 2 {
		if e := <-errs; e != "" {
			t.Fatal(e)
		}
	}
}

// TestAMXUnpackQ4_K checks the assembly unpacking of Q4_K rows against the
// Go one, byte for byte, with rows ending at an unreadable page.
func TestAMXUnpackQ4_K(t *testing.T) {
	skipNoAMX(t)
	r := rand.New(rand.NewPCG(71, 72))
	for _, nb := range []int{1, 3, 8} {
		rb := nb*144 + 144 // rows with a gap between them
		w := make([]byte, 15*rb+nb*144)
		for i := range w {
			w[i] = byte(r.Uint32())
		}
		w = guarded(t, w)
		want := make([]byte, nb*5248)
		got := make([]byte, nb*5248)
		amxUnpackQ4_K(want, w, rb, nb)
		amxUnpackQ4_KAsm(got, w, rb, nb)
		for i := range want {
			if got[i] != want[i] {
				t.Fatalf("nb=%d: byte %d (block %d, offset %d): %#x, want %#x", nb, i, i/5248, i%5248, got[i], want[i])
			}
		}
	}
}
