package engine

import (
	"errors"
	"fmt"
	"sort"

	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/lora"
)

// ErrUnknownAdapter is returned when a request names an adapter the model
// has not registered.
var ErrUnknownAdapter = errors.New("unknown LoRA adapter")

// adapter is a registered LoRA adapter and the prefix-cache salt of the
// KV computed with it (never reused, so an adapter registered again
// under the same name never meets the old one's cached blocks).
type adapter struct {
	ad   *lora.Adapter
	salt uint64
	path string
}

// AdapterInfo describes a registered adapter.
type AdapterInfo struct {
	Name, Path string
	Scale      float32 // the user scale (× alpha/rank per tensor)
	Alpha      float32
	Tensors    int
	Bytes      int64 // host memory of its float32 pairs
}

// LoadAdapter reads the llama.cpp GGUF LoRA adapter at path, checks it
// against the model (architecture, tensor names, shapes) and registers
// it as name at user scale scale (1: as trained; llama.cpp's --lora-scaled),
// replacing an adapter of that name. Requests pick it by name
// (SeqOptions.Adapter, Sequence.UseAdapter); sequences already running
// with a replaced adapter finish with it. Safe for concurrent use with
// forward passes.
func (m *Model) LoadAdapter(name, path string, scale float32) error {
	if name == "" {
		return errors.New("adapter name is empty")
	}
	m.mu.Lock() // binding copies to the backend: not during a forward pass
	ad, err := lora.Load(name, path, m.File, m.Arch, m.backend, scale)
	m.mu.Unlock()
	if err != nil {
		return err
	}
	m.adMu.Lock()
	defer m.adMu.Unlock()
	if m.adapters == nil {
		m.adapters = map[string]*adapter{}
	}
	m.adSalt++
	m.adapters[name] = &adapter{ad: ad, salt: m.adSalt, path: path}
	return nil
}

// RemoveAdapter unregisters name (false if it was not registered).
// Sequences running with it finish with it; its memory goes with the
// last of them (on the CPU; a device backend's stays until Close).
func (m *Model) RemoveAdapter(name string) bool {
	m.adMu.Lock()
	defer m.adMu.Unlock()
	_, ok := m.adapters[name]
	delete(m.adapters, name)
	return ok
}

// Adapters lists the registered adapters by name.
func (m *Model) Adapters() []AdapterInfo {
	m.adMu.Lock()
	defer m.adMu.Unlock()
	var out []AdapterInfo
	for name, a := range m.adapters {
		out = append(out, AdapterInfo{Name: name, Path: a.path, Scale: a.ad.UserScale, Alpha: a.ad.Alpha, Tensors: a.ad.Tensors, Bytes: a.ad.Bytes})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// adapter returns the registered adapter name ("" : none, nil).
func (m *Model) adapter(name string) (*adapter, error) {
	if name == "" {
		return nil, nil
	}
	m.adMu.Lock()
	defer m.adMu.Unlock()
	a, ok := m.adapters[name]
	if !ok {
		return nil, fmt.Errorf("%w %q", ErrUnknownAdapter, name)
	}
	return a, nil
}

// UseAdapter makes the sequence run with the registered adapter name (""
// : the bare model). Only before its first Eval: its KV is the adapter's.
func (s *Sequence) UseAdapter(name string) error {
	if len(s.tokens) > 0 {
		return errors.New("engine: UseAdapter after the sequence started")
	}
	a, err := s.m.adapter(name)
	if err != nil {
		return err
	}
	s.adapters = nil
	if a != nil {
		s.adapters = []arch.Adapter{a.ad}
	}
	return nil
}
