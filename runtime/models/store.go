package models

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"
)

var (
	// ErrNotFound means no model has the name.
	ErrNotFound = errors.New("model not found")
	// ErrReadOnly means the model lives in the Ollama store, which Hearth
	// only reads.
	ErrReadOnly = errors.New("model is in the Ollama store, which Hearth does not modify")
)

// Source says where a model lives.
type Source string

const (
	SourceHearth Source = "hearth" // Hearth's own folder
	SourceOllama Source = "ollama" // an Ollama store, read only
)

// Model is one model of the store.
type Model struct {
	Name       Name
	Path       string // the GGUF file
	Size       int64  // bytes of the GGUF file
	ModifiedAt time.Time
	// Digest identifies the model as Ollama's digests do ("sha256:<hex>"):
	// for the Ollama store, the manifest's digest; for Hearth's folder,
	// Version. Empty from Locate when Version is not yet known.
	Digest string
	// Version is the sha256 of the GGUF file's bytes ("sha256:<hex>"): for
	// the Ollama store, the model layer's digest (the blob's name); for
	// Hearth's folder, computed once per change of the file (its size,
	// times and inode) and cached. Empty from Locate when not yet known.
	Version string
	// Stamp says what state of the file (or of the manifest) this Model
	// describes, without reading the file: two Models with equal Stamps
	// have the same Version. It is opaque.
	Stamp  string
	Source Source

	// From the Ollama manifest's small layers (empty for Hearth's folder,
	// and filled by Resolve only): the default system message, the default
	// options (Ollama's params layer), and Ollama's Go prompt template,
	// which Hearth does not run (it uses the GGUF's chat template).
	System   string
	Params   map[string]any
	Template string
}

// Options configure a Store.
type Options struct {
	// Dir is Hearth's folder; created on first write.
	Dir string
	// OllamaDir is an Ollama store to read (its manifests/ and blobs/);
	// "" reads none.
	OllamaDir string
}

// Store finds models by name. It is safe for concurrent use.
type Store struct {
	dir, ollamaDir string

	mu    sync.Mutex
	infos map[string]cachedInfo // by path

	digests digestCache
}

// New returns a store over o's folders. The folders need not exist.
func New(o Options) *Store {
	s := &Store{dir: o.Dir, ollamaDir: o.OllamaDir, infos: map[string]cachedInfo{},
		digests: digestCache{byPath: map[string]digestEntry{}, running: map[string]*hashCall{}}}
	if s.dir != "" {
		s.dir = filepath.Clean(s.dir)
	}
	if s.ollamaDir != "" {
		s.ollamaDir = filepath.Clean(s.ollamaDir)
	}
	return s
}

// Dir returns Hearth's folder.
func (s *Store) Dir() string { return s.dir }

// OllamaDir returns the Ollama store read, or "".
func (s *Store) OllamaDir() string { return s.ollamaDir }

// DefaultDir is $HEARTH_MODELS, or ~/.hearth/models.
func DefaultDir() (string, error) {
	if d := os.Getenv("HEARTH_MODELS"); d != "" {
		return d, nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("models folder: %w (set HEARTH_MODELS or --models)", err)
	}
	return filepath.Join(home, ".hearth", "models"), nil
}

// DefaultOllamaDir is $OLLAMA_MODELS, or ~/.ollama/models; "" when neither
// can be found.
func DefaultOllamaDir() string {
	if d := os.Getenv("OLLAMA_MODELS"); d != "" {
		return d
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".ollama", "models")
}

// pathIn joins rel (slash-separated) under root and checks that the result
// stays inside root. Names are already restricted by ParseName; this is
// the second lock on the door.
func pathIn(root, rel string) (string, error) {
	if root == "" {
		return "", fmt.Errorf("%w: no folder", ErrNotFound)
	}
	if !filepath.IsLocal(filepath.FromSlash(rel)) {
		return "", fmt.Errorf("%w: %q leaves the models folder", ErrInvalidName, rel)
	}
	p := filepath.Join(root, filepath.FromSlash(rel))
	r, err := filepath.Rel(root, p)
	if err != nil || !filepath.IsLocal(r) {
		return "", fmt.Errorf("%w: %q leaves the models folder", ErrInvalidName, rel)
	}
	return p, nil
}

// Path returns where the model n lives (or would live) in Hearth's folder.
func (s *Store) Path(n Name) (string, error) {
	return pathIn(s.dir, n.relPath())
}

// List returns every model of both folders, sorted by name; a name in
// Hearth's folder hides the same name in the Ollama store. Files whose names
// are not valid model names are left out. Each model's Version is known:
// a file of Hearth's folder not seen in its present state is hashed.
func (s *Store) List() ([]Model, error) { return s.list(true) }

func (s *Store) list(hash bool) ([]Model, error) {
	seen := map[string]bool{}
	var out []Model
	hearth, err := s.listHearth(hash)
	if err != nil {
		return nil, err
	}
	for _, m := range hearth {
		k := strings.ToLower(m.Name.String())
		if !seen[k] {
			seen[k] = true
			out = append(out, m)
		}
	}
	for _, m := range s.listOllama() {
		k := strings.ToLower(m.Name.String())
		if !seen[k] {
			seen[k] = true
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name.Short() < out[j].Name.Short() })
	return out, nil
}

