package models

import (
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"testing"
)

// TestVersion: a file's version is the sha256 of its bytes, computed once
// per state of the file (Locate does not hash; a second Resolve does not
// rehash); an atomic rename over the path is a new version, even with the
// same size and modification time; Copy gives the destination the
// source's version.
func TestVersion(t *testing.T) {
	dir := t.TempDir()
	s := New(Options{Dir: dir})
	p := filepath.Join(dir, "m.gguf")
	b1 := writeGGUF(t, p)
	sum := sha256.Sum256(b1)
	v1 := "sha256:" + hex.EncodeToString(sum[:])

	if m, err := s.Locate("m"); err != nil || m.Version != "" || m.Stamp == "" {
		t.Fatalf("Locate before any hash: %+v, %v", m, err)
	}
	m, err := s.Resolve("m")
	if err != nil || m.Version != v1 || m.Digest != v1 {
		t.Fatalf("Resolve: %+v, %v; want version %s", m, err, v1)
	}
	if _, err := s.Resolve("m"); err != nil || s.Hashes() != 1 {
		t.Fatalf("second Resolve hashed again: %d hashes", s.Hashes())
	}
	if l, _ := s.Locate("m"); l.Version != v1 || l.Stamp != m.Stamp {
		t.Fatalf("Locate after the hash: %+v", l)
	}
	if all, _ := s.List(); len(all) != 1 || all[0].Version != v1 || s.Hashes() != 1 {
		t.Fatalf("List: %+v, %d hashes", all, s.Hashes())
	}

	// Another file of the same size and times, renamed over m.gguf.
	b2 := append([]byte(nil), b1...)
	b2[len(b2)-1] ^= 0xff
	tmp := filepath.Join(dir, ".m.tmp")
	if err := os.WriteFile(tmp, b2, 0o644); err != nil {
		t.Fatal(err)
	}
	st, _ := os.Stat(p)
	os.Chtimes(tmp, st.ModTime(), st.ModTime())
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	l, _ := s.Locate("m")
	if l.Stamp == m.Stamp || l.Version != "" {
		t.Fatalf("Locate after the rename: %+v (was %+v)", l, m)
	}
	m2, err := s.Resolve("m")
	sum = sha256.Sum256(b2)
	if v2 := "sha256:" + hex.EncodeToString(sum[:]); err != nil || m2.Version != v2 {
		t.Fatalf("after the rename: %+v, %v; want %s", m2, err, v2)
	}

	// cp: n gets m's version; m's version is unchanged.
	writeGGUF(t, filepath.Join(dir, "n.gguf"))
	c, err := s.Copy("m", "n")
	if err != nil || c.Version != m2.Version {
		t.Fatalf("Copy: %+v, %v", c, err)
	}
	if m3, _ := s.Resolve("m"); m3.Version != m2.Version {
		t.Fatalf("m after the copy: %s", m3.Version)
	}
}

// TestVersionOllama: a model of the Ollama store has its model layer's
// digest as its version, without hashing.
func TestVersionOllama(t *testing.T) {
	root := t.TempDir()
	g := writeGGUF(t, filepath.Join(t.TempDir(), "x.gguf"))
	ollamaStore(t, root, "registry.ollama.ai", "library", "tiny", "latest", g, `{}`)
	s := New(Options{OllamaDir: root})
	m, err := s.Resolve("tiny")
	sum := sha256.Sum256(g)
	if err != nil || m.Version != "sha256:"+hex.EncodeToString(sum[:]) || s.Hashes() != 0 || m.Stamp != m.Digest {
		t.Fatalf("%+v, %v, %d hashes", m, err, s.Hashes())
	}
}
