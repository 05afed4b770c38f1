package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"
)

var (
	// ErrDigestMismatch means a download's sha256 differs from the one the
	// registry announced; the bytes are discarded.
	ErrDigestMismatch = errors.New("sha256 digest mismatch")
	// ErrUnsupportedRef means Pull cannot fetch that kind of reference.
	ErrUnsupportedRef = errors.New("unsupported model reference")
)

// DefaultRegistry is the Ollama registry's base URL.
const DefaultRegistry = "https://registry.ollama.ai"

// PullOptions configure Pull.
type PullOptions struct {
	// Registry is the base URL used for names on DefaultHost;
	// "": DefaultRegistry. Names with another host use https://HOST.
	Registry string
	// Client makes the requests; nil: a client with header timeouts and no
	// overall one (downloads take as long as they take).
	Client *http.Client
	// Name is the local name for a URL pull; "": the file's name without
	// ".gguf".
	Name string
	// Progress, when set, is called as the pull goes on (on Pull's
	// goroutine, at most about ten times a second while bytes flow).
	Progress func(Progress)
}

// Progress is one step of a pull, in Ollama's /api/pull vocabulary:
// "pulling manifest", "pulling <digest prefix>" (with Total and
// Completed bytes), "verifying sha256 digest", "writing manifest",
// "success".
type Progress struct {
	Status           string
	Digest           string
	Total, Completed int64
}

var defaultClient = &http.Client{Transport: &http.Transport{
	Proxy:                 http.ProxyFromEnvironment,
	DialContext:           (&net.Dialer{Timeout: 30 * time.Second}).DialContext,
	TLSHandshakeTimeout:   30 * time.Second,
	ResponseHeaderTimeout: 60 * time.Second,
	IdleConnTimeout:       90 * time.Second,
}}

// pullLocks keeps two pulls in one process from writing the same file.
var pullLocks sync.Map // path -> *sync.Mutex

// IsURL reports whether ref is a URL (or a Hugging Face host path) rather
// than a registry name.
func IsURL(ref string) bool {
	l := strings.ToLower(ref)
	return strings.Contains(l, "://") || strings.HasPrefix(l, "hf.co/") || strings.HasPrefix(l, "huggingface.co/")
}

// Pull fetches ref into Hearth's folder and returns the model. ref is an
// Ollama registry name ("llama3.2", "llama3.2:1b", "user/model:tag",
// "host/user/model:tag"), whose manifest's model layer is downloaded, or
// the URL of a GGUF file (a Hugging Face ".../resolve/REV/FILE.gguf" or
// ".../blob/REV/FILE.gguf" link, or any http(s) URL ending in .gguf).
// The download resumes an earlier partial one with a Range request, and
// its sha256 is checked against the registry's digest (for URLs, against
// Hugging Face's X-Linked-Etag or an ETag that is a sha256, when present)
// before the file is renamed into place.
func (s *Store) Pull(ctx context.Context, ref string, o PullOptions) (Model, error) {
	if s.dir == "" {
		return Model{}, errors.New("pull: no models folder")
	}
	if o.Client == nil {
		o.Client = defaultClient
	}
	if o.Progress == nil {
		o.Progress = func(Progress) {}
	}
	if IsURL(ref) {
		return s.pullURL(ctx, ref, o)
	}
	return s.pullRegistry(ctx, ref, o)
}

func (s *Store) lockedDest(n Name) (string, func(), error) {
	p, err := s.Path(n)
	if err != nil {
		return "", nil, err
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return "", nil, err
	}
	mu, _ := pullLocks.LoadOrStore(p, new(sync.Mutex))
	mu.(*sync.Mutex).Lock()
	return p, mu.(*sync.Mutex).Unlock, nil
}

