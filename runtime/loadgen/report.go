package loadgen

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Sample is one measured request.
type Sample struct {
	Index int `json:"index"`
	// Start is when the request was sent, from the start of the run.
	Start time.Duration `json:"start_ns"`
	// TTFT is 0 when no text arrived.
	TTFT time.Duration `json:"ttft_ns"`
	E2E  time.Duration `json:"e2e_ns"`
	// Gaps are the times between consecutive text chunks, each divided by
	// the tokens estimated in its chunk (see the package doc).
	Gaps []time.Duration `json:"-"`
	// Chunks are the chunks that carried text.
	Chunks int `json:"chunks"`
	// PromptTokens is usage.prompt_tokens (0 when not reported).
	PromptTokens int `json:"prompt_tokens"`
	// OutputTokens is usage.completion_tokens, or Chunks without usage.
	OutputTokens int    `json:"output_tokens"`
	FinishReason string `json:"finish_reason,omitempty"`
	// Disconnected says the load generator cancelled this request on
	// purpose (Config.DisconnectFraction).
	Disconnected bool `json:"disconnected,omitempty"`
	// ErrKind is empty for a request that completed or was disconnected;
	// else one of the Err* kinds or "http_NNN".
	ErrKind string `json:"error_kind,omitempty"`
	Err     string `json:"error,omitempty"`
	// Status is the HTTP status (0 when no response came).
	Status int `json:"status,omitempty"`
	// RetryAfter is the Retry-After header of a refused request.
	RetryAfter string `json:"retry_after,omitempty"`
}

// Error kinds besides "http_NNN" (a status other than 200).
const (
	ErrConnect    = "connect"      // no response: refused, reset, DNS, TLS
	ErrTimeout    = "timeout"      // Config.RequestTimeout ran out
	ErrCancelled  = "cancelled"    // Run's context ended (interrupted)
	ErrRead       = "read"         // the stream broke while reading
	ErrStream     = "stream_error" // the server sent an error event
	ErrBadChunk   = "bad_chunk"    // a data line that is not JSON
	ErrIncomplete = "incomplete"   // the stream ended without [DONE]
)

// Completed says the request ran to its end without error.
func (s *Sample) Completed() bool { return s.ErrKind == "" && !s.Disconnected }

// Dist summarises durations, in milliseconds.
type Dist struct {
	N    int     `json:"n"`
	Mean float64 `json:"mean_ms"`
	Min  float64 `json:"min_ms"`
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	Max  float64 `json:"max_ms"`
}

// distOf summarises ds; the zero Dist when ds is empty.
func distOf(ds []time.Duration) Dist {
	if len(ds) == 0 {
		return Dist{}
	}
	v := make([]float64, len(ds))
	sum := 0.0
	for i, d := range ds {
		v[i] = float64(d) / float64(time.Millisecond)
		sum += v[i]
	}
	slices.Sort(v)
	return Dist{N: len(v), Mean: sum / float64(len(v)), Min: v[0], Max: v[len(v)-1],
		P50: percentile(v, 50), P90: percentile(v, 90), P99: percentile(v, 99)}
}

// percentile of sorted values, interpolated linearly between the closest
// ranks (rank p/100·(n−1)), as NumPy's default.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return math.NaN()
	}
	r := p / 100 * float64(len(sorted)-1)
	lo := int(math.Floor(r))
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + (sorted[hi]-sorted[lo])*(r-float64(lo))
}

// Gauge is what a scraped metric did during the run.
type Gauge struct {
	Samples int     `json:"samples"`
	Min     float64 `json:"min"`
	Max     float64 `json:"max"`
	// After is its value scraped once every request had ended (the last
	// sample); a server may still be releasing what hung-up requests held.
	After float64 `json:"after"`
}

// Report is a run's result.
type Report struct {
	URL         string `json:"url"`
	Model       string `json:"model"`
	Endpoint    string `json:"endpoint"`
	Concurrency int    `json:"concurrency"`
	// Rate is Config.Rate; AllAtOnce replaces an infinite one (JSON has
	// no infinity).
	Rate      float64 `json:"rate,omitempty"`
	AllAtOnce bool    `json:"all_at_once,omitempty"`
	// PromptTokens, SharedPrefixTokens and MaxTokens are the configured
	// sizes; the measured ones are MeanPromptTokens and OutputTokens.
	PromptTokens       int     `json:"prompt_tokens"`
	SharedPrefixTokens int     `json:"shared_prefix_tokens,omitempty"`
	MaxTokens          int     `json:"max_tokens"`
	DisconnectFraction float64 `json:"disconnect_fraction,omitempty"`
	// TokensPerWord is the prompt tokens per generated word, calibrated
	// against the server or configured.
	TokensPerWord float64 `json:"tokens_per_word"`

	Requests     int            `json:"requests"`
	Completed    int            `json:"completed"`
	Disconnected int            `json:"disconnected"`
	Failed       int            `json:"failed"`
	Errors       map[string]int `json:"errors,omitempty"`
	// Interrupted says Run's context ended before the run did.
	Interrupted bool `json:"interrupted,omitempty"`

	// Duration runs from the first request sent to the last ended.
	Duration time.Duration `json:"duration_ns"`
	// OutputTokens counts every request's generated tokens, disconnected
	// and failed ones included (their text chunks).
	OutputTokens       int64   `json:"output_tokens"`
	MeanPromptTokens   float64 `json:"mean_prompt_tokens"`
	MeanOutputTokens   float64 `json:"mean_output_tokens"`
	RequestsPerSec     float64 `json:"requests_per_s"`
	OutputTokensPerSec float64 `json:"output_tokens_per_s"`

	// Latencies of completed requests.
	TTFT Dist `json:"ttft"`
	ITL  Dist `json:"itl"`
	TPOT Dist `json:"tpot"`
	E2E  Dist `json:"e2e"`
	// FirstTTFT is the TTFT of the first request sent when it completed
	// (with a shared prefix, the one that filled the prefix cache).
	FirstTTFT time.Duration `json:"first_ttft_ns,omitempty"`

	// Gauges are the metrics of Config.ScrapeURL, by series.
	Gauges map[string]Gauge `json:"gauges,omitempty"`
	// Samples are the requests in the order they were sent, when
	// Config.KeepSamples.
	Samples []Sample `json:"samples,omitempty"`
}

