// Package testdata finds the shared test data (models, golden outputs,
// tokenizer vectors, quantization vectors) that tests read in place.
//
// The root is $HEARTH_TESTDATA, or else ../shared beside the repository
// root (the folder holding go.mod). When the data is missing a test skips
// with a message saying where it looked, except under CI=true, where a
// missing folder fails the test: CI must never pass by skipping.
package testdata

import (
	"os"
	"path/filepath"
	"testing"
)

// Root returns the test data root (which may not exist).
func Root() string {
	if r := os.Getenv("HEARTH_TESTDATA"); r != "" {
		return r
	}
	dir, err := os.Getwd()
	if err != nil {
		return filepath.Join("..", "shared")
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "go.mod")); err == nil {
			return filepath.Join(filepath.Dir(d), "shared")
		}
		if filepath.Dir(d) == d {
			return filepath.Join("..", "shared")
		}
	}
}

// Find returns the path of sub under the root and whether it exists.
func Find(sub string) (string, bool) {
	p := filepath.Join(Root(), sub)
	_, err := os.Stat(p)
	return p, err == nil
}

// Dir returns the path of sub under the root, skipping the test (failing it
// under CI=true) when it is missing.
func Dir(t testing.TB, sub string) string {
	t.Helper()
	p, ok := Find(sub)
	if !ok {
		Missing(t, p)
	}
	return p
}

// Missing skips t because the data at path is absent, or fails it under CI.
func Missing(t testing.TB, path string) {
	t.Helper()
	msg := "test data not found at " + path + " (set HEARTH_TESTDATA to the shared folder)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}
