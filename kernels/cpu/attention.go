package cpu

import (
	"unsafe"

	"github.com/hearth-llm/hearth/kernels/libmf"
	"github.com/hearth-llm/hearth/quant"
)

// KVView gives attention read access to one layer's cached keys and values:
// K(pos) and V(pos) return the row (nKVHeads × headDim values) stored for a
// position, in the cache's type: F16, or Q8_0 with each head a whole
// number of blocks. A paged cache looks the position up in its block table.
type KVView interface {
	K(pos int) []byte
	V(pos int) []byte
}

// KVTypes are the cache types Attention reads.
var KVTypes = []quant.Type{quant.F16, quant.Q8_0}

// Attention computes causal multi-head attention with grouped KV heads for
// nTok query rows. q is (nTok, nHead·headDim); query t attends to positions
// 0..pos[t] of kv[t] (tokens of different sequences read different caches),
// whose rows are of type kvType. out is (nTok, nHead·headDim).
//
// Over an F16 cache the arithmetic is ggml's non-flash path: q is rounded
// to f16 for Q·K, the scores are soft-maxed in f32 with the scale, and the
// probabilities are rounded to f16 for the weighted sum of V. Over a Q8_0
// cache q is quantized to Q8_0 for Q·K (ggml's vec-dot type for a Q8_0 K)
// and V rows are dequantized for the weighted sum.
//
// o, when not nil, changes which positions a query sees and how its
// scores become weights (sliding windows, soft-capping, sinks, encoders).
func Attention(p *Pool, out, q []float32, nTok int, pos []int32, kv []KVView, kvType quant.Type, nHead, nKVHead, headDim int, scale float32, o *AttnOpts) {
	group := nHead / nKVHead
	width := nHead * headDim
	maxPos := 0
	for t, ps := range pos[:nTok] {
		maxPos = max(maxPos, int(o.last(t, ps)))
	}
	dot := Dot(kvType)
	headBytes, err := kvType.RowBytes(headDim)
	if err != nil {
		panic(err) // the pool checked the head size against the type
	}
	// One work item is a token and a KV head: the group of query heads that
	// share it read each key and value row while it is in L1. At most two
	// ranges per thread: each range allocates its buffers.
	items := nTok * nKVHead
	f16 := kvType == quant.F16
	asm := f16 && attnF16Asm(headDim)
	p.Run(items, (items+2*p.Threads()-1)/(2*p.Threads()), func(s, e int) {
		qq := make([]byte, group*headBytes)
		qf := make([]float32, group*headDim)
		scores := make([]float32, group*(maxPos+1))
		vrow := make([]float32, headDim)
		var lanes []float32
		if f16 {
			lanes = make([]float32, group*16*headDim)
		}
		for i := s; i < e; i++ {
			t, kvh := i/nKVHead, i%nKVHead
			h0 := kvh * group
			for g := 0; g < group; g++ {
				qh := q[t*width+(h0+g)*headDim : t*width+(h0+g+1)*headDim]
				if f16 {
					ToF16(f16s(qq[g*headBytes:(g+1)*headBytes]), qh)
				} else {
					QuantizeAct(kvType, qh, qq[g*headBytes:(g+1)*headBytes])
				}
			}
			n, lo := int(o.last(t, pos[t]))+1, o.first(pos[t])
			view := kv[t]
			outG := out[t*width+h0*headDim : t*width+(h0+group)*headDim]
			if f16 {
				// The queries as float32 (their float16 values), then the
				// kernels over each run of consecutive cached rows.
				for j, h := range f16s(qq) {
					qf[j] = quant.F16ToF32(h)
				}
				for j := lo; j < n; {
					stride, c := kvRun(view, j, n)
					if asm {
						qkF16Asm(qf, group, headDim, &view.K(j)[kvh*headBytes], stride, c, scores[j:], n)
					} else {
						qkF16Generic(qf, group, headDim, view.K(j)[kvh*headBytes:], stride, c, scores[j:], n)
					}
					j += c
				}
			} else {
				for j := lo; j < n; j++ {
					k := view.K(j)[kvh*headBytes : (kvh+1)*headBytes]
					for g := 0; g < group; g++ {
						scores[g*n+j] = dot(headDim, k, qq[g*headBytes:(g+1)*headBytes])
					}
				}
			}
			for g := 0; g < group; g++ {
				sc := scores[g*n+lo : (g+1)*n]
				o.softmax(sc, lo, scale, h0+g)
				if f16 {
					// ggml rounds the probabilities to f16 for the product with V.
					for j := roundF16Asm(sc); j < len(sc); j++ {
						sc[j] = quant.F16ToF32(quant.F32ToF16(sc[j]))
					}
				}
			}
			if f16 {
				// ggml's product with V (tinyBLAS over the transposed
				// cache) sums position j in lane j mod 16 of each output,
				// then adds the lanes up (reduce16): the same order here.
				clear(lanes)
				for j := lo; j < n; {
					stride, c := kvRun(view, j, n)
					if asm {
						pvF16Asm(scores[j:], n, group, headDim, &view.V(j)[kvh*headBytes], stride, c, lanes, j%16)
					} else {
						pvF16Generic(scores[j:], n, group, headDim, view.V(j)[kvh*headBytes:], stride, c, lanes, j%16)
					}
					j += c
				}
				reduceLanes(outG, lanes, group, headDim)
				continue
			}
			clear(outG)
			for j := lo; j < n; j++ {
				v := view.V(j)[kvh*headBytes : (kvh+1)*headBytes]
				if err := quant.DequantizeRow(kvType, v, vrow); err != nil {
					panic(err)
				}
				for g := 0; g < group; g++ {
					w := scores[g*n+j]
					if w == 0 {
						continue
					}
					acc := outG[g*headDim : (g+1)*headDim]
					for d, x := range vrow {
						acc[d] += w * x
					}
				}
			}
		}
	})
}

