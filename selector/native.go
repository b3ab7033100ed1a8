package selector

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"github.com/dbtorch/dbtorch/manifest"
)

// Options is one selection, as the flags of `dbt ls` / `dbt build` give it.
type Options struct {
	// Select holds the --select arguments; each element may hold several
	// space-separated criteria (a union) and comma-separated ones (an
	// intersection). Empty selects dbt's default (every node, source,
	// exposure, metric and semantic model) unless a YAML selector marked
	// default: true exists.
	Select []string
	// Exclude holds the --exclude arguments, parsed like Select.
	Exclude []string
	// Selector names a YAML selector from the manifest's selectors; when
	// set, Select and Exclude are ignored, as dbt ignores them.
	Selector string
	// Indirect is --indirect-selection; the zero value means Eager.
	Indirect IndirectMode
	// ResourceTypes is --resource-type: the result keeps only these types.
	// Empty means dbt ls's default: every type but analysis and operation.
	// "all" and "default" expand as in dbt.
	ResourceTypes []manifest.ResourceType
	// ExcludeResourceTypes is --exclude-resource-type.
	ExcludeResourceTypes []manifest.ResourceType
	// ExcludeEmpty drops nodes whose code is empty (manifest.Node.IsEmpty),
	// as dbt build, run and test do (dbt ls keeps them).
	ExcludeEmpty bool

	// StatePath is the --state directory. Native reads manifest.json,
	// run_results.json and sources.json from it for the fields below that
	// are nil; DBTLs passes it to dbt.
	StatePath string
	// State is the comparison manifest for state: criteria.
	State *manifest.Manifest
	// RunResults holds the previous run's results for result: criteria.
	RunResults *RunResults
	// Sources and CurrentSources are the previous (--state) and current
	// (target/) `dbt source freshness` results for source_status:.
	Sources, CurrentSources *SourceFreshness
}

// Resolver resolves a selection to sorted unique_ids: exactly the nodes
// `dbt ls` (and so `dbt build`, which selects the same way) would select,
// including the tests and unit tests that indirect selection adds.
type Resolver interface {
	Resolve(ctx context.Context, opts Options) ([]string, error)
}

// Native resolves selections from a manifest without dbt. It is safe for
// concurrent use; building it costs one pass over the manifest.
type Native struct {
	d     *view
	match *matcher
	files struct {
		once  sync.Once
		paths map[string]bool // files and directories of the root project
		kids  map[string][]string
	}
	// fsys is the project directory for path: globs; nil: the manifest's
	// own view of the project's files.
	fsys       fs.FS
	cfgMu      sync.Mutex
	cfgCache   map[string][]any // top-level config key -> value by node index
	stateMu    sync.Mutex
	stateCache map[string]*stateFiles
	jcache     sync.Map // *manifest.Node -> *jnode
}

// NewNative returns a resolver over g and its manifest: it walks g's
// selection edges (see manifest.Graph), so a graph built once serves both
// planning and selection.
func NewNative(g *manifest.Graph) *Native {
	return &Native{d: newView(g), match: &matcher{}}
}

// WithProjectFS returns a resolver that shares n's graph but evaluates
// path: criteria against the project's real files, exactly as dbt's
// pathlib glob does, instead of the files the manifest names (which
// differ only for patterns that match files no node comes from, or package
// nodes whose package-relative paths also exist in the root project).
// Pass os.DirFS(projectDir).
func (n *Native) WithProjectFS(fsys fs.FS) *Native {
	return &Native{d: n.d, match: n.match, fsys: fsys}
}

var _ Resolver = (*Native)(nil)

// Resolve implements Resolver.
func (n *Native) Resolve(ctx context.Context, opts Options) ([]string, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	mode, err := opts.Indirect.normalize()
	if err != nil {
		return nil, err
	}
	sp, err := n.parse(opts, mode)
	if err != nil {
		return nil, err
	}
	if n.d.dialect.unsupported {
		return nil, &VersionError{DBTVersion: n.d.dialect.version, Msg: "dbt-core before 1.8 is not supported"}
	}
	types, err := resourceTypeFilter(opts.ResourceTypes, opts.ExcludeResourceTypes)
	if err != nil {
		return nil, err
	}
	e := &evaluator{Native: n, opts: &opts}
	excludeEmpty := opts.ExcludeEmpty
	if n.d.dialect.testTypeAddsUnit && len(types) == 1 && types[manifest.Test] {
		types[manifest.UnitTest] = true
		excludeEmpty, e.skipEmpty = true, true
	}
	if err := e.loadState(); err != nil {
		return nil, err
	}
	direct, _, err := e.eval(sp)
	if err != nil {
		return nil, err
	}
	out := []string{}
	direct.each(func(i int32) {
		node := n.d.nodes[i]
		if !types[node.ResourceType] {
			return
		}
		if excludeEmpty && node.IsEmpty() {
			return
		}
		out = append(out, node.UniqueID)
	})
	return out, nil
}

