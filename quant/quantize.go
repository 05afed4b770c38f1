package quant

import (
	"encoding/binary"
	"fmt"
	"math"
)

// QuantizeRow encodes src into dst as type t, byte for byte as ggml's
// reference quantizers do without an importance matrix (what llama-quantize
// writes and what ggml_quantize_chunk returns; for the activation types Q8_0,
// Q8_1 and Q8_K also what the CPU backend's from_float returns). dst must be
// exactly t.RowBytes(len(src)) bytes; every byte of it is written.
//
// All supported types have a quantizer. It returns an error wrapping
// ErrUnsupported for other types, and an error if len(src) is not a multiple
// of the block size or dst has the wrong length. Inputs are expected to be
// finite; NaNs and infinities give unspecified (but memory-safe) output. It
// does not allocate and is safe for concurrent use.
func QuantizeRow(t Type, src []float32, dst []byte) error {
	if !t.Supported() {
		return fmt.Errorf("%w: cannot quantize to %v", ErrUnsupported, t)
	}
	if err := checkRow(t, len(src), len(dst)); err != nil {
		return fmt.Errorf("quant: quantize: %w", err)
	}
	switch t {
	case F32:
		for i, v := range src {
			binary.LittleEndian.PutUint32(dst[4*i:], math.Float32bits(v))
		}
	case F16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToF16(v))
		}
	case BF16:
		for i, v := range src {
			binary.LittleEndian.PutUint16(dst[2*i:], F32ToBF16(v))
		}
	case Q4_0:
		quantQ4_0(src, dst)
	case Q4_1:
		quantQ4_1(src, dst)
	case Q5_0:
		quantQ5_0(src, dst)
	case Q5_1:
		quantQ5_1(src, dst)
	case Q8_0:
		quantQ8_0(src, dst)
	case Q8_1:
		quantQ8_1(src, dst)
	case Q2_K:
		quantQ2_K(src, dst)
	case Q3_K:
		quantQ3_K(src, dst)
	case Q4_K:
		quantQ4_K(src, dst)
	case Q5_K:
		quantQ5_K(src, dst)
	case Q6_K:
		quantQ6_K(src, dst)
	case Q8_K:
		quantQ8_K(src, dst)
	case IQ4_NL:
		quantIQ4_NL(src, dst)
	case IQ4_XS:
		quantIQ4_XS(src, dst)
	case MXFP4:
		quantMXFP4(src, dst)
	default:
		panic("quant: supported type without a quantizer: " + t.String())
	}
	return nil
}

// nearestInt rounds f to the nearest integer, ties to even, as ggml's
// nearest_int: adding 1.5*2^23 leaves the rounded value in the low mantissa
// bits. Valid for |f| < 2^22. The conversion keeps a product passed as f from
// being fused with the addition.
func nearestInt(f float32) int {
	v := float32(f) + 12582912
	return int(math.Float32bits(v)&0x7fffff) - 0x400000
}

// roundAway rounds f to the nearest integer, ties away from zero (C roundf).
// f ± 0.5 is exact in float64 (f has 24 significant bits), and the integer
// conversion truncates toward zero; no branch, as the sign is random.
// Valid for |f| < 2^31.
func roundAway(f float32) int {
	half := math.Float64frombits(0x3fe0000000000000 | uint64(math.Float32bits(f)>>31)<<63) // ±0.5
	return int(float64(f) + half)
}

func abs32(f float32) float32 {
	return math.Float32frombits(math.Float32bits(f) &^ (1 << 31))
}

// absMax returns the largest |x| and the signed value that has it (the first
// such value).
func absMax(x []float32) (amax, max float32) {
	for _, v := range x {
		if a := abs32(v); a > amax {
			amax, max = a, v
		}
	}
	return amax, max
}

func minMax(x []float32) (min, max float32) {
	min, max = math.MaxFloat32, -math.MaxFloat32
	for _, v := range x {
		if v < min {
			min = v
		}
		if v > max {
			max = v
		}
	}
	return min, max
}

func inv(d float32) float32 {
	if d == 0 {
		return 0
	}
	return 1 / d
}

// Q4_0: d = max/-8 where max is the value of largest magnitude, so that it
// maps to quant 0 (-8); q = min(15, trunc(x/d + 8.5)).
func quantQ4_0(src []float32, dst []byte) {
	for i := 0; i < len(src); i += 32 {
		x := (*[32]float32)(src[i:])
		b := (*[18]byte)(dst[i/32*18:])
		_, max := absMax(x[:])
		d := max / -8
		id := inv(d)
		putF16le(b[0:], d)
		for j := range 16 {
			x0 := float32(x[j] * id)
			x1 := float32(x[j+16] * id)
			b[2+j] = byte(min(15, int8(x0+8.5))) | byte(min(15, int8(x1+8.5)))<<4
		}
	}
}

// Q4_1: d = (max-min)/15, m = min; q = min(15, trunc((x-min)/d + 0.5)).
func quantQ4_1(src []float32, dst []byte) {
	for i := 0; i < len(src); i += 32 {
		x := (*[32]float32)(src[i:])
		b := (*[20]byte)(dst[i/32*20:])
		lo, hi := minMax(x[:])
		d := (hi - lo) / 15
		id := inv(d)
		putF16le(b[0:], d)
		putF16le(b[2:], lo)
		for j := range 16 {
			x0 := float32((x[j] - lo) * id)
			x1 := float32((x[j+16] - lo) * id)
			b[4+j] = byte(min(15, int8(x0+0.5))) | byte(min(15, int8(x1+0.5)))<<4
		}
	}
}

