package selector

import (
	"fmt"
	"path"
	"strconv"
	"strings"

	"github.com/dbtorch/dbtorch/manifest"
)

// Node kinds as dbt's selector methods iterate them.
func isParsed(n *manifest.Node) bool { // manifest.nodes
	switch n.ResourceType {
	case manifest.Source, manifest.Exposure, manifest.Metric, manifest.SemanticModel,
		manifest.SavedQuery, manifest.UnitTest, manifest.Function:
		return false
	}
	return true
}

// resourceTypes are the values dbt's NodeType accepts.
var resourceTypes = map[string]bool{
	"model": true, "analysis": true, "test": true, "snapshot": true, "operation": true,
	"seed": true, "rpc": true, "sql_operation": true, "doc": true, "source": true,
	"macro": true, "exposure": true, "metric": true, "group": true, "saved_query": true,
	"semantic_model": true, "unit_test": true, "fixture": true, "function": true,
}

// search returns the members matching criterion c (before graph operators).
func (e *evaluator) search(c *criterion) (bitset, error) {
	d := e.d
	out := newBitset(len(d.ids))
	valueErr := func(msg string, args ...any) error {
		return &ValueError{Criterion: c.raw, Method: c.method, Value: c.value, Msg: fmt.Sprintf(msg, args...)}
	}
	cur := 0 // index of the node being matched, for precomputed fields
	each := func(keep func(n *manifest.Node) bool, match func(n *manifest.Node) bool) {
		for i, n := range d.nodes {
			cur = i
			if keep(n) && !(e.skipEmpty && n.IsEmpty()) && match(n) {
				out.add(int32(i))
			}
		}
	}
	if err := d.dialect.check(c.method, c.raw); err != nil {
		return nil, err
	}
	// all is dbt's all_nodes
	all := func(n *manifest.Node) bool {
		return d.dialect.savedQueriesInAll || n.ResourceType != manifest.SavedQuery
	}
	fn := e.match.match
	v := c.value
	switch c.method {
	case "fqn":
		q := newFQNQuery(fn, v, d.dialect)
		each(func(n *manifest.Node) bool { return n.ResourceType != manifest.Source }, func(n *manifest.Node) bool {
			return q.match(n.FQN, d.flatFQN[cur], isVersioned(n))
		})
	case "tag":
		each(all, func(n *manifest.Node) bool {
			for _, t := range nodeTags(n) {
				if fn(t, v) {
					return true
				}
			}
			return false
		})
	case "group":
		each(func(n *manifest.Node) bool { return isParsed(n) || n.ResourceType == manifest.Metric }, func(n *manifest.Node) bool {
			g, _ := n.Config.Get("group").(string)
			return g != "" && fn(g, v)
		})
	case "access":
		each(isParsed, func(n *manifest.Node) bool { return n.ResourceType == manifest.Model && n.Access == v })
	case "source":
		parts := strings.Split(v, ".")
		pkg, src, tbl := "*", "", "*"
		switch len(parts) {
		case 1:
			src = parts[0]
		case 2:
			src, tbl = parts[0], parts[1]
		case 3:
			pkg, src, tbl = parts[0], parts[1], parts[2]
		default:
			return nil, valueErr("invalid source selector value %q: sources must be source_name, source_name.table_name or package.source_name.table_name", v)
		}
		each(func(n *manifest.Node) bool { return n.ResourceType == manifest.Source }, func(n *manifest.Node) bool {
			return fn(n.PackageName, pkg) && fn(n.SourceName, src) && fn(n.Name, tbl)
		})
	case "exposure", "metric", "semantic_model", "saved_query", "unit_test":
		parts := strings.Split(v, ".")
		pkg, name := "*", ""
		switch len(parts) {
		case 1:
			name = parts[0]
		case 2:
			pkg, name = parts[0], parts[1]
		default:
			return nil, valueErr("invalid %s selector value %q: expected name or package.name", c.method, v)
		}
		rt := manifest.ResourceType(c.method)
		each(func(n *manifest.Node) bool { return n.ResourceType == rt }, func(n *manifest.Node) bool {
			return fn(n.PackageName, pkg) && fn(n.Name, name)
		})
	case "path":
		paths, err := e.globPaths(v)
		if err != nil {
			return nil, valueErr("%v", err)
		}
		each(all, func(n *manifest.Node) bool {
			ofp := d.ofp[cur]
			if paths[ofp] || d.patch[cur] != "" && paths[d.patch[cur]] {
				return true
			}
			if ofp == "." {
				return false // pathlib: Path("").parents is empty
			}
			for dir := pathParent(ofp); ; dir = pathParent(dir) {
				if paths[dir] {
					return true
				}
				if dir == "." {
					return false
				}
			}
		})
	case "file":
		each(all, func(n *manifest.Node) bool {
			name := d.fname[cur]
			return fn(name, v) || fn(pathStem(name), v)
		})
	case "package":
		pkg := v
		if pkg == "this" && e.d.m.Metadata.ProjectName != "" {
			pkg = e.d.m.Metadata.ProjectName
		}
		each(all, func(n *manifest.Node) bool { return fn(n.PackageName, pkg) })
	case "config":
		if len(c.args) == 0 {
			break // the whole config object never equals a string
		}
		top := e.configValues(c.args[0])
		q := newConfigQuery(c.args, v)
		each(func(n *manifest.Node) bool { return isParsed(n) || n.ResourceType == manifest.Source }, func(n *manifest.Node) bool {
			return q.match(top[cur])
		})
	case "resource_type":
		if !resourceTypes[v] {
			return nil, valueErr("invalid resource_type selector %q", v)
		}
		each(all, func(n *manifest.Node) bool { return string(n.ResourceType) == v })
	case "test_name":
		each(func(n *manifest.Node) bool { return isParsed(n) || n.ResourceType == manifest.UnitTest }, func(n *manifest.Node) bool {
			switch n.ResourceType {
			case manifest.Test:
				return n.TestMetadata != nil && fn(n.TestMetadata.Name, v)
			case manifest.UnitTest:
				return fn(n.Name, v)
			}
			return false
		})
	case "test_type":
		var generic, singular, unit bool
		switch {
		case v == "generic" || v == "schema":
			generic = true
		case strings.Contains("data", v):
			generic, singular = true, true
		case strings.Contains("singular", v):
			singular = true
		case strings.Contains("unit", v):
			unit = true
		default:
			return nil, valueErr(`invalid test type selector %s: expected "generic", "singular", "unit", or "data"`, v)
		}
		each(func(n *manifest.Node) bool { return isParsed(n) || n.ResourceType == manifest.UnitTest }, func(n *manifest.Node) bool {
			switch n.ResourceType {
			case manifest.Test:
				if n.TestMetadata != nil {
					return generic
				}
				return singular
			case manifest.UnitTest:
				return unit
			}
			return false
		})
	case "version":
		switch v {
		case "latest", "prerelease", "old", "none":
		default:
			hasModel := false
			for _, n := range d.nodes {
				if n.ResourceType == manifest.Model {
					hasModel = true
					break
				}
			}
			if hasModel {
				return nil, valueErr(`invalid version type selector %s: expected one of: "latest", "prerelease", "old", or "none"`, v)
			}
		}
		each(func(n *manifest.Node) bool { return n.ResourceType == manifest.Model }, func(n *manifest.Node) bool {
			ver, latest := rawVersion(n, "version"), rawVersion(n, "latest_version")
			switch v {
			case "latest":
				return ver != nil && pyEqual(ver, latest)
			case "prerelease":
				return truthy(ver) && truthy(latest) && versionLess(latest, ver)
			case "old":
				return truthy(ver) && truthy(latest) && versionLess(ver, latest)
			case "none":
				return ver == nil
			}
			return false
		})
	case "state":
		return e.stateSearch(c)
	case "result":
		if e.results == nil {
			return nil, fmt.Errorf("selector: %s: %w", c.raw, ErrNoRunResults)
		}
		each(all, func(n *manifest.Node) bool { return e.results[n.UniqueID] == v })
	case "source_status":
		return e.sourceStatus(c)
	default:
		return nil, &SyntaxError{Expr: c.raw, Token: c.method, Pos: -1, Msg: "unknown selector method"}
	}
	return out, nil
}

