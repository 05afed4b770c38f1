package server

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/ollama/ollama/api"

	"github.com/hearth-llm/hearth/runtime/models"
)

// noteAdapter records the adapter a request runs with, for its access log
// line (adapter=NAME) and the adapter's metrics.
func noteAdapter(r *http.Request, name string) {
	if ri := infoOf(r); ri != nil {
		ri.mu.Lock()
		ri.adapter = name
		ri.mu.Unlock()
	}
}

// writeVLLMError answers a LoRA route's error as vLLM does: OpenAI's
// shape, with vLLM's error types (NotFoundError, BadRequestError,
// InvalidUserInput) and the status as code.
func writeVLLMError(w http.ResponseWriter, r *http.Request, err error) {
	ae := classify(err)
	noteError(r, ae)
	if ae.status == statusClientClosed {
		return
	}
	typ := ae.typ
	if typ == "" {
		switch {
		case ae.status == http.StatusNotFound:
			typ = "NotFoundError"
		case ae.status == http.StatusUnauthorized:
			typ = "authentication_error"
		case ae.status >= 500:
			typ = "InternalServerError"
		default:
			typ = "BadRequestError"
		}
	}
	var param any
	if ae.param != "" {
		param = ae.param
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	if ae.status == http.StatusServiceUnavailable {
		h.Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	}
	w.WriteHeader(ae.status)
	json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"message": ae.msg, "type": typ, "param": param, "code": ae.status}})
}

// loadLoraRequest is vLLM's /v1/load_lora_adapter body, with Hearth's
// base_model_name and scale.
type loadLoraRequest struct {
	LoraName string `json:"lora_name"`
	// LoraPath is the llama.cpp GGUF LoRA file, relative to the models
	// folder or absolute inside it.
	LoraPath string `json:"lora_path"`
	// BaseModelName is the model the adapter applies to; it may be left
	// out when the store holds one model.
	BaseModelName string   `json:"base_model_name"`
	Scale         *float32 `json:"scale"`
	// LoadInplace replaces an adapter of the same name (vLLM's).
	LoadInplace bool   `json:"load_inplace"`
	LoraIntID   *int64 `json:"lora_int_id"` // vLLM's; ignored
}

// handleLoadLora registers an adapter at run time and loads it on its
// base (loading the base), as vLLM's dynamic LoRA loading does. Its path
// must be inside the models folder. The answer is vLLM's plain text.
func (s *Server) handleLoadLora(w http.ResponseWriter, r *http.Request) {
	var req loadLoraRequest
	if err := decodeJSON(r, &req); err != nil {
		writeVLLMError(w, r, err)
		return
	}
	if req.LoraName == "" || req.LoraPath == "" {
		writeVLLMError(w, r, &apiError{status: http.StatusBadRequest, typ: "InvalidUserInput",
			msg: "Both 'lora_name' and 'lora_path' must be provided."})
		return
	}
	noteModel(r, req.LoraName)
	path, err := s.adapterPath(req.LoraPath)
	if err != nil {
		writeVLLMError(w, r, withParam(err, "lora_path"))
		return
	}
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		writeVLLMError(w, r, &apiError{status: http.StatusNotFound, typ: "NotFoundError", param: "lora_path",
			msg: fmt.Sprintf("No adapter found for %s", req.LoraPath)})
		return
	}
	base := req.BaseModelName
	if base == "" {
		all, err := s.baseModels()
		if err != nil {
			writeVLLMError(w, r, err)
			return
		}
		if len(all) != 1 {
			writeVLLMError(w, r, &apiError{status: http.StatusBadRequest, typ: "InvalidUserInput", param: "base_model_name",
				msg: fmt.Sprintf("'base_model_name' is required: the server has %d models", len(all))})
			return
		}
		base = all[0].Name.Short()
	}
	spec := AdapterSpec{Name: req.LoraName, Base: base, Path: path, Scale: 1}
	if req.Scale != nil {
		spec.Scale = *req.Scale
		if spec.Scale == 0 {
			writeVLLMError(w, r, &apiError{status: http.StatusBadRequest, typ: "InvalidUserInput", param: "scale",
				msg: "scale 0 is the base model: name the base instead"})
			return
		}
	}
	if req.LoadInplace {
		if old := s.loras.lookup(req.LoraName); old != nil && old.source == "create" {
			writeVLLMError(w, r, errorf(http.StatusConflict, "%q is an adapter model made by /api/create: delete it with /api/delete first", req.LoraName))
			return
		}
	}
	e, err := s.registerAdapter(r.Context(), spec, "api", req.LoadInplace, true)
	if err != nil {
		writeVLLMError(w, r, err)
		return
	}
	noteAdapter(r, e.run())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Success: LoRA adapter '%s' added successfully.", req.LoraName)
}

