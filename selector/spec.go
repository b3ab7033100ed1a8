package selector

import (
	"fmt"
	"math"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"
)

// IndirectMode is dbt's --indirect-selection: which tests and unit tests a
// criterion adds besides the nodes it selects. The zero value means Eager.
type IndirectMode string

// The four indirect-selection modes.
const (
	// Eager adds a test when any of its parents is selected (dbt's default).
	Eager IndirectMode = "eager"
	// Cautious adds a test only when all of its parents are selected.
	Cautious IndirectMode = "cautious"
	// Buildable adds a test when all of its parents are selected or are
	// ancestors of the selection (or sources).
	Buildable IndirectMode = "buildable"
	// Empty adds no tests.
	Empty IndirectMode = "empty"
)

// ParseIndirectMode parses an --indirect-selection value, as dbt does
// (case-insensitively); "" means Eager. An unknown mode is an error naming
// it.
func ParseIndirectMode(s string) (IndirectMode, error) { return IndirectMode(s).normalize() }

func (m IndirectMode) normalize() (IndirectMode, error) {
	switch IndirectMode(strings.ToLower(string(m))) {
	case "", Eager:
		return Eager, nil
	case Cautious:
		return Cautious, nil
	case Buildable:
		return Buildable, nil
	case Empty:
		return Empty, nil
	}
	return "", fmt.Errorf("selector: unknown indirect selection mode %q (want eager, cautious, buildable or empty)", string(m))
}

// methodNames are dbt 1.11's selector methods.
var methodNames = map[string]bool{
	"fqn": true, "tag": true, "group": true, "access": true, "source": true, "path": true,
	"file": true, "package": true, "config": true, "test_name": true, "test_type": true,
	"resource_type": true, "state": true, "exposure": true, "metric": true, "result": true,
	"source_status": true, "version": true, "semantic_model": true, "saved_query": true,
	"unit_test": true,
}

// spec is a parsed selection: a *criterion or a *group.
type spec interface{ isSpec() }

// criterion is one atomic selection criterion, like dbt's SelectionCriteria.
type criterion struct {
	raw              string
	method           string
	args             []string
	value            string
	childrensParents bool
	parents          bool
	parentsDepth     int // -1: unlimited
	children         bool
	childrenDepth    int // -1: unlimited
	indirect         IndirectMode
}

type setOp int

const (
	opUnion setOp = iota
	opIntersection
	opDifference
)

// group combines its parts, like dbt's SelectionUnion, SelectionIntersection
// and SelectionDifference; indirect is the mode dbt uses to fold in tests
// that were held back by cautious or buildable selection.
type group struct {
	op       setOp
	parts    []spec
	indirect IndirectMode
}

func (*criterion) isSpec() {}
func (*group) isSpec()     {}

var (
	wordClass   = `[\p{L}\p{N}_]`
	criterionRE = regexp.MustCompile(`\A(?P<childrens_parents>@)?(?P<parents>(?P<parents_depth>\p{Nd}*)\+)?(?:(?P<method>(?:` + wordClass + `|\.)+):)?(?P<value>.*?)(?P<children>\+(?P<children_depth>\p{Nd}*))?\z`)
)