func isVersioned(n *manifest.Node) bool {
	return n.ResourceType == manifest.Model && n.Version != ""
}

// nodeTags returns the tags dbt's tag: method sees (none for semantic
// models, config.tags for unit tests).
func nodeTags(n *manifest.Node) []string {
	switch n.ResourceType {
	case manifest.SemanticModel:
		return nil
	case manifest.UnitTest:
		switch t := n.Config.Get("tags").(type) {
		case string:
			return []string{t}
		case []any:
			out := make([]string, 0, len(t))
			for _, x := range t {
				if s, ok := x.(string); ok {
					out = append(out, s)
				}
			}
			return out
		}
		return nil
	}
	return n.Tags
}

// fqnQuery is one fqn: selector value, prepared for matching many nodes
// as dbt's QualifiedNameSelectorMethod.node_is_match does: the value
// matches the fqn with or without its package segment.
type fqnQuery struct {
	fn    func(name, pat string) bool
	sel   string
	parts []string
	last2 string // the last two parts joined by "_"
	slurp int    // index of the first part with a wildcard, or -1
	rest  string // parts[slurp:] joined by "."
	// leaf: a wildcard value without a dot also matches the node's name
	// (dialect.bareGlobLeaf)
	leaf bool
}

func newFQNQuery(fn func(name, pat string) bool, sel string, d dialect) *fqnQuery {
	q := &fqnQuery{fn: fn, sel: sel, parts: strings.Split(sel, "."), slurp: -1, leaf: d.bareGlobLeaf && !strings.Contains(sel, ".")}
	last := q.parts
	if len(last) > 2 {
		last = last[len(last)-2:]
	}
	q.last2 = strings.Join(last, "_")
	for i, p := range q.parts {
		if strings.ContainsAny(p, "*?[]") {
			q.slurp = i
			q.rest = strings.Join(q.parts[i:], ".")
			break
		}
	}
	return q
}