func (n *Native) parse(opts Options, mode IndirectMode) (spec, error) {
	y := yamlSelectors{raw: n.d.m.Selectors}
	switch {
	case opts.Selector != "":
		return y.spec(opts.Selector, mode)
	case len(opts.Select) == 0 && len(opts.Exclude) == 0:
		if name := y.defaultName(); name != "" {
			return y.spec(name, mode)
		}
	}
	return parseCLI(opts.Select, opts.Exclude, mode)
}

var (
	defaultTypes = []manifest.ResourceType{manifest.Model, manifest.Snapshot, manifest.Seed, manifest.Test,
		manifest.Source, manifest.Exposure, manifest.Metric, manifest.SavedQuery, manifest.SemanticModel,
		manifest.UnitTest, manifest.Function}
)

// listTypes are the values dbt ls accepts for --resource-type and
// --exclude-resource-type.
var listTypes = map[string]bool{"metric": true, "semantic_model": true, "saved_query": true, "source": true,
	"analysis": true, "function": true, "model": true, "test": true, "unit_test": true, "exposure": true,
	"snapshot": true, "seed": true}

// resourceTypeFilter is dbt's resource_types_from_args for `dbt ls`.
func resourceTypeFilter(include, exclude []manifest.ResourceType) (map[manifest.ResourceType]bool, error) {
	out := map[manifest.ResourceType]bool{}
	if len(include) == 0 {
		include = []manifest.ResourceType{"default"}
	}
	for _, t := range include {
		switch { // dbt's click choice is case-insensitive but NodeType is not: "Model" fails
		case t == "all":
			for _, d := range defaultTypes {
				out[d] = true
			}
			out[manifest.Analysis] = true
		case t == "default":
			for _, d := range defaultTypes {
				out[d] = true
			}
		case listTypes[string(t)]:
			out[t] = true
		default:
			return nil, fmt.Errorf("selector: invalid resource type %q (want one of %s, default, all)", t, strings.Join(sortedKeys(listTypes), ", "))
		}
	}
	for _, t := range exclude {
		if !listTypes[string(t)] {
			return nil, fmt.Errorf("selector: invalid excluded resource type %q (want one of %s)", t, strings.Join(sortedKeys(listTypes), ", "))
		}
		delete(out, t)
	}
	return out, nil
}

// evaluator evaluates one Resolve call.
type evaluator struct {
	*Native
	opts     *Options
	state    *manifest.Manifest
	results  map[string]string // unique_id -> status
	srcPrev  *SourceFreshness
	srcCur   *SourceFreshness
	modMacro map[string]bool // lazily computed modified macros
	// skipEmpty: no criterion matches an empty node (dialect.testTypeAddsUnit)
	skipEmpty bool
}

func (e *evaluator) loadState() error {
	o := e.opts
	e.state = o.State
	e.srcPrev, e.srcCur = o.Sources, o.CurrentSources
	if o.RunResults != nil {
		e.results = statuses(o.RunResults)
	}
	if o.StatePath == "" {
		return nil
	}
	st, err := e.Native.stateDir(o.StatePath)
	if err != nil {
		return err
	}
	if e.state == nil {
		e.state = st.manifest
	}
	if e.results == nil && st.results != nil {
		e.results = st.results
	}
	if e.srcPrev == nil {
		e.srcPrev = st.sources
	}
	return nil
}

// stateFiles is what a --state directory holds, cached by path and the
// files' modification times and sizes.
type stateFiles struct {
	stamp    string
	manifest *manifest.Manifest
	results  map[string]string
	sources  *SourceFreshness
}

