package quant

// VecDot returns the dot product of the first n elements of the weight row w,
// of type t, and the activation row xq, of type t.VecDotType() (made with
// QuantizeRow). It computes what ggml's CPU vec_dot for t computes: for the
// block types an exact integer sum per block (per sub-block for the K-quants)
// scaled once in float32 by the product of the two block scales; for F16 and
// BF16 exact products summed in float64; for F32 float32 products summed in
// float64. It agrees with ggml to float rounding (summation order differs),
// not bit for bit.
//
// VecDot is meant for inner loops: it does not allocate, returns no error,
// and panics if t is not Supported, if n is negative or not a multiple of
// t.BlockSize(), or if w or xq is shorter than n elements of its type. Longer
// slices are fine; bytes past the n elements are not read. It is safe for
// concurrent use.
func VecDot(t Type, n int, w []byte, xq []byte) float32 {
	tr := t.traits()
	if tr == nil || !tr.supported {
		panic("quant: VecDot: unsupported type " + t.String())
	}
	if n < 0 || n%tr.blockSize != 0 {
		panic("quant: VecDot: " + t.String() + ": element count not a multiple of the block size")
	}
	nb := n / tr.blockSize
	xt := &typeTable[tr.vecDot]
	if len(w)/tr.blockBytes < nb || len(xq)/xt.blockBytes < n/xt.blockSize {
		panic("quant: VecDot: " + t.String() + ": row shorter than n elements")
	}
	switch t {
	case F32:
		return dotF32(n, w, xq)
	case F16:
		return dotF16(n, w, xq)
	case BF16:
		return dotBF16(n, w, xq)
	case Q4_0:
		return dotQ4_0Q8_0(nb, w, xq)
	case Q4_1:
		return dotQ4_1Q8_1(nb, w, xq)
	case Q5_0:
		return dotQ5_0Q8_0(nb, w, xq)
	case Q5_1:
		return dotQ5_1Q8_1(nb, w, xq)
	case Q8_0:
		return dotQ8_0Q8_0(nb, w, xq)
	case Q8_1:
		return dotQ8_1Q8_1(nb, w, xq)
	case Q2_K:
		return dotQ2_KQ8_K(nb, w, xq)
	case Q3_K:
		return dotQ3_KQ8_K(nb, w, xq)
	case Q4_K:
		return dotQ4_KQ8_K(nb, w, xq)
	case Q5_K:
		return dotQ5_KQ8_K(nb, w, xq)
	case Q6_K:
		return dotQ6_KQ8_K(nb, w, xq)
	case Q8_K:
		return dotQ8_KQ8_K(nb, w, xq)
	case IQ4_NL:
		return dotIQ4_NLQ8_0(nb, w, xq)
	case IQ4_XS:
		return dotIQ4_XSQ8_K(nb, w, xq)
	case MXFP4:
		return dotMXFP4Q8_0(nb, w, xq)
	}
	panic("quant: supported type without a dot product: " + t.String())
}
