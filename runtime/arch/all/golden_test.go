package all_test

import (
	"testing"

	"github.com/hearth-llm/hearth/internal/golden"
	"github.com/hearth-llm/hearth/internal/testdata"
	_ "github.com/hearth-llm/hearth/runtime/arch/all"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// TestGoldenParity runs every model × prompt of shared/golden (Llama) through
// the CPU backend and holds the logits, the top-1 at every prompt position
// and the greedy continuation to llama.cpp's (tolerances in internal/golden).
func TestGoldenParity(t *testing.T) {
	be := cpu.New(0)
	defer be.Close()
	golden.RunModels(t, testdata.Dir(t, "golden"), testdata.Dir(t, "models"), be)
}

// TestArchGolden does the same for the other families (shared/arch).
func TestArchGolden(t *testing.T) {
	be := cpu.New(0)
	defer be.Close()
	golden.RunModels(t, testdata.Dir(t, "arch/golden"), testdata.Dir(t, "arch/models"), be)
}

// TestArchNextGolden does the same for the newest families
// (shared/arch-next) that Hearth runs: Gemma 4 and Qwen 3.5, dense and
// with experts.
func TestArchNextGolden(t *testing.T) {
	be := cpu.New(0)
	defer be.Close()
	golden.RunModels(t, golden.Only(t, testdata.Dir(t, "arch-next/golden"), golden.ArchNext...), testdata.Dir(t, "arch-next/models"), be)
}

// TestSynthGolden holds Hearth to llama.cpp on shapes no shared model
// has (internal/golden's testdata/synth: Gemma 4 with sliding and global
// layers of different KV widths); the files are written here.
func TestSynthGolden(t *testing.T) {
	cases, models := golden.Synth(t)
	be := cpu.New(0)
	defer be.Close()
	golden.RunModels(t, cases, models, be)
}
