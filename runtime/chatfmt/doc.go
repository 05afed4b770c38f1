// Package chatfmt knows how a model writes tool calls and reasoning, from
// its chat template: detected once per model (Detect), used by every API
// (Ollama chat and generate, OpenAI chat and Responses, Anthropic
// Messages) through one Conversation.
//
// # Syntaxes
//
// Detect reads the template's source, as llama.cpp's specialised handlers
// do (../shared/reference/llama-cpp-architectures.md §2):
//
//	harmony      <|channel|>                     gpt-oss: channels; a call is a commentary
//	                                              message to=functions.NAME, analysis is reasoning
//	mistral-args [TOOL_CALLS] and [ARGS]         [TOOL_CALLS]NAME[CALL_ID]id[ARGS]{...}
//	mistral-json [TOOL_CALLS]                    [TOOL_CALLS][{"name", "arguments", "id"}]
//	qwen-xml     <tool_call>, <function=, <parameter=
//	                                              <tool_call><function=NAME><parameter=P>v</parameter></function></tool_call>
//	deepseek-r1  <｜tool▁calls▁begin｜>          <｜tool▁call▁begin｜>function<｜tool▁sep｜>NAME ```json {...} ```<｜tool▁call▁end｜>
//	hermes       <tool_call>                     <tool_call>{"name", "arguments"}</tool_call>
//	llama3-json  <|python_tag|>, or "parameters" and ipython
//	                                              {"name", "parameters"} (optionally after <|python_tag|>)
//	generic      anything else                   {"tool_calls": [{"name", "arguments"}]}
//
// and reasoning: [THINK]…[/THINK] (Mistral), <think>…</think> (Qwen,
// DeepSeek, most others; enable_thinking in the template means it can be
// switched off), the analysis channel (harmony; reasoning_effort).
//
// The generic path is for templates that take no tools (Gemma 2/3, Phi-3,
// Llama 2, ...) and for templates whose tool syntax is none of the above:
// Hearth describes the tools in the system message and asks for a JSON
// object {"tool_calls": [{"name": ..., "arguments": {...}}]} as the whole
// answer; earlier calls and tool results are written into the history as
// text (the assistant's JSON, then a user turn "Result of the function
// call NAME: ..."). Constrained decoding makes it as reliable as the
// native syntaxes; how often a model chooses to call unforced depends on
// how well it follows the instruction.
//
// When a template of a known syntax does not render the tool definitions
// itself (DeepSeek R1 distills), Hearth describes them in the system
// message, in that syntax.
//
// # Parsing
//
// Format.NewParser splits a generation as it streams into content,
// reasoning and calls (Delta). It holds back text that may begin a marker,
// so no marker reaches content, and reads arguments as JSON (markers
// inside strings do not end a call). A call that does not parse is
// content, as Ollama does; under a grammar (below) that cannot happen.
// Reasoning is trimmed of surrounding whitespace; a call marker inside an
// unclosed think block ends it (Qwen 3.5 calls from there).
//
// # Constraining
//
// Format.Grammar compiles the calls a turn may make into a grammar
// (runtime/grammar's composition API): each call's arguments are a JSON
// value of the function's parameters schema (Qwen XML: raw text for plain
// string parameters, literal values for string enums, JSON otherwise).
// tool_choice required or a named function: the whole answer, after an
// optional reasoning block (none when the request turned thinking off),
// is one call or, with parallel calls, several. auto: a lazy grammar,
// inactive until the syntax's trigger (<tool_call>, [TOOL_CALLS],
// to=functions., {"tool_calls", <|python_tag|> or {"name": ") appears. A
// response format wins over auto calls. Markers that are single control
// tokens must be preserved (Format.Preserved) so the grammar and the
// parser see their text.
package chatfmt