func (q *fqnQuery) match(fqn, flat []string, versioned bool) bool {
	if len(fqn) == 0 {
		return false
	}
	if q.selected(fqn, flat, versioned) {
		return true
	}
	if len(fqn) < 2 {
		return false
	}
	// the same without the package: drop the first segment's flat parts
	drop := strings.Count(fqn[0], ".") + 1
	return q.selected(fqn[1:], flat[drop:], versioned)
}

// selected ports dbt's is_selected_node.
func (q *fqnQuery) selected(fqn, flat []string, versioned bool) bool {
	if versioned && len(fqn) >= 2 {
		if fqn[len(fqn)-2] == q.sel || fqn[len(fqn)-2]+"_"+fqn[len(fqn)-1] == q.last2 {
			return true
		}
	} else if !versioned && fqn[len(fqn)-1] == q.sel {
		return true
	}
	if len(flat) < len(q.parts) {
		return false
	}
	end := len(q.parts)
	if q.slurp >= 0 {
		end = q.slurp
	}
	for i := 0; i < end; i++ {
		if flat[i] != q.parts[i] {
			return false
		}
	}
	if q.slurp < 0 {
		return true
	}
	if q.fn(strings.Join(flat[q.slurp:], "."), q.rest) {
		return true
	}
	if q.leaf {
		leaf := fqn[len(fqn)-1]
		if versioned && len(fqn) >= 2 {
			leaf = fqn[len(fqn)-2]
		}
		return q.fn(leaf, q.sel)
	}
	return false
}

// configQuery is one config.KEY[.KEY...]:value criterion, as dbt's
// ConfigSelectorMethod evaluates it.
type configQuery struct {
	rest            []string // keys below the top-level one
	sel, selUpper   string
	severity        bool
	isTrue, isFalse bool
}

func newConfigQuery(args []string, sel string) *configQuery {
	u := pyUpper(sel)
	return &configQuery{rest: args[1:], sel: sel, selUpper: u, severity: len(args) == 1 && args[0] == "severity",
		isTrue: u == "TRUE", isFalse: u == "FALSE"}
}

// match reports whether a node whose top-level config value is val
// matches.
func (q *configQuery) match(val any) bool {
	for _, a := range q.rest {
		m, ok := val.(map[string]any)
		if !ok || dictAttrs[a] {
			return false // Python's getattr finds the dict's method first
		}
		if val, ok = m[a]; !ok {
			return false
		}
	}
	eq := func(x any) bool {
		s, ok := x.(string)
		if !ok {
			return false
		}
		if q.severity {
			return pyUpper(s) == q.selUpper // dbt's CaseInsensitive compares str.upper()
		}
		return s == q.sel
	}
	if list, ok := val.([]any); ok {
		for _, x := range list {
			if eq(x) {
				return true
			}
		}
		for _, x := range list {
			if q.isTrue && pyEqual(x, true) || q.isFalse && pyEqual(x, false) {
				return true
			}
		}
		return false
	}
	if eq(val) {
		return true
	}
	b, ok := val.(bool)
	return ok && (q.isTrue && b || q.isFalse && !b)
}

