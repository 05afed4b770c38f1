package server

import "github.com/hearth-llm/hearth/runtime/sample"

// TokenLogprob is one generated token's log-probability, and the most
// likely tokens at its step when TopLogprobs asked for them. They are the
// log-softmax of the model's raw logits (sample.Logprobs): before the
// penalties, top_k/top_p/min_p, temperature and the grammar mask.
type TokenLogprob struct {
	TopLogprob
	Top []TopLogprob
	// Offset is where the token's text begins in its Piece's Text (the
	// server turns it into the offset in the whole generated text).
	Offset int
}

// TopLogprob is a token and its log-probability. Token is its text as the
// vocabulary has it (control tokens as their text; a byte token's single
// byte, which may not be UTF-8 on its own); Bytes are that text's bytes.
type TopLogprob struct {
	ID      int32
	Token   string
	Bytes   []byte
	Logprob float64
}

// Vocabulary is what a Pieces needs of a tokenizer
// (*tokenizer.Tokenizer has it).
type Vocabulary interface {
	// Piece is a token's text, special tokens' included.
	Piece(id int32) []byte
	// IsControl reports a control token, which prints as nothing unless
	// preserved.
	IsControl(id int32) bool
}

// TextDecoder turns tokens into whole UTF-8 text, holding back the bytes
// of an unfinished character (*tokenizer.StreamDecoder).
type TextDecoder interface {
	Add(id int32) string
	Flush() string
}

// Pieces turns a runner's sampled tokens into the Pieces it emits: the
// decoder's text, with the text of req.Preserve's control tokens put in
// (they print as nothing otherwise), and each token's logprobs on the
// piece whose text completes it. A token whose text is held back (part of
// a character) or empty (an unpreserved control token) has its logprobs
// carried to the next piece; what is still held at Flush with no text to
// carry it is dropped. End-of-generation tokens are never given to it.
// Not safe for concurrent use: one per generation.
type Pieces struct {
	v        Vocabulary
	dec      TextDecoder
	preserve map[int32]bool
	logprobs bool
	pending  []TokenLogprob
	textLen  []int // visible bytes of each pending token
}

// NewPieces returns the Pieces of one generation of req.
func NewPieces(v Vocabulary, dec TextDecoder, req *Request) *Pieces {
	p := &Pieces{v: v, dec: dec, logprobs: req.Logprobs}
	for _, id := range req.Preserve {
		if p.preserve == nil {
			p.preserve = map[int32]bool{}
		}
		p.preserve[id] = true
	}
	return p
}

// Preserved reports whether tok's text goes into the output though it is
// a control token.
func (p *Pieces) Preserved(tok int32) bool { return p.preserve[tok] }

// Add takes the next token and its logprobs (nil unless the request asked)
// and returns the piece that became complete, if any.
func (p *Pieces) Add(tok int32, lp *sample.TokenLogprobs) (Piece, bool) {
	var text string
	visible := 0
	if p.preserve[tok] && p.v.IsControl(tok) {
		// A control token ends any unfinished character.
		piece := p.v.Piece(tok)
		text = p.dec.Flush() + string(piece)
		visible = len(piece)
	} else {
		text = p.dec.Add(tok)
		if !p.v.IsControl(tok) {
			visible = len(p.v.Piece(tok))
		}
	}
	if p.logprobs && lp != nil {
		p.pending = append(p.pending, p.entry(lp))
		p.textLen = append(p.textLen, visible)
	}
	if text == "" {
		return Piece{}, false
	}
	return p.take(text), true
}

// Flush returns the text still held (as U+FFFD), if any, at the end.
func (p *Pieces) Flush() (Piece, bool) {
	text := p.dec.Flush()
	if text == "" {
		p.pending, p.textLen = p.pending[:0], p.textLen[:0]
		return Piece{}, false
	}
	return p.take(text), true
}

// take makes the piece of text with the pending logprobs, setting their
// offsets: each token's text begins where the earlier ones' ends, within
// the piece.
func (p *Pieces) take(text string) Piece {
	pc := Piece{Text: text}
	if len(p.pending) == 0 {
		return pc
	}
	// The pending tokens' text ends the piece (the piece may begin with
	// the U+FFFD of bytes flushed before a preserved token).
	total := 0
	for _, n := range p.textLen {
		total += n
	}
	off := max(len(text)-total, 0)
	for i := range p.pending {
		p.pending[i].Offset = min(off, len(text))
		off += p.textLen[i]
	}
	pc.Logprobs = p.pending
	p.pending, p.textLen = nil, p.textLen[:0]
	return pc
}

func (p *Pieces) entry(lp *sample.TokenLogprobs) TokenLogprob {
	e := TokenLogprob{TopLogprob: p.top(lp.ID, lp.Logprob)}
	if len(lp.Top) > 0 {
		e.Top = make([]TopLogprob, len(lp.Top))
		for i, x := range lp.Top {
			e.Top[i] = p.top(x.ID, x.Logprob)
		}
	}
	return e
}

func (p *Pieces) top(id int32, logprob float64) TopLogprob {
	b := p.v.Piece(id)
	return TopLogprob{ID: id, Token: string(b), Bytes: b, Logprob: logprob}
}