// parseCriterion parses one criterion (no spaces or commas inside). expr and
// pos locate it for errors.
func parseCriterion(raw, expr string, pos int, indirect IndirectMode) (*criterion, error) {
	m := criterionRE.FindStringSubmatchIndex(raw)
	if m == nil {
		at := strings.IndexByte(raw, '\n')
		if at < 0 {
			at = 0
		}
		if pos >= 0 {
			at += pos
		} else {
			at = -1
		}
		return nil, &SyntaxError{Expr: expr, Token: raw, Pos: at, Msg: "invalid selector spec"}
	}
	group := func(name string) (string, bool) {
		i := criterionRE.SubexpIndex(name)
		if m[2*i] < 0 {
			return "", false
		}
		return raw[m[2*i]:m[2*i+1]], true
	}
	c := &criterion{raw: raw, parentsDepth: -1, childrenDepth: -1, indirect: indirect}
	_, c.childrensParents = group("childrens_parents")
	_, c.parents = group("parents")
	_, c.children = group("children")
	c.value, _ = group("value")
	at := func(off int) int { // position in expr, or -1 when unknown
		if pos < 0 {
			return -1
		}
		return pos + off
	}
	if d, _ := group("parents_depth"); d != "" {
		c.parentsDepth = parseDepth(d)
	}
	if d, _ := group("children_depth"); d != "" {
		c.childrenDepth = parseDepth(d)
	}
	method, hasMethod := group("method")
	if hasMethod {
		parts := strings.Split(method, ".")
		if !methodNames[parts[0]] {
			return nil, &SyntaxError{Expr: expr, Token: parts[0], Pos: at(m[2*criterionRE.SubexpIndex("method")]),
				Msg: "unknown selector method"}
		}
		c.method, c.args = parts[0], parts[1:]
	} else {
		c.method = defaultMethod(c.value)
	}
	if c.children && c.childrensParents {
		return nil, &SyntaxError{Expr: expr, Token: raw, Pos: at(0), Msg: `"@" prefix and "+" suffix are incompatible`}
	}
	return c, nil
}

// defaultMethod is dbt's method inference for a value without "method:".
func defaultMethod(value string) string {
	switch {
	case strings.Contains(value, "/"):
		return "path"
	case hasAnySuffix(strings.ToLower(value), ".sql", ".py", ".csv"):
		return "file"
	}
	return "fqn"
}

