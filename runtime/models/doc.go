// Package models is Hearth's model store: the GGUF files a server can load,
// found by name.
//
// Two places hold models:
//
//   - Hearth's own folder (--models, $HEARTH_MODELS, default
//     ~/.hearth/models): a file NAME.gguf is the model NAME (and
//     NAME:latest); NAME:TAG.gguf is NAME:TAG; a namespaced name ns/NAME
//     lives in the subfolder ns. Hearth writes here (pull, copy, rm).
//   - An existing Ollama store (~/.ollama/models, or $OLLAMA_MODELS), read
//     only: its manifests name the models and its sha256 blobs hold the
//     GGUF files, which are served in place, without copying. Hearth never
//     writes or deletes there.
//
// Invariants:
//   - every name is parsed by ParseName before it touches the file system;
//     each of its parts starts with a letter, digit or '_' and holds only
//     letters, digits, '_', '-' and '.', so no name can form "..", a path
//     separator or an absolute path; and the path built from it is checked
//     again to lie inside its folder (path-traversal tests pin this);
//   - a name in Hearth's folder wins over the same name in the Ollama store;
//   - files are replaced atomically (written to a temporary name in the same
//     folder, then renamed), so a reader never sees half a model;
//   - Pull verifies every blob's sha256 digest before it becomes visible,
//     and resumes an interrupted download with an HTTP Range request.
//
// A Store is safe for concurrent use.
package models
