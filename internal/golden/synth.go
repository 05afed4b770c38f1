package golden

import (
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/hearth-llm/hearth/loader/synth"
)

// synthModels are the synthetic files of testdata/synth (written by
// testdata/make_synth_golden.sh) by golden folder: shape and file type.
var synthModels = map[string][2]string{
	// Sliding layers of 2 heads of 64 and global ones of 2 heads of 128
	// (KV widths 128 and 256: every released Gemma 4's differ), 3
	// shared-KV layers, per-layer embeddings, proportional RoPE.
	"gemma4-tiny-synth-Q8_0": {"tiny-gemma4", "q8_0"},
}

// Synth writes the synthetic models of the golden cases in testdata/synth
// into a temporary folder (removed with t) and returns the cases' folder
// and the models': RunModels' arguments for shapes no shared model has,
// with no shared data needed. The files are loader/synth's at seed 0, as
// the script that made the cases wrote them.
func Synth(t testing.TB) (cases, models string) {
	t.Helper()
	// The cases sit beside this file; a test binary built elsewhere
	// (-trimpath, scripts/gpu-check.sh) is told where by HEARTH_SYNTH_GOLDEN.
	cases = os.Getenv("HEARTH_SYNTH_GOLDEN")
	if _, src, _, ok := runtime.Caller(0); ok && cases == "" {
		cases = filepath.Join(filepath.Dir(src), "testdata", "synth")
	}
	if st, err := os.Stat(cases); err != nil || !st.IsDir() {
		t.Fatalf("golden: no synthetic cases at %q (set HEARTH_SYNTH_GOLDEN to internal/golden/testdata/synth)", cases)
	}
	models = t.TempDir()
	for name, sq := range synthModels {
		s, err := synth.LookupShape(sq[0])
		if err != nil {
			t.Fatal(err)
		}
		if err := synth.WriteWith(filepath.Join(models, name+".gguf"), s, sq[1], synth.Options{Threads: 1}); err != nil {
			t.Fatal(err)
		}
	}
	return cases, models
}
