package cpu

import "github.com/hearth-llm/hearth/quant"

// genericImpls returns the portable variant of every supported type: quant's
// reference dot products (quant.VecDot) and quantizers (quant.QuantizeRow).
// They are the references the SIMD variants are tested against, and what
// runs where no SIMD variant exists (other architectures, -tags purego,
// HEARTH_CPU=generic).
func genericImpls() map[quant.Type]impl {
	m := map[quant.Type]impl{}
	for _, t := range []quant.Type{quant.F32, quant.F16, quant.BF16, quant.Q4_0, quant.Q4_1, quant.Q5_0,
		quant.Q5_1, quant.Q8_0, quant.Q8_1, quant.Q2_K, quant.Q3_K, quant.Q4_K, quant.Q5_K, quant.Q6_K,
		quant.Q8_K, quant.IQ4_NL, quant.IQ4_XS, quant.MXFP4} {
		d := impl{level: levelGeneric, dot: genericDot(t)}
		switch t {
		case quant.F32, quant.F16, quant.BF16, quant.Q8_0, quant.Q8_1, quant.Q8_K:
			d.quant = genericQuant(t)
		}
		m[t] = d
	}
	return m
}

func genericDot(t quant.Type) DotFunc {
	return func(n int, w, x []byte) float32 { return quant.VecDot(t, n, w, x) }
}

func genericQuant(t quant.Type) func(x []float32, dst []byte, nb int) {
	return func(x []float32, dst []byte, _ int) {
		if err := quant.QuantizeAct(t, x, dst); err != nil {
			panic("cpu.QuantizeAct: " + err.Error())
		}
	}
}