// configValues returns every member's decoded value of top-level config
// key, by node index, decoding each config once per key for the life of
// the resolver.
func (e *evaluator) configValues(key string) []any {
	n := e.Native
	n.cfgMu.Lock()
	defer n.cfgMu.Unlock()
	if v, ok := n.cfgCache[key]; ok {
		return v
	}
	vals := make([]any, len(n.d.nodes))
	for i, node := range n.d.nodes {
		vals[i] = node.Config.Get(key)
	}
	if n.cfgCache == nil {
		n.cfgCache = map[string][]any{}
	}
	n.cfgCache[key] = vals
	return vals
}

// pyUpper approximates Python's str.upper(), which also expands some
// letters (ß -> SS) where Go's ToUpper keeps one rune.
func pyUpper(s string) string {
	return strings.ReplaceAll(strings.ToUpper(s), "ß", "SS")
}

// dictAttrs are the attributes of a Python dict, which dbt's config lookup
// finds before the dict's keys.
var dictAttrs = map[string]bool{"clear": true, "copy": true, "fromkeys": true, "get": true, "items": true,
	"keys": true, "pop": true, "popitem": true, "setdefault": true, "update": true, "values": true}

// rawVersion returns a model's version or latest_version as dbt holds it
// (string or number), or nil.
func rawVersion(n *manifest.Node, key string) any {
	raw := nodeJSON(n)
	if raw == nil {
		s := n.Version
		if key == "latest_version" {
			s = n.LatestVersion
		}
		if s == "" {
			return nil
		}
		return s
	}
	return raw[key]
}

// versionLess is dbt's UnparsedVersion.__lt__: numeric when both parse as
// floats, else string comparison of str(v).
func versionLess(a, b any) bool {
	fa, errA := pyFloat(a)
	fb, errB := pyFloat(b)
	if errA == nil && errB == nil {
		return fa < fb
	}
	return pyStr(a) < pyStr(b)
}

func pyFloat(v any) (float64, error) {
	if f, ok := pyNumber(v); ok {
		return f, nil
	}
	if x, ok := v.(string); ok {
		return strconv.ParseFloat(strings.TrimSpace(x), 64)
	}
	return 0, fmt.Errorf("not a number")
}

// pyNumber returns a JSON number or boolean as Python's float() does
// (True is 1), and false for any other value.
func pyNumber(v any) (float64, bool) {
	switch x := v.(type) {
	case float64:
		return x, true
	case bool:
		if x {
			return 1, true
		}
		return 0, true
	}
	return 0, false
}

// pyEqual compares JSON values as Python compares their decoded forms
// (True == 1 == 1.0).
func pyEqual(a, b any) bool {
	if fa, ok := pyNumber(a); ok {
		fb, ok := pyNumber(b)
		return ok && fa == fb
	}
	switch x := a.(type) {
	case nil:
		return b == nil
	case string:
		y, ok := b.(string)
		return ok && x == y
	case []any:
		y, ok := b.([]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for i := range x {
			if !pyEqual(x[i], y[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		y, ok := b.(map[string]any)
		if !ok || len(x) != len(y) {
			return false
		}
		for k, xv := range x {
			yv, ok := y[k]
			if !ok || !pyEqual(xv, yv) {
				return false
			}
		}
		return true
	}
	return false
}

// Path helpers with pathlib's semantics on POSIX.

func cleanPath(p string) string {
	var parts []string
	for _, s := range strings.Split(p, "/") {
		if s != "" && s != "." {
			parts = append(parts, s)
		}
	}
	if len(parts) == 0 {
		return "."
	}
	return strings.Join(parts, "/")
}

func pathParent(p string) string {
	if i := strings.LastIndexByte(p, '/'); i >= 0 {
		return p[:i]
	}
	return "."
}

func pathName(p string) string {
	p = cleanPath(p)
	if p == "." {
		return ""
	}
	return path.Base(p)
}

// pathStem is pathlib's PurePath.stem for a final component.
func pathStem(name string) string {
	i := strings.LastIndexByte(name, '.')
	if i > 0 && i < len(name)-1 {
		return name[:i]
	}
	return name
}
