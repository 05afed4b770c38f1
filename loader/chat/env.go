package chat

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/nikolalohinski/gonja/v2/builtins"
	"github.com/nikolalohinski/gonja/v2/config"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/parser"
)

// This file builds the one gonja environment every template shares: an
// allowlist of gonja's builtins plus the names Hugging Face adds. Anything not
// listed here does not exist for a template. The lists follow what HF's
// ImmutableSandboxedEnvironment permits and real chat templates use:
// no file access ({% include %}, {% import %}, {% extends %} are gone), no
// mutation of lists or dicts (HF forbids list.append and dict.update too), and
// no builtin whose size argument could make one call allocate gigabytes
// (center, wordwrap, format, batch, slice, lipsum, str.zfill, ...).

// hfConfig is the lexer/parser configuration transformers uses for
// apply_chat_template: trim_blocks and lstrip_blocks on.
func hfConfig() *config.Config {
	c := config.New()
	c.TrimBlocks = true
	c.LeftStripBlocks = true
	return c
}

// allowedFilters are taken from gonja as they are; the others in filterSet are
// our own.
var allowedFilters = []string{
	"abs", "attr", "capitalize", "count", "d", "default", "dictsort", "e",
	"escape", "first", "float", "groupby", "int", "items", "join", "last",
	"length", "list", "lower", "map", "max", "min", "reject", "rejectattr",
	"reverse", "round", "safe", "select", "selectattr", "sort", "string",
	"striptags", "sum", "title", "trim", "truncate", "unique", "upper",
	"urlencode", "wordcount",
}

// allowedStrMethods are the Python str methods a template may call. Those
// taking a width (center, ljust, rjust, zfill, expandtabs) are left out, and
// replace is replaced by a bounded version.
var allowedStrMethods = []string{
	"capitalize", "casefold", "count", "endswith", "find", "isalnum",
	"isalpha", "isascii", "isdecimal", "isdigit", "islower", "isnumeric",
	"isprintable", "isspace", "istitle", "isupper", "join", "lower", "lstrip",
	"partition", "removeprefix", "removesuffix", "rfind", "rpartition",
	"rsplit", "rstrip", "split", "splitlines", "startswith", "strip",
	"swapcase", "title", "upper",
}

// allowedDictMethods are the read-only dict methods.
var allowedDictMethods = []string{"keys", "values", "items", "get", "copy"}

// allowedListMethods: only copy; append/reverse mutate.
var allowedListMethods = []string{"copy"}

// allowedControlStructures are gonja's own; set, for and macro are ours or
// wrapped (see guard.go).
var allowedControlStructures = []string{"if", "call", "raw", "break", "continue"}

// reservedNames are the context names a caller's Options.Extra may not
// override.
var reservedNames = map[string]bool{
	"messages": true, "bos_token": true, "eos_token": true,
	"add_generation_prompt": true, "raise_exception": true,
	"strftime_now": true, "range": true, "namespace": true, "dict": true,
	"cycler": true, "joiner": true, "loop": true, "caller": true,
	"self": true, "varargs": true, "kwargs": true,
}

// builtinParsers are gonja's own parsers that ours wrap.
var builtinParsers = func() map[string]parser.ControlStructureParser {
	m := map[string]parser.ControlStructureParser{}
	for _, name := range []string{"for", "macro"} {
		p, ok := builtins.ControlStructures.Get(name)
		if !ok {
			panic("chat: gonja lacks control structure " + name)
		}
		m[name] = p
	}
	return m
}()

// sharedEnv is built once; it is read-only afterwards, so concurrent renders
// may share it.
var sharedEnv = newEnvironment()