// summarize fills r's counts and distributions from samples (in index
// order).
func (r *Report) summarize(samples []Sample) {
	r.Requests = len(samples)
	var ttft, itl, tpot, e2e []time.Duration
	var prompt, promptN, out int64
	for i := range samples {
		s := &samples[i]
		r.OutputTokens += int64(s.OutputTokens)
		switch {
		case s.ErrKind != "":
			r.Failed++
			if r.Errors == nil {
				r.Errors = map[string]int{}
			}
			r.Errors[s.ErrKind]++
			continue
		case s.Disconnected:
			r.Disconnected++
			continue
		}
		r.Completed++
		out += int64(s.OutputTokens)
		if s.PromptTokens > 0 {
			prompt += int64(s.PromptTokens)
			promptN++
		}
		e2e = append(e2e, s.E2E)
		itl = append(itl, s.Gaps...)
		if s.Chunks > 0 {
			ttft = append(ttft, s.TTFT)
			if s.Index == 0 {
				r.FirstTTFT = s.TTFT
			}
		}
		if s.OutputTokens > 1 && s.Chunks > 0 {
			tpot = append(tpot, (s.E2E-s.TTFT)/time.Duration(s.OutputTokens-1))
		}
	}
	r.TTFT, r.ITL, r.TPOT, r.E2E = distOf(ttft), distOf(itl), distOf(tpot), distOf(e2e)
	if promptN > 0 {
		r.MeanPromptTokens = float64(prompt) / float64(promptN)
	}
	if r.Completed > 0 {
		r.MeanOutputTokens = float64(out) / float64(r.Completed)
	}
	if sec := r.Duration.Seconds(); sec > 0 {
		r.RequestsPerSec = float64(r.Completed) / sec
		r.OutputTokensPerSec = float64(r.OutputTokens) / sec
	}
}

// WriteText writes r as a human-readable table.
func (r *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	mode := fmt.Sprintf("concurrency %d", r.Concurrency)
	switch {
	case r.AllAtOnce:
		mode = fmt.Sprintf("all at once (at most %d in flight)", r.Concurrency)
	case r.Rate > 0:
		mode = fmt.Sprintf("rate %g req/s (at most %d in flight)", r.Rate, r.Concurrency)
	}
	fmt.Fprintf(&b, "%s %s, model %q, %s\n", r.URL, r.Endpoint, r.Model, mode)
	fmt.Fprintf(&b, "prompt %d tokens", r.PromptTokens)
	if r.SharedPrefixTokens > 0 {
		fmt.Fprintf(&b, " after a shared prefix of %d", r.SharedPrefixTokens)
	}
	fmt.Fprintf(&b, " (%.2f tokens/word), max %d output tokens", r.TokensPerWord, r.MaxTokens)
	if r.DisconnectFraction > 0 {
		fmt.Fprintf(&b, ", %.0f%% of clients disconnect", 100*r.DisconnectFraction)
	}
	b.WriteString("\n\n")
	fmt.Fprintf(&b, "requests     %d: %d completed, %d disconnected, %d failed in %.2f s", r.Requests, r.Completed,
		r.Disconnected, r.Failed, r.Duration.Seconds())
	if r.Interrupted {
		b.WriteString(" (interrupted)")
	}
	b.WriteByte('\n')
	fmt.Fprintf(&b, "throughput   %.2f req/s, %.1f output tokens/s\n", r.RequestsPerSec, r.OutputTokensPerSec)
	fmt.Fprintf(&b, "tokens       %.1f prompt, %.1f output per completed request\n", r.MeanPromptTokens, r.MeanOutputTokens)
	if r.FirstTTFT > 0 {
		fmt.Fprintf(&b, "first TTFT   %.1f ms\n", float64(r.FirstTTFT)/float64(time.Millisecond))
	}
	if len(r.Errors) > 0 {
		b.WriteString("errors      ")
		for _, k := range sortedKeys(r.Errors) {
			fmt.Fprintf(&b, " %s %d", k, r.Errors[k])
		}
		b.WriteByte('\n')
	}
	b.WriteByte('\n')
	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "ms\tn\tmean\tp50\tp90\tp99\tmax\t")
	for _, row := range []struct {
		name string
		d    Dist
	}{{"TTFT", r.TTFT}, {"ITL", r.ITL}, {"TPOT", r.TPOT}, {"E2E", r.E2E}} {
		d := row.d
		fmt.Fprintf(tw, "%s\t%d\t%.1f\t%.1f\t%.1f\t%.1f\t%.1f\t\n", row.name, d.N, d.Mean, d.P50, d.P90, d.P99, d.Max)
	}
	tw.Flush()
	if len(r.Gauges) > 0 {
		b.WriteByte('\n')
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "metric\tsamples\tmin\tmax\tafter\t")
		for _, k := range sortedKeys(r.Gauges) {
			g := r.Gauges[k]
			fmt.Fprintf(tw, "%s\t%d\t%g\t%g\t%g\t\n", k, g.Samples, g.Min, g.Max, g.After)
		}
		tw.Flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
