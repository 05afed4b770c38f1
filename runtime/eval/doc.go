// Package eval measures a model: perplexity over a text file as
// llama-perplexity computes it (chunks of n_ctx tokens, each evaluated from
// an empty context with BOS first, the second half of each scored), the
// KL-divergence of a model's next-token distributions from a reference's
// (llama-perplexity's --kl-divergence-base file, read and written
// byte-compatibly), task suites of prompts with checks run against any
// OpenAI-compatible server, and gates on those figures for CI.
//
// Files, one job each: model.go (the LM interface and the engine adapter),
// perplexity.go (the chunk loop and the PPL estimate), logits.go (the base
// log-probabilities file format), kld.go (per-token statistics and their
// summary), suite.go (cases, checks, the HTTP client), gates.go (limits).
//
// Invariants: token ids in a base file are the original tokens (BOS is
// substituted at evaluation, not stored); a chunk's records are positions
// n_ctx/2 … n_ctx-2, each predicting the next token; every float on disk is
// little-endian. Nothing here keeps state between calls: an LM is used by
// one goroutine at a time.
package eval