// handleUnloadLora unregisters an adapter (vLLM's /v1/unload_lora_adapter):
// later requests for it get 404; those running finish with it. An adapter
// model made by /api/create keeps its manifest: it is back on restart
// (/api/delete removes it for good).
func (s *Server) handleUnloadLora(w http.ResponseWriter, r *http.Request) {
	var req struct {
		LoraName  string `json:"lora_name"`
		LoraIntID *int64 `json:"lora_int_id"`
	}
	if err := decodeJSON(r, &req); err != nil {
		writeVLLMError(w, r, err)
		return
	}
	if req.LoraName == "" {
		writeVLLMError(w, r, &apiError{status: http.StatusBadRequest, typ: "InvalidUserInput",
			msg: "'lora_name' needs to be provided.", param: "lora_name"})
		return
	}
	noteModel(r, req.LoraName)
	e, err := s.unregisterAdapter(req.LoraName)
	if err != nil {
		writeVLLMError(w, r, err)
		return
	}
	noteAdapter(r, e.run())
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "Success: LoRA adapter '%s' removed successfully.", req.LoraName)
}

func withParam(err error, param string) error {
	var ae *apiError
	if errors.As(err, &ae) {
		c := *ae
		c.param = param
		return &c
	}
	return err
}

// baseModels lists the store's models that can serve as bases: its GGUF
// models, without the adapter files kept beside them.
func (s *Server) baseModels() ([]models.Model, error) {
	all, err := s.cfg.Store.List()
	if err != nil {
		return nil, err
	}
	out := all[:0]
	for _, m := range all {
		if !s.isAdapterFile(m) {
			out = append(out, m)
		}
	}
	return out, nil
}

// isAdapterFile says whether a file of the store is a LoRA adapter
// (general.type "adapter"), which lists as no model of its own.
func (s *Server) isAdapterFile(m models.Model) bool {
	info, err := s.cfg.Store.Describe(m)
	return err == nil && info.Adapter
}

// maxBlobBytes bounds an uploaded blob (/api/blobs): a LoRA adapter.
const maxBlobBytes = 8 << 30

var blobDigestRE = regexp.MustCompile(`^sha256[:-]([0-9a-f]{64})$`)

// blobPath is where the blob digest lives in the models folder
// (blobs/sha256-<hex>, Ollama's naming).
func (s *Server) blobPath(digest string) (string, error) {
	m := blobDigestRE.FindStringSubmatch(digest)
	if m == nil {
		return "", errorf(http.StatusBadRequest, "invalid digest %q: want sha256:<64 hex digits>", digest)
	}
	if s.cfg.Store.Dir() == "" {
		return "", errorf(http.StatusBadRequest, "the server has no models folder to keep blobs in")
	}
	return filepath.Join(s.cfg.Store.Dir(), "blobs", "sha256-"+m[1]), nil
}

// handleBlobHead is Ollama's HEAD /api/blobs/{digest}: 200 when the blob
// is in the models folder.
func (s *Server) handleBlobHead(w http.ResponseWriter, r *http.Request) {
	p, err := s.blobPath(r.PathValue("digest"))
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	if st, err := os.Stat(p); err != nil || !st.Mode().IsRegular() {
		writeError(w, r, dialectOllama, errorf(http.StatusNotFound, "blob %s not found", r.PathValue("digest")))
		return
	}
	w.WriteHeader(http.StatusOK)
}

