package server

import "strings"

// stopFilter cuts generated text at the first stop string. Text that might
// be the start of a stop string is held back until the next piece shows
// whether it is; so no client ever sees part of a stop string, and the
// stop string itself is never sent.
type stopFilter struct {
	stops   []string
	pending string
	stopped bool
	// matched is the stop string found (the earliest in the text; the
	// first listed of those that begin there), once stopped.
	matched string
}

// push adds a piece and returns the text that is now safe to send, and
// whether a stop string was found (nothing after it is ever sent).
func (f *stopFilter) push(text string) (out string, stop bool) {
	if f.stopped {
		return "", true
	}
	if len(f.stops) == 0 {
		return text, false
	}
	f.pending += text
	cut := -1
	for _, s := range f.stops {
		if i := strings.Index(f.pending, s); i >= 0 && (cut < 0 || i < cut) {
			cut, f.matched = i, s
		}
	}
	if cut >= 0 {
		out, f.pending, f.stopped = f.pending[:cut], "", true
		return out, true
	}
	hold := 0
	for _, s := range f.stops {
		hold = max(hold, partialSuffix(f.pending, s))
	}
	out = f.pending[:len(f.pending)-hold]
	f.pending = f.pending[len(f.pending)-hold:]
	return out, false
}

// flush returns the text held back at the end of generation.
func (f *stopFilter) flush() string {
	out := f.pending
	f.pending = ""
	if f.stopped {
		return ""
	}
	return out
}

// partialSuffix is the length of the longest suffix of s that is a proper
// prefix of stop.
func partialSuffix(s, stop string) int {
	for n := min(len(s), len(stop)-1); n > 0; n-- {
		if strings.HasPrefix(stop, s[len(s)-n:]) {
			return n
		}
	}
	return 0
}
