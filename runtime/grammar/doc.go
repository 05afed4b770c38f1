// Package grammar constrains sampling to structured outputs: Ollama's
// format "json" and format {JSON schema}, OpenAI's response_format
// json_object and json_schema, and tool calls (grammars composed from
// text and schemas with Compile, lazily triggered with Lazy). At each step Mask sets the logits of every
// token that cannot continue a valid document to -Inf, and allows the
// end-of-generation tokens only when the bytes so far form a complete
// document. The documents accepted are those of llama.cpp's grammar sampling
// with its json.gbnf and json-schema-to-grammar converter (which Ollama
// uses), except where noted below.
//
// # Use
//
//	v := grammar.NewVocab(pieces, eogIDs) // once per model, shared
//	g, err := grammar.FromSchema(schema)  // or grammar.JSON(); shareable
//	m := g.NewMatcher(v)                  // one per sequence
//	for !m.Done() {
//		m.Mask(logits)
//		tok := sample(logits)
//		if err := m.Accept(tok); err != nil { ... } // a caller bug
//		if v.IsEOG(tok) { break }
//	}
//
// pieces[i] must be the exact bytes token i appends to the output
// (tokenizer.Piece), with control tokens given empty pieces: the grammar
// checks the raw concatenation of pieces, so the text returned to the user
// must be that concatenation too (no clean_up_tokenization_spaces, no
// stripping of SPM's leading space; neither can make the JSON invalid, but
// they would change string contents). Generation stops on an EOG token or
// when Done reports that no byte may follow.
//
// # Composition
//
// Tool-call formats wrap JSON in fixed text. Compile builds a Grammar from
// parts, with the same automaton, pruning, closures and mask cache as
// FromSchema: Lit, Seq, Alt, Opt, Repeat, Sep, Schema (one value of a JSON
// schema, same keywords and limits as FromSchema), AnyJSON, JSONString,
// Ws (JSON's optional whitespace) and TextUntil (free UTF-8 text containing
// none of its stop strings, ended by what follows, typically a stop). A
// composed grammar adds no whitespace around its root; Done reports when
// no byte may follow, and EOG is allowed exactly when the text so far is
// complete. Each Schema part is one rule (its "#" is its own root), a
// repeated part one rule called per copy, TextUntil one rule per stop set.
// The formats spell as, for instance (tools a and b, call(t) a Schema of
// {"name": {"const": t}, "arguments": t's parameters}, both required):
//
//	Hermes, Qwen2.5:  Sep(Seq(Lit("<tool_call>\n"), Alt(call(a), call(b)), Lit("\n</tool_call>")), Lit("\n"), 1)
//	Llama 3.x:        Alt(Seq(Lit(`{"name": "a", "parameters": `), Schema(pa), Lit("}")), ...)
//	Mistral:          Seq(Lit("[TOOL_CALLS]["), Sep(Alt(call(a), ...), Lit(", "), 1), Lit("]"))
//	                  or Repeat(Seq(Lit("[TOOL_CALLS]"), Alt(Seq(Lit("a[ARGS]"), Schema(pa)), ...)), 1, -1)
//	Qwen3-Coder XML:  Seq(Lit("<tool_call>\n<function=a>\n"), param..., Lit("</function>\n</tool_call>")),
//	                  param = Seq(Lit("<parameter=p>\n"), TextUntil("\n</parameter>") or Schema(pp), Lit("\n</parameter>\n"))
//	gpt-oss harmony:  Seq(Lit("<|channel|>commentary to=functions."), Alt(Seq(Lit("a <|constrain|>json<|message|>"), Schema(pa)), ...), Lit("<|call|>"))
//	reasoning first:  Seq(Lit("<think>"), TextUntil("</think>"), Lit("</think>"), Ws(), calls)
//
// Text the prompt already wrote into the output (a generation prompt that
// opens "<think>\n") is fed with Matcher.AcceptText before sampling.
//
// # Lazy grammars
//
// With tool_choice "auto" the model may answer in prose or call tools.
// Grammar.Lazy(triggers...) returns a grammar whose matchers start
// unconstrained, as llama.cpp's lazy grammars: Mask allows every token
// (EOG and empty pieces included), Accept records the text, and Complete
// is true. At the first occurrence of a trigger in the output (leftmost;
// inside one token, across tokens, or a token whose piece is the trigger,
// like a preserved "[TOOL_CALLS]" or "<|channel|>" control token given its
// text) the matcher becomes an ordinary matcher of the grammar, positioned
// as if it had read the output from the trigger's first byte: so the
// grammar's root starts with the trigger (Lazy checks it accepts each).
// TriggerOffset tells the parser where the constrained text begins. While
// awaiting, Mask still refuses the tokens that would complete a trigger
// into text the grammar rejects ("<tool_call>" then "x" where "\n" must
// come), so what Mask allows Accept takes and every state can be completed.
// Only two kinds of tokens can complete a trigger: those containing one
// (listed once per vocabulary and trigger, checked once per matcher) and
// those starting with the rest of a trigger whose beginning ends the
// output (one subtree of the trie): awaiting costs about a microsecond a
// token, not a vocabulary walk. A trigger written inside free text (a
// reasoning block quoting "<tool_call>") fires as well: exclude reasoning
// by composing it into a non-lazy grammar, or start the lazy matcher after
// it.
//
// # Design
//
// A schema compiles (FromSchema) into a byte-level pushdown automaton: one
// rule per subschema (so recursive $refs are recursive calls), rules made of
// nodes joined by byte-range edges, epsilon edges and call edges. Building
// ends by pruning every node from which no complete document can be reached
// (so the matcher never walks into a dead end: whatever Mask allows can be
// completed), rejecting left recursion, and precomputing for each node its
// closure: the nodes with byte edges it reaches without reading, with the
// return nodes each path pushes.
//
// A Matcher's state is a set of configurations, each a node and a call
// stack; stacks are persistent linked frames in an arena, shared between
// configurations, so trying a byte costs a few comparisons and no copying.
// Nondeterminism (anyOf, optional properties, regex alternations) is just a
// larger set, deduplicated and bounded (1024 configurations).
//
// Mask walks a byte trie of the vocabulary (flattened in preorder, so a
// rejected byte skips its whole subtree with one index jump), keeping one
// configuration set per depth. A full walk visits most of the trie when
// most tokens are allowed (inside a string: about 270,000 nodes for a
// 128k vocabulary, ~6 ms). So Mask first looks up the vocabulary's mask
// cache: a configuration inside a lexical region (a string's characters, a
// number's digits, a pattern: bytes read with no calls until the region's
// rule ends) accepts the same tokens whatever its stack, except those that
// leave the region. A cache entry, built the second time a region is met
// and keyed by a hash of the region's automaton (so all grammars share the
// entries of identical regions; only the part a token can reach counts, so
// positions of a long maxLength string share one), holds the tokens the
// region accepts by itself and the trie nodes where it can end; Mask ORs
// the first and walks the subtrees of the second from the caller's real
// state. Inside strings Mask then costs ~20 µs instead of ~6 ms. The
// entry keeps the region's ends grouped by the byte that follows them, so
// only the ends followed by a byte the caller accepts are walked: a
// TextUntil region, which can end before almost any byte, costs ~10 µs.
//
// # What is supported
//
//   - Whitespace as llama.cpp: ws ::= | " " | "\n" [ \t]{0,20} between
//     tokens, none before the root value, at most one space or newline after
//     it (then Done).
//   - Strings: any character but '"', '\\' and controls (U+007F is
//     allowed), valid UTF-8 only (a character may span tokens), escapes
//     \" \\ \/ \b \f \n \r \t \uXXXX except UTF-16 surrogates (so every
//     document decodes to valid Unicode and a \u escape is one character).
//   - Numbers: -?(0|[1-9][0-9]{0,15})(\.[0-9]{1,16})?([eE][-+]?(0|[1-9][0-9]{0,15}))?
//     (llama.cpp's bounds); integers without fraction or exponent.
//   - JSON(): one object, containers nested at most 32 levels.
//   - type (one or a list), nullable (OpenAPI), enum and const (the
//     values' compact JSON text; for enum, only values of the schema's type),
//     anyOf and oneOf (both as alternatives, like llama.cpp; keywords beside
//     them are merged into each alternative), allOf (merged into one
//     schema: properties united, required united, types intersected, bounds
//     tightened; other keywords must agree), $ref to "#" and any local JSON
//     pointer ("#/$defs/x", "#/definitions/x", ...), recursive included.
//   - Objects: properties in the schema's order, required ones mandatory,
//     optional ones skippable; additionalProperties false or absent (with
//     properties or required) admits no other key, true or a schema admits
//     other keys (never a declared name) after the declared ones; a required
//     name missing from properties is a required property of the
//     additionalProperties schema (any value if absent); an object without
//     properties is any object (or a map of additionalProperties), its
//     required names, if any, first.
//   - Arrays: items, prefixItems (all required unless minItems says
//     otherwise, and nothing after them unless items allows it, as
//     llama.cpp), the draft-4 tuple form of items with additionalItems,
//     minItems, maxItems.
//   - Strings: minLength, maxLength (characters, an escape counting as
//     one), pattern (ECMA-262 syntax as far as Go's regexp/syntax parses it,
//     plus \uXXXX escapes; unanchored sides match anything, as JSON Schema
//     says; matched against the string's characters, with '"', '\\' and
//     controls in their escaped forms), format date, time, date-time and
//     uuid (llama.cpp's definitions). Several of these on one string are
//     intersected (product automaton).
//   - Integers: minimum, maximum, exclusiveMinimum, exclusiveMaximum
//     (numbers, or draft-4 booleans), at most 16 digits.
//   - Annotations and unknown keywords are ignored (title, description,
//     examples, default, $schema, $id, $comment, deprecated, ...), as are
//     unevaluatedProperties false (objects are closed anyway), uniqueItems
//     false and minProperties 0.
//
// # What is not, and why
//
// A keyword that restricts documents in a way this package does not enforce
// makes FromSchema fail with ErrUnsupported rather than silently accept
// documents the schema rejects: not, if/then/else, dependentRequired,
// dependentSchemas, dependencies, patternProperties, propertyNames,
// unevaluatedItems, unevaluatedProperties other than false, contains,
// minContains, maxContains, uniqueItems true, multipleOf, minProperties
// above 0, maxProperties, contentSchema, $dynamicRef, $recursiveRef, $refs
// that are not local JSON pointers, patterns with lookaround, back
// references or assertions other than a leading ^ and trailing $, allOf
// members that disagree on other keywords, and sizes beyond the limits
// (about 20,000 characters of maxLength, 262,144 automaton nodes, schemas
// nested 64 deep). Most need counting or comparing across the document,
// which a grammar cannot do.
//
// Deliberate differences and leniencies:
//
//   - minimum/maximum on "number" are ignored (as llama.cpp does): number
//     ranges with fractions and exponents are not worth the automaton.
//   - Other formats (email, uri, ...) are annotations, as JSON Schema
//     specifies by default: any string.
//   - Optional properties keep their declared position among required
//     ones (llama.cpp moves required properties first).
//   - A key spelt with \u escapes is not recognised as a declared name, so
//     an additional property could repeat a declared name written that way
//     (llama.cpp alike).
//   - Objects are closed without additionalProperties (llama.cpp's reading,
//     stricter than JSON Schema's).
//
// # Invariants and limits
//
// Grammar and Vocab are immutable (the Vocab's mask cache and the Grammar's
// signature memo are internal and locked) and safe for concurrent use; a
// Matcher is not. There are no dead ends: every state a matcher reaches can
// be completed, even at the nesting limit. Building records for each node
// the call depth its rule needs to finish, and a step keeps only the
// configurations that can still finish within the 128-frame stack, so a
// model nesting a recursive schema ever deeper is made to close it (about
// 60 levels for a typical tree node); JSON() nests at most 32 containers.
// Mask and Accept agree (a token Mask allows, Accept takes) as long as
// fewer than 1024 configurations are alive at once, the bound on
// ambiguity; beyond it extra configurations are dropped.
package grammar
