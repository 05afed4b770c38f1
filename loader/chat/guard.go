package chat

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"time"

	controlStructures "github.com/nikolalohinski/gonja/v2/builtins/control_structures"
	"github.com/nikolalohinski/gonja/v2/exec"
	"github.com/nikolalohinski/gonja/v2/nodes"
	"github.com/nikolalohinski/gonja/v2/parser"
	"github.com/nikolalohinski/gonja/v2/tokens"
)

// This file is the sandbox: what bounds one render's time, memory and stack.
//
//   - At parse time (sandbox) every node of the template is visited; anything
//     not known here is refused with ErrUnsupported, so a construct added to
//     gonja later cannot slip past the guards. Every for-loop body gets a
//     guard node as its first statement, and every `a * b` becomes a call to
//     a bounded multiply (gonja's own would strings.Repeat any count).
//   - At render time the guard node and every macro call count one step and
//     check the deadline, the step budget and the size of the output being
//     built (the render's writer, or the buffer of a macro, a {% call %} body
//     or a {% set %} block). Macro calls also count nesting depth, which is
//     what keeps a recursive macro from overflowing the Go stack (fatal, not
//     a recoverable panic).
//   - Values stored by {% set %} and passed to macros are measured (string
//     bytes plus one per list item or dict entry, following shared
//     references) and refused past the limit; a value that contains itself
//     measures as infinite.
//
// Between two checks the work is bounded by the template's own length times
// the value limit, so the deadline is honoured to within that.

// Limits bound one Render. A zero field takes its default.
type Limits struct {
	// Timeout bounds the wall-clock time of one render (default 2 s). The
	// context passed to RenderContext can only shorten it.
	Timeout time.Duration
	// MaxOutputBytes bounds the rendered prompt and any buffer a template
	// renders into (default 64 MiB).
	MaxOutputBytes int
	// MaxValueBytes bounds the measured size of any value a template stores
	// or passes to a macro, and of one string operation's result
	// (default 16 MiB). Strings count their bytes, and every value, list
	// item and dict entry counts 16 bytes more.
	MaxValueBytes int
	// MaxSteps bounds loop iterations plus macro calls (default 1,000,000).
	MaxSteps int
	// MaxDepth bounds the nesting of macro calls (default 64).
	MaxDepth int
}

const (
	defaultTimeout  = 2 * time.Second
	defaultMaxBytes = 64 << 20
	defaultMaxValue = 16 << 20
	defaultMaxSteps = 1_000_000
	defaultMaxDepth = 64

	// maxRange is Jinja's sandbox MAX_RANGE (range is capped at MaxSteps
	// too).
	maxRange = 100_000
	// maxStringBytes bounds one string method's result where no render
	// state is reachable (str.replace).
	maxStringBytes = defaultMaxBytes
	// itemBytes is what measure counts per value besides string bytes.
	itemBytes = 16
	// maxMeasureDepth bounds how deep measure follows nested values.
	maxMeasureDepth = 256
	// maxTemplateBytes bounds the template source (the largest real chat
	// templates are a few tens of KiB).
	maxTemplateBytes = 1 << 20
	// maxNesting bounds bracket and block nesting in the source, which is
	// how deep gonja's recursive-descent parser recurses.
	maxNesting = 200
)

func (l Limits) withDefaults() Limits {
	if l.Timeout <= 0 {
		l.Timeout = defaultTimeout
	}
	if l.MaxOutputBytes <= 0 {
		l.MaxOutputBytes = defaultMaxBytes
	}
	if l.MaxValueBytes <= 0 {
		l.MaxValueBytes = defaultMaxValue
	}
	if l.MaxSteps <= 0 {
		l.MaxSteps = defaultMaxSteps
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = defaultMaxDepth
	}
	return l
}

// stateKey names the per-render state in the template context. Templates may
// not use names with the reserved prefix (sandbox refuses them).
const (
	reservedPrefix = "__hearth"
	stateKey       = "__hearth_state"
	mulKey         = "__hearth_mul"
	itemKey        = "__hearth_item"
)

// negativeConst says whether an index expression is a negative integer
// constant (-1, or the parser's unary minus of 1).
func negativeConst(n nodes.Node) bool {
	switch e := n.(type) {
	case *nodes.Integer:
		return e.Val < 0
	case *nodes.UnaryExpression:
		i, ok := e.Term.(*nodes.Integer)
		return ok && e.Negative && i.Val > 0
	}
	return false
}

