package engine

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"

	"github.com/hearth-llm/hearth/runtime/arch"
	"github.com/hearth-llm/hearth/runtime/backend"
)

// ErrEmbeddingOnly is returned when text generation is asked of a model
// that only makes embeddings (BERT and its kin).
var ErrEmbeddingOnly = arch.ErrEmbeddingOnly

// ErrUnsupported is returned for what a model cannot do as asked (an
// embedding from a file whose pooling type Hearth does not implement).
var ErrUnsupported = errors.New("not supported")

// Embed returns the embedding of text and the tokens it took: Embeddings
// of one input.
func (m *Model) Embed(text string, ctx int, truncate bool) ([]float32, int, error) {
	vs, n, err := m.Embeddings(context.Background(), []string{text}, ctx, truncate)
	if err != nil {
		return nil, 0, err
	}
	return vs[0], n, nil
}

// Embeddings returns one embedding per text, and the tokens evaluated in
// all. Each text is tokenized as llama.cpp's llama-embedding does (with
// the model's special tokens: BERT's [CLS] … [SEP]), its final hidden
// states are pooled as the model says (arch.Info.Pooling: the mean of
// every token's, the first token's or the last one's) and the result is
// scaled to unit length.
//
// A text longer than ctx tokens (<= 0: the model's trained context, at
// most 4096; an encoder's never more than its trained context) is an
// error wrapping ErrPromptTooLong, or with truncate is cut to ctx tokens,
// keeping the end-of-sequence token the tokenizer appends (BERT's [SEP])
// last. Several texts are evaluated together, up to BatchSize tokens per
// forward pass; an encoder's text is never split across passes. When
// cx ends, Embeddings stops before the next pass and returns cx's error.
func (m *Model) Embeddings(cx context.Context, texts []string, ctx int, truncate bool) ([][]float32, int, error) {
	info := m.Arch.Info()
	if ctx <= 0 {
		ctx = min(info.ContextLength, 4096)
	}
	if info.NonCausal && info.ContextLength > 0 {
		ctx = min(ctx, info.ContextLength)
	}
	if ctx <= 0 {
		return nil, 0, fmt.Errorf("%w: no context to embed in", ErrPromptTooLong)
	}
	end := m.endTokens()
	seqs := make([][]int32, len(texts))
	total := 0
	for i, text := range texts {
		ids := m.Tok.Encode(text, true, true)
		if len(ids) > ctx {
			if !truncate {
				return nil, 0, fmt.Errorf("%w: %d tokens, context %d", ErrPromptTooLong, len(ids), ctx)
			}
			if len(end) > 0 && len(end) < ctx && slices.Equal(ids[len(ids)-len(end):], end) {
				ids = append(ids[:ctx-len(end)], end...)
			} else {
				ids = ids[:ctx]
			}
		}
		if len(ids) == 0 {
			return nil, 0, errors.New("empty input")
		}
		seqs[i] = ids
		total += len(ids)
	}
	vs, err := m.embedSeqs(cx, seqs)
	if err != nil {
		return nil, 0, err
	}
	return vs, total, nil
}

// endTokens are the special tokens Encode appends after a text (BERT's
// [SEP], an EOS), found by encoding the empty text.
func (m *Model) endTokens() []int32 {
	ids := m.Tok.Encode("", true, false)
	if len(ids) > 0 && ids[0] == m.Tok.BOS() {
		ids = ids[1:]
	}
	return ids
}

// embedSeqs evaluates the token sequences, packed into forward passes of
// up to BatchSize tokens (a sequence of a non-causal model whole, even
// past BatchSize), and returns their pooled, normalised hidden states.
func (m *Model) embedSeqs(cx context.Context, seqs [][]int32) ([][]float32, error) {
	info := m.Arch.Info()
	pool := info.Pooling
	switch pool {
	case arch.PoolingMean, arch.PoolingCLS, arch.PoolingLast:
	default:
		return nil, fmt.Errorf("%w: %s's pooling type %s makes no embedding per input", ErrUnsupported, info.Arch, pool)
	}
	d := info.Embedding
	sums := make([][]float64, len(seqs)) // per input, the sum of its pooled rows
	for i := range sums {
		sums[i] = make([]float64, d)
	}
	kvs := make([]backend.KV, len(seqs))
	defer func() { // the caches of inputs left unfinished by an error
		for _, kv := range kvs {
			if kv != nil {
				m.free(kv)
			}
		}
	}()
	added := make([]int, len(seqs)) // tokens of each input put in a batch so far
	b := &arch.Batch{Hidden: true}
	var members []int // the batch's sequences: input index by batch-local id
	var rowInput []int
	flush := func() error {
		if len(b.IDs) == 0 {
			return nil
		}
		if err := cx.Err(); err != nil {
			return err
		}
		err := m.forward(b, func(h []float32) error {
			if err := checkFinite(h); err != nil {
				return err
			}
			for r, s := range rowInput {
				for j, v := range h[r*d : (r+1)*d] {
					sums[s][j] += float64(v)
				}
			}
			return nil
		})
		for _, s := range members {
			if added[s] == len(seqs[s]) {
				m.free(kvs[s]) // done: free its cache
				kvs[s] = nil
			}
		}
		b.IDs, b.Pos, b.Seq, b.KVs, b.Outputs = b.IDs[:0], b.Pos[:0], b.Seq[:0], b.KVs[:0], b.Outputs[:0]
		members, rowInput = members[:0], rowInput[:0]
		return err
	}
	add := func(s, n int) error {
		if kvs[s] == nil {
			kv, err := m.Arch.NewKV(len(seqs[s]))
			if err != nil {
				return err
			}
			kvs[s] = kv
		}
		local := slices.Index(members, s)
		if local < 0 {
			local = len(members)
			members = append(members, s)
			b.KVs = append(b.KVs, kvs[s])
		}
		last := len(seqs[s]) - 1
		for p := added[s]; p < added[s]+n; p++ {
			if pool == arch.PoolingMean || (pool == arch.PoolingCLS && p == 0) || (pool == arch.PoolingLast && p == last) {
				b.Outputs = append(b.Outputs, len(b.IDs))
				rowInput = append(rowInput, s)
			}
			b.IDs = append(b.IDs, seqs[s][p])
			b.Pos = append(b.Pos, int32(p))
			b.Seq = append(b.Seq, int32(local))
		}
		added[s] += n
		return nil
	}
	for s, ids := range seqs {
		for added[s] < len(ids) {
			room, n := BatchSize-len(b.IDs), len(ids)-added[s]
			if info.NonCausal {
				if len(b.IDs) > 0 && n > room {
					if err := flush(); err != nil {
						return nil, err
					}
					continue
				}
			} else {
				if room <= 0 {
					if err := flush(); err != nil {
						return nil, err
					}
					continue
				}
				n = min(n, room)
			}
			if err := add(s, n); err != nil {
				return nil, err
			}
		}
	}
	if err := flush(); err != nil {
		return nil, err
	}
	out := make([][]float32, len(seqs))
	for s, sum := range sums {
		// The mean's 1/n drops out in the normalisation.
		out[s] = unit(sum)
	}
	return out, nil
}

// unit returns v scaled to unit Euclidean length (all zeros stay zeros),
// as llama.cpp's common_embd_normalize(…, 2).
func unit(v []float64) []float32 {
	var norm float64
	for _, x := range v {
		norm += x * x
	}
	out := make([]float32, len(v))
	if norm == 0 {
		return out
	}
	inv := 1 / math.Sqrt(norm)
	for i, x := range v {
		out[i] = float32(x * inv)
	}
	return out
}
