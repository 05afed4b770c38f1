package llama_test

import (
	"testing"

	"github.com/hearth-llm/hearth/internal/golden"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// TestMistral3Golden holds a random-weight Mistral 3 model (attention
// temperature growing every 16 positions, YaRN with a log multiplier;
// testdata/make_mistral3.sh made it and llama.cpp's outputs) to llama.cpp.
func TestMistral3Golden(t *testing.T) {
	be := cpu.New(0)
	defer be.Close()
	golden.RunModels(t, "testdata/golden", "testdata", be)
}