func newEnvironment() *exec.Environment {
	filters := map[string]exec.FilterFunction{}
	for _, name := range allowedFilters {
		f, ok := builtins.Filters.Get(name)
		if !ok {
			panic("chat: gonja lacks filter " + name) // a dependency bump broke the allowlist
		}
		filters[name] = f
	}
	filters["tojson"] = filterToJSON
	filters["items"] = filterItems
	// Python's Undefined and None print as "" and "None": trim on a missing
	// description (Hermes' tool template does that) is "" there, an error
	// in gonja.
	for _, name := range []string{"trim", "lower", "upper", "title", "capitalize"} {
		filters[name] = stringOfNil(filters[name])
	}
	filters["replace"] = filterReplace
	filters["indent"] = filterIndent

	cs := map[string]parser.ControlStructureParser{}
	for _, name := range allowedControlStructures {
		p, ok := builtins.ControlStructures.Get(name)
		if !ok {
			panic("chat: gonja lacks control structure " + name)
		}
		cs[name] = p
	}
	cs["set"] = setParser
	cs["for"] = forParser
	cs["macro"] = macroParser

	return &exec.Environment{
		Context: exec.NewContext(map[string]any{
			"range":     rangeFunction,
			"namespace": namespaceFunction,
			"dict":      dictFunction,
		}),
		Filters:           exec.NewFilterSet(filters),
		Tests:             builtins.Tests,
		ControlStructures: exec.NewControlStructureSet(cs),
		Methods: exec.Methods{
			Bool:  builtins.Methods.Bool,
			Int:   builtins.Methods.Int,
			Float: builtins.Methods.Float,
			Str:   pick(builtins.Methods.Str, allowedStrMethods, map[string]exec.Method[string]{"replace": methodReplace}),
			Dict:  pick(builtins.Methods.Dict, allowedDictMethods, nil),
			List:  pick(builtins.Methods.List, allowedListMethods, nil),
		},
	}
}

func pick[T any](from *exec.MethodSet[T], names []string, extra map[string]exec.Method[T]) *exec.MethodSet[T] {
	m := map[string]exec.Method[T]{}
	for _, name := range names {
		f, ok := from.Get(name)
		if !ok {
			panic("chat: gonja lacks method " + name)
		}
		m[name] = f
	}
	for name, f := range extra {
		m[name] = f
	}
	return exec.NewMethodSet(m)
}

// rangeFunction is Python's range, materialised as a list and capped at
// maxRange items as Jinja's sandbox caps it, and at Limits.MaxSteps. (gonja's
// own feeds a channel from a goroutine that leaks when a loop breaks early.)
func rangeFunction(e *exec.Evaluator, va *exec.VarArgs) *exec.Value {
	limit := maxRange
	if st, err := stateOf(e.Environment.Context); err == nil {
		limit = min(limit, st.limits.MaxSteps)
	}
	start, stop, step := 0, 0, 1
	for _, a := range va.Args {
		if !a.IsInteger() {
			return exec.AsValue(fmt.Errorf("range: arguments must be integers, got %s", a.String()))
		}
	}
	switch len(va.Args) {
	case 1:
		stop = va.Args[0].Integer()
	case 2:
		start, stop = va.Args[0].Integer(), va.Args[1].Integer()
	case 3:
		start, stop, step = va.Args[0].Integer(), va.Args[1].Integer(), va.Args[2].Integer()
	default:
		return exec.AsValue(fmt.Errorf("range expects 1 to 3 arguments, got %d", len(va.Args)))
	}
	if step == 0 {
		return exec.AsValue(fmt.Errorf("range: step must not be zero"))
	}
	n := 0
	if step > 0 && start < stop {
		n = (stop - start + step - 1) / step
	} else if step < 0 && start > stop {
		n = (start - stop - step - 1) / -step
	}
	if n < 0 || n > limit {
		return exec.AsValue(fmt.Errorf("%w: range of %d items (limit %d)", ErrLimit, n, limit))
	}
	out := make([]any, n)
	for i := range out {
		out[i] = start + i*step
	}
	return exec.AsValue(out)
}

// namespaceFunction is Jinja's namespace(): a mutable attribute bag, the one
// object {% set ns.x = ... %} may write to.
func namespaceFunction(va *exec.VarArgs) *exec.Value {
	ns := namespace{}
	if len(va.Args) > 1 || len(va.Args) == 1 && !va.Args[0].IsDict() {
		return exec.AsValue(fmt.Errorf("namespace expects keyword arguments or one dict"))
	}
	if len(va.Args) == 1 {
		for _, k := range va.Args[0].Keys() {
			item, _ := va.Args[0].GetItem(k.String())
			ns[k.String()] = item.Interface()
		}
	}
	for k, v := range va.KwArgs {
		ns[k] = v.Interface()
	}
	return exec.AsValue(ns)
}

// dictFunction is dict(**kwargs).
func dictFunction(va *exec.VarArgs) *exec.Value {
	d := make(map[string]any, len(va.KwArgs))
	for k, v := range va.KwArgs {
		d[k] = v.Interface()
	}
	return exec.AsValue(d)
}

