package synth

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/hearth-llm/hearth/loader/gguf"
)

// CacheDir is where cached synthetic models live:
// os.UserCacheDir()/hearth/models ($XDG_CACHE_HOME/hearth/models or
// ~/.cache/hearth/models on Linux).
func CacheDir() (string, error) {
	dir, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("synth: no cache folder: %w", err)
	}
	return filepath.Join(dir, "hearth", "models"), nil
}

// CachePath returns the cache path of the model of shape and file type
// quantName: CacheDir()/<shape>-<quant>.gguf.
func CachePath(shape, quantName string) (string, error) {
	dir, err := CacheDir()
	if err != nil {
		return "", err
	}
	return filepath.Join(dir, shape+"-"+strings.ToLower(quantName)+".gguf"), nil
}

// Cached returns the path of the cached model of shape s and file type
// quantName, writing it first when it is missing, incomplete or from
// another generator version or seed. fresh reports whether it was written.
func Cached(s Shape, quantName string, o Options) (path string, fresh bool, err error) {
	if _, err := LookupFileType(quantName); err != nil {
		return "", false, err
	}
	if path, err = CachePath(s.Name, quantName); err != nil {
		return "", false, err
	}
	if Check(path, s, quantName, o.Seed) == nil {
		return path, false, nil
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return "", false, fmt.Errorf("synth: %w", err)
	}
	if err := WriteWith(path, s, quantName, o); err != nil {
		return "", false, err
	}
	return path, true, nil
}

// Check reports whether path holds a complete synthetic model of shape s and
// file type quantName written by this generator version with seed: it
// parses (so every tensor's data lies inside the file), has the expected
// description and file type, and every planned tensor with its type.
func Check(path string, s Shape, quantName string, seed uint64) error {
	ft, err := LookupFileType(quantName)
	if err != nil {
		return err
	}
	f, err := gguf.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	if d, _ := f.String("general.description"); d != Description(seed) {
		return fmt.Errorf("%s: %w", path, ErrNotSynthetic)
	}
	if id, _ := f.Uint("general.file_type"); id != uint64(ft.ID) {
		return fmt.Errorf("%s: file type %d, want %d (%s): %w", path, id, ft.ID, ft.Name, ErrNotSynthetic)
	}
	plan := Plan(s, ft)
	if len(f.Tensors) != len(plan) {
		return fmt.Errorf("%s: %d tensors, want %d: %w", path, len(f.Tensors), len(plan), ErrNotSynthetic)
	}
	for _, t := range plan {
		got, ok := f.Tensor(t.Name)
		if !ok || got.Type != t.Type || fmt.Sprint(got.Dims) != fmt.Sprint(t.Dims) {
			return fmt.Errorf("%s: tensor %q differs from shape %s: %w", path, t.Name, s.Name, ErrNotSynthetic)
		}
	}
	return nil
}

// ErrNotSynthetic is returned by Check for a file that Hearth's generator
// did not write (or wrote with another version or seed).
var ErrNotSynthetic = errors.New("synth: not a synthetic model of this version")