// stateDir loads (or returns the cached) contents of a --state directory.
func (n *Native) stateDir(dir string) (*stateFiles, error) {
	names := []string{"manifest.json", "run_results.json", "sources.json"}
	var stamp strings.Builder
	for _, name := range names {
		if fi, err := os.Stat(filepath.Join(dir, name)); err == nil {
			fmt.Fprintf(&stamp, "%s:%d:%d;", name, fi.Size(), fi.ModTime().UnixNano())
		}
	}
	n.stateMu.Lock()
	defer n.stateMu.Unlock()
	if st := n.stateCache[dir]; st != nil && st.stamp == stamp.String() {
		return st, nil
	}
	st := &stateFiles{stamp: stamp.String()}
	data, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	switch {
	case err == nil:
		if st.manifest, err = manifest.Parse(data); err != nil {
			return nil, fmt.Errorf("selector: state manifest: %w", err)
		}
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("selector: state manifest: %w", err)
	}
	rr, err := LoadRunResults(filepath.Join(dir, "run_results.json"))
	switch {
	case err == nil:
		st.results = statuses(rr)
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	sf, err := LoadSourceFreshness(filepath.Join(dir, "sources.json"))
	switch {
	case err == nil:
		st.sources = sf
	case !errors.Is(err, fs.ErrNotExist):
		return nil, err
	}
	if n.stateCache == nil {
		n.stateCache = map[string]*stateFiles{}
	}
	n.stateCache[dir] = st
	return st, nil
}

// eval is dbt's select_nodes_recursively: it returns the directly selected
// nodes and the tests held back by cautious/buildable selection.
func (e *evaluator) eval(s spec) (direct, indirect bitset, err error) {
	switch s := s.(type) {
	case *criterion:
		return e.criterion(s)
	case *group:
		var directs, indirects []bitset
		for _, p := range s.parts {
			d, i, err := e.eval(p)
			if err != nil {
				return nil, nil, err
			}
			directs = append(directs, d)
			indirects = append(indirects, i.or(d))
		}
		initial := e.combine(s.op, directs)
		ind := e.combine(s.op, indirects)
		return e.incorporate(initial, ind, s.indirect), ind, nil
	}
	return nil, nil, fmt.Errorf("selector: internal error: unknown spec %T", s)
}

func (e *evaluator) combine(op setOp, sets []bitset) bitset {
	if len(sets) == 0 {
		return newBitset(len(e.d.ids))
	}
	out := sets[0].clone()
	for _, s := range sets[1:] {
		switch op {
		case opUnion:
			out.or(s)
		case opIntersection:
			out.and(s)
		case opDifference:
			out.andNot(s)
		}
	}
	return out
}

// criterion is dbt's get_nodes_from_criteria.
func (e *evaluator) criterion(c *criterion) (bitset, bitset, error) {
	collected, err := e.search(c)
	if err != nil {
		return nil, nil, err
	}
	if c.indirect == Empty && !e.d.dialect.emptyKeepsGraphOps {
		return collected, newBitset(len(e.d.ids)), nil
	}
	selected := collected.clone()
	if c.childrensParents {
		selected.or(e.d.selectChildrensParents(collected))
	}
	if c.parents {
		selected.or(e.d.selectParents(collected, c.parentsDepth))
	}
	if c.children {
		selected.or(e.d.selectChildren(collected, c.childrenDepth))
	}
	if c.indirect == Empty {
		return selected, newBitset(len(e.d.ids)), nil
	}
	direct, indirect := e.expand(selected, c.indirect)
	return direct, indirect, nil
}

// expand is dbt's expand_selection: tests and unit tests next to the
// selection are added directly or held back, per mode.
func (e *evaluator) expand(selected bitset, mode IndirectMode) (bitset, bitset) {
	d := e.d
	direct := selected.clone()
	indirect := newBitset(len(d.ids))
	var sap bitset
	if mode == Buildable {
		sap = selected.clone().or(d.selectParents(selected, -1)).or(d.sources)
	}
	d.successors(selected).each(func(u int32) {
		rt := d.nodes[u].ResourceType
		if rt != manifest.Test && rt != manifest.UnitTest {
			return
		}
		deps := d.g.DependsOn(u)
		switch {
		case mode == Eager || selected.containsAll(deps):
			direct.add(u)
		case mode == Buildable && sap.containsAll(deps):
			direct.add(u)
		default:
			indirect.add(u)
		}
	})
	return direct, indirect
}

// incorporate is dbt's incorporate_indirect_nodes.
func (e *evaluator) incorporate(direct, indirect bitset, mode IndirectMode) bitset {
	if direct.equal(indirect) {
		return direct
	}
	d := e.d
	selected := direct.clone()
	switch mode {
	case Cautious:
		indirect.each(func(u int32) {
			if d.inNodes.has(u) && selected.containsAll(d.g.DependsOn(u)) {
				selected.add(u)
			}
		})
	case Buildable:
		sap := selected.clone().or(d.selectParents(selected, -1))
		indirect.each(func(u int32) {
			if d.inNodes.has(u) && sap.containsAll(d.g.DependsOn(u)) {
				selected.add(u)
			}
		})
	}
	return selected
}

// nodeJSON decodes a node's raw JSON (nil when the manifest was built
// without it).
func nodeJSON(n *manifest.Node) map[string]any {
	if len(n.Raw) == 0 {
		return nil
	}
	var m map[string]any
	if json.Unmarshal(n.Raw, &m) != nil {
		return nil
	}
	return m
}

// Names returns the YAML selectors the manifest defines, sorted.
func (n *Native) Names() []string { return yamlSelectors{raw: n.d.m.Selectors}.names() }

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