func hasAnySuffix(s string, suffixes ...string) bool {
	for _, x := range suffixes {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

// parseDepth converts a run of Unicode decimal digits to an int as Python's
// int() does, saturating instead of growing without bound.
func parseDepth(s string) int {
	n := 0
	for _, r := range s {
		d := digitValue(r)
		if n > (math.MaxInt32-d)/10 {
			return math.MaxInt32
		}
		n = n*10 + d
	}
	return n
}

// digitValue returns the value of a decimal digit rune (Unicode Nd digits
// come in contiguous runs of ten starting at zero).
func digitValue(r rune) int {
	if r >= '0' && r <= '9' {
		return int(r - '0')
	}
	start := r
	for unicode.IsDigit(start - 1) {
		start--
	}
	return int(r-start) % 10
}

// parseCLI builds dbt's parse_difference(select, exclude): the union of the
// select arguments (or dbt's default when there are none) minus the union of
// the exclude arguments.
func parseCLI(sel, excl []string, mode IndirectMode) (spec, error) {
	include := sel
	if len(include) == 0 {
		include = []string{"fqn:*", "source:*", "exposure:*", "metric:*", "semantic_model:*"}
	}
	in, err := parseUnion(include, mode)
	if err != nil {
		return nil, err
	}
	ex, err := parseUnion(excl, mode)
	if err != nil {
		return nil, err
	}
	return &group{op: opDifference, parts: []spec{in, ex}, indirect: Eager}, nil
}

// parseUnion is dbt's parse_union: every argument is split on single
// spaces into a union, every piece on commas into an intersection.
func parseUnion(args []string, mode IndirectMode) (spec, error) {
	u := &group{op: opUnion, indirect: mode}
	for _, arg := range args {
		off := 0
		for _, piece := range strings.Split(arg, " ") {
			in := &group{op: opIntersection, indirect: mode}
			poff := off
			for _, part := range strings.Split(piece, ",") {
				c, err := parseCriterion(part, arg, poff, mode)
				if err != nil {
					return nil, err
				}
				in.parts = append(in.parts, c)
				poff += len(part) + 1
			}
			u.parts = append(u.parts, in)
			off += len(piece) + 1
		}
	}
	return u, nil
}

// yamlSelectors parses the manifest's "selectors" block: name -> {name,
// definition, default}. Definitions are parsed lazily by definition().
type yamlSelectors struct {
	raw map[string]any
}

// names returns the defined selector names, sorted.
func (y yamlSelectors) names() []string {
	out := make([]string, 0, len(y.raw))
	for k := range y.raw {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// defaultName returns the selector marked default: true, if any (dbt takes
// the first in file order; the manifest keeps no order, so ties go to the
// smallest name).
func (y yamlSelectors) defaultName() string {
	for _, name := range y.names() {
		if sel, ok := y.raw[name].(map[string]any); ok {
			if d, ok := sel["default"].(bool); ok && d {
				return name
			}
		}
	}
	return ""
}

// spec parses the named selector's definition.
func (y yamlSelectors) spec(name string, mode IndirectMode) (spec, error) {
	sel, ok := y.raw[name].(map[string]any)
	if !ok {
		return nil, &UnknownSelectorError{Name: name, Known: y.names()}
	}
	p := defParser{y: y, name: name, mode: mode}
	return p.parse(sel["definition"], true, 0)
}

type defParser struct {
	y    yamlSelectors
	name string
	mode IndirectMode
}

func (p *defParser) errorf(token string, format string, args ...any) error {
	return &SyntaxError{Expr: p.name, Token: token, Pos: -1, Msg: fmt.Sprintf(format, args...)}
}

// parse is dbt's parse_from_definition.
func (p *defParser) parse(def any, root bool, depth int) (spec, error) {
	if depth > 64 {
		return nil, p.errorf(p.name, "selector definitions nest too deeply (a cycle?)")
	}
	switch d := def.(type) {
	case string:
		return parseCriterion(d, p.name, -1, p.mode)
	case map[string]any:
		_, isU := d["union"]
		_, isI := d["intersection"]
		if (isU || isI) && root && len(d) > 1 {
			keys := make([]string, 0, len(d))
			for k := range d {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return nil, p.errorf(strings.Join(keys, ","), "only a single 'union' or 'intersection' key is allowed in a root level selector definition")
		}
		switch {
		case isU:
			return p.setDef(d, "union", opUnion, depth)
		case isI:
			return p.setDef(d, "intersection", opIntersection, depth)
		}
		return p.dictDef(d, depth)
	}
	return nil, p.errorf(fmt.Sprint(def), "expected union, intersection, string or mapping, found %T", def)
}

func (p *defParser) list(d map[string]any, key string) ([]any, error) {
	v, ok := d[key].([]any)
	if !ok {
		return nil, p.errorf(key, "invalid value for key %q: expected a list", key)
	}
	for _, item := range v {
		switch item.(type) {
		case string, map[string]any:
		default:
			return nil, p.errorf(fmt.Sprint(item), "invalid value type %T in key %q, expected mapping or string", item, key)
		}
	}
	return v, nil
}

func (p *defParser) exclusions(d map[string]any, depth int) (spec, error) {
	items, err := p.list(d, "exclude")
	if err != nil {
		return nil, err
	}
	var parts []spec
	for _, it := range items {
		s, err := p.parse(it, false, depth+1)
		if err != nil {
			return nil, err
		}
		parts = append(parts, s)
	}
	switch len(parts) {
	case 0:
		return nil, nil
	case 1:
		return parts[0], nil
	}
	return &group{op: opUnion, parts: parts, indirect: Eager}, nil
}

func (p *defParser) setDef(d map[string]any, key string, op setOp, depth int) (spec, error) {
	items, err := p.list(d, key)
	if err != nil {
		return nil, err
	}
	g := &group{op: op, indirect: Eager}
	var diff spec
	for _, it := range items {
		if m, ok := it.(map[string]any); ok {
			if _, ok := m["exclude"]; ok {
				if diff != nil {
					return nil, p.errorf("exclude", "you cannot provide multiple exclude arguments to the same selector set operator")
				}
				if diff, err = p.exclusions(m, depth); err != nil {
					return nil, err
				}
				continue
			}
		}
		s, err := p.parse(it, false, depth+1)
		if err != nil {
			return nil, err
		}
		g.parts = append(g.parts, s)
	}
	if diff == nil {
		return g, nil
	}
	return &group{op: opDifference, parts: []spec{g, diff}, indirect: Eager}, nil
}

// dictDef is dbt's parse_dict_definition.
func (p *defParser) dictDef(d map[string]any, depth int) (spec, error) {
	var dct map[string]any
	var diff spec
	switch {
	case len(d) == 1:
		for k, v := range d {
			dct = map[string]any{"method": k, "value": v}
		}
	case d["method"] == "selector":
		name, _ := d["value"].(string)
		if _, ok := p.y.raw[name]; !ok {
			return nil, p.errorf(name, "existing selector definition for %s not found", name)
		}
		sel := p.y.raw[name].(map[string]any)
		return p.parse(sel["definition"], true, depth+1)
	default:
		_, hasM := d["method"]
		_, hasV := d["value"]
		if !hasM || !hasV {
			keys := make([]string, 0, len(d))
			for k := range d {
				keys = append(keys, k)
			}
			sort.Strings(keys)
			return nil, p.errorf(strings.Join(keys, ","), `expected either 1 key or else "method" and "value" keys`)
		}
		dct = d
		if _, ok := d["exclude"]; ok {
			var err error
			if diff, err = p.exclusions(d, depth); err != nil {
				return nil, err
			}
		}
	}
	c, err := p.criterionFromDict(dct)
	if err != nil {
		return nil, err
	}
	if diff == nil {
		return c, nil
	}
	return &group{op: opDifference, parts: []spec{c, diff}, indirect: Eager}, nil
}

// criterionFromDict is dbt's SelectionCriteria.selection_criteria_from_dict.
func (p *defParser) criterionFromDict(d map[string]any) (*criterion, error) {
	method, _ := d["method"].(string)
	c := &criterion{raw: fmt.Sprint(d), parentsDepth: -1, childrenDepth: -1, indirect: p.mode}
	parts := strings.Split(method, ".")
	if !methodNames[parts[0]] {
		return nil, p.errorf(parts[0], "unknown selector method")
	}
	c.method, c.args = parts[0], parts[1:]
	c.value = pyStr(d["value"])
	c.childrensParents = truthy(d["childrens_parents"])
	c.parents = truthy(d["parents"])
	c.children = truthy(d["children"])
	var err error
	if c.parentsDepth, err = p.depth(d, "parents_depth"); err != nil {
		return nil, err
	}
	if c.childrenDepth, err = p.depth(d, "children_depth"); err != nil {
		return nil, err
	}
	if v, ok := d["indirect_selection"]; ok {
		s, _ := v.(string)
		mode, err := IndirectMode(s).normalize()
		if err != nil || s != strings.ToLower(s) || s == "" {
			return nil, p.errorf(pyStr(v), "invalid indirect_selection")
		}
		c.indirect = mode
	}
	if c.children && c.childrensParents {
		return nil, p.errorf(c.raw, `"@" prefix and "+" suffix are incompatible`)
	}
	return c, nil
}

func (p *defParser) depth(d map[string]any, key string) (int, error) {
	switch v := d[key].(type) {
	case nil:
		return -1, nil
	case float64:
		if v == 0 {
			return -1, nil // Python: `if not raw` treats 0 as unset
		}
		return int(v), nil
	case string:
		if v == "" {
			return -1, nil
		}
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return 0, p.errorf(v, "invalid node spec - could not handle %s", key)
		}
		return n, nil
	}
	return 0, p.errorf(pyStr(d[key]), "invalid node spec - could not handle %s", key)
}

// pyStr renders a JSON value as Python's str() would.
func pyStr(v any) string {
	switch x := v.(type) {
	case nil:
		return "None"
	case bool:
		if x {
			return "True"
		}
		return "False"
	case string:
		return x
	case float64:
		if x == math.Trunc(x) && math.Abs(x) < 1e15 {
			return strconv.FormatInt(int64(x), 10)
		}
		return strconv.FormatFloat(x, 'g', -1, 64)
	}
	return fmt.Sprint(v)
}