// handleBlobUpload is Ollama's POST /api/blobs/{digest}, as `ollama
// create` sends an ADAPTER file before /api/create: the body is kept in
// the models folder when its sha256 is the digest (201; 200 when the
// blob is already there).
func (s *Server) handleBlobUpload(w http.ResponseWriter, r *http.Request) {
	digest := r.PathValue("digest")
	p, err := s.blobPath(digest)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
		w.WriteHeader(http.StatusOK)
		return
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	tmp, err := os.CreateTemp(filepath.Dir(p), ".upload-*")
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), r.Body)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		var mbe *http.MaxBytesError
		if !errors.As(err, &mbe) {
			err = errorf(http.StatusBadRequest, "reading the blob: %v", err)
		}
		writeError(w, r, dialectOllama, err)
		return
	}
	if got := hex.EncodeToString(h.Sum(nil)); got != blobDigestRE.FindStringSubmatch(digest)[1] {
		writeError(w, r, dialectOllama, errorf(http.StatusBadRequest, "digest mismatch: the body's sha256 is %s", got))
		return
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	w.WriteHeader(http.StatusCreated)
}

// handleCreate is Ollama's /api/create for what Hearth can make: an
// adapter model, from a base model of the store with one entry in
// adapters. Each entry's value is the sha256 digest of a blob uploaded
// with /api/blobs (as `ollama create` sends an ADAPTER file), or a path
// in the models folder (then a digest as value, when the blob is not
// there, is checked against the file named by the key). The model is kept
// as NAME.lora.json in the models folder, so it outlives the server.
// Anything else /api/create does (GGUF files, quantizing, templates,
// parameters) is 501.
func (s *Server) handleCreate(w http.ResponseWriter, r *http.Request) {
	var req api.CreateRequest
	if err := decodeJSON(r, &req); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	//lint:ignore SA1019 older clients still send the model as name
	name, ok := requiredModel(w, r, req.Model, req.Name)
	if !ok {
		return
	}
	if len(req.Adapters) == 0 || req.From == "" {
		writeError(w, r, dialectOllama, errorf(http.StatusNotImplemented,
			"/api/create in Hearth makes LoRA adapter models only (from and adapters); other models are GGUF files: put NAME.gguf in the models folder, or use /api/pull"))
		return
	}
	if len(req.Files) > 0 || req.Quantize != "" || req.RemoteHost != "" || req.Template != "" || req.System != "" ||
		len(req.Parameters) > 0 || len(req.Messages) > 0 {
		writeError(w, r, dialectOllama, errorf(http.StatusNotImplemented,
			"Hearth's adapter models take from and adapters only (no files, quantize, template, system, parameters or messages)"))
		return
	}
	if len(req.Adapters) > 1 {
		writeError(w, r, dialectOllama, errorf(http.StatusBadRequest, "one adapter per model (%d given)", len(req.Adapters)))
		return
	}
	var path, want string
	var err error
	for k, v := range req.Adapters {
		path, want, err = s.createAdapterPath(k, v)
	}
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	n, err := models.ParseName(name)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	mpath, err := s.manifestPath(n)
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	if old := s.loras.lookup(name); old != nil && old.source != "create" {
		writeError(w, r, dialectOllama, errorf(http.StatusConflict,
			"%q is an adapter loaded by --lora or /v1/load_lora_adapter: unload it first", old.run()))
		return
	}
	e, err := s.loras.prepare(AdapterSpec{Name: name, Base: req.From, Path: path, Scale: 1})
	if err == nil && want != "" && !strings.EqualFold(e.digest, want) {
		err = errorf(http.StatusBadRequest, "adapter %s has digest %s, not %s", filepath.Base(path), e.digest, want)
	}
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	rel, _ := filepath.Rel(s.cfg.Store.Dir(), path)
	b, _ := json.MarshalIndent(loraManifest{Base: e.base.Short(), Adapter: filepath.ToSlash(rel), Scale: e.Scale}, "", "  ")
	if err := writeFileAtomic(mpath, append(b, '\n')); err != nil {
		writeError(w, r, dialectOllama, fmt.Errorf("writing %s: %w", mpath, err))
		return
	}
	if old := s.loras.lookup(name); old != nil {
		s.unregisterAdapter(name)
	}
	e.manifest = mpath
	if err := s.loras.add(e, "create", true); err != nil {
		writeError(w, r, dialectOllama, err)
		return
	}
	noteAdapter(r, e.run())
	s.log.Info("LoRA adapter model created", "adapter", e.run(), "base", e.base.Short(), "path", path, "manifest", mpath)
	steps := []api.ProgressResponse{{Status: "using existing layer " + e.digest}, {Status: "writing manifest"}, {Status: "success"}}
	if !wantStream(req.Stream) {
		writeJSON(w, http.StatusOK, steps[len(steps)-1])
		return
	}
	st := newStreamer(w, false)
	for _, p := range steps {
		if st.send(p) != nil {
			return
		}
	}
}

