package eval

import (
	"errors"
	"math"
	"testing"
)

func TestEvalGates(t *testing.T) {
	kld := Gate{Flag: "--max-kld", Name: "mean KLD", Limit: 0.05, Max: true}
	top := Gate{Flag: "--min-same-top", Name: "same top %", Limit: 90}
	if err := kld.Check(0.05); err != nil {
		t.Errorf("at the limit: %v", err)
	}
	err := kld.Check(0.0831)
	var ge *GateError
	if !errors.As(err, &ge) || err.Error() != "gate failed: mean KLD 0.0831 > --max-kld 0.05" {
		t.Errorf("got %v", err)
	}
	if err := top.Check(85.5); err == nil || err.Error() != "gate failed: same top % 85.5 < --min-same-top 90" {
		t.Errorf("got %v", err)
	}
	if kld.Check(math.NaN()) == nil {
		t.Error("NaN passed")
	}
	if errs := CheckAll([]Gate{kld, top}, []float64{0.01, 95}); len(errs) != 0 {
		t.Error(errs)
	}
}
