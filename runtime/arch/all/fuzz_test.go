package all_test

import (
	"bytes"
	"github.com/hearth-llm/hearth/internal/fuzzgguf"
	"os"
	"path/filepath"
	"testing"

	"github.com/hearth-llm/hearth/internal/testdata"
	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/loader/tokenizer"
	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/cpu"
)

// fuzzModels are the files FuzzLoad mutates: a Llama and the families
// whose loaders have the most to check (mixtures, windows, sinks, fused
// and stacked tensors, MXFP4).
var fuzzModels = []string{"models/stories260K-q8_0.gguf", "arch/models/qwen3moe-h1001-Q8_0.gguf",
	"arch/models/gpt-oss-h1001-MXFP4_MOE.gguf", "arch/models/gemma2-h1001-Q8_0.gguf", "arch/models/gemma3-h1001-Q8_0.gguf"}

// FuzzLoad rewrites one numeric metadata entry of a real model (any
// value: zero, huge, negative as a signed key) and loads the result:
// the loader must answer with an error or a model that runs a two-token
// forward pass, never panic or allocate what the metadata claims. (A
// fatal out-of-memory is not recoverable, so the fuzzer catching one
// fails the whole run, which is the point.)
func FuzzLoad(f *testing.F) {
	type source struct {
		file *gguf.File
		keys []int // numeric metadata entries
	}
	var srcs []source
	for _, name := range fuzzModels {
		dir, file := filepath.Split(name)
		raw, err := os.ReadFile(filepath.Join(testdata.Dir(f, filepath.Clean(dir)), file))
		if err != nil {
			f.Fatal(err)
		}
		src, err := gguf.Parse(raw)
		if err != nil {
			f.Fatal(err)
		}
		srcs = append(srcs, source{file: src, keys: fuzzgguf.NumericKeys(src)})
	}
	for m, s := range srcs {
		for i := range s.keys {
			f.Add(uint8(m), uint8(i), uint64(0))
			f.Add(uint8(m), uint8(i), uint64(1)<<31)
			f.Add(uint8(m), uint8(i), ^uint64(0))
		}
	}
	be := cpu.New(1)
	f.Cleanup(be.Close)
	f.Fuzz(func(t *testing.T, model, which uint8, v uint64) {
		s := srcs[int(model)%len(srcs)]
		kv := s.file.KV[s.keys[int(which)%len(s.keys)]]
		w := gguf.NewWriter()
		w.CopyMetadata(s.file)
		w.Set(kv.Key, fuzzgguf.Numeric(kv.Value.Type, v))
		if err := w.CopyTensors(s.file); err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		if _, err := w.WriteTo(&buf); err != nil {
			t.Fatal(err)
		}
		file, err := gguf.Parse(buf.Bytes())
		if err != nil {
			return
		}
		if _, err := tokenizer.FromGGUF(file); err != nil {
			return
		}
		// Placement describes the model before loading it: a hostile
		// value must fail there too, or describe what Load binds.
		needs, derr := arch.Describe(file)
		m, err := arch.Load(file, be)
		if err != nil {
			return
		}
		if derr != nil {
			t.Fatalf("Load succeeds where Describe fails: %v", derr)
		}
		if info := m.Info(); len(needs.KV) != info.Layers || needs.Info.VocabSize != info.VocabSize {
			t.Fatalf("Describe: %d layers, vocabulary %d; Load: %+v", len(needs.KV), needs.Info.VocabSize, info)
		}
		kvc, err := m.NewKV(16)
		if err != nil {
			return
		}
		m.Forward(arch.Single([]int32{1, 2}, 0, kvc, false))
	})
}
