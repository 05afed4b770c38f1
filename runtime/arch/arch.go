// Package arch is the registry of model architectures. Each architecture
// lives in its own package (runtime/arch/llama, …), decodes its typed
// configuration from GGUF metadata, binds its weights by name and writes its
// forward pass against backend operations only; it registers itself with
// one Register call from its init function. Nothing else switches on the
// architecture name.
package arch

import (
	"errors"
	"fmt"
	"sort"
	"sync"

	"github.com/hearth-llm/hearth/loader/gguf"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// ErrUnsupported is wrapped when a file's architecture is not registered.
var ErrUnsupported = errors.New("unsupported architecture")

// Info is what every architecture reports about a loaded model.
type Info struct {
	Arch          string
	VocabSize     int
	ContextLength int // trained context (n_ctx_train)
	Layers        int
	Embedding     int
	Params        uint64 // parameter count
}

// Model is a loaded model bound to a backend.
type Model interface {
	Info() Info
	// NewKV allocates a KV cache of ctx positions.
	NewKV(ctx int) (backend.KV, error)
	// Forward evaluates tokens ids at positions pos (one sequence, cached in
	// kv) and returns the logits: all rows (len(ids) × VocabSize) when all is
	// true, else the last row only. The returned slice is reused by the next
	// call.
	Forward(ids, pos []int32, kv backend.KV, all bool) ([]float32, error)
}

// Loader binds an architecture's weights from f on be.
type Loader func(f *gguf.File, be backend.Backend) (Model, error)

var (
	mu      sync.RWMutex
	loaders = map[string]Loader{}
)

// Register makes an architecture available under the GGUF
// general.architecture name. It panics on a duplicate name (a programmer
// error at init).
func Register(name string, l Loader) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := loaders[name]; dup {
		panic("arch: duplicate registration of " + name)
	}
	loaders[name] = l
}

// Names lists the registered architectures.
func Names() []string {
	mu.RLock()
	defer mu.RUnlock()
	var names []string
	for n := range loaders {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Load binds the model in f on be.
func Load(f *gguf.File, be backend.Backend) (Model, error) {
	name, ok := f.String("general.architecture")
	if !ok {
		return nil, errors.New("missing metadata general.architecture")
	}
	mu.RLock()
	l, ok := loaders[name]
	mu.RUnlock()
	if !ok {
		return nil, fmt.Errorf("%w %q (supported: %v)", ErrUnsupported, name, Names())
	}
	return l(f, be)
}
