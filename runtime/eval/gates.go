package eval

import (
	"fmt"
	"math"
)

// Gate is a limit on one figure of a run, for CI: --max-kld 0.05 fails
// when the mean KLD is above 0.05.
type Gate struct {
	Flag  string  // the command-line flag that set it ("--max-kld")
	Name  string  // the figure ("mean KLD")
	Limit float64 // in the figure's unit
	Max   bool    // true: the figure may not exceed Limit; false: not fall below
}

// GateError is a gate that failed; its message is one line naming the
// gate, the figure and the limit.
type GateError struct {
	Gate
	Value float64
}

func (e *GateError) Error() string {
	op := "<"
	if e.Max {
		op = ">"
	}
	return fmt.Sprintf("gate failed: %s %.4g %s %s %.4g", e.Name, e.Value, op, e.Flag, e.Limit)
}

// Check returns a *GateError when v breaks the gate (NaN always does).
func (g Gate) Check(v float64) error {
	if math.IsNaN(v) || (g.Max && v > g.Limit) || (!g.Max && v < g.Limit) {
		return &GateError{g, v}
	}
	return nil
}

// CheckAll checks each gate against its figure and returns the failures.
func CheckAll(gates []Gate, figures []float64) []error {
	var errs []error
	for i, g := range gates {
		if err := g.Check(figures[i]); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}
