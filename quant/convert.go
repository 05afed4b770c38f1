package quant

// MXFP4AsQ8_0 re-encodes MXFP4 blocks (src, whole blocks) as Q8_0 blocks
// holding the same values (dst, 34 bytes per 32 values): a level of
// kvaluesMXFP4 times 2^(e-128) is the int8 level times a float16 scale
// 2^(e-128), exactly, as long as that power of two is a float16 (e from
// 104 to 143). It reports false, leaving dst partly written, when a block's
// exponent is outside that range. A backend with Q8_0 kernels and none for
// MXFP4 (CUDA) then computes the same integer sums per block as the MXFP4
// dot product does against Q8_0 activations.
func MXFP4AsQ8_0(dst, src []byte) bool {
	n := len(src) / 17
	if len(dst) < n*34 {
		panic("quant: MXFP4AsQ8_0: dst shorter than the blocks of src")
	}
	for b := range n {
		s, d := src[b*17:(b+1)*17], dst[b*34:(b+1)*34]
		e := int(s[0])
		if e < 128-24 || e > 128+15 {
			return false
		}
		// 2^(e-128) as float16 bits: normal from 2^-14, subnormal below.
		var h uint16
		if p := e - 128; p >= -14 {
			h = uint16(p+15) << 10
		} else {
			h = 1 << (p + 24)
		}
		d[0], d[1] = byte(h), byte(h>>8)
		for j, q := range s[1:17] {
			d[2+j] = byte(kvaluesMXFP4[q&0xf])
			d[18+j] = byte(kvaluesMXFP4[q>>4])
		}
	}
	return true
}
