package cpu

import "github.com/hearth-llm/hearth/quant"

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
	p.Run(nTok*nHead, 1, func(s, e int) {
		q16 := make([]uint16, headDim)
		scores := make([]float32, maxPos+1)
		p16 := make([]uint16, maxPos+1)
		acc := make([]float32, headDim)
		for i := s; i < e; i++ {
			t, h := i/nHead, i%nHead
			kvh := h / group
			ToF16(q16, q[t*width+h*headDim:t*width+(h+1)*headDim])
			n := int(pos[t]) + 1
			for j := 0; j < n; j++ {
				k := kv[t].K(j)
				scores[j] = DotF16(q16, k[kvh*headDim:(kvh+1)*headDim])
			}
			Softmax(scores[:n], scale)
			ToF16(p16[:n], scores[:n])
			clear(acc)
			for j := 0; j < n; j++ {
				w := quant.F16ToF32(p16[j])
				if w == 0 {
					continue
				}
				v := kv[t].V(j)[kvh*headDim : (kvh+1)*headDim]
				for d, x := range v {
					acc[d] += w * quant.F16ToF32(x)
				}
			}
			copy(out[t*width+h*headDim:], acc)
		}
	})
}