// createAdapterPath resolves an entry of /api/create's adapters: a blob's
// digest (the file it was uploaded as is the key), or a path in the
// models folder; want is the digest the file must have ("": none).
func (s *Server) createAdapterPath(key, value string) (path, want string, err error) {
	if m := blobDigestRE.FindStringSubmatch(value); m != nil {
		want = "sha256:" + m[1]
		bp, err := s.blobPath(value)
		if err != nil {
			return "", "", err
		}
		if st, err := os.Stat(bp); err == nil && st.Mode().IsRegular() {
			return bp, want, nil
		}
		if key == "" {
			return "", "", errorf(http.StatusBadRequest, "blob %s not found: upload it first (POST /api/blobs/%s)", want, want)
		}
		p, err := s.adapterPath(key)
		if err != nil {
			return "", "", err
		}
		if _, err := os.Stat(p); err != nil {
			return "", "", errorf(http.StatusBadRequest, "blob %s not found (upload it first: POST /api/blobs/%s), nor %s in the models folder", want, want, key)
		}
		return p, want, nil
	}
	p, err := s.adapterPath(value)
	return p, "", err
}

func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".lora-*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// deleteAdapter is /api/delete of an adapter: unregistered and, for an
// adapter model made by /api/create, its manifest removed (the adapter
// file stays). ok is false when name is not an adapter.
func (s *Server) deleteAdapter(w http.ResponseWriter, r *http.Request, name string) bool {
	if s.loras.lookup(name) == nil {
		return false
	}
	e, err := s.unregisterAdapter(name)
	if err == nil && e.manifest != "" {
		err = os.Remove(e.manifest)
	}
	if err != nil {
		writeError(w, r, dialectOllama, err)
		return true
	}
	noteAdapter(r, e.run())
	w.WriteHeader(http.StatusOK)
	return true
}

// adapterTags are the adapters as /api/tags lists them: the base's
// details with parent_model set to the base.
func (s *Server) adapterTags() []api.ListModelResponse {
	var out []api.ListModelResponse
	for _, e := range s.loras.list() {
		d := api.ModelDetails{Format: "gguf"}
		if m, err := s.cfg.Store.Locate(e.base.String()); err == nil {
			d, _ = s.details(m)
		}
		d.ParentModel = e.base.Short()
		out = append(out, api.ListModelResponse{Name: e.name.Short(), Model: e.name.Short(), ModifiedAt: e.modified, Size: e.size,
			Digest: digestHex(e.digest), Details: d})
	}
	return out
}

// oaiAdapterModel is an adapter as /v1/models lists it, in vLLM's shape:
// parent is the base model, root the adapter file (relative to the models
// folder when inside it).
func (s *Server) oaiAdapterModel(e *adapterEntry) oaiModel {
	root := e.Path
	if rel, err := filepath.Rel(s.cfg.Store.Dir(), e.Path); err == nil && filepath.IsLocal(rel) {
		root = filepath.ToSlash(rel)
	}
	parent := e.base.Short()
	return oaiModel{ID: e.run(), Object: "model", Created: e.modified.Unix(), OwnedBy: e.name.Namespace, Version: e.digest,
		Root: root, Parent: &parent}
}

// adapterModelfile is /api/show's modelfile for an adapter model.
func adapterModelfile(e *adapterEntry) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# Modelfile generated by Hearth\nFROM %s\nADAPTER %s\n", e.base.Short(), e.Path)
	if e.Scale != 1 {
		fmt.Fprintf(&b, "# scale %g\n", e.Scale)
	}
	return b.String()
}