// itemFunction is seq[i] for a negative constant i, as Python indexes a
// list or a string: counted from the end, -len(seq) the first item;
// out of range, undefined (as gonja's own index).
func itemFunction(va *exec.VarArgs) *exec.Value {
	if len(va.Args) != 2 {
		return exec.AsValue(errors.New("chat: internal index arity"))
	}
	seq, i := va.Args[0], va.Args[1].Integer()
	if !seq.IsList() && !seq.IsString() {
		v, _ := seq.GetItem(i)
		return v
	}
	if n := seq.Len(); i < 0 && i >= -n {
		return seq.Index(n + i)
	}
	return exec.AsValue(nil)
}

// renderState is one render's budget. A render runs on one goroutine, so no
// locking.
type renderState struct {
	ctx    context.Context
	limits Limits
	steps  int
	depth  int
	// raised is the error of raise_exception; failed is the first limit
	// hit. gonja turns errors into values along the way, so these are
	// kept here to hand the caller a typed error.
	raised *RaiseError
	failed error
}

func (s *renderState) fail(err error) error {
	if s.failed == nil {
		s.failed = err
	}
	return err
}

// step counts one unit of work and checks the budget and the deadline.
func (s *renderState) step() error {
	if s.failed != nil {
		return s.failed
	}
	s.steps++
	if s.steps > s.limits.MaxSteps {
		return s.fail(fmt.Errorf("%w: more than %d loop iterations and macro calls", ErrLimit, s.limits.MaxSteps))
	}
	if err := s.ctx.Err(); err != nil {
		return s.fail(fmt.Errorf("%w: %w", ErrLimit, err))
	}
	return nil
}

// checkLen fails when a buffer being rendered into has grown past the limit.
func (s *renderState) checkLen(w any) error {
	if l, ok := w.(interface{ Len() int }); ok && l.Len() > s.limits.MaxOutputBytes {
		return s.fail(fmt.Errorf("%w: output over %d bytes", ErrLimit, s.limits.MaxOutputBytes))
	}
	return nil
}

// checkValue fails when v measures over the value limit.
func (s *renderState) checkValue(what string, v any) error {
	if n := measure(v, s.limits.MaxValueBytes); n > s.limits.MaxValueBytes {
		return s.fail(fmt.Errorf("%w: %s is over %d bytes or nested too deep", ErrLimit, what, s.limits.MaxValueBytes))
	}
	return nil
}

func stateOf(ctx *exec.Context) (*renderState, error) {
	v, _ := ctx.Get(stateKey)
	if s, ok := v.(*renderState); ok {
		return s, nil
	}
	return nil, errors.New("chat: render state missing")
}

// measure returns the approximate memory size of v (string bytes, plus
// itemBytes per string, list item, dict entry or scalar: about what Go spends
// on an interface value), following shared references as often as they
// occur, and stops counting once it passes budget. Values nested deeper than
// maxMeasureDepth, cycles included, measure as budget+1.
func measure(v any, budget int) int {
	n := 0
	var walk func(rv reflect.Value, depth int)
	walk = func(rv reflect.Value, depth int) {
		if n > budget {
			return
		}
		if depth > maxMeasureDepth {
			n = budget + 1
			return
		}
		for rv.IsValid() && (rv.Kind() == reflect.Interface || rv.Kind() == reflect.Pointer) {
			if rv.IsNil() {
				n += itemBytes
				return
			}
			if rv.Type() == reflect.TypeFor[*exec.Value]() {
				rv = rv.Interface().(*exec.Value).Val
				continue
			}
			rv = rv.Elem()
		}
		if !rv.IsValid() {
			n += itemBytes
			return
		}
		switch rv.Kind() {
		case reflect.String:
			n += rv.Len() + itemBytes
		case reflect.Slice, reflect.Array:
			n += itemBytes
			for i := 0; i < rv.Len() && n <= budget; i++ {
				walk(rv.Index(i), depth+1)
			}
		case reflect.Map:
			n += itemBytes
			it := rv.MapRange()
			for it.Next() && n <= budget {
				walk(it.Key(), depth+1)
				walk(it.Value(), depth+1)
			}
		case reflect.Struct:
			n += itemBytes
			if rv.Type() == reflect.TypeFor[exec.Dict]() {
				d := rv.Addr().Interface().(*exec.Dict)
				for _, p := range d.Pairs {
					walk(reflect.ValueOf(p.Key), depth+1)
					walk(reflect.ValueOf(p.Value), depth+1)
				}
			} else if rv.Type() == reflect.TypeFor[exec.Pair]() {
				p := rv.Addr().Interface().(*exec.Pair)
				walk(reflect.ValueOf(p.Key), depth+1)
				walk(reflect.ValueOf(p.Value), depth+1)
			}
		default:
			n += itemBytes
		}
	}
	rv := reflect.ValueOf(v)
	if rv.IsValid() && rv.Kind() == reflect.Struct && !rv.CanAddr() {
		// exec.Dict and exec.Pair are read through a pointer.
		p := reflect.New(rv.Type())
		p.Elem().Set(rv)
		rv = p
	}
	walk(rv, 0)
	return n
}

