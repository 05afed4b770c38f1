package eval

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
)

// The base log-probabilities file of llama-perplexity's
// --kl-divergence-base (tools/perplexity/perplexity.cpp), little-endian:
//
//	"_logits_"                     8 bytes
//	n_ctx, n_vocab, n_chunk        int32 each
//	tokens                         int32 × n_chunk·n_ctx (the original tokens)
//	per chunk, n_ctx-1-n_ctx/2 records, positions n_ctx/2 … n_ctx-2:
//	  scale, min_log_prob          float32 each (as 4 uint16)
//	  q                            uint16 × n_vocab, +1 padding when n_vocab is odd
//
// log p_i = scale·q_i + min_log_prob; logits more than 16 below the
// maximum are clamped to the minimum (q = 0).
const logitsMagic = "_logits_"

// ErrBadLogits is returned for a file that is not a base log-probabilities
// file, or one that is truncated or inconsistent.
var ErrBadLogits = errors.New("not a llama-perplexity log-probabilities file")

// Limits on a base file's header, checked before anything is allocated.
const (
	maxVocab  = 1 << 24
	maxTokens = 1 << 28
)

// recordLen is the uint16s of one position's record.
func recordLen(nVocab int) int { return 2*((nVocab+1)/2) + 4 }

// scored is the number of positions of a chunk that are scored (and
// stored): n_ctx/2 … n_ctx-2.
func scored(nCtx int) int { return nCtx - 1 - nCtx/2 }

// BaseHeader is a base file's header.
type BaseHeader struct {
	Ctx, Vocab, Chunks int
	Tokens             []int32 // Chunks·Ctx original tokens
}

// LogitsWriter writes a base file; records must come in file order
// (chunk by chunk, position by position).
type LogitsWriter struct {
	w   io.Writer
	nv  int
	rec []uint16
	buf []byte
}

// NewLogitsWriter writes h to w and returns the writer of its records.
func NewLogitsWriter(w io.Writer, h BaseHeader) (*LogitsWriter, error) {
	if len(h.Tokens) != h.Ctx*h.Chunks {
		return nil, fmt.Errorf("eval: %d tokens for %d chunks of %d", len(h.Tokens), h.Chunks, h.Ctx)
	}
	hdr := make([]byte, 0, 20+4*len(h.Tokens))
	hdr = append(hdr, logitsMagic...)
	for _, v := range []int{h.Ctx, h.Vocab, h.Chunks} {
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(int32(v)))
	}
	for _, t := range h.Tokens {
		hdr = binary.LittleEndian.AppendUint32(hdr, uint32(t))
	}
	if _, err := w.Write(hdr); err != nil {
		return nil, err
	}
	nv := recordLen(h.Vocab)
	return &LogitsWriter{w: w, nv: nv, rec: make([]uint16, nv), buf: make([]byte, 2*nv)}, nil
}

// Write quantizes one position's logits into a record and writes it.
func (lw *LogitsWriter) Write(logits []float32) error {
	EncodeLogProbs(logits, lw.rec)
	for i, v := range lw.rec {
		binary.LittleEndian.PutUint16(lw.buf[2*i:], v)
	}
	_, err := lw.w.Write(lw.buf)
	return err
}

// EncodeLogProbs fills rec (recordLen(len(logits)) uint16s) with the
// log-softmax of logits as llama-perplexity's log_softmax(…, uint16_t*)
// stores it, in float32 arithmetic as there.
func EncodeLogProbs(logits []float32, rec []uint16) {
	maxL, minL := logits[0], logits[0]
	for _, l := range logits[1:] {
		maxL = max(maxL, l)
		minL = min(minL, l)
	}
	minL = max(minL, maxL-16)
	var sum float64
	for _, l := range logits {
		sum += float64(expf(l - maxL))
	}
	lse := float32(math.Log(sum))
	minLogProb := minL - maxL - lse
	scale := (maxL - minL) / 65535
	s, m := math.Float32bits(scale), math.Float32bits(minLogProb)
	rec[0], rec[1], rec[2], rec[3] = uint16(s), uint16(s>>16), uint16(m), uint16(m>>16)
	q := rec[4:]
	clear(q)
	if scale == 0 {
		return
	}
	inv := 1 / scale
	for i, l := range logits {
		if l > minL {
			q[i] = uint16(int(math.RoundToEven(float64(inv * (l - minL)))))
		}
	}
}

func expf(x float32) float32 { return float32(math.Exp(float64(x))) }

// LogitsReader reads a base file.
type LogitsReader struct {
	BaseHeader
	r   io.Reader
	nv  int
	buf []byte
}

// NewLogitsReader reads and checks the header of a base file.
func NewLogitsReader(r io.Reader) (*LogitsReader, error) {
	var hdr [20]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil || string(hdr[:8]) != logitsMagic {
		return nil, ErrBadLogits
	}
	ctx := int(int32(binary.LittleEndian.Uint32(hdr[8:])))
	vocab := int(int32(binary.LittleEndian.Uint32(hdr[12:])))
	chunks := int(int32(binary.LittleEndian.Uint32(hdr[16:])))
	if ctx < 4 || ctx > maxTokens || vocab < 1 || vocab > maxVocab || chunks < 1 || chunks > maxTokens/ctx {
		return nil, fmt.Errorf("%w: n_ctx %d, n_vocab %d, n_chunk %d", ErrBadLogits, ctx, vocab, chunks)
	}
	raw := make([]byte, 4*ctx*chunks)
	if _, err := io.ReadFull(r, raw); err != nil {
		return nil, fmt.Errorf("%w: tokens: %v", ErrBadLogits, err)
	}
	toks := make([]int32, ctx*chunks)
	for i := range toks {
		toks[i] = int32(binary.LittleEndian.Uint32(raw[4*i:]))
		if toks[i] < 0 || int(toks[i]) >= vocab {
			return nil, fmt.Errorf("%w: token %d is %d, vocabulary %d", ErrBadLogits, i, toks[i], vocab)
		}
	}
	nv := recordLen(vocab)
	return &LogitsReader{
		BaseHeader: BaseHeader{Ctx: ctx, Vocab: vocab, Chunks: chunks, Tokens: toks},
		r:          r, nv: nv, buf: make([]byte, 2*nv),
	}, nil
}

// Record is one position's stored log-probabilities.
type Record struct {
	Scale, MinLogProb float32
	Q                 []uint16
}

// LogProb is log p of token i.
func (r *Record) LogProb(i int) float32 { return r.Scale*float32(r.Q[i]) + r.MinLogProb }

// Next reads the next record into rec (its Q reused when long enough).
func (lr *LogitsReader) Next(rec *Record) error {
	if _, err := io.ReadFull(lr.r, lr.buf); err != nil {
		return fmt.Errorf("%w: records: %v", ErrBadLogits, err)
	}
	rec.Scale = math.Float32frombits(binary.LittleEndian.Uint32(lr.buf))
	rec.MinLogProb = math.Float32frombits(binary.LittleEndian.Uint32(lr.buf[4:]))
	if cap(rec.Q) < lr.Vocab {
		rec.Q = make([]uint16, lr.Vocab)
	}
	rec.Q = rec.Q[:lr.Vocab]
	for i := range rec.Q {
		rec.Q[i] = binary.LittleEndian.Uint16(lr.buf[8+2*i:])
	}
	return nil
}
