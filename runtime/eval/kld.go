package eval

import (
	"fmt"
	"io"
	"math"
	"slices"
)

// KLDAccumulator gathers llama-perplexity's per-token statistics of a
// model Q against a base's stored log-probabilities (its kl_divergence_result
// and the per-token KLD and Δp values for the percentiles).
type KLDAccumulator struct {
	sumNLL, sumNLL2, sumBase, sumBase2, sumNLLBase float64
	sumKLD, sumKLD2, sumDp, sumDp2, sumDp4         float64
	sameTop, count                                 int
	klds, dps                                      []float64
}

// Add scores one position: logits are Q's, base the stored record for the
// same position, tok the token that follows.
func (a *KLDAccumulator) Add(logits []float32, base *Record, tok int32) {
	maxL, imax := logits[0], 0
	for i, l := range logits[1:] {
		if l > maxL {
			maxL, imax = l, i+1
		}
	}
	var sum float64
	for _, l := range logits {
		sum += float64(expf(l - maxL))
	}
	lse := float32(math.Log(sum))
	nll := float64(maxL + lse - logits[tok])
	nllBase := float64(-base.LogProb(int(tok)))
	a.sumNLL += nll
	a.sumNLL2 += nll * nll
	a.sumBase += nllBase
	a.sumBase2 += nllBase * nllBase
	a.sumNLLBase += nll * nllBase

	norm := maxL + lse
	var kld float64
	imaxBase, pmax := -1, float32(0)
	for i := range logits {
		lp := base.LogProb(i)
		if i == 0 || lp > pmax {
			pmax, imaxBase = lp, i
		}
		if lp > -16 {
			kld += float64(expf(lp) * (lp - logits[i] + norm))
		}
	}
	a.sumKLD += kld
	a.sumKLD2 += kld * kld
	a.count++
	if imax == imaxBase {
		a.sameTop++
	}
	dp := float64(expf(float32(-nll)) - expf(float32(-nllBase)))
	a.sumDp += dp
	a.sumDp2 += dp * dp
	a.sumDp4 += dp * dp * dp * dp
	a.klds = append(a.klds, kld)
	a.dps = append(a.dps, dp)
}

// Count is the positions scored so far.
func (a *KLDAccumulator) Count() int { return a.count }

// Value is a figure and its uncertainty (one standard error).
type Value struct {
	Value       float64 `json:"value"`
	Uncertainty float64 `json:"uncertainty"`
}

// Percentile is a value of a sorted sample at a fraction (0.5: median).
type Percentile struct {
	Label string  `json:"label"` // "Maximum", "99.9%", "Median", …
	At    float64 `json:"at"`
	Value float64 `json:"value"`
}

// KLDSummary is what llama-perplexity --kl-divergence prints, as figures.
// Δp figures are fractions (llama-perplexity prints them as percentages).
type KLDSummary struct {
	Count         int          `json:"tokens"`
	PPL           Value        `json:"ppl"`
	PPLBase       Value        `json:"ppl_base"`
	Correlation   float64      `json:"ln_ppl_correlation"`
	LnPPLRatio    Value        `json:"ln_ppl_ratio"`
	PPLRatio      Value        `json:"ppl_ratio"`
	PPLDiff       Value        `json:"ppl_diff"`
	KLD           Value        `json:"kld"`
	KLDPercentile []Percentile `json:"kld_percentiles"`
	Dp            Value        `json:"dp"`
	DpPercentile  []Percentile `json:"dp_percentiles"`
	RMSDp         Value        `json:"rms_dp"`
	SameTop       Value        `json:"same_top"`
}

func meanUnc(sum, sum2 float64, n int) Value {
	if n < 1 {
		return Value{}
	}
	f := sum / float64(n)
	df := sum2/float64(n) - f*f
	if df > 0 && n > 10 {
		df = math.Sqrt(df / float64(n-1))
	} else {
		df = 0
	}
	return Value{f, df}
}

func covariance(a, b, ab float64, n int) float64 {
	if n < 10 {
		return 0
	}
	c := float64(n)
	return (ab/c - (a/c)*(b/c)) / (c - 1)
}

// percentile interpolates linearly in sorted v, as llama-perplexity does.
func percentile(v []float64, f float64) float64 {
	if f <= 0 {
		return v[0]
	}
	if f >= 1 {
		return v[len(v)-1]
	}
	p := f * float64(len(v)-1)
	ip := int(p)
	p -= float64(ip)
	return (1-p)*v[ip] + p*v[min(ip+1, len(v)-1)]
}

func percentiles(v []float64, at []float64) []Percentile {
	v = slices.Clone(v)
	slices.Sort(v)
	out := make([]Percentile, len(at))
	for i, f := range at {
		label := fmt.Sprintf("%.1f%%", 100*f)
		switch f {
		case 1:
			label = "Maximum"
		case 0.5:
			label = "Median"
		case 0:
			label = "Minimum"
		}
		out[i] = Percentile{label, f, percentile(v, f)}
	}
	return out
}

// Summary computes the figures over the positions added so far.
func (a *KLDAccumulator) Summary() KLDSummary { return a.summary(true) }