func (s *Store) pullRegistry(ctx context.Context, ref string, o PullOptions) (Model, error) {
	n, err := ParseName(ref)
	if err != nil {
		return Model{}, err
	}
	base := "https://" + n.Host
	if n.Host == DefaultHost {
		base = DefaultRegistry
		if o.Registry != "" {
			base = o.Registry
		}
	}
	repo := n.Namespace + "/" + n.Model
	o.Progress(Progress{Status: "pulling manifest"})
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/"+repo+"/manifests/"+n.Tag, nil)
	if err != nil {
		return Model{}, err
	}
	req.Header.Set("Accept", manifestV2)
	resp, err := o.Client.Do(req)
	if err != nil {
		return Model{}, fmt.Errorf("pull %s: %w", n.Short(), err)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxManifestBytes+1))
	resp.Body.Close()
	switch {
	case err != nil:
		return Model{}, fmt.Errorf("pull %s: manifest: %w", n.Short(), err)
	case resp.StatusCode == http.StatusNotFound:
		return Model{}, fmt.Errorf("%w: %q is not in the registry", ErrNotFound, n.Short())
	case resp.StatusCode == http.StatusUnauthorized:
		return Model{}, fmt.Errorf("pull %s: the registry wants authentication, which Hearth does not do yet", n.Short())
	case resp.StatusCode != http.StatusOK:
		return Model{}, fmt.Errorf("pull %s: manifest: %s", n.Short(), resp.Status)
	case len(b) > maxManifestBytes:
		return Model{}, fmt.Errorf("pull %s: manifest larger than %d bytes", n.Short(), maxManifestBytes)
	}
	var mf manifest
	if err := json.Unmarshal(b, &mf); err != nil {
		return Model{}, fmt.Errorf("pull %s: manifest: %w", n.Short(), err)
	}
	ml, ok := mf.layer(mediaModel)
	if !ok {
		return Model{}, fmt.Errorf("pull %s: the manifest has no model layer (%w)", n.Short(), ErrUnsupportedRef)
	}
	if !digestRE.MatchString(ml.Digest) || ml.Size <= 0 {
		return Model{}, fmt.Errorf("pull %s: model layer with digest %q, size %d", n.Short(), ml.Digest, ml.Size)
	}
	dest, unlock, err := s.lockedDest(n)
	if err != nil {
		return Model{}, err
	}
	defer unlock()
	blobURL := base + "/v2/" + repo + "/blobs/" + ml.Digest
	if err := download(ctx, o, blobURL, dest, strings.TrimPrefix(ml.Digest, "sha256:"), ml.Size); err != nil {
		return Model{}, fmt.Errorf("pull %s: %w", n.Short(), err)
	}
	o.Progress(Progress{Status: "writing manifest"})
	s.forget(dest)
	m, err := s.hearthModel(n, dest, true)
	if err != nil {
		return Model{}, err
	}
	o.Progress(Progress{Status: "success"})
	return m, nil
}

var sha256Hex = regexp.MustCompile(`^[0-9a-f]{64}$`)

func (s *Store) pullURL(ctx context.Context, ref string, o PullOptions) (Model, error) {
	if l := strings.ToLower(ref); strings.HasPrefix(l, "hf.co/") || strings.HasPrefix(l, "huggingface.co/") {
		ref = "https://" + ref
	}
	u, err := url.Parse(ref)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Model{}, fmt.Errorf("%w: %q is not an http(s) URL", ErrUnsupportedRef, ref)
	}
	u.User = nil
	if h := strings.ToLower(u.Hostname()); h == "hf.co" || h == "huggingface.co" {
		u.Host = "huggingface.co"
		// The page of a file (/blob/) and its bytes (/resolve/).
		if parts := strings.SplitN(strings.TrimPrefix(u.Path, "/"), "/", 4); len(parts) == 4 && parts[2] == "blob" {
			parts[2] = "resolve"
			u.Path = "/" + strings.Join(parts, "/")
		}
		if !strings.Contains(u.Path, "/resolve/") {
			return Model{}, fmt.Errorf("%w: give a GGUF file's URL (https://huggingface.co/ORG/REPO/resolve/main/FILE.gguf), not %q",
				ErrUnsupportedRef, ref)
		}
	}
	file := path.Base(u.Path)
	if !strings.HasSuffix(strings.ToLower(file), ".gguf") {
		return Model{}, fmt.Errorf("%w: %q does not name a .gguf file", ErrUnsupportedRef, ref)
	}
	local := o.Name
	if local == "" {
		local = file[:len(file)-len(".gguf")]
	}
	n, err := ParseName(local)
	if err != nil {
		return Model{}, fmt.Errorf("%w (choose a local name with --name)", err)
	}
	o.Progress(Progress{Status: "pulling manifest"})
	digest, size := probe(ctx, o.Client, u.String())
	dest, unlock, err := s.lockedDest(n)
	if err != nil {
		return Model{}, err
	}
	defer unlock()
	if err := download(ctx, o, u.String(), dest, digest, size); err != nil {
		return Model{}, fmt.Errorf("pull %s: %w", u.Redacted(), err)
	}
	s.forget(dest)
	m, err := s.hearthModel(n, dest, true)
	if err != nil {
		return Model{}, err
	}
	o.Progress(Progress{Status: "success"})
	return m, nil
}

// probe asks for a file's sha256 and size without following redirects:
// Hugging Face answers a LFS file's URL with a redirect that carries
// X-Linked-Etag (the sha256) and X-Linked-Size; other servers may give a
// sha256 ETag. Failures leave the digest unknown ("") and the size -1.
func probe(ctx context.Context, c *http.Client, u string) (digest string, size int64) {
	nc := *c
	nc.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, u, nil)
	if err != nil {
		return "", -1
	}
	resp, err := nc.Do(req)
	if err != nil {
		return "", -1
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return "", -1
	}
	clean := func(v string) string {
		return strings.ToLower(strings.Trim(strings.TrimPrefix(v, "W/"), `"`))
	}
	size = -1
	if v := clean(resp.Header.Get("X-Linked-Etag")); sha256Hex.MatchString(v) {
		digest = v
	} else if v := clean(resp.Header.Get("Etag")); sha256Hex.MatchString(v) {
		digest = v
	}
	if v, err := strconv.ParseInt(resp.Header.Get("X-Linked-Size"), 10, 64); err == nil && v > 0 {
		size = v
	} else if resp.StatusCode == http.StatusOK && resp.ContentLength > 0 {
		size = resp.ContentLength
	}
	return digest, size
}

