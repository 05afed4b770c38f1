// Package loadgen is a load generator for OpenAI-compatible servers
// (Hearth, llama-server, vLLM, Ollama's /v1): it streams
// /v1/chat/completions or /v1/completions over server-sent events with
// plain net/http, from a fixed number of workers (closed loop) or at a
// Poisson request rate (open loop), and measures each request's time to
// first token, inter-token latency, time per output token and end-to-end
// latency, then reports their percentiles, output tokens/s, requests/s
// and the errors by kind. It imports nothing but the standard library.
//
// Prompts are random English words: "--prompt-tokens 128" becomes as many
// words as make about 128 tokens on the server's tokenizer, measured by two
// calibration requests (Config.TokensPerWord); a shared prefix (the system
// message, or the head of a completion prompt) is the same for every
// measured request, so a server with a prefix cache evaluates it once.
//
// Definitions (per completed request, times from just before the request
// is sent):
//   - TTFT: until the first chunk carrying generated text;
//   - ITL: the time between two consecutive text chunks divided by the
//     tokens in the later chunk, taken as completion_tokens ÷ chunks when
//     the server packs several tokens per chunk (completion_tokens above
//     chunks + 1: one more is an end-of-sequence token counted but not
//     sent), else 1;
//   - TPOT: (E2E − TTFT) ÷ (output tokens − 1), for requests of two or
//     more tokens;
//   - E2E: until the end of the stream ([DONE]);
//   - output tokens: usage.completion_tokens when the server reports usage
//     (stream_options.include_usage is always asked), else the text
//     chunks received. Servers may stop at an end-of-sequence token before
//     max_tokens; the report counts what was generated.
//
// Percentiles interpolate linearly between the closest ranks (NumPy's
// default): p of n sorted values is at rank p/100·(n−1).
//
// Invariants: every measured request ends exactly once, as completed,
// disconnected (Config.DisconnectFraction chose to cancel it) or failed
// (with an error kind); Run returns only when every request it started has
// ended; every loop is bounded by Config.Requests or Config.Duration, and
// each request by Config.RequestTimeout.
package loadgen