// limitWriter collects the render and fails once it passes its limit.
type limitWriter struct {
	b     strings.Builder
	limit int
	st    *renderState
}

func (w *limitWriter) Write(p []byte) (int, error) {
	if w.b.Len()+len(p) > w.limit {
		return 0, w.st.fail(fmt.Errorf("%w: output over %d bytes", ErrLimit, w.limit))
	}
	return w.b.Write(p)
}

func (w *limitWriter) WriteString(s string) (int, error) {
	if w.b.Len()+len(s) > w.limit {
		return 0, w.st.fail(fmt.Errorf("%w: output over %d bytes", ErrLimit, w.limit))
	}
	return w.b.WriteString(s)
}

func (w *limitWriter) Len() int { return w.b.Len() }

// guardNode is the first statement of every for-loop body.
type guardNode struct{ loc *tokens.Token }

func (g *guardNode) Position() *tokens.Token { return g.loc }
func (g *guardNode) String() string          { return "guard" }

func (g *guardNode) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	st, err := stateOf(r.Environment.Context)
	if err != nil {
		return err
	}
	if err := st.step(); err != nil {
		return err
	}
	return st.checkLen(r.Output)
}

// forParser is gonja's for, minus `recursive` (whose loop(...) calls recurse
// out of sight of the depth count), with a guard node in its body.
func forParser(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	orig, _ := builtinFor()
	cs, err := orig(p, args)
	if err != nil {
		return nil, err
	}
	fcs, ok := cs.(*controlStructures.ForControlStructure)
	if !ok {
		return nil, fmt.Errorf("chat: unexpected for-loop node %T", cs)
	}
	if fcs.Recursive {
		return nil, fmt.Errorf("%w: recursive for-loops", ErrUnsupported)
	}
	loc := fcs.BodyWrapper.Location
	guard := &nodes.ControlStructureBlock{Location: loc, Name: "guard", ControlStructure: &guardNode{loc: loc}}
	fcs.BodyWrapper.Nodes = append([]nodes.Node{guard}, fcs.BodyWrapper.Nodes...)
	return fcs, nil
}

// macroStmt is gonja's macro with each call counted, depth-limited and its
// arguments and result measured.
type macroStmt struct {
	*nodes.Macro
}

func (m *macroStmt) String() string { return "macro " + m.Name }

func macroParser(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	_, orig := builtinFor()
	cs, err := orig(p, args)
	if err != nil {
		return nil, err
	}
	mcs, ok := cs.(*controlStructures.MacroControlStructure)
	if !ok {
		return nil, fmt.Errorf("chat: unexpected macro node %T", cs)
	}
	return &macroStmt{mcs.Macro}, nil
}

