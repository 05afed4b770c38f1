package quant

import "encoding/binary"

// The IQ4_NL and IQ4_XS quantizers: ggml's quantize_iq4_nl and
// quantize_iq4_xs without an importance matrix (elements weighted by x²),
// which is what ggml_quantize_chunk and llama-quantize use. (ggml's
// quantize_row_iq4_nl_ref skips the scale search and gives other bytes.)

// iq4Levels is the number of trial scales on either side of the first guess.
const iq4Levels = 7

// bestIndexIQ4 returns the index of the level of kvaluesIQ4NL nearest to x,
// the upper one on a tie (ggml's best_index_int8). Comparing 2x with the sum
// of two neighbouring levels is exact. The conversion rounds a product passed
// as x before doubling; without it Go may fuse the two into one FMA.
func bestIndexIQ4(x float32) int {
	x2 := 2 * float32(x)
	idx := 0
	for step := 8; step > 0; step >>= 1 {
		j := idx + step
		if x2 >= float32(int(kvaluesIQ4NL[j-1])+int(kvaluesIQ4NL[j])) {
			idx = j
		}
	}
	return idx
}

// iq4BlockScale finds the scale of one block of 32 for the IQ4 levels,
// trying 2*iq4Levels+1 scales around -max/127 and keeping the one with the
// least x²-weighted error (the core of ggml's quantize_row_iq4_nl_impl).
func iq4BlockScale(x *[32]float32) float32 {
	amax, max := absMax(x[:])
	if amax < groupMaxEps {
		return 0
	}
	v0 := float32(kvaluesIQ4NL[0])
	d := -max / v0
	id := 1 / d
	var sumqx, sumq2 float32
	for _, v := range x {
		q := float32(kvaluesIQ4NL[bestIndexIQ4(id*v)])
		w := v * v
		sumqx += float32(w * q * v)
		sumq2 += float32(w * q * q)
	}
	if sumq2 > 0 {
		d = sumqx / sumq2
	} else {
		d = 0
	}
	best := d * sumqx
	for itry := -iq4Levels; itry <= iq4Levels; itry++ {
		id = float32(itry+int(kvaluesIQ4NL[0])) / max
		sumqx, sumq2 = 0, 0
		for _, v := range x {
			q := float32(kvaluesIQ4NL[bestIndexIQ4(id*v)])
			w := v * v
			sumqx += float32(w * q * v)
			sumq2 += float32(w * q * q)
		}
		if sumq2 > 0 && sumqx*sumqx > best*sumq2 {
			d = sumqx / sumq2
			best = d * sumqx
		}
	}
	return d
}

// packIQ4 stores the level indices of 32 elements at 16 bytes: element j in
// the low nibble of q[j], element j+16 in its high nibble.
func packIQ4(x *[32]float32, id float32, q *[16]byte) {
	for j := range 16 {
		q[j] = byte(bestIndexIQ4(id*x[j])) | byte(bestIndexIQ4(id*x[j+16]))<<4
	}
}

// IQ4_NL block (18 bytes): d (fp16), qs[16].
func quantIQ4_NL(src []float32, dst []byte) {
	for i := 0; i < len(src); i += 32 {
		x := (*[32]float32)(src[i:])
		b := (*[18]byte)(dst[i/32*18:])
		d := iq4BlockScale(x)
		putF16le(b[0:], d)
		// The indices come from the unrounded scale, as in ggml.
		packIQ4(x, inv(d), (*[16]byte)(b[2:]))
	}
}

// IQ4_XS block (136 bytes): d (fp16), scales_h, scales_l[4], qs[128]. The
// eight block scales are quantized to 6 bits against d = -max/32.
func quantIQ4_XS(src []float32, dst []byte) {
	var scales [8]float32
	for i := 0; i < len(src); i += qk {
		b := (*[136]byte)(dst[i/qk*136:])
		var maxScale, amaxScale float32
		for ib := range 8 {
			scales[ib] = iq4BlockScale((*[32]float32)(src[i+32*ib:]))
			if a := abs32(scales[ib]); a > amaxScale {
				amaxScale, maxScale = a, scales[ib]
			}
		}
		d := -maxScale / 32
		putF16le(b[0:], d)
		id := inv(d)
		var sh uint16
		sl := (*[4]byte)(b[4:8])
		for ib := range 8 {
			l := clampInt(nearestInt(id*scales[ib]), -32, 31)
			dl := d * float32(l)
			packIQ4((*[32]float32)(src[i+32*ib:]), inv(dl), (*[16]byte)(b[8+16*ib:]))
			l += 32
			if ib%2 == 0 {
				sl[ib/2] = byte(l & 0xf)
			} else {
				sl[ib/2] |= byte(l&0xf) << 4
			}
			sh |= uint16(l>>4) << (2 * ib)
		}
		binary.LittleEndian.PutUint16(b[2:], sh)
	}
}
