package cpu

import (
	"unsafe"

	"github.com/hearth-llm/hearth/quant"
)

// KVView gives attention read access to one layer's cached keys and values:
// K(pos) and V(pos) return the float16 row (nKVHeads × headDim) stored for
// a position. A plain cache returns slices of one array; a paged cache looks
// the position up in its block table.
type KVView interface {
	K(pos int) []uint16
	V(pos int) []uint16
}

// Attention computes causal multi-head attention with grouped KV heads for
// nTok query rows. q is (nTok, nHead·headDim); query t attends to positions
// 0..pos[t] of kv[t] (tokens of different sequences read different caches).
// out is (nTok, nHead·headDim).
//
// The arithmetic is ggml's non-flash path over an F16 cache: q is rounded to
// f16 for Q·K, the scores are soft-maxed in f32 with the scale, and the
// probabilities are rounded to f16 for the weighted sum of V.
func Attention(p *Pool, out, q []float32, nTok int, pos []int32, kv []KVView, nHead, nKVHead, headDim int, scale float32) {
	group := nHead / nKVHead
	width := nHead * headDim
	maxPos := 0
	for _, ps := range pos[:nTok] {
		maxPos = max(maxPos, int(ps))
	}
	dot := Dot(quant.F16)
	// One work item is a token and a KV head: the group of query heads that
	// share it read each key and value row while it is in L1.
	p.Run(nTok*nKVHead, 1, func(s, e int) {
		q16 := make([]uint16, group*headDim)
		qb := f16Bytes(q16)
		scores := make([]float32, group*(maxPos+1))
		for i := s; i < e; i++ {
			t, kvh := i/nKVHead, i%nKVHead
			h0 := kvh * group
			ToF16(q16, q[t*width+h0*headDim:t*width+(h0+group)*headDim])
			n := int(pos[t]) + 1
			view := kv[t]
			for j := 0; j < n; j++ {
				k := f16Bytes(view.K(j)[kvh*headDim : (kvh+1)*headDim])
				for g := 0; g < group; g++ {
					scores[g*n+j] = dot(headDim, k, qb[g*2*headDim:(g+1)*2*headDim])
				}
			}
			for g := 0; g < group; g++ {
				sc := scores[g*n : (g+1)*n]
				Softmax(sc, scale)
				// ggml rounds the probabilities to f16 for the product with V.
				for j, w := range sc {
					sc[j] = quant.F16ToF32(quant.F32ToF16(w))
				}
				acc := out[t*width+(h0+g)*headDim : t*width+(h0+g+1)*headDim]
				clear(acc)
			}
			for j := 0; j < n; j++ {
				v := view.V(j)[kvh*headDim : (kvh+1)*headDim]
				for g := 0; g < group; g++ {
					if w := scores[g*n+j]; w != 0 {
						AxpyF16(out[t*width+(h0+g)*headDim:t*width+(h0+g+1)*headDim], w, v)
					}
				}
			}
		}
	})
}

// f16Bytes views float16 values as their little-endian bytes.
func f16Bytes(v []uint16) []byte {
	if len(v) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(&v[0])), 2*len(v))
}
