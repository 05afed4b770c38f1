package models

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"sync"
)

// fileStamp is a file's state as stat sees it. Two stats of a file with
// equal stamps see the same bytes, as far as a file system can tell
// without reading them: an atomic rename over the path changes the inode,
// a write in place changes the size or the modification time, and either
// (and a new hard link) changes the status-change time, which no user can
// set back.
type fileStamp struct {
	size         int64
	mtime, ctime int64 // Unix nanoseconds; ctime 0 where unknown
	dev, ino     uint64
}

func (f fileStamp) String() string {
	return fmt.Sprintf("%d:%d:%d:%d:%d", f.dev, f.ino, f.size, f.mtime, f.ctime)
}

// digestEntry is a content digest computed for a file in one state.
type digestEntry struct {
	stamp  fileStamp
	digest string
}

// digestCache holds the content digest of each file of Hearth's folder,
// by path, valid while the file's stamp is unchanged: a file is hashed
// once per change, not on every listing or request.
type digestCache struct {
	mu      sync.Mutex
	byPath  map[string]digestEntry
	running map[string]*hashCall // one hash per path at a time
	hashes  int                  // files hashed, for tests
}

type hashCall struct {
	done   chan struct{}
	stamp  fileStamp
	digest string
	err    error
}

// cached returns the digest of the file at p in state st, if known.
func (c *digestCache) cached(p string, st fileStamp) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.byPath[p]
	if ok && e.stamp == st {
		return e.digest, true
	}
	return "", false
}

// digest returns the sha256 of the file at p ("sha256:<hex>") in state
// st, hashing it unless a digest for that state is cached. Callers
// asking for the same path at once share one hash.
func (c *digestCache) digest(p string, st fileStamp) (string, error) {
	for range 3 {
		if d, ok := c.cached(p, st); ok {
			return d, nil
		}
		c.mu.Lock()
		call, ok := c.running[p]
		if !ok {
			call = &hashCall{done: make(chan struct{})}
			c.running[p] = call
			c.mu.Unlock()
			call.stamp, call.digest, call.err = hashFile(p)
			c.mu.Lock()
			delete(c.running, p)
			c.hashes++
			if call.err == nil {
				c.byPath[p] = digestEntry{stamp: call.stamp, digest: call.digest}
			}
			close(call.done)
		}
		c.mu.Unlock()
		<-call.done
		if call.err != nil {
			return "", call.err
		}
		if call.stamp == st {
			return call.digest, nil
		}
		// The hash was of another state of the file (replaced since the
		// caller's stat): stat again and retry.
		fi, err := os.Stat(p)
		if err != nil {
			return "", err
		}
		st = stampOf(fi)
	}
	return "", fmt.Errorf("%s: the file keeps changing; cannot compute its digest", p)
}

// hashFile hashes the file at p and returns the state it had: the stamp
// of the open file before and after reading, which must agree (a file
// written in place while it is read is not given a digest).
func hashFile(p string) (fileStamp, string, error) {
	f, err := os.Open(p)
	if err != nil {
		return fileStamp{}, "", err
	}
	defer f.Close()
	before, err := f.Stat()
	if err != nil {
		return fileStamp{}, "", err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return fileStamp{}, "", fmt.Errorf("hashing %s: %w", p, err)
	}
	after, err := f.Stat()
	if err != nil {
		return fileStamp{}, "", err
	}
	if stampOf(before) != stampOf(after) {
		return fileStamp{}, "", fmt.Errorf("hashing %s: the file changed while it was read", p)
	}
	return stampOf(before), "sha256:" + hex.EncodeToString(h.Sum(nil)), nil
}

// Hashes reports how many files the store has hashed for their digests
// (each file once per change), for tests and logs.
func (s *Store) Hashes() int {
	s.digests.mu.Lock()
	defer s.digests.mu.Unlock()
	return s.digests.hashes
}