func (a *KLDAccumulator) summary(withPercentiles bool) KLDSummary {
	n := a.count
	s := KLDSummary{Count: n}
	lp := meanUnc(a.sumNLL, a.sumNLL2, n)
	s.PPL = Value{math.Exp(lp.Value), math.Exp(lp.Value) * lp.Uncertainty}
	lb := meanUnc(a.sumBase, a.sumBase2, n)
	s.PPLBase = Value{math.Exp(lb.Value), math.Exp(lb.Value) * lb.Uncertainty}
	cov := covariance(a.sumNLL, a.sumBase, a.sumNLLBase, n)
	if lp.Uncertainty > 0 && lb.Uncertainty > 0 {
		s.Correlation = cov / (lp.Uncertainty * lb.Uncertainty)
	}
	s.LnPPLRatio = Value{lp.Value - lb.Value, math.Sqrt(max(0, lp.Uncertainty*lp.Uncertainty+lb.Uncertainty*lb.Uncertainty-2*cov))}
	r := math.Exp(s.LnPPLRatio.Value)
	s.PPLRatio = Value{r, r * s.LnPPLRatio.Uncertainty}
	pcov := s.PPL.Value * s.PPLBase.Value * cov
	s.PPLDiff = Value{s.PPL.Value - s.PPLBase.Value, math.Sqrt(max(0, s.PPL.Uncertainty*s.PPL.Uncertainty+s.PPLBase.Uncertainty*s.PPLBase.Uncertainty-2*pcov))}
	s.KLD = meanUnc(a.sumKLD, a.sumKLD2, n)
	s.Dp = meanUnc(a.sumDp, a.sumDp2, n)
	mse := meanUnc(a.sumDp2, a.sumDp4, n)
	if rms := math.Sqrt(mse.Value); rms > 0 {
		s.RMSDp = Value{rms, 0.5 / rms * mse.Uncertainty}
	}
	if n > 1 {
		p := float64(a.sameTop) / float64(n)
		s.SameTop = Value{p, math.Sqrt(p * (1 - p) / float64(n-1))}
	}
	if n > 0 && withPercentiles {
		s.KLDPercentile = percentiles(a.klds, []float64{1, 0.999, 0.99, 0.95, 0.9, 0.5, 0.1, 0.05, 0.01, 0.001, 0})
		s.DpPercentile = percentiles(a.dps, []float64{1, 0.999, 0.99, 0.95, 0.9, 0.75, 0.5, 0.25, 0.1, 0.05, 0.01, 0.001, 0})
	}
	return s
}

// KLDChunkHeader is the header of the per-chunk lines (PrintChunk).
const KLDChunkHeader = "chunk             PPL               ln(PPL(Q)/PPL(base))          KL Divergence              Δp RMS            Same top p\n"

// PrintChunk writes llama-perplexity's running line after chunk (1-based).
func (s *KLDSummary) PrintChunk(w io.Writer, chunk int) {
	fmt.Fprintf(w, "%4d    %9.4f ± %9.4f    %10.5f ± %10.5f    %10.5f ± %10.5f    %6.3f ± %6.3f %%    %6.3f ± %6.3f %%\n",
		chunk, s.PPL.Value, s.PPL.Uncertainty, s.LnPPLRatio.Value, s.LnPPLRatio.Uncertainty,
		s.KLD.Value, s.KLD.Uncertainty, 100*s.RMSDp.Value, 100*s.RMSDp.Uncertainty,
		100*s.SameTop.Value, 100*s.SameTop.Uncertainty)
}

// Print writes the final statistics as llama-perplexity does (which
// prints them only from 100 positions on).
func (s *KLDSummary) Print(w io.Writer) {
	fmt.Fprintf(w, "====== Perplexity statistics ======\n")
	fmt.Fprintf(w, "Mean PPL(Q)                   : %10.6f ± %10.6f\n", s.PPL.Value, s.PPL.Uncertainty)
	fmt.Fprintf(w, "Mean PPL(base)                : %10.6f ± %10.6f\n", s.PPLBase.Value, s.PPLBase.Uncertainty)
	fmt.Fprintf(w, "Cor(ln(PPL(Q)), ln(PPL(base))): %6.2f%%\n", 100*s.Correlation)
	fmt.Fprintf(w, "Mean ln(PPL(Q)/PPL(base))     : %10.6f ± %10.6f\n", s.LnPPLRatio.Value, s.LnPPLRatio.Uncertainty)
	fmt.Fprintf(w, "Mean PPL(Q)/PPL(base)         : %10.6f ± %10.6f\n", s.PPLRatio.Value, s.PPLRatio.Uncertainty)
	fmt.Fprintf(w, "Mean PPL(Q)-PPL(base)         : %10.6f ± %10.6f\n\n", s.PPLDiff.Value, s.PPLDiff.Uncertainty)
	fmt.Fprintf(w, "====== KL divergence statistics ======\n")
	fmt.Fprintf(w, "Mean    KLD: %10.6f ± %10.6f\n", s.KLD.Value, s.KLD.Uncertainty)
	for _, p := range s.KLDPercentile {
		fmt.Fprintf(w, "%-8sKLD: %10.6f\n", padLabel(p.Label), p.Value)
	}
	fmt.Fprintf(w, "\n====== Token probability statistics ======\n")
	fmt.Fprintf(w, "Mean    Δp: %6.3f ± %5.3f %%\n", 100*s.Dp.Value, 100*s.Dp.Uncertainty)
	for _, p := range s.DpPercentile {
		fmt.Fprintf(w, "%-8sΔp: %6.3f%%\n", padLabel(p.Label), 100*p.Value)
	}
	fmt.Fprintf(w, "RMS Δp    : %6.3f ± %5.3f %%\n", 100*s.RMSDp.Value, 100*s.RMSDp.Uncertainty)
	fmt.Fprintf(w, "Same top p: %6.3f ± %5.3f %%\n", 100*s.SameTop.Value, 100*s.SameTop.Uncertainty)
}

// padLabel right-aligns percentages as llama-perplexity's " 5.0%" does.
func padLabel(l string) string {
	if len(l) == 4 && l[3] == '%' {
		return " " + l
	}
	return l
}