// Q5_0: as Q4_0 with d = max/-16 and 5-bit quants; the fifth bits go to qh.
func quantQ5_0(src []float32, dst []byte) {
	for i := 0; i < len(src); i += 32 {
		x := (*[32]float32)(src[i:])
		b := (*[22]byte)(dst[i/32*22:])
		_, max := absMax(x[:])
		d := max / -16
		id := inv(d)
		putF16le(b[0:], d)
		var qh uint32
		for j := range 16 {
			x0 := float32(x[j] * id)
			x1 := float32(x[j+16] * id)
			q0 := byte(min(31, int8(x0+16.5)))
			q1 := byte(min(31, int8(x1+16.5)))
			b[6+j] = q0&0xf | (q1&0xf)<<4
			qh |= uint32(q0>>4) << j
			qh |= uint32(q1>>4) << (j + 16)
		}
		binary.LittleEndian.PutUint32(b[2:], qh)
	}
}

// Q5_1: as Q4_1 with d = (max-min)/31 and 5-bit quants.
func quantQ5_1(src []float32, dst []byte) {
	for i := 0; i < len(src); i += 32 {
		x := (*[32]float32)(src[i:])
		b := (*[24]byte)(dst[i/32*24:])
		lo, hi := minMax(x[:])
		d := (hi - lo) / 31
		id := inv(d)
		putF16le(b[0:], d)
		putF16le(b[2:], lo)
		var qh uint32
		for j := range 16 {
			x0 := float32((x[j] - lo) * id)
			x1 := float32((x[j+16] - lo) * id)
			q0 := uint8(x0 + 0.5)
			q1 := uint8(x1 + 0.5)
			b[8+j] = q0&0xf | (q1&0xf)<<4
			qh |= uint32(q0>>4&1) << j
			qh |= uint32(q1>>4&1) << (j + 16)
		}
		binary.LittleEndian.PutUint32(b[4:], qh)
	}
}

// Q8_0: d = amax/127, q = roundf(x/d).
func quantQ8_0(src []float32, dst []byte) {
	for i := 0; i < len(src); i += 32 {
		x := (*[32]float32)(src[i:])
		b := (*[34]byte)(dst[i/32*34:])
		amax, _ := absMax(x[:])
		d := amax / 127
		id := inv(d)
		putF16le(b[0:], d)
		for j := range 32 {
			b[2+j] = byte(int8(roundAway(x[j] * id)))
		}
	}
}

// Q8_1: as Q8_0, plus s = d*sum(q) computed with the float32 d before it is
// rounded to fp16.
func quantQ8_1(src []float32, dst []byte) {
	for i := 0; i < len(src); i += 32 {
		x := (*[32]float32)(src[i:])
		b := (*[36]byte)(dst[i/32*36:])
		amax, _ := absMax(x[:])
		d := amax / 127
		id := inv(d)
		putF16le(b[0:], d)
		sum := 0
		for j := range 32 {
			q := roundAway(x[j] * id)
			b[4+j] = byte(int8(q))
			sum += q
		}
		putF16le(b[2:], float32(sum)*d)
	}
}

// Q8_K: d = max/-127 where max has the largest magnitude (stored as float32),
// q = min(127, nearestInt(x/d)), bsums = sums of q per 16. A block of zeros
// gets d = 0 and all-zero quants and sums.
func quantQ8_K(src []float32, dst []byte) {
	for i := 0; i < len(src); i += qk {
		x := (*[qk]float32)(src[i:])
		b := (*[292]byte)(dst[i/qk*292:])
		amax, max := absMax(x[:])
		if amax == 0 {
			clear(b[:])
			continue
		}
		iscale := -127 / max
		for g := range 16 {
			sum := 0
			for j := 16 * g; j < 16*g+16; j++ {
				q := min(127, nearestInt(iscale*x[j]))
				b[4+j] = byte(int8(q))
				sum += q
			}
			binary.LittleEndian.PutUint16(b[260+2*g:], uint16(int16(sum)))
		}
		binary.LittleEndian.PutUint32(b[0:], math.Float32bits(1/iscale))
	}
}

// QuantizeAct encodes activations src into dst as type t, byte for byte as
// ggml's x86 CPU backend does before its dot products (from_float): Q8_0
// and Q8_1 as quantize_row_q8_0/q8_1's AVX2 form, which scales by 127/amax
// and rounds ties to even where the reference quantizer (QuantizeRow, what
// llama-quantize writes) scales by 1/(amax/127) and rounds ties away from
// zero, so the two differ in an element of a block now and then; every other
// type as QuantizeRow. Errors as QuantizeRow's.
func QuantizeAct(t Type, src []float32, dst []byte) error {
	if t != Q8_0 && t != Q8_1 {
		return QuantizeRow(t, src, dst)
	}
	if err := checkRow(t, len(src), len(dst)); err != nil {
		return fmt.Errorf("quant: quantize: %w", err)
	}
	bb, off := 34, 2
	if t == Q8_1 {
		bb, off = 36, 4
	}
	for i := 0; i < len(src); i += 32 {
		x := (*[32]float32)(src[i:])
		b := dst[i/32*bb : i/32*bb+bb]
		amax, _ := absMax(x[:])
		d := amax / 127
		var id float32
		if amax != 0 {
			id = 127 / amax
		}
		putF16le(b[0:], d)
		sum := 0
		for j := range 32 {
			q := nearestInt(x[j] * id)
			b[off+j] = byte(int8(q))
			sum += q
		}
		if t == Q8_1 {
			putF16le(b[2:], d*float32(sum))
		}
	}
	return nil
}