func (s *Store) listHearth(hash bool) ([]Model, error) {
	if s.dir == "" {
		return nil, nil
	}
	var out []Model
	err := filepath.WalkDir(s.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == s.dir && errors.Is(err, fs.ErrNotExist) {
				return fs.SkipAll
			}
			return nil // an unreadable subfolder hides only itself
		}
		rel, _ := filepath.Rel(s.dir, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if p != s.dir && (strings.Count(rel, "/") >= 2 || strings.HasPrefix(d.Name(), ".")) {
				return fs.SkipDir // host/namespace/ at most
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".gguf") {
			return nil
		}
		n, err := ParseName(strings.TrimSuffix(rel, ".gguf"))
		if err != nil {
			return nil
		}
		m, err := s.hearthModel(n, p, hash)
		if err == nil {
			out = append(out, m)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	// "m.gguf" and "m:latest.gguf" name the same model: keep the first.
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].Path) < len(out[j].Path) })
	return out, nil
}

// hearthModel describes the file p of Hearth's folder; with hash its
// Version is computed when not cached, else it is left empty.
func (s *Store) hearthModel(n Name, p string, hash bool) (Model, error) {
	st, err := os.Stat(p) // follows a symlink the user put there
	if err != nil {
		return Model{}, err
	}
	if !st.Mode().IsRegular() {
		return Model{}, fmt.Errorf("%s: not a regular file", p)
	}
	stamp := stampOf(st)
	m := Model{Name: n, Path: p, Size: st.Size(), ModifiedAt: st.ModTime(), Source: SourceHearth,
		Stamp: p + "\x00" + stamp.String()}
	if hash {
		m.Version, err = s.digests.digest(p, stamp)
		if err != nil {
			return Model{}, err
		}
	} else {
		m.Version, _ = s.digests.cached(p, stamp)
	}
	m.Digest = m.Version
	return m, nil
}

// Ollama's manifest and its layers' media types.
type manifest struct {
	SchemaVersion int     `json:"schemaVersion"`
	MediaType     string  `json:"mediaType"`
	Config        layer   `json:"config"`
	Layers        []layer `json:"layers"`
}

type layer struct {
	MediaType string `json:"mediaType"`
	Digest    string `json:"digest"`
	Size      int64  `json:"size"`
}

const (
	mediaModel    = "application/vnd.ollama.image.model"
	mediaParams   = "application/vnd.ollama.image.params"
	mediaSystem   = "application/vnd.ollama.image.system"
	mediaTemplate = "application/vnd.ollama.image.template"
	manifestV2    = "application/vnd.docker.distribution.manifest.v2+json"

	maxManifestBytes = 1 << 20
	maxSmallLayer    = 1 << 20
)

var digestRE = regexp.MustCompile(`^sha256:[0-9a-f]{64}$`)

func (m *manifest) layer(media string) (layer, bool) {
	for _, l := range m.Layers {
		if l.MediaType == media {
			return l, true
		}
	}
	return layer{}, false
}

func (s *Store) blobPath(digest string) (string, error) {
	if !digestRE.MatchString(digest) {
		return "", fmt.Errorf("invalid digest %q", digest)
	}
	return pathIn(s.ollamaDir, "blobs/sha256-"+strings.TrimPrefix(digest, "sha256:"))
}

func (s *Store) listOllama() []Model {
	if s.ollamaDir == "" {
		return nil
	}
	root := filepath.Join(s.ollamaDir, "manifests")
	var out []Model
	filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return fs.SkipAll
			}
			return nil
		}
		rel, _ := filepath.Rel(root, p)
		depth := strings.Count(filepath.ToSlash(rel), "/")
		if d.IsDir() {
			if depth >= 3 {
				return fs.SkipDir
			}
			return nil
		}
		if depth != 3 {
			return nil
		}
		parts := strings.Split(filepath.ToSlash(rel), "/")
		n, err := ParseName(parts[0] + "/" + parts[1] + "/" + parts[2] + ":" + parts[3])
		if err != nil {
			return nil
		}
		if m, err := s.ollamaModel(n, p, false); err == nil {
			out = append(out, m)
		}
		return nil
	})
	return out
}