func (m *macroStmt) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	fn, err := exec.MacroNodeToFunc(m.Macro, r)
	if err != nil {
		return err
	}
	name := m.Name
	wrapped := exec.Macro(func(va *exec.VarArgs) *exec.Value {
		st, err := stateOf(r.Environment.Context)
		if err != nil {
			return exec.AsValue(err)
		}
		if err := st.step(); err != nil {
			return exec.AsValue(err)
		}
		if st.depth >= st.limits.MaxDepth {
			return exec.AsValue(st.fail(fmt.Errorf("%w: macro calls nested deeper than %d (in %s)", ErrLimit, st.limits.MaxDepth, name)))
		}
		args := make([]any, 0, len(va.Args)+len(va.KwArgs))
		for _, a := range va.Args {
			args = append(args, a)
		}
		for _, a := range va.KwArgs {
			args = append(args, a)
		}
		if err := st.checkValue("the arguments of macro "+name, args); err != nil {
			return exec.AsValue(err)
		}
		st.depth++
		defer func() { st.depth-- }()
		out := fn(va)
		if !out.IsError() && len(out.String()) > st.limits.MaxValueBytes {
			return exec.AsValue(st.fail(fmt.Errorf("%w: macro %s returned over %d bytes", ErrLimit, name, st.limits.MaxValueBytes)))
		}
		return out
	})
	r.Environment.Context.Set(name, wrapped)
	return nil
}

// builtinFor returns gonja's own for and macro parsers.
func builtinFor() (forP, macroP parser.ControlStructureParser) {
	return builtinParsers["for"], builtinParsers["macro"]
}

// setStmt is {% set %}: `set x = expr [if cond else alt]`, `set ns.attr =
// expr` on a namespace, and the block form `set x %}...{% endset`. As in
// Jinja, attribute assignment works on namespace() objects only, and item
// assignment (`set d['k'] = v`) does not exist.
type setStmt struct {
	loc                *tokens.Token
	expr, cond, alt    nodes.Expression
	body               *nodes.Wrapper
	attrNode           nodes.Expression // for set ns.attr
	attrName, nameName string
}

func (s *setStmt) Position() *tokens.Token { return s.loc }
func (s *setStmt) String() string          { return fmt.Sprintf("set(line %d)", s.loc.Line) }

func setParser(p *parser.Parser, args *parser.Parser) (nodes.ControlStructure, error) {
	s := &setStmt{loc: p.Current()}
	target, err := args.ParseVariableOrLiteral()
	if err != nil {
		return nil, err
	}
	switch t := target.(type) {
	case *nodes.Name:
		s.nameName = t.Name.Val
	case *nodes.GetAttribute:
		if t.Attribute == "" {
			return nil, args.Error("Can only assign to a name or a namespace attribute.", args.Current())
		}
		s.attrNode, s.attrName = t.Node.(nodes.Expression), t.Attribute
	default:
		return nil, args.Error("Can only assign to a name or a namespace attribute.", args.Current())
	}
	if args.Match(tokens.Assign) == nil {
		if !args.End() {
			return nil, args.Error("Expected '=' or the end of a block set.", args.Current())
		}
		wrapper, endargs, err := p.WrapUntil("endset")
		if err != nil {
			return nil, err
		}
		if !endargs.End() {
			return nil, endargs.Error("endset takes no arguments.", nil)
		}
		s.body = wrapper
		return s, nil
	}
	if s.expr, err = args.ParseExpression(); err != nil {
		return nil, err
	}
	if s.cond, s.alt, err = args.ParseCondition(); err != nil {
		return nil, err
	}
	if !args.End() {
		return nil, args.Error("Malformed set.", args.Current())
	}
	return s, nil
}

func (s *setStmt) Execute(r *exec.Renderer, _ *nodes.ControlStructureBlock) error {
	st, err := stateOf(r.Environment.Context)
	if err != nil {
		return err
	}
	var value any
	switch {
	case s.body != nil:
		buf := &limitWriter{limit: st.limits.MaxValueBytes, st: st}
		sub := r.Inherit()
		sub.Output = buf
		if err := sub.ExecuteWrapper(s.body); err != nil {
			return err
		}
		value = buf.b.String()
	default:
		var v *exec.Value
		if s.cond != nil {
			c := r.Eval(s.cond)
			if c.IsError() {
				return c
			}
			if c.IsTrue() {
				v = r.Eval(s.expr)
			} else if s.alt != nil {
				v = r.Eval(s.alt)
			} else {
				v = exec.AsValue("") // Jinja: `x if c` with no else is undefined
			}
		} else {
			v = r.Eval(s.expr)
		}
		if v.IsError() {
			return v
		}
		value = v.Interface()
	}
	if err := st.checkValue("the value set", value); err != nil {
		return err
	}
	if s.attrNode == nil {
		r.Environment.Context.Set(s.nameName, value)
		return nil
	}
	target := r.Eval(s.attrNode)
	if target.IsError() {
		return target
	}
	ns, ok := target.Interface().(namespace)
	if !ok {
		return fmt.Errorf("cannot assign attribute %q on a non-namespace object", s.attrName)
	}
	ns[s.attrName] = value
	return st.checkValue("namespace", ns)
}

