// Package sample turns a step's logits into the next token, with Ollama's
// sampling options (temperature, top_k, top_p, min_p, typical_p,
// repeat_penalty, repeat_last_n, presence_penalty, frequency_penalty, seed)
// and their meanings.
//
// The chain is llama.cpp's, as Ollama's llama.cpp runner configures it:
//
//	penalties → top_k → typical_p → top_p → min_p → temperature → softmax → draw
//
// Stage by stage:
//
//   - penalties, over the distinct tokens among the last repeat_last_n
//     accepted (prompt tokens included; -1 means all of them): a positive
//     logit is divided by repeat_penalty and a negative one multiplied, then
//     presence_penalty is subtracted once and frequency_penalty once per
//     occurrence;
//   - top_k keeps the k best (0: off), chosen with a size-k heap in one pass
//     over the vocabulary, not a sort;
//   - typical_p and top_p renormalise over the survivors; without top_k,
//     top_p bounds its answer with a histogram of the softmax mass (one pass)
//     and sorts only that bound, while typical_p (off by default) sorts the
//     whole vocabulary;
//   - min_p keeps tokens at least min_p times as likely as the best;
//   - temperature divides the logits; temperature <= 0 is greedy: the argmax
//     of the penalised logits, ties to the lowest id (the filters cannot
//     change the argmax);
//   - the draw uses a PCG generator seeded from seed (a random seed when
//     seed < 0), so a fixed seed and the same inputs give the same tokens.
//
// Invariants: Sample never modifies the caller's logits (it works on a copy
// in a buffer the Sampler keeps); after the first call it allocates nothing.
// NaN logits count as -Inf; a +Inf logit wins outright; when nothing is
// finite token 0 is returned. Logits are one float32 per vocabulary entry,
// indexed by token id.
//
// Logprobs (OpenAI's and Ollama's logprobs and top_logprobs) are the
// log-softmax of the model's raw logits, as vLLM's default raw_logprobs:
// before the penalties, the filters, the temperature and any grammar mask.
// They describe the model, not the sampler: the chosen token is the one the
// sampler drew, and its logprob is what the model gave it. The normaliser is
// computed in float64 (max-subtracted), and the top alternatives are picked
// with a small heap in one pass over the vocabulary. The caller computes
// them only when a request asks, so sampling without them costs nothing
// more.
//
// A Sampler belongs to one sequence and is not safe for concurrent use. Its
// memory is a few bytes per vocabulary entry (the logits copy, the candidate
// buffer, the penalty counts).
package sample