// ollamaModel reads the manifest at p; with layers it also reads the small
// layers (system, params, template).
func (s *Store) ollamaModel(n Name, p string, layers bool) (Model, error) {
	b, st, err := readLimited(p, maxManifestBytes)
	if err != nil {
		return Model{}, err
	}
	var mf manifest
	if err := json.Unmarshal(b, &mf); err != nil {
		return Model{}, fmt.Errorf("manifest %s: %w", p, err)
	}
	ml, ok := mf.layer(mediaModel)
	if !ok {
		return Model{}, fmt.Errorf("manifest %s: no model layer", p)
	}
	blob, err := s.blobPath(ml.Digest)
	if err != nil {
		return Model{}, fmt.Errorf("manifest %s: %w", p, err)
	}
	bst, err := os.Stat(blob)
	if err != nil {
		return Model{}, err
	}
	sum := sha256.Sum256(b)
	m := Model{
		Name: n, Path: blob, Size: bst.Size(), ModifiedAt: st.ModTime(),
		Digest: "sha256:" + hex.EncodeToString(sum[:]), Version: ml.Digest, Source: SourceOllama,
	}
	m.Stamp = m.Digest
	if !layers {
		return m, nil
	}
	small := func(media string) []byte {
		l, ok := mf.layer(media)
		if !ok {
			return nil
		}
		bp, err := s.blobPath(l.Digest)
		if err != nil {
			return nil
		}
		b, _, err := readLimited(bp, maxSmallLayer)
		if err != nil {
			return nil
		}
		return b
	}
	m.System = string(small(mediaSystem))
	m.Template = string(small(mediaTemplate))
	if b := small(mediaParams); b != nil {
		var params map[string]any
		if json.Unmarshal(b, &params) == nil {
			m.Params = params
		}
	}
	return m, nil
}

func readLimited(p string, limit int64) ([]byte, os.FileInfo, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return nil, nil, err
	}
	if !st.Mode().IsRegular() || st.Size() > limit {
		return nil, nil, fmt.Errorf("%s: not a regular file of at most %d bytes", p, limit)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit))
	return b, st, err
}

// Resolve finds the model named name: in Hearth's folder first, then in the
// Ollama store, then by a case-insensitive match. Errors wrap
// ErrInvalidName or ErrNotFound. The model's Version is known: a file not
// seen in its present state is hashed (which reads it whole).
func (s *Store) Resolve(name string) (Model, error) { return s.resolve(name, true) }

// Locate is Resolve without reading any model file: the Version of a file
// of Hearth's folder is filled only when cached for the file's present
// state (its Stamp), else empty. It costs a few stats, for every request.
func (s *Store) Locate(name string) (Model, error) { return s.resolve(name, false) }

func (s *Store) resolve(name string, hash bool) (Model, error) {
	n, err := ParseName(name)
	if err != nil {
		return Model{}, err
	}
	if s.dir != "" {
		rels := []string{n.relPath()}
		if n.Tag == DefaultTag {
			rels = append(rels, strings.TrimSuffix(n.relPath(), ".gguf")+":"+DefaultTag+".gguf")
		}
		for _, rel := range rels {
			p, err := pathIn(s.dir, rel)
			if err != nil {
				return Model{}, err
			}
			if _, err := os.Stat(p); err != nil {
				continue
			}
			return s.hearthModel(n, p, hash)
		}
	}
	if s.ollamaDir != "" {
		p, err := pathIn(s.ollamaDir, "manifests/"+n.Host+"/"+n.Namespace+"/"+n.Model+"/"+n.Tag)
		if err != nil {
			return Model{}, err
		}
		if m, err := s.ollamaModel(n, p, true); err == nil {
			return m, nil
		}
	}
	all, err := s.list(false)
	if err != nil {
		return Model{}, err
	}
	for _, m := range all {
		if m.Name.Equal(n) {
			if m.Source == SourceHearth && hash {
				return s.hearthModel(m.Name, m.Path, true)
			}
			if m.Source == SourceOllama {
				p := filepath.Join(s.ollamaDir, "manifests", m.Name.Host, m.Name.Namespace, m.Name.Model, m.Name.Tag)
				return s.ollamaModel(m.Name, p, true)
			}
			return m, nil
		}
	}
	return Model{}, fmt.Errorf("%w: %q", ErrNotFound, n.Short())
}

// Delete removes the model named name from Hearth's folder. A model of the
// Ollama store is refused with ErrReadOnly.
func (s *Store) Delete(name string) error {
	m, err := s.Resolve(name)
	if err != nil {
		return err
	}
	if m.Source != SourceHearth {
		return fmt.Errorf("%w: remove %q with `ollama rm`", ErrReadOnly, m.Name.Short())
	}
	s.forget(m.Path)
	return os.Remove(m.Path)
}

// Copy makes the model src also available as dst, in Hearth's folder (a
// hard link where the file system allows, else a copy). An existing dst is
// replaced, as Ollama does.
func (s *Store) Copy(src, dst string) (Model, error) {
	from, err := s.Resolve(src)
	if err != nil {
		return Model{}, err
	}
	n, err := ParseName(dst)
	if err != nil {
		return Model{}, err
	}
	p, err := s.Path(n)
	if err != nil {
		return Model{}, err
	}
	if filepath.Clean(p) == filepath.Clean(from.Path) {
		return from, nil
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return Model{}, err
	}
	tmp := p + ".tmp-copy"
	os.Remove(tmp)
	if err := os.Link(from.Path, tmp); err != nil {
		if err := copyFile(from.Path, tmp); err != nil {
			os.Remove(tmp)
			return Model{}, err
		}
	}
	if err := os.Rename(tmp, p); err != nil {
		os.Remove(tmp)
		return Model{}, err
	}
	s.forget(p)
	return s.hearthModel(n, p, true)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(to, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