// namespace is what namespace() returns: the only object a template may
// assign attributes to.
type namespace map[string]any

// mulFunction implements `a * b` as Python does: numbers multiply, a string
// or list times an integer repeats, bounded by MaxValueBytes.
func mulFunction(e *exec.Evaluator, va *exec.VarArgs) *exec.Value {
	st, err := stateOf(e.Environment.Context)
	if err != nil {
		return exec.AsValue(err)
	}
	if len(va.Args) != 2 {
		return exec.AsValue(errors.New("chat: internal multiply arity"))
	}
	l, r := va.Args[0], va.Args[1]
	repeat := func(seq *exec.Value, count *exec.Value) *exec.Value {
		n := count.Integer()
		if n <= 0 {
			if seq.IsString() {
				return exec.AsValue("")
			}
			return exec.AsValue([]any{})
		}
		unit := measure(seq.Interface(), st.limits.MaxValueBytes)
		if unit > 0 && n > st.limits.MaxValueBytes/unit {
			return exec.AsValue(st.fail(fmt.Errorf("%w: repeating %d times would pass %d bytes", ErrLimit, n, st.limits.MaxValueBytes)))
		}
		if seq.IsString() {
			return exec.AsValue(strings.Repeat(seq.String(), n))
		}
		items := make([]any, 0, seq.Len()*n)
		for range n {
			for i := 0; i < seq.Len(); i++ {
				items = append(items, seq.Index(i).Interface())
			}
		}
		return exec.AsValue(items)
	}
	switch {
	case (l.IsString() || l.IsList()) && r.IsInteger():
		return repeat(l, r)
	case l.IsInteger() && (r.IsString() || r.IsList()):
		return repeat(r, l)
	case l.IsFloat() || r.IsFloat():
		return exec.AsValue(l.Float() * r.Float())
	case l.IsNumber() && r.IsNumber():
		return exec.AsValue(l.Integer() * r.Integer())
	default:
		return exec.AsValue(fmt.Errorf("unsupported operands for *: %s and %s", l.String(), r.String()))
	}
}

// sandbox checks and rewrites a parsed template in place (see the top of
// this file). It runs once, in New, before the template is shared.
func sandbox(root *nodes.Template) error {
	if root.Parent != nil {
		return fmt.Errorf("%w: extends", ErrUnsupported)
	}
	w := &walker{done: map[nodes.Node]nodes.Expression{}}
	for _, n := range root.Nodes {
		if err := w.node(n); err != nil {
			return err
		}
	}
	return nil
}

type walker struct {
	done map[nodes.Node]nodes.Expression
}

func checkName(name string) error {
	if strings.HasPrefix(name, reservedPrefix) {
		return fmt.Errorf("%w: the name %q is reserved", ErrUnsupported, name)
	}
	return nil
}