// AttnOpts are the variations of attention beyond plain causal softmax
// attention. A nil *AttnOpts is plain attention.
type AttnOpts struct {
	// Window > 0: a query at position p sees positions p-Window+1 … p only.
	Window int
	// SoftCap > 0: each scaled score s becomes SoftCap·tanh(s/SoftCap).
	SoftCap float32
	// Sinks, per query head, is a logit that joins the softmax (its
	// maximum and its sum) with no value behind it.
	Sinks []float32
	// Last, when set, is the last position token t sees instead of its
	// own (an encoder's tokens see the whole sequence).
	Last []int32
}

func (o *AttnOpts) last(t int, pos int32) int32 {
	if o == nil || o.Last == nil {
		return pos
	}
	return o.Last[t]
}

func (o *AttnOpts) first(pos int32) int {
	if o == nil || o.Window <= 0 {
		return 0
	}
	return max(0, int(pos)-o.Window+1)
}

// softmax turns the raw scores of query head h into weights; sc[0] is
// position base's.
func (o *AttnOpts) softmax(sc []float32, base int, scale float32, h int) {
	if o == nil || o.SoftCap <= 0 && o.Sinks == nil {
		SoftmaxAt(sc, base, scale)
		return
	}
	if c := o.SoftCap; c > 0 {
		// The scaled score capped (backend.AttentionParams), with ggml's
		// operations: ·(1/c), glibc's tanhf, ·c (Gemma 2 scales q before
		// the product, so its scale here is 1 and the bits are ggml's).
		inv := 1 / c
		for j, v := range sc {
			sc[j] = libmf.Tanhf(v*scale*inv) * c
		}
		scale = 1
	}
	if o.Sinks == nil {
		SoftmaxAt(sc, base, scale)
		return
	}
	softmaxAt(sc, base, scale, &o.Sinks[h])
}

// KVRuns is implemented by caches whose rows lie in runs at a fixed
// stride (a paged cache's blocks): Run(p) is the stride in bytes between
// consecutive positions from p on and how many of them (p included) lie in
// p's run.
type KVRuns interface {
	Run(p int) (stride, count int)
}

// kvRun returns the stride and the length, capped at n − p, of the run of
// cached rows at p (one row where the view does not tell).
func kvRun(view KVView, p, n int) (stride, count int) {
	r, ok := view.(KVRuns)
	if !ok {
		return 0, 1
	}
	stride, count = r.Run(p)
	return stride, max(1, min(count, n-p))
}

// qkF16Generic is what the F16 score kernels compute: out[g·ldo + j] =
// Σ_d q[g·hd + d]·k_j[d] for the n key rows k_j = k[j·stride:] (float16
// bytes) and the group's queries q (float32), in ggml's order (its
// tinyBLAS over float16 on AVX-512): dimension d summed in lane d mod 16,
// the lanes added by reduce16. The products of two float16 values are
// exact in float32, so only the order of the additions matters.
func qkF16Generic(q []float32, group, hd int, k []byte, stride, n int, out []float32, ldo int) {
	for j := range n {
		row := f16s(k[j*stride : j*stride+2*hd])
		for g := range group {
			var acc [16]float32
			qg := q[g*hd : (g+1)*hd]
			for d, x := range row {
				acc[d%16] += qg[d] * quant.F16ToF32(x)
			}
			out[g*ldo+j] = reduce16(&acc)
		}
	}
}

// pvF16Generic is what the F16 value kernels compute: for the n value rows
// v_j = v[j·stride:] (float16 bytes), lanes[(g·16 + (lane0+j) mod 16)·hd +
// d] += p[g·ldp + j]·v_j[d], j in order: position lane0 + j of the cache
// goes to lane (lane0 + j) mod 16, as in ggml's product with V.
func pvF16Generic(p []float32, ldp, group, hd int, v []byte, stride, n int, lanes []float32, lane0 int) {
	for j := range n {
		row := f16s(v[j*stride : j*stride+2*hd])
		l := (lane0 + j) % 16
		for g := range group {
			w := p[g*ldp+j]
			if w == 0 {
				continue // adds nothing, as a zero weight does in ggml
			}
			acc := lanes[(g*16+l)*hd : (g*16+l+1)*hd]
			for d, x := range row {
				acc[d] += w * quant.F16ToF32(x)
			}
		}
	}
}

// reduceLanes writes out[g·hd + d] = reduce16 of the sixteen lanes of
// lanes for each head g and dimension d.
func reduceLanes(out, lanes []float32, group, hd int) {
	if reduceLanesAsm(out, lanes, group, hd) {
		return
	}
	for g := range group {
		base := lanes[g*16*hd : (g+1)*16*hd]
		for d := range hd {
			var a [16]float32
			for l := range a {
				a[l] = base[l*hd+d]
			}
			out[g*hd+d] = reduce16(&a)
		}
	}
}

// reduce16 adds sixteen float32 lanes as _mm512_reduce_add_ps does
// (GCC's: upper half onto lower, then hsum_float_8's order).
func reduce16(a *[16]float32) float32 {
	var h [8]float32
	for i := range h {
		h[i] = a[i] + a[i+8]
	}
	return quant.Hsum8(&h)
}

// StoreKV writes a row of keys or values into a cache slot of type t.
func StoreKV(t quant.Type, dst []byte, row []float32) {
	if t == quant.F16 {
		ToF16(f16s(dst), row)
		return
	}
	QuantizeAct(t, row, dst)
}

// f16s views little-endian bytes as float16 values.
func f16s(b []byte) []uint16 {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Slice((*uint16)(unsafe.Pointer(&b[0])), len(b)/2)
}
