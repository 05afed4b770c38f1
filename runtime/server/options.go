package server

import (
	"fmt"
	"math"
	"sort"
	"unicode/utf8"

	"github.com/hearth-llm/hearth/runtime/sample"
)

// Bounds on what a request may ask for.
const (
	maxStops     = 64      // stop strings per request
	maxStopBytes = 256     // bytes per stop string
	maxNumCtx    = 1 << 24 // engine.MaxContext; the model's context is checked after load
	maxInt       = 1 << 31 // integer options
	maxSeed      = 1 << 53 // seeds survive a float64 exactly up to here
)

// genOptions are one generation's settings, from Ollama options or the
// OpenAI fields.
type genOptions struct {
	NumCtx     int // 0: the runner's default
	NumPredict int // < 0: no limit
	Sampling   sample.Options
	Stop       []string
}

func defaultGenOptions() genOptions {
	return genOptions{NumPredict: -1, Sampling: sample.DefaultOptions()}
}

// ignoredOptions are Ollama options that set up a model at load time or
// belong to samplers Hearth does not have; they are accepted and ignored,
// as Ollama ignores options a runner does not use.
var ignoredOptions = map[string]bool{
	"num_keep": true, "num_batch": true, "num_gpu": true, "main_gpu": true, "use_mmap": true,
	"use_mlock": true, "num_thread": true, "numa": true, "low_vram": true, "f16_kv": true,
	"vocab_only": true, "logits_all": true, "embedding_only": true, "rope_frequency_base": true,
	"rope_frequency_scale": true, "mirostat": true, "mirostat_tau": true, "mirostat_eta": true,
	"penalize_newline": true, "tfs_z": true, "num_gqa": true,
}

// apply merges an Ollama options map into o. It checks each value's type
// and range; Validate checks the sampler's ranges afterwards.
func (o *genOptions) apply(m map[string]any) error {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys) // the first error is the same every time
	for _, k := range keys {
		v := m[k]
		if v == nil || ignoredOptions[k] {
			continue
		}
		var err error
		s := &o.Sampling
		switch k {
		case "num_ctx":
			o.NumCtx, err = intOpt(k, v, 0, maxNumCtx)
		case "num_predict":
			o.NumPredict, err = intOpt(k, v, -2, maxNumCtx)
			if o.NumPredict == 0 || o.NumPredict == -2 {
				o.NumPredict = -1 // Ollama: 0 is unset, -2 fills the context
			}
		case "seed":
			var seed int
			seed, err = intOpt(k, v, -maxSeed, maxSeed)
			s.Seed = int64(seed)
		case "top_k":
			s.TopK, err = intOpt(k, v, 0, maxInt)
		case "repeat_last_n":
			s.RepeatLastN, err = intOpt(k, v, -1, maxInt)
		case "temperature":
			s.Temperature, err = floatOpt(k, v)
		case "top_p":
			s.TopP, err = floatOpt(k, v)
		case "min_p":
			s.MinP, err = floatOpt(k, v)
		case "typical_p":
			s.TypicalP, err = floatOpt(k, v)
		case "repeat_penalty":
			s.RepeatPenalty, err = floatOpt(k, v)
		case "presence_penalty":
			s.PresencePenalty, err = floatOpt(k, v)
		case "frequency_penalty":
			s.FrequencyPenalty, err = floatOpt(k, v)
		case "stop":
			o.Stop, err = stopOpt(v)
		default:
			// Unknown options are ignored, as Ollama does.
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (o *genOptions) validate() error {
	if err := o.Sampling.Validate(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	return checkStops(o.Stop)
}

func number(k string, v any) (float64, error) {
	f, ok := v.(float64)
	if !ok {
		return 0, fmt.Errorf("%w: option %q must be a number, not %T", ErrInvalid, k, v)
	}
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return 0, fmt.Errorf("%w: option %q is %v", ErrInvalid, k, f)
	}
	return f, nil
}

func intOpt(k string, v any, lo, hi int) (int, error) {
	f, err := number(k, v)
	if err != nil {
		return 0, err
	}
	if f < float64(lo) || f > float64(hi) {
		return 0, fmt.Errorf("%w: option %q is %v, outside [%d, %d]", ErrInvalid, k, f, lo, hi)
	}
	return int(f), nil // Ollama truncates fractions too
}

func floatOpt(k string, v any) (float32, error) {
	f, err := number(k, v)
	if err != nil {
		return 0, err
	}
	if math.Abs(f) > math.MaxFloat32 {
		return 0, fmt.Errorf("%w: option %q is %v, too large", ErrInvalid, k, f)
	}
	return float32(f), nil
}

func stopOpt(v any) ([]string, error) {
	switch v := v.(type) {
	case string:
		return []string{v}, checkStops([]string{v})
	case []string:
		return v, checkStops(v)
	case []any:
		if len(v) > maxStops {
			return nil, fmt.Errorf("%w: %d stop strings (limit %d)", ErrInvalid, len(v), maxStops)
		}
		out := make([]string, len(v))
		for i, x := range v {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("%w: option \"stop\" must be an array of strings", ErrInvalid)
			}
			out[i] = s
		}
		return out, checkStops(out)
	}
	return nil, fmt.Errorf("%w: option \"stop\" must be an array of strings, not %T", ErrInvalid, v)
}

func checkStops(stops []string) error {
	if len(stops) > maxStops {
		return fmt.Errorf("%w: %d stop strings (limit %d)", ErrInvalid, len(stops), maxStops)
	}
	for _, s := range stops {
		switch {
		case s == "":
			return fmt.Errorf("%w: empty stop string", ErrInvalid)
		case len(s) > maxStopBytes:
			return fmt.Errorf("%w: stop string of %d bytes (limit %d)", ErrInvalid, len(s), maxStopBytes)
		case !utf8.ValidString(s):
			return fmt.Errorf("%w: stop string is not valid UTF-8", ErrInvalid)
		}
	}
	return nil
}