func (w *walker) wrapper(wr *nodes.Wrapper) error {
	if wr == nil {
		return nil
	}
	for _, n := range wr.Nodes {
		if err := w.node(n); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) node(n nodes.Node) error {
	switch n := n.(type) {
	case *nodes.Data, *nodes.Comment:
		return nil
	case *nodes.Wrapper:
		return w.wrapper(n)
	case *nodes.Output:
		return w.exprs(&n.Expression, &n.Condition, &n.Alternative)
	case *nodes.ControlStructureBlock:
		return w.control(n.ControlStructure)
	default:
		return fmt.Errorf("%w: template node %T", ErrUnsupported, n)
	}
}

func (w *walker) control(cs nodes.ControlStructure) error {
	switch cs := cs.(type) {
	case *guardNode:
		return nil
	case *setStmt:
		if s := cs.nameName; s != "" {
			if err := checkName(s); err != nil {
				return err
			}
		}
		if err := w.exprs(&cs.expr, &cs.cond, &cs.alt, &cs.attrNode); err != nil {
			return err
		}
		return w.wrapper(cs.body)
	case *controlStructures.ForControlStructure:
		if err := checkName(cs.Key); err != nil {
			return err
		}
		if err := checkName(cs.Value); err != nil {
			return err
		}
		if err := w.exprs(&cs.ObjectEvaluator, &cs.IfCondition); err != nil {
			return err
		}
		if err := w.wrapper(cs.BodyWrapper); err != nil {
			return err
		}
		return w.wrapper(cs.EmptyWrapper)
	case *macroStmt:
		for _, name := range []string{cs.Name, cs.VarArgsName, cs.KwArgsName} {
			if err := checkName(name); err != nil {
				return err
			}
		}
		for _, kw := range cs.Kwargs {
			if k, ok := kw.Key.(*nodes.String); ok {
				if err := checkName(k.Val); err != nil {
					return err
				}
			}
			if err := w.exprs(&kw.Value); err != nil {
				return err
			}
		}
		return w.wrapper(cs.Wrapper)
	case *controlStructures.IfControlStructure:
		for i := range cs.Conditions {
			if err := w.exprs(&cs.Conditions[i]); err != nil {
				return err
			}
		}
		for _, wr := range cs.Wrappers {
			if err := w.wrapper(wr); err != nil {
				return err
			}
		}
		return nil
	case *controlStructures.CallControlStructure:
		var e nodes.Expression = cs.Call
		if err := w.exprs(&e); err != nil {
			return err
		}
		call, ok := e.(*nodes.Call)
		if !ok {
			return fmt.Errorf("%w: {%% call %%} of a non-call", ErrUnsupported)
		}
		cs.Call = call
		return w.wrapper(cs.Body)
	case *controlStructures.RawControlStructure,
		*controlStructures.BreakControlStructure,
		*controlStructures.ContinueControlStructure:
		return nil
	default:
		return fmt.Errorf("%w: control structure %T", ErrUnsupported, cs)
	}
}

// exprs walks each non-nil expression and stores back its replacement.
func (w *walker) exprs(es ...*nodes.Expression) error {
	for _, e := range es {
		if *e == nil {
			continue
		}
		r, err := w.expr(*e)
		if err != nil {
			return err
		}
		*e = r
	}
	return nil
}

// nodeExpr walks a child held as a nodes.Node.
func (w *walker) nodeExpr(n *nodes.Node) error {
	if *n == nil {
		return nil
	}
	e, ok := (*n).(nodes.Expression)
	if !ok {
		return fmt.Errorf("%w: expression node %T", ErrUnsupported, *n)
	}
	r, err := w.expr(e)
	if err != nil {
		return err
	}
	*n = r
	return nil
}

func (w *walker) expr(e nodes.Expression) (nodes.Expression, error) {
	if r, ok := w.done[e]; ok {
		return r, nil
	}
	r, err := w.rewrite(e)
	if err != nil {
		return nil, err
	}
	w.done[e] = r
	return r, nil
}

func (w *walker) rewrite(e nodes.Expression) (nodes.Expression, error) {
	switch n := e.(type) {
	case *nodes.None, *nodes.String, *nodes.Integer, *nodes.Float, *nodes.Bool, *nodes.Error:
		return n, nil
	case *nodes.Name:
		return n, checkName(n.Name.Val)
	case *nodes.List:
		return n, w.list(n.Val)
	case *nodes.Tuple:
		return n, w.list(n.Val)
	case *nodes.Dict:
		for _, p := range n.Pairs {
			if err := w.exprs(&p.Key, &p.Value); err != nil {
				return nil, err
			}
		}
		return n, nil
	case *nodes.Pair:
		return n, w.exprs(&n.Key, &n.Value)
	case *nodes.Call:
		if err := w.nodeExpr(&n.Func); err != nil {
			return nil, err
		}
		if err := w.nodeExpr(&n.Parent); err != nil {
			return nil, err
		}
		if err := w.list(n.Args); err != nil {
			return nil, err
		}
		return n, w.kwargs(n.Kwargs)
	case *nodes.GetItem:
		if err := w.nodeExpr(&n.Node); err != nil {
			return nil, err
		}
		if err := w.nodeExpr(&n.Arg); err != nil {
			return nil, err
		}
		// gonja misses x[-len(x)] (its bound is off by one: a one-piece
		// split()[-1] comes back undefined); a negative constant index
		// goes through itemFunction, Python's rule.
		if seq, ok := n.Node.(nodes.Expression); ok && negativeConst(n.Arg) {
			loc := n.Location
			return &nodes.Call{
				Location: loc,
				Func:     &nodes.Name{Name: &tokens.Token{Type: tokens.Name, Val: itemKey, Pos: loc.Pos, Line: loc.Line, Col: loc.Col}},
				Args:     []nodes.Expression{seq, n.Arg.(nodes.Expression)},
				Kwargs:   map[string]nodes.Expression{},
			}, nil
		}
		return n, nil
	case *nodes.GetSlice:
		for _, c := range []*nodes.Node{&n.Node, &n.Start, &n.End, &n.Step} {
			if err := w.nodeExpr(c); err != nil {
				return nil, err
			}
		}
		return n, nil
	case *nodes.GetAttribute:
		return n, w.nodeExpr(&n.Node)
	case *nodes.Negation:
		return n, w.exprs(&n.Term)
	case *nodes.UnaryExpression:
		return n, w.exprs(&n.Term)
	case *nodes.BinaryExpression:
		if err := w.exprs(&n.Left, &n.Right); err != nil {
			return nil, err
		}
		if n.Operator != nil && n.Operator.Token != nil && n.Operator.Token.Type == tokens.Multiply {
			loc := n.Operator.Token
			return &nodes.Call{
				Location: loc,
				Func:     &nodes.Name{Name: &tokens.Token{Type: tokens.Name, Val: mulKey, Pos: loc.Pos, Line: loc.Line, Col: loc.Col}},
				Args:     []nodes.Expression{n.Left, n.Right},
				Kwargs:   map[string]nodes.Expression{},
			}, nil
		}
		return n, nil
	case *nodes.FilteredExpression:
		if err := w.exprs(&n.Expression); err != nil {
			return nil, err
		}
		for _, f := range n.Filters {
			if err := w.list(f.Args); err != nil {
				return nil, err
			}
			if err := w.kwargs(f.Kwargs); err != nil {
				return nil, err
			}
		}
		return n, nil
	case *nodes.TestExpression:
		if err := w.exprs(&n.Expression); err != nil {
			return nil, err
		}
		if n.Test != nil {
			if err := w.list(n.Test.Args); err != nil {
				return nil, err
			}
			if err := w.kwargs(n.Test.Kwargs); err != nil {
				return nil, err
			}
		}
		return n, nil
	default:
		return nil, fmt.Errorf("%w: expression %T", ErrUnsupported, e)
	}
}

func (w *walker) list(es []nodes.Expression) error {
	for i := range es {
		if err := w.exprs(&es[i]); err != nil {
			return err
		}
	}
	return nil
}

func (w *walker) kwargs(m map[string]nodes.Expression) error {
	for k, v := range m {
		r, err := w.expr(v)
		if err != nil {
			return err
		}
		m[k] = r
	}
	return nil
}

// checkNesting refuses sources whose brackets or blocks nest deeper than
// maxNesting, before gonja's recursive parser sees them.
func checkNesting(src string) error {
	depth, blocks := 0, 0
	for i := 0; i < len(src); i++ {
		switch src[i] {
		case '(', '[', '{':
			depth++
			if depth > maxNesting {
				return fmt.Errorf("%w: brackets nested deeper than %d", ErrUnsupported, maxNesting)
			}
		case ')', ']', '}':
			if depth > 0 {
				depth--
			}
		}
	}
	// Blocks: count {% if/for/macro/call/set-block %} openings against their
	// ends; a rough count is enough to bound the parser's recursion.
	for _, tag := range strings.Split(src, "{%")[1:] {
		word := strings.TrimLeft(tag, "-+ \t\r\n")
		switch {
		case strings.HasPrefix(word, "end"):
			if blocks > 0 {
				blocks--
			}
		case strings.HasPrefix(word, "if"), strings.HasPrefix(word, "for"),
			strings.HasPrefix(word, "macro"), strings.HasPrefix(word, "call"),
			strings.HasPrefix(word, "filter"), strings.HasPrefix(word, "raw"):
			blocks++
			if blocks > maxNesting {
				return fmt.Errorf("%w: blocks nested deeper than %d", ErrUnsupported, maxNesting)
			}
		}
	}
	return nil
}