// filterReplace is Jinja's replace(old, new[, count]) with the result size
// checked before it is built.
// filterItems is dict|items in the order `for k, v in dict` iterates
// (sorted keys): gonja's own follows Go's map order, which changes from one
// render to the next, so the same conversation would render (and
// tokenize, and miss the prefix cache) differently each time.
func filterItems(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	switch {
	case in.IsError(), in.IsList():
		return in
	case in.IsNil():
		return exec.AsValue([]any{})
	case !in.IsDict():
		return exec.AsValue(errors.New("items requires a mapping"))
	}
	keys := in.Keys()
	out := make([]any, 0, len(keys))
	for _, k := range keys {
		v, _ := in.GetItem(k.Interface())
		out = append(out, []any{k.Interface(), v.Interface()})
	}
	return exec.AsValue(out)
}

// stringOfNil lets a string filter take an undefined value as "".
func stringOfNil(f exec.FilterFunction) exec.FilterFunction {
	return func(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
		if in.IsNil() {
			in = exec.AsValue("")
		}
		return f(e, in, params)
	}
}

func filterReplace(e *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	if len(params.Args) < 2 || len(params.Args) > 3 {
		return exec.AsValue(fmt.Errorf("replace expects (old, new[, count])"))
	}
	count := -1
	if len(params.Args) == 3 {
		count = params.Args[2].Integer()
	}
	return boundedReplace(e, in.String(), params.Args[0].String(), params.Args[1].String(), count)
}

// methodReplace is str.replace(old, new[, count]), bounded the same way.
func methodReplace(self string, _ *exec.Value, params *exec.VarArgs) (any, error) {
	if len(params.Args) < 2 || len(params.Args) > 3 {
		return nil, fmt.Errorf("replace expects (old, new[, count])")
	}
	count := -1
	if len(params.Args) == 3 {
		count = params.Args[2].Integer()
	}
	v := boundedReplace(nil, self, params.Args[0].String(), params.Args[1].String(), count)
	if v.IsError() {
		return nil, v.Interface().(error)
	}
	return v.Interface(), nil
}

func boundedReplace(_ *exec.Evaluator, s, old, new string, count int) *exec.Value {
	n := strings.Count(s, old)
	if count >= 0 && count < n {
		n = count
	}
	if size := len(s) + n*(len(new)-len(old)); size > maxStringBytes {
		return exec.AsValue(fmt.Errorf("%w: replace would build %d bytes (limit %d)", ErrLimit, size, maxStringBytes))
	}
	return exec.AsValue(strings.Replace(s, old, new, count))
}

// filterIndent is Jinja's indent(width=4, first=False, blank=False), with the
// width capped.
func filterIndent(_ *exec.Evaluator, in *exec.Value, params *exec.VarArgs) *exec.Value {
	if in.IsError() {
		return in
	}
	width := "    "
	var first, blank bool
	get := func(i int, name string) *exec.Value {
		if i < len(params.Args) {
			return params.Args[i]
		}
		return params.KwArgs[name]
	}
	if w := get(0, "width"); w != nil {
		switch {
		case w.IsInteger():
			if w.Integer() < 0 || w.Integer() > 256 {
				return exec.AsValue(fmt.Errorf("%w: indent width %d (limit 256)", ErrLimit, w.Integer()))
			}
			width = strings.Repeat(" ", w.Integer())
		default:
			width = w.String()
		}
	}
	if f := get(1, "first"); f != nil {
		first = f.IsTrue()
	}
	if b := get(2, "blank"); b != nil {
		blank = b.IsTrue()
	}
	lines := strings.Split(in.String(), "\n")
	if size := len(in.String()) + len(lines)*len(width); size > maxStringBytes {
		return exec.AsValue(fmt.Errorf("%w: indent would build %d bytes", ErrLimit, size))
	}
	var b strings.Builder
	for i, line := range lines {
		if i > 0 {
			b.WriteByte('\n')
		}
		if (i > 0 || first) && (blank || strings.TrimSpace(line) != "") {
			b.WriteString(width)
		}
		b.WriteString(line)
	}
	return exec.AsValue(b.String())
}

// strftimeNow returns HF's strftime_now(format) bound to the clock now.
func strftimeNow(now time.Time) func(*exec.VarArgs) *exec.Value {
	return func(va *exec.VarArgs) *exec.Value {
		if len(va.Args) != 1 || !va.Args[0].IsString() {
			return exec.AsValue(fmt.Errorf("strftime_now expects one format string"))
		}
		s, err := strftime(now, va.Args[0].String())
		if err != nil {
			return exec.AsValue(err)
		}
		return exec.AsValue(s)
	}
}
