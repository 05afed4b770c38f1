package models

import (
	"errors"
	"fmt"
	"path"
	"strings"
)

// The parts a short name leaves out, as in Ollama.
const (
	DefaultHost      = "registry.ollama.ai"
	DefaultNamespace = "library"
	DefaultTag       = "latest"
)

// ErrInvalidName is wrapped by every ParseName error.
var ErrInvalidName = errors.New("invalid model name")

// Limits on names: Ollama's, which keep every part a safe file name.
const (
	maxPartLen = 80
	maxHostLen = 350
	maxNameLen = 512
)

// Name is a parsed model name: [host/][namespace/]model[:tag].
type Name struct {
	Host, Namespace, Model, Tag string
}

// ParseName parses s, filling the parts it omits with DefaultHost,
// DefaultNamespace and DefaultTag. Each part must start with a letter, digit
// or '_' and hold only letters, digits, '_', '-' and '.' (the host may also
// hold ':' for a port), at most 80 bytes (the host 350): a valid name never
// contains "..", a path separator, a drive letter or a NUL.
func ParseName(s string) (Name, error) {
	if s == "" {
		return Name{}, fmt.Errorf("%w: empty", ErrInvalidName)
	}
	if len(s) > maxNameLen {
		return Name{}, fmt.Errorf("%w: %d bytes (limit %d)", ErrInvalidName, len(s), maxNameLen)
	}
	n := Name{Host: DefaultHost, Namespace: DefaultNamespace, Tag: DefaultTag}
	parts := strings.Split(s, "/")
	last := parts[len(parts)-1]
	if model, tag, ok := strings.Cut(last, ":"); ok {
		n.Model, n.Tag = model, tag
	} else {
		n.Model = last
	}
	switch len(parts) {
	case 1:
	case 2:
		n.Namespace = parts[0]
	case 3:
		n.Host, n.Namespace = parts[0], parts[1]
	default:
		return Name{}, fmt.Errorf("%w: %q has more than three parts", ErrInvalidName, s)
	}
	for _, p := range []struct {
		what, v string
		max     int
		colon   bool
	}{
		{"host", n.Host, maxHostLen, true},
		{"namespace", n.Namespace, maxPartLen, false},
		{"model", n.Model, maxPartLen, false},
		{"tag", n.Tag, maxPartLen, false},
	} {
		if err := checkPart(p.v, p.max, p.colon); err != nil {
			return Name{}, fmt.Errorf("%w: %s of %q %v", ErrInvalidName, p.what, s, err)
		}
	}
	return n, nil
}

func checkPart(s string, max int, colon bool) error {
	if s == "" {
		return errors.New("is empty")
	}
	if len(s) > max {
		return fmt.Errorf("is longer than %d bytes", max)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_':
		case i > 0 && (c == '-' || c == '.'):
		case i > 0 && colon && c == ':':
		default:
			return fmt.Errorf("has %q at byte %d (allowed: letters, digits, '_', and '-' or '.' after the first)", c, i)
		}
	}
	return nil
}

// String is the full name, host/namespace/model:tag.
func (n Name) String() string {
	return n.Host + "/" + n.Namespace + "/" + n.Model + ":" + n.Tag
}

// Short is the name as Ollama displays it: the default host and namespace
// left out, the tag always there ("llama3.2:latest", "user/m:q4").
func (n Name) Short() string {
	s := n.Model + ":" + n.Tag
	switch {
	case n.Host != DefaultHost:
		s = n.Host + "/" + n.Namespace + "/" + s
	case n.Namespace != DefaultNamespace:
		s = n.Namespace + "/" + s
	}
	return s
}

// relPath is the model's file under Hearth's folder, slash-separated:
// [host/][namespace/]model[:tag].gguf, the default parts and the tag
// "latest" left out.
func (n Name) relPath() string {
	file := n.Model
	if n.Tag != DefaultTag {
		file += ":" + n.Tag
	}
	file += ".gguf"
	switch {
	case n.Host != DefaultHost:
		return path.Join(n.Host, n.Namespace, file)
	case n.Namespace != DefaultNamespace:
		return path.Join(n.Namespace, file)
	}
	return file
}

// Equal compares names as Ollama does: case-insensitively.
func (n Name) Equal(o Name) bool {
	return strings.EqualFold(n.String(), o.String())
}
