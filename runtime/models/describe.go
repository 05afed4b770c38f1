package models

import (
	"fmt"
	"math"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/quant"
	"github.com/hearth-llm/hearth/runtime/arch"
)

// Info is what the GGUF header says about a model, for listings and
// /api/show; reading it maps the file but loads no weights.
type Info struct {
	Format            string // "gguf"
	Arch              string // general.architecture
	Params            uint64 // parameter count (elements of every tensor)
	ParameterSize     string // Params as Ollama prints it: "8.0B", "135M", "293K"
	QuantizationLevel string // "Q4_0", "Q4_K_M", "F32", …
	ContextLength     int    // trained context (arch.TrainedContext), 0 when missing
	ChatTemplate      string // tokenizer.chat_template, "" when none
	// Embedding says the file names a pooling type (<arch>.pooling_type):
	// an embedding model, as Ollama decides its capabilities.
	Embedding bool
	// Adapter says the file is a LoRA adapter (general.type "adapter"),
	// not a model: servers list it only as the adapter models made of it.
	Adapter bool
}

type cachedInfo struct {
	size  int64
	mtime time.Time
	info  Info
}

// Describe reads m's GGUF header. Results are cached by path, size and
// modification time.
func (s *Store) Describe(m Model) (Info, error) {
	st, err := os.Stat(m.Path)
	if err != nil {
		return Info{}, err
	}
	s.mu.Lock()
	c, ok := s.infos[m.Path]
	s.mu.Unlock()
	if ok && c.size == st.Size() && c.mtime.Equal(st.ModTime()) {
		return c.info, nil
	}
	f, err := gguf.Open(m.Path)
	if err != nil {
		return Info{}, err
	}
	defer f.Close()
	info := describe(f)
	s.mu.Lock()
	s.infos[m.Path] = cachedInfo{size: st.Size(), mtime: st.ModTime(), info: info}
	s.mu.Unlock()
	return info, nil
}

func (s *Store) forget(path string) {
	s.mu.Lock()
	delete(s.infos, path)
	s.mu.Unlock()
}

func describe(f *gguf.File) Info {
	info := Info{Format: "gguf"}
	info.Arch, _ = f.String("general.architecture")
	types := map[quant.Type]uint64{}
	for i := range f.Tensors {
		t := &f.Tensors[i]
		info.Params += t.Elements()
		if len(t.Dims) >= 2 {
			types[t.Type] += t.Elements()
		}
	}
	info.ParameterSize = HumanNumber(info.Params)
	if ft, ok := f.FileType(); ok && !strings.HasPrefix(ft, "type ") {
		info.QuantizationLevel = ft
	}
	if info.QuantizationLevel == "" {
		// The type holding most matrix weights.
		var best quant.Type
		var n uint64
		for t, c := range types {
			if c > n || (c == n && t < best) {
				best, n = t, c
			}
		}
		if n > 0 {
			info.QuantizationLevel = best.String()
		}
	}
	info.ContextLength = arch.TrainedContext(f)
	info.ChatTemplate, _ = f.String("tokenizer.chat_template")
	_, info.Embedding = f.Get(info.Arch + ".pooling_type")
	typ, _ := f.String("general.type")
	info.Adapter = typ == "adapter"
	return info
}

// HumanNumber prints a parameter count as Ollama does: "8B", "8.1B",
// "135M", "1.24M", "293K".
func HumanNumber(n uint64) string {
	const k, m, b = 1e3, 1e6, 1e9
	f := float64(n)
	switch {
	case f >= b:
		if f/b == math.Floor(f/b) {
			return fmt.Sprintf("%.0fB", f/b)
		}
		return fmt.Sprintf("%.1fB", f/b)
	case f >= m:
		if f/m == math.Floor(f/m) {
			return fmt.Sprintf("%.0fM", f/m)
		}
		return fmt.Sprintf("%.2fM", f/m)
	case f >= k:
		return fmt.Sprintf("%.0fK", f/k)
	}
	return strconv.FormatUint(n, 10)
}

// Tensor is one row of a model's tensor table.
type Tensor struct {
	Name  string
	Type  string
	Shape []uint64
}

// maxBriefArray is the longest metadata array Metadata returns without
// verbose; longer ones (the vocabulary, merges, scores) come back as nil,
// as Ollama's /api/show does.
const maxBriefArray = 64

// Metadata returns m's GGUF metadata as JSON-ready values (arrays as
// slices, non-finite floats as nil) and, with verbose, the tensor table.
// Without verbose, arrays longer than 64 elements are nil.
func (s *Store) Metadata(m Model, verbose bool) (map[string]any, []Tensor, error) {
	f, err := gguf.Open(m.Path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	out := make(map[string]any, len(f.KV))
	for _, kv := range f.KV {
		out[kv.Key] = jsonValue(kv.Value.Raw(), verbose)
	}
	if _, ok := out["general.parameter_count"]; !ok {
		out["general.parameter_count"] = describe(f).Params
	}
	var tensors []Tensor
	if verbose {
		for i := range f.Tensors {
			t := &f.Tensors[i]
			tensors = append(tensors, Tensor{Name: t.Name, Type: t.Type.String(), Shape: append([]uint64(nil), t.Dims...)})
		}
	}
	return out, tensors, nil
}

func finite(f float64) any {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		return nil
	}
	return f
}

func jsonValue(v any, verbose bool) any {
	switch v := v.(type) {
	case float32:
		return finite(float64(v))
	case float64:
		return finite(v)
	case gguf.Array:
		if !verbose && v.Len() > maxBriefArray {
			return nil
		}
		switch s := v.Values.(type) {
		case []float32:
			out := make([]any, len(s))
			for i, x := range s {
				out[i] = finite(float64(x))
			}
			return out
		case []float64:
			out := make([]any, len(s))
			for i, x := range s {
				out[i] = finite(x)
			}
			return out
		case []uint8: // encoding/json would write base64
			out := make([]int, len(s))
			for i, x := range s {
				out[i] = int(x)
			}
			return out
		case []gguf.Array:
			out := make([]any, len(s))
			for i, x := range s {
				out[i] = jsonValue(x, verbose)
			}
			return out
		}
		return v.Values
	}
	return v
}
