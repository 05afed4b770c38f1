// Package server serves Hearth's models over HTTP in three dialects:
// Ollama's API (/api/generate, /api/chat, /api/embed, /api/tags, …, with
// the types of github.com/ollama/ollama/api), OpenAI's
// (/v1/chat/completions, /v1/completions, /v1/embeddings, /v1/models,
// /v1/responses) and Anthropic's Messages API (/v1/messages,
// /v1/messages/count_tokens).
//
// The server talks to models only through Runner (generate, embed,
// tokenize, describe) and Loader (a GGUF path to a Runner). It renders chat
// templates, tokenizes prompts, parses and validates options, cuts stop
// strings, streams, and keeps models loaded; it never touches tensors,
// devices or KV caches, so a single-sequence runner (package serial, over
// runtime/engine) and a continuous-batching one fit behind the same
// interface.
//
// Invariants:
//   - every error reaches the client as JSON in the shape of the API it
//     called ({"error": "..."} for Ollama, {"error": {"message", "type",
//     "param", "code"}} for OpenAI, {"type": "error", "error": {"type",
//     "message"}} for Anthropic, an error event once its stream has
//     begun), with a 4xx status for anything the request got wrong; a
//     handler panic is a 500 with a JSON body, and the process keeps
//     serving;
//   - the request's context is the generation's: a client that goes away
//     cancels its sequence;
//   - a stop string is never sent, not even in part: text that may begin
//     one is held back until the next piece decides;
//   - at most Config.MaxQueue generation and embedding requests are in at
//     once; the next gets 503 with Retry-After;
//   - a model stays loaded while any request holds it, and for its
//     keep_alive after the last; when memory (Config.MemoryBudget) or the
//     count (Config.MaxLoaded) runs out, idle models are unloaded least
//     recently used first;
//   - logs at the default level carry request ids, routes, statuses,
//     model names, counts and durations, never prompt or generated text or
//     keys (Config.LogPrompts adds the request body to the access log
//     line, at its level: info for a success).
//
// Versions and hot swap (manager.go): a model's version is the sha256 of
// its GGUF file (models.Model.Version: the Ollama store's blob digest, or
// for Hearth's folder a hash computed once per state of the file — path,
// size, mtime, ctime, inode — and cached). The version shows in /api/tags
// (digest), /api/show (model_info "hearth.version"), /api/ps (version,
// state, requests, loading_version, failed_version, error), /v1/models
// (version), the X-Hearth-Model-Version header of every response that
// used a model, the access log and the metrics' version label (its first
// 12 hex digits). Changes are found by polling: every
// Config.WatchInterval (2 s) the loaded models are located again (a few
// stats, no reads), and a request that sees a loaded model's file in a
// new state triggers the check at once; a changed state is hashed and,
// when the version differs, the new version loads in the background (an
// atomic rename over NAME.gguf, `hearth cp`, or a re-pointed Ollama tag).
// Until it is ready, requests get the old version; then new requests get
// the new one, requests in flight finish on the old one, and the old
// runner is closed when the last of them ends. Both versions count
// against MemoryBudget while both are loaded; when they do not fit, the
// swap waits while the old version is busy and, once it is idle, unloads
// it so the next request loads the new one. A version that fails to load
// leaves the old one serving, is logged, counted
// (hearth_model_load_failures_total) and shown in /api/ps, and is not
// tried again until the file changes. Copying the previous file back is
// the rollback.
//
// Monitoring: each request's access log line (slog, text or JSON) has
// req (X-Request-Id: the client's when it is at most 128 printable ASCII
// bytes without spaces, quotes or backslashes, else a new one; returned on
// every response), method, path, route, status, dur, bytes, model,
// version, and for generations prompt_tokens, gen_tokens, queue (arrival
// to holding the model), ttft and finish. Prometheus series (metrics.go)
// carry model and version labels; deploy/grafana/hearth.json charts them,
// and a test holds its queries to the names registered.
//
// Structured outputs (Ollama's format "json" or a JSON schema, OpenAI's
// response_format json_object/json_schema) are enforced while sampling
// (runtime/grammar): the output is a complete document of the schema, or a
// prefix of one when num_predict or the context runs out first; a schema
// Hearth cannot enforce is a 400 naming the keyword. Images are refused
// with a clear 400 rather than silently ignored.
//
// Chat requests of every API (Ollama chat, OpenAI chat and Responses,
// Anthropic Messages) become one chatfmt.Conversation (chat.go): messages
// with earlier calls, tool
// results and reasoning, tools, tool choice, parallel calls, thinking. The
// model's tool-call and reasoning format is detected from its template once,
// at load (runtime/chatfmt); the template gets the tools (or, when it
// shows none, Hearth describes them in the system message), the output is
// split as it streams into content, reasoning and calls, and the calls are
// constrained: with tool_choice required or a named function the whole
// answer is a call whose arguments satisfy its schema; with auto a lazy
// grammar switches on at the format's trigger, so a call that begins
// always parses. A response format wins over auto calls. Thinking text
// never reaches content; think=true on a model whose template cannot think
// is a 400. Streamed calls go out whole, one delta each (id, name and all
// the arguments), when the parser completes them. finish_reason is
// "tool_calls" when the answer made calls.
//
// Responses (responses.go): POST /v1/responses takes input as a string or
// as items (messages of role user, assistant, system or developer with
// string or input_text/output_text content; function_call and
// function_call_output; reasoning items, which become the assistant
// turn's thinking), instructions (a system message first, never carried
// over by previous_response_id, as OpenAI), function tools (any other
// tool type is a 400 naming it), tool_choice, parallel_tool_calls,
// text.format (the grammar of chat's response_format), reasoning.effort,
// max_output_tokens, temperature, top_p, stream, store, metadata, user.
// The output items are the chat turn's in the order the parser completes
// them: reasoning {content: [reasoning_text]}, message {content:
// [output_text]}, function_call; a response that ran out of
// max_output_tokens (or context) is status incomplete with
// incomplete_details.reason max_output_tokens. Streams are SSE with
// event: lines and sequence_number, no [DONE]; response.created and
// in_progress go out with the first output, so errors before it are
// plain HTTP errors; an error after it is an error event then
// response.failed. output_tokens_details.reasoning_tokens counts the
// texts generated up to the last reasoning (one token each). Responses
// with store true (the default) are kept in memory, the last 1,000 within
// 64 MiB, least recently used out first, until restart: their
// conversation for previous_response_id, their object for GET
// /v1/responses/{id}; DELETE forgets one. An id not kept (unknown,
// store false, evicted, deleted) is a 404: for previous_response_id with
// code previous_response_not_found and param previous_response_id. Not
// supported: background and prompt (400), hosted and MCP tools (400),
// image and file inputs (400), item_reference items (400), include and
// top_logprobs (ignored), truncation (no truncation: a conversation
// longer than the context is a 400).
//
// Anthropic's Messages API (anthropic.go) is the same chat turn: system
// (a string or text blocks) and messages whose content is a string or
// blocks (text; thinking and tool_use in assistant turns, which become the
// turn's reasoning and calls; tool_result in user turns, which becomes a
// tool turn named after the tool_use it answers, "Error: " before its
// text when is_error; redacted_thinking is dropped; images are a 400 as
// elsewhere, other block types a 400 naming them). tools are client tools
// (name, description, input_schema; server tools are refused),
// tool_choice auto/any/tool/none with disable_parallel_tool_use, thinking
// enabled/disabled (budget_tokens is checked, not enforced: max_tokens
// bounds the whole answer; absent or adaptive leaves the model's default),
// stop_sequences, temperature (default 1), top_p, top_k; max_tokens is
// required, metadata ignored. The answer's content is blocks in the order
// the output made them: a new block whenever the kind changes (thinking,
// text, tool_use), each call its own tool_use block with the parsed
// arguments as input; thinking blocks carry an empty signature. The
// stop_reason is tool_use when the answer made calls, stop_sequence with
// the string matched (the stop filter records it), max_tokens, or
// end_turn. A stream is named events: message_start (sent with the first
// block, so a request that fails before any output gets its HTTP status),
// ping, content_block_start/_delta/_stop (text_delta, thinking_delta, and
// one input_json_delta carrying a call's whole arguments), message_delta
// with the stop reason and output_tokens, message_stop. count_tokens
// loads the model and counts the prompt the request would render (the
// template, its tools and system message) without generating. The key may
// come as x-api-key as well as Authorization: Bearer, on every route;
// anthropic-version is accepted and not required.
//
// Logprobs (OpenAI chat's logprobs/top_logprobs, completions' logprobs N,
// Ollama's logprobs/top_logprobs; 0..20 alternatives, completions too,
// where OpenAI allows 5, as vLLM) are the log-softmax of the model's raw
// logits, as vLLM's default raw_logprobs: before the penalties,
// top_k/top_p/min_p, temperature and the grammar mask, so the sampling
// options never change them; the chosen token is the one sampled. They
// follow the text the client gets through the stop-string filter (see
// logprobs.go): a token is reported with the chunk that sends the last of
// its text; at a stop string, the tokens that begin before the cut are
// reported and the rest are not; end-of-generation tokens are not
// reported. A token given no mass is reported as -9999 (JSON has no
// -Inf). Completions' text_offset counts bytes of the generated text.
//
// LoRA adapters (lora.go, lora_http.go) are models of their own over a
// base model: registered by Config.Adapters (hearth serve --lora
// NAME=BASE:FILE[:SCALE]), by vLLM's POST /v1/load_lora_adapter
// {lora_name, lora_path, base_model_name?, scale?, load_inplace?} (the
// path inside the models folder; answered as vLLM does, plain text on
// success, errors typed InvalidUserInput, NotFoundError, BadRequestError
// with the status as code) and POST /v1/unload_lora_adapter {lora_name},
// or by Ollama's /api/create with from and one adapters entry (a blob
// uploaded with POST /api/blobs/{digest}, or a path in the models
// folder), kept as NAME.lora.json so it is back after a restart and gone
// after /api/delete. Each file is checked against its base's header at
// registration (a 400 saying what does not fit). Every route that
// generates resolves the model through acquireFor: an adapter runs on its
// base's runner (one copy of the base for all its adapters) with
// Request.Adapter, so mixed requests batch together. At most
// Config.MaxLoras adapters are resident per base runner; another evicts
// the least recently used one no request holds; with every slot held, a
// request waits up to Config.LoraWait, then gets 503 with Retry-After.
// Adapters list in /api/tags and /api/show (details.parent_model the
// base), /v1/models (vLLM's parent and root) and /api/ps (adapters
// resident); embeddings with an adapter are a 501. The access log line
// says adapter=NAME beside model= (the base) and version; the
// hearth_adapter_* series count requests, tokens, loads and evictions by
// adapter and base; LoraState reports the adapters running and waiting
// (for vllm:lora_requests_info).
package server