// download fetches u into dest through dest+".partial", resuming what that
// file holds. wantHex ("" unknown) is the sha256 to check; wantSize (<= 0
// unknown) the length.
func download(ctx context.Context, o PullOptions, u, dest, wantHex string, wantSize int64) error {
	partial := dest + ".partial"
	f, err := os.OpenFile(partial, os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if f != nil {
			f.Close()
		}
	}()
	h := sha256.New()
	have, err := io.Copy(h, f) // hash what an earlier try left
	if err != nil {
		return err
	}
	if wantSize > 0 && have > wantSize {
		if have, err = restart(f, &h); err != nil {
			return err
		}
	}
	short := strings.TrimPrefix(wantHex, "sha256:")
	if len(short) > 12 {
		short = short[:12]
	}
	status := "pulling " + short
	if short == "" {
		status = "pulling " + path.Base(dest)
	}
	digest := ""
	if wantHex != "" {
		digest = "sha256:" + wantHex
	}
	report := func(done int64) {
		o.Progress(Progress{Status: status, Digest: digest, Total: max(wantSize, 0), Completed: done})
	}

	for try := 0; wantSize <= 0 || have < wantSize; try++ {
		if try == 2 {
			return errors.New("the server did not honour the download's range")
		}
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
		if err != nil {
			return err
		}
		if have > 0 {
			req.Header.Set("Range", fmt.Sprintf("bytes=%d-", have))
		}
		resp, err := o.Client.Do(req)
		if err != nil {
			return err
		}
		switch {
		case resp.StatusCode == http.StatusPartialContent && have > 0:
			if start, ok := rangeStart(resp.Header.Get("Content-Range")); !ok || start != have {
				resp.Body.Close()
				if have, err = restart(f, &h); err != nil {
					return err
				}
				continue
			}
		case resp.StatusCode == http.StatusOK:
			if have > 0 { // the server sent it all again
				if have, err = restart(f, &h); err != nil {
					resp.Body.Close()
					return err
				}
			}
			if wantSize <= 0 && resp.ContentLength > 0 {
				wantSize = resp.ContentLength
			}
		case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable && have > 0:
			resp.Body.Close()
			if have, err = restart(f, &h); err != nil {
				return err
			}
			continue
		default:
			resp.Body.Close()
			return fmt.Errorf("download: %s", resp.Status)
		}
		report(have)
		w := &progressWriter{w: io.MultiWriter(f, h), n: have, report: report}
		_, err = io.Copy(w, resp.Body)
		resp.Body.Close()
		have = w.n
		report(have)
		if err != nil {
			return fmt.Errorf("download interrupted after %d bytes (run pull again to resume): %w", have, err)
		}
		if wantSize <= 0 {
			break
		}
		if have < wantSize {
			return fmt.Errorf("download ended after %d of %d bytes (run pull again to resume)", have, wantSize)
		}
	}
	if wantSize > 0 && have != wantSize {
		return fmt.Errorf("downloaded %d bytes, want %d", have, wantSize)
	}
	o.Progress(Progress{Status: "verifying sha256 digest"})
	if got := hex.EncodeToString(h.Sum(nil)); wantHex != "" && got != wantHex {
		f.Close()
		f = nil
		os.Remove(partial)
		return fmt.Errorf("%w: got sha256:%s, want sha256:%s", ErrDigestMismatch, got, wantHex)
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		f = nil
		return err
	}
	f = nil
	return os.Rename(partial, dest)
}

// restart empties the partial file and the running hash.
func restart(f *os.File, h *hash.Hash) (int64, error) {
	if err := f.Truncate(0); err != nil {
		return 0, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return 0, err
	}
	*h = sha256.New()
	return 0, nil
}

// rangeStart parses "bytes START-END/TOTAL".
func rangeStart(cr string) (int64, bool) {
	rest, ok := strings.CutPrefix(cr, "bytes ")
	if !ok {
		return 0, false
	}
	start, _, ok := strings.Cut(rest, "-")
	if !ok {
		return 0, false
	}
	v, err := strconv.ParseInt(start, 10, 64)
	return v, err == nil
}

type progressWriter struct {
	w      io.Writer
	n      int64
	last   time.Time
	report func(int64)
}

func (p *progressWriter) Write(b []byte) (int, error) {
	n, err := p.w.Write(b)
	p.n += int64(n)
	if now := time.Now(); now.Sub(p.last) >= 100*time.Millisecond {
		p.last = now
		p.report(p.n)
	}
	return n, err
}
