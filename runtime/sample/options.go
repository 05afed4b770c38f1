package sample

import (
	"errors"
	"fmt"
	"math"
)

// ErrInvalid is wrapped by every Options.Validate error.
var ErrInvalid = errors.New("sample: invalid option")

// Options are Ollama's sampling options, with its names (in the errors) and
// meanings.
type Options struct {
	// Temperature divides the logits before the draw; <= 0 means greedy
	// (argmax after the penalties, ties to the lowest id). Ollama:
	// temperature.
	Temperature float32
	// TopK keeps the K most likely tokens; 0 disables. Ollama: top_k.
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches P; 1 disables. Ollama: top_p, in (0, 1].
	TopP float32
	// MinP drops tokens less likely than MinP times the most likely one; 0
	// disables. Ollama: min_p, in [0, 1].
	MinP float32
	// TypicalP is locally typical sampling; 1 disables. Ollama: typical_p,
	// in (0, 1].
	TypicalP float32
	// RepeatPenalty divides positive logits and multiplies negative ones of
	// tokens seen in the last RepeatLastN; 1 disables. Ollama:
	// repeat_penalty, > 0.
	RepeatPenalty float32
	// RepeatLastN is the history window of the three penalties: 0 disables
	// them, -1 means every token accepted so far (Ollama's "num_ctx": the
	// sampler's history is the sequence's context). Ollama: repeat_last_n.
	RepeatLastN int
	// PresencePenalty is subtracted once from each token seen in the
	// window; FrequencyPenalty once per occurrence. Ollama:
	// presence_penalty, frequency_penalty.
	PresencePenalty, FrequencyPenalty float32
	// Seed seeds the draw; < 0 picks a random seed. Ollama: seed.
	Seed int64
}

// DefaultOptions returns Ollama's defaults (api.DefaultOptions): temperature
// 0.8, top_k 40, top_p 0.9, min_p 0, typical_p 1, repeat_penalty 1.1,
// repeat_last_n 64, presence and frequency penalties 0, seed -1.
func DefaultOptions() Options {
	return Options{
		Temperature:      0.8,
		TopK:             40,
		TopP:             0.9,
		MinP:             0.0,
		TypicalP:         1.0,
		RepeatPenalty:    1.1,
		RepeatLastN:      64,
		PresencePenalty:  0.0,
		FrequencyPenalty: 0.0,
		Seed:             -1,
	}
}

// Validate reports the first option that is NaN, infinite or out of range.
func (o Options) Validate() error {
	finite := func(name string, v float32) error {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return fmt.Errorf("%w: %s is %v", ErrInvalid, name, v)
		}
		return nil
	}
	for _, f := range []struct {
		name string
		v    float32
	}{
		{"temperature", o.Temperature}, {"top_p", o.TopP}, {"min_p", o.MinP},
		{"typical_p", o.TypicalP}, {"repeat_penalty", o.RepeatPenalty},
		{"presence_penalty", o.PresencePenalty}, {"frequency_penalty", o.FrequencyPenalty},
	} {
		if err := finite(f.name, f.v); err != nil {
			return err
		}
	}
	switch {
	case o.Temperature < 0:
		return fmt.Errorf("%w: temperature %v is negative (0 means greedy)", ErrInvalid, o.Temperature)
	case o.TopK < 0:
		return fmt.Errorf("%w: top_k %d is negative (0 disables it)", ErrInvalid, o.TopK)
	case o.TopP <= 0 || o.TopP > 1:
		return fmt.Errorf("%w: top_p %v is outside (0, 1] (1 disables it)", ErrInvalid, o.TopP)
	case o.MinP < 0 || o.MinP > 1:
		return fmt.Errorf("%w: min_p %v is outside [0, 1] (0 disables it)", ErrInvalid, o.MinP)
	case o.TypicalP <= 0 || o.TypicalP > 1:
		return fmt.Errorf("%w: typical_p %v is outside (0, 1] (1 disables it)", ErrInvalid, o.TypicalP)
	case o.RepeatPenalty <= 0:
		return fmt.Errorf("%w: repeat_penalty %v must be positive (1 disables it)", ErrInvalid, o.RepeatPenalty)
	case o.RepeatLastN < -1:
		return fmt.Errorf("%w: repeat_last_n %d is below -1 (-1 means the whole context, 0 disables)", ErrInvalid, o.RepeatLastN)
	}
	return nil
}

// penalties reports whether any penalty does something.
func (o Options) penalties() bool {
	return o.RepeatLastN != 0 && (o.RepeatPenalty != 1 || o.PresencePenalty != 0 || o.FrequencyPenalty != 0)
}
