// Package bench measures a model's speed the way llama.cpp's llama-bench
// does, so that the two can be compared on the same file, and adds what
// llama-bench lacks: batched decode and the memory-bandwidth roofline.
//
// Tests (names as llama-bench prints them):
//
//   - ppN: N prompt tokens of random ids (the first is BOS when the model
//     adds one) evaluated on an empty cache in forward passes of at most
//     Options.Batch (512) tokens; only the last token of each pass yields
//     logits, and nothing is sampled. t/s = N ÷ time.
//   - tgN: N single-token forward passes starting from an empty cache (the
//     first token BOS, then random ids), each yielding its logits; nothing is
//     sampled. t/s = N ÷ time.
//   - tgN xP (Hearth's own): P sequences, each first given a short prompt
//     of ParallelPrompt tokens (not timed), then N steps in which every
//     sequence advances by one token in a single forward pass of P tokens.
//     t/s is the aggregate, P·N ÷ time; compare it with tgN.
//
// Every test runs once untimed as a warm-up (a pp test in full, a tg test
// for one token) and then Options.Reps times; each sample is one timed run
// and t/s is reported as the mean ± the sample standard deviation of the
// per-run rates, as llama-bench computes avg_ts and stddev_ts.
//
// Roofline: decode reads every weight once per step (the token embedding
// only one row of, unless it is also the output matrix) plus the K and V
// rows of every cached position. BytesPerToken is that traffic divided by
// the tokens the step produces, averaged over the run; the roofline is the
// measured read bandwidth ÷ BytesPerToken, and tg results report their
// fraction of it.
package bench
