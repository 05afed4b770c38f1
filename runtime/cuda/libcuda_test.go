package cuda

import (
	"reflect"
	"testing"
)

// TestSymbolTable: every field of libcuda is bound by exactly one entry of
// symbols, so Load resolves each driver function once and no call can
// reach a symbol the table forgot.
func TestSymbolTable(t *testing.T) {
	var l libcuda
	for _, s := range symbols {
		at := s.at(&l)
		if at.name != "" {
			t.Errorf("%s and %s bind the same field", at.name, s.name)
		}
		at.name = s.name
	}
	v := reflect.ValueOf(l)
	for i := range v.NumField() {
		if v.Field(i).FieldByName("name").String() == "" {
			t.Errorf("libcuda.%s is bound by no entry of symbols", v.Type().Field(i).Name)
		}
	}
}
