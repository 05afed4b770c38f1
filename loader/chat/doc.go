// Package chat renders a model's chat template: the Jinja2 text stored under
// tokenizer.chat_template in GGUF metadata, in the dialect of Hugging Face
// transformers' apply_chat_template, rendered with gonja v2.
//
//	t, err := chat.New(src)              // parse once per model
//	prompt, err := t.Render(msgs, chat.Options{
//		BOSToken: bos, EOSToken: eos, AddGenerationPrompt: true,
//	})
//
// # What a template sees
//
// As in transformers: messages (a list of {role, content}), bos_token,
// eos_token, add_generation_prompt, raise_exception(msg) (fails the render
// with a *RaiseError carrying msg), strftime_now(format) (C strftime over
// Options.Now), and whatever Options.Extra adds (tools, enable_thinking,
// date_string, ...). The environment is configured as transformers configures
// jinja2: trim_blocks and lstrip_blocks on, loop controls ({% break %},
// {% continue %}) on, and a tojson filter equal to json.dumps(x,
// ensure_ascii=False, ...), so output matches Python byte for byte (golden
// renders made with jinja2 are under testdata/).
//
// # BOS
//
// Render returns exactly what the template writes; many templates (Llama 2
// and 3, Mistral, Gemma) write bos_token themselves. The caller must not add
// a second BOS: if t.EmitsBOS(bos) is true, tokenize the prompt with
// add_special=false (special-token parsing turns the BOS text into the BOS
// id); otherwise tokenize with the model's add_bos setting. (Equivalently,
// strip a leading bos from the render and always let the tokenizer add it,
// which is what llama.cpp does.)
//
// # Fallback
//
// Fallback is for models without a template: ChatML
// ("<|im_start|>role\ncontent<|im_end|>\n", then "<|im_start|>assistant\n"),
// the format llama.cpp falls back to. It writes no BOS.
//
// # Sandbox and limits
//
// A template is outside input. New and Render never panic (gonja panics are
// recovered into errors), and one render is bounded by Options.Limits:
//
//   - Timeout (default 2 s) and the caller's context, checked at every loop
//     iteration and macro call;
//   - MaxSteps (default 1,000,000) loop iterations plus macro calls;
//   - MaxDepth (default 64) nested macro calls, so a recursive macro fails
//     with ErrLimit instead of overflowing the Go stack (which would kill the
//     process);
//   - MaxOutputBytes (default 64 MiB) for the prompt and for any buffer a
//     template renders into ({% set %} blocks, macro bodies, {% call %});
//   - MaxValueBytes (default 16 MiB) for values stored with {% set %},
//     passed to macros, or built by `*`, replace, indent and tojson; a value
//     that contains itself counts as too large;
//   - range() yields at most 100,000 items (Jinja's sandbox limit).
//
// A render that passes a limit fails with an error wrapping ErrLimit. Between
// two checks the work is bounded by the template's length times
// MaxValueBytes, so a deadline may be overshot by that much work (tens of
// milliseconds for real templates).
//
// The sandbox follows transformers' ImmutableSandboxedEnvironment: no file
// access ({% include %}, {% import %}, {% extends %} do not exist), no
// mutation of lists or dicts (list.append, dict.update are absent; only
// namespace() objects take {% set ns.attr = ... %}), and only a listed set of
// filters and str/dict methods; builtins whose size argument could allocate
// without bound (center, wordwrap, format, batch, slice, lipsum, str.zfill,
// str.center, ...) are left out. New refuses, with ErrUnsupported, recursive
// for-loops, names starting with "__hearth", sources over 1 MiB, and bracket
// or block nesting deeper than 200 (gonja's parser recurses per level).
//
// # gonja limitations
//
// gonja parses a conditional expression (`a if c else b`) only as a whole
// {{ }} or {% set %} expression; inside brackets it fails or, as a call
// argument, misreads it. New rewrites every conditional inside brackets
// into the equivalent ((c) and [a] or [b])[0] first (condgroup.go), which
// lets gpt-oss's, Cohere's, LFM2's and Kimi's templates parse. A template
// that raises on a leading system message gets it folded into the next
// message and is rendered again, as llama.cpp does. Dicts built from Go
// maps (messages, Extra, namespace) have no order, so tojson and iteration
// over them go in sorted key order where Python would keep insertion order;
// dict literals written in the template keep their order.
//
// # Concurrency
//
// A *Template is immutable after New; any number of goroutines may call
// Render on it at once. Render does not modify the messages or Options.Extra.
package chat
