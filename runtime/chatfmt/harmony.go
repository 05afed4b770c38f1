package chatfmt

import (
	"errors"
	"strings"
	"unicode"
)

// harmonyParser reads gpt-oss's channels: a message is a header
// (<|start|>assistant, <|channel|>NAME, an optional to=functions.NAME
// recipient and <|constrain|>json) then <|message|> and a body that ends at
// <|end|>, <|call|> or <|return|>. The analysis channel is reasoning, a
// message to a function is a call, anything else is content.
type harmonyParser struct {
	o        ParseOptions
	inBody   bool
	kind     parseState // of the body: inReasoning, inContent or inTools
	callName string
	buf      string
	// started: some message has been read (plain text before any header
	// is content).
	started bool
}

func newHarmonyParser(o ParseOptions) *harmonyParser { return &harmonyParser{o: o} }

// harmonyEnds end a message's body; <|start|> and <|channel|> (a header
// the model began without closing the message) are left for the header.
var harmonyEnds = []string{hEnd, hCall, hReturn, hStart, hChannel}

func (p *harmonyParser) Push(text string) Delta {
	p.buf += text
	return p.step(false)
}

func (p *harmonyParser) Finish() Delta { return p.step(true) }

func (p *harmonyParser) step(final bool) Delta {
	var d Delta
	for {
		var progressed bool
		if p.inBody {
			progressed = p.body(&d, final)
		} else {
			progressed = p.header(&d, final)
		}
		if !progressed {
			return d
		}
	}
}

func (p *harmonyParser) header(d *Delta, final bool) bool {
	t := strings.TrimLeftFunc(p.buf, unicode.IsSpace)
	if t == "" {
		p.buf = ""
		return false
	}
	looksLikeHeader := strings.HasPrefix(t, hChannel) || strings.HasPrefix(t, hStart) ||
		strings.HasPrefix(t, "assistant") || strings.HasPrefix(t, "to=") || strings.HasPrefix(t, hEnd)
	if !looksLikeHeader {
		for _, m := range []string{hChannel, hStart, hEnd} {
			if strings.HasPrefix(m, t) && !final {
				return false
			}
		}
		// Plain text where a header belongs: a final answer without
		// channels.
		p.inBody, p.kind, p.buf = true, inContent, t
		return true
	}
	if strings.HasPrefix(t, hEnd) {
		p.buf = t[len(hEnd):]
		return true
	}
	at := strings.Index(t, hMessage)
	if at < 0 {
		if final || len(t) > 1024 {
			d.Content += t
			p.buf = ""
		}
		return false
	}
	head := t[:at]
	p.buf = t[at+len(hMessage):]
	p.inBody, p.started = true, true
	p.kind, p.callName = inContent, ""
	channel := ""
	if i := strings.Index(head, hChannel); i >= 0 {
		channel = head[i+len(hChannel):]
		if j := strings.IndexFunc(channel, func(r rune) bool { return unicode.IsSpace(r) || r == '<' }); j >= 0 {
			channel = channel[:j]
		}
	}
	if i := strings.Index(head, "to=functions."); i >= 0 && p.o.ParseTools {
		name := head[i+len("to=functions."):]
		if j := strings.IndexFunc(name, func(r rune) bool { return unicode.IsSpace(r) || r == '<' }); j >= 0 {
			name = name[:j]
		}
		p.kind, p.callName = inTools, name
		return true
	}
	if channel == "analysis" && !p.o.NoReasoning {
		p.kind = inReasoning
	}
	return true
}

func (p *harmonyParser) body(d *Delta, final bool) bool {
	if p.kind == inTools {
		// A call's body is its JSON arguments: read as JSON, so markers
		// inside its strings do not end it.
		t := strings.TrimLeftFunc(p.buf, unicode.IsSpace)
		raw, n, err := jsonPrefix(t)
		if err == nil {
			if c, ok := harmonyCall(p.callName, string(raw)); ok {
				d.Calls = append(d.Calls, c)
				p.buf = t[n:]
				if rest := strings.TrimLeftFunc(p.buf, unicode.IsSpace); strings.HasPrefix(rest, hCall) || strings.HasPrefix(rest, hEnd) {
					p.buf = rest[len(hCall):]
					if strings.HasPrefix(rest, hEnd) {
						p.buf = rest[len(hEnd):]
					}
				}
				p.inBody = false
				return true
			}
		}
		if errors.Is(err, errMore) && !final {
			return false
		}
	}
	at, marker := firstOf(p.buf, harmonyEnds)
	if at < 0 && !final {
		if p.kind == inTools {
			return false
		}
		keep := heldPrefix(p.buf, harmonyEnds)
		p.emit(d, p.buf[:len(p.buf)-keep])
		p.buf = p.buf[len(p.buf)-keep:]
		return false
	}
	text := p.buf
	if at >= 0 {
		text = p.buf[:at]
		p.buf = p.buf[at:]
		if marker != hStart && marker != hChannel {
			p.buf = p.buf[len(marker):]
		}
	} else {
		p.buf = ""
	}
	if p.kind == inTools {
		if c, ok := harmonyCall(p.callName, text); ok {
			d.Calls = append(d.Calls, c)
		} else {
			d.Content += text
		}
	} else {
		p.emit(d, text)
	}
	p.inBody = false
	return at >= 0
}

func (p *harmonyParser) emit(d *Delta, text string) {
	if p.kind == inReasoning {
		d.Reasoning += text
	} else {
		d.Content += text
	}
}

// harmonyCall makes a call of a function message's body (its JSON
// arguments).
func harmonyCall(name, body string) (Call, bool) {
	if name == "" {
		return Call{}, false
	}
	args, err := arguments([]byte(body))
	if err != nil {
		return Call{}, false
	}
	return Call{ID: NewCallID(), Name: name, Arguments: args}, true
}
