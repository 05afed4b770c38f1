package models

import (
	"errors"
	"path"
	"strings"
	"testing"
)

// FuzzParseName: any string either fails with ErrInvalidName or parses to
// a name whose file path stays inside the models folder, and whose String
// form parses back to an equal name.
func FuzzParseName(f *testing.F) {
	for _, s := range []string{"llama3", "llama3:8b", "library/llama3:latest", "registry.ollama.ai/library/x:y",
		"host:8080/ns/m:t", "../etc/passwd", "a/../../b", "C:\\x", "x\x00y", "", ":", "a:b:c", strings.Repeat("a", 600)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := ParseName(s)
		if err != nil {
			if !errors.Is(err, ErrInvalidName) {
				t.Fatalf("ParseName(%q): %v does not wrap ErrInvalidName", s, err)
			}
			return
		}
		rel := n.relPath()
		escapes := path.IsAbs(rel) || strings.ContainsAny(rel, "\\\x00") || path.Clean(rel) != rel
		for _, seg := range strings.Split(rel, "/") {
			escapes = escapes || seg == ".." || seg == "." || seg == ""
		}
		if escapes {
			t.Fatalf("ParseName(%q) gives the path %q, which could leave the models folder", s, rel)
		}
		back, err := ParseName(n.String())
		if err != nil || !back.Equal(n) {
			t.Fatalf("ParseName(%q).String() = %q does not parse back (%v)", s, n.String(), err)
		}
	})
}
