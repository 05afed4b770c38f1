package quant

import "math"

// The MXFP4 quantizer: ggml's quantize_row_mxfp4_ref, which is also what
// quantize_mxfp4 (ggml_quantize_chunk, llama-quantize) runs; it takes no
// importance matrix.

// MXFP4 block (17 bytes): e (E8M0), qs[16]. The exponent puts the block's
// largest magnitude amax in [8, 16)·d, d = 2^(e-128), the binade of the top
// levels 8·d and 12·d (magnitudes past 14·d are clipped to 12·d, as the MX
// specification's shared exponent floor(log2(amax)) − 2 implies); then each
// element takes its nearest level.
func quantMXFP4(src []float32, dst []byte) {
	for i := 0; i < len(src); i += 32 {
		x := (*[32]float32)(src[i:])
		b := (*[17]byte)(dst[i/32*17:])
		var amax float32
		for _, v := range x {
			if a := abs32(v); amax < a {
				amax = a
			}
		}
		var e byte
		if amax > 0 {
			e = mxfp4Exponent(amax)
		}
		b[0] = e
		d := e8m0Half(e)
		for j := range 16 {
			b[1+j] = bestIndexMXFP4(x[j], d) | bestIndexMXFP4(x[j+16], d)<<4
		}
	}
}

// mxfp4Exponent is ggml's (uint8_t)(floorf(log2f(amax)) - 2 + 127) for
// amax > 0:
//
//   - log2f rounds to float32, so amax just below a power of two 2^k gives
//     exactly k (the top 0 to 44 floats of a binade, more for larger |k|);
//     float32(math.Log2(float64(amax))) rounds the same way. (Checked for
//     every positive finite float32 against glibc 2.36's log2f, which is
//     what the reference build uses; TestMXFP4Exponent keeps the bounds.)
//   - The conversion to uint8_t goes through a 32-bit integer on x86-64
//     (CVTTSS2SI), keeping its low byte: amax below 2^-125 gives a negative
//     value that wraps to 232..255 (ggml then writes all-zero quants), and
//     +Inf gives 0x80000000, so 0.
func mxfp4Exponent(amax float32) byte {
	if math.IsInf(float64(amax), 1) {
		return 0
	}
	l := math.Floor(float64(float32(math.Log2(float64(amax)))))
	return byte(int32(l) - 2 + 127)
}

// bestIndexMXFP4 is ggml's best_index_mxfp4: the index of the level whose
// value kvalues[i]·d is nearest to x, the first one on a tie, so that ties
// go to the level of smaller magnitude and 0 is index 0, never 8. The
// error is computed as ggml computes it, |float32(k·d) − x| rounded.
func bestIndexMXFP4(x, d float32) byte {
	best := 0
	bestErr := abs32(float32(float32(kvaluesMXFP4[0])*d) - x)
	for i := 1; i < 16; i++ {
		if err := abs32(float32(float32(kvaluesMXFP4[i])*d) - x); err < bestErr {
			best, bestErr = i, err
		}
	}
	return byte(best)
}
