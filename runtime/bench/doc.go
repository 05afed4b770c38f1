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
// only one row of per token, unless it is also the output matrix) but, in
// a mixture of experts, only the experts its tokens are routed to: a step
// of P tokens is expected to touch 1 - (1 - k/E)^P of each layer's E
// experts (k/E for one token: the router's choices taken as uniform and
// independent). It also reads the K and V rows of every cached position
// each layer's attention sees (a sliding layer: its window). The model
// reports its weights' bytes itself (arch.TrafficReporter), so the count
// follows the tensors it binds, not the file size. BytesPerToken is that
// traffic divided by the tokens the step produces, averaged over the run;
// the roofline is the measured read bandwidth ÷ BytesPerToken, and tg
// results report their fraction of it. Mixtures also report their active
// parameters (those one token is computed with), and their model type
// names both counts, as llama.cpp does ("qwen3moe 31B.A3B Q4_K - Medium").
package bench
