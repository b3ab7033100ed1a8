package cache

import (
	"bytes"
	"cmp"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/walk"
	"github.com/dbtorch/dbtorch/manifest"
)

// keyFormat is hashed first into every key; bump it whenever the recipe
// below changes so that old entries stop matching.
const keyFormat = "dbtorch-cache-key/2"

// KeyConfig holds the build-wide ingredients of cache keys.
type KeyConfig struct {
	// Project is the dbt project the keys are for. Of it, keys read:
	//   - Dir, the project's root. Seeds are hashed from their files under
	//     it (packages' seeds under PackagesDir); when it is empty, no
	//     project file is read (not even the current directory's): a
	//     seed's manifest checksum is used if dbt hashed the file, and a
	//     seed dbt only recorded by path cannot be keyed.
	//   - Vars, the vars passed to the build (dbt --vars). A node's key
	//     covers the value of every var its code, config or macros name
	//     literally (all of Vars when they name one dynamically), and the
	//     vars blocks of Dir/dbt_project.yml and of every installed
	//     package's dbt_project.yml.
	//   - Target, the dbt target name. Empty means the target dbt uses
	//     without --target: Project.Profile's ($DBT_TARGET, else the
	//     profile's target:) when Dir is set and the profile can be read,
	//     else $DBT_TARGET, else "default". Keyer.Config reports the name
	//     used.
	//   - Env, the environment in which env_var('NAME') is resolved (nil:
	//     the process's, as for dbt).
	// DBT and ProfilesDir are not part of keys (ProfilesDir only tells
	// where the profile is read).
	dbt.Project
	// Fs is where Project.Dir is read (seed files, dbt_project.yml); nil
	// means the operating system's file system. The profile (for an empty
	// Target) is always read from the operating system's.
	Fs afero.Fs
	// PackagesDir is where dbt installed packages, relative to Project.Dir
	// unless absolute; empty means "dbt_packages".
	PackagesDir string
	// AdapterType and DBTVersion default to the manifest's metadata.
	AdapterType string
	DBTVersion  string
	// Warehouse names the warehouse and the place in it the target builds
	// into: the adapter type and the connection's identifying fields
	// (host, port, database, schema, path, ...; never a secret). Nil means
	// the target's dbt.Profile.Identity when Project.Dir is set and the
	// profile can be read. Every key covers it, and it names the store's
	// namespace (Keyer.Namespace), so that two copies of a project on two
	// databases never share an entry.
	Warehouse map[string]string
	// Freshness, when set, is a `dbt source freshness` snapshot: every
	// source's max_loaded_at joins the key of every node downstream of it.
	Freshness *Freshness
	// CacheIncremental makes incremental models cacheable. They are not by
	// default: an incremental model's result depends on the data already in
	// its table, which no key can see.
	CacheIncremental bool
	// CacheSnapshots makes snapshots cacheable. They are not by default: a
	// snapshot records how its input changes over time, and a change that
	// a skipped run did not record is history lost for good.
	CacheSnapshots bool
}

// KeyError reports that a node's key could not be computed (for example a
// seed file could not be read). The node, and everything downstream of it,
// is not cacheable in this build; the build itself goes on.
type KeyError struct {
	NodeID string
	Err    error
}

func (e *KeyError) Error() string { return fmt.Sprintf("cache: key of %s: %v", e.NodeID, e.Err) }
func (e *KeyError) Unwrap() error { return e.Err }

// ErrUnknownNode is wrapped by the KeyError for an id that is not in the
// graph.
var ErrUnknownNode = errors.New("node not in graph")

// Keyer computes cache keys for the nodes of one manifest under one
// KeyConfig. Keys are memoized; a Keyer is safe for concurrent use.
//
// A key is the hex SHA-256 of everything that changes what a node builds:
// its code checksum (a seed's file contents), raw code, config (as
// canonical JSON), relation name, contract, the SQL of every macro it calls
// transitively (and of its materialization), the vars and environment
// variables it reads, target name, adapter type and dbt version, and the
// keys of its parents. Sources and ephemeral models have keys too, so that
// a node's key reaches through them: a source's key is its identity and,
// with a freshness snapshot, its max_loaded_at; an ephemeral's key is its
// own recipe. Tests never enter a model's key.
type Keyer struct {
	m   *manifest.Manifest
	g   *manifest.Graph
	cfg KeyConfig
	fs  afero.Fs

	base          []byte // digest of the build-wide ingredients
	projectVars   []byte // digest of dbt_project.yml's vars block
	macrosByName  map[string][]string
	matMacroIndex map[string][]string // materialization name -> macro ids

	mu       sync.Mutex
	keys     map[string]string
	inputs   map[string]map[string]string // per node: input name -> digest
	errs     map[string]error
	macroSum map[string][]byte   // per macro: sha256(id, sql)
	macroRef map[string]*refs    // per macro: names it reads
	closures map[string]*closure // by sorted direct-macro list
}

type refs struct {
	vars       []string
	envs       []string
	dynamicVar bool
}

type closure struct {
	digest []byte
	refs   refs
}

// NewKeyer returns a Keyer for the nodes of g (built from m).
func NewKeyer(m *manifest.Manifest, g *manifest.Graph, cfg KeyConfig) (*Keyer, error) {
	if m == nil || g == nil {
		return nil, errors.New("cache: NewKeyer needs a manifest and its graph")
	}
	k := &Keyer{
		m: m, g: g, cfg: cfg, fs: cfg.Fs,
		keys: map[string]string{}, errs: map[string]error{}, inputs: map[string]map[string]string{},
		macroSum: map[string][]byte{}, macroRef: map[string]*refs{}, closures: map[string]*closure{},
		macrosByName: map[string][]string{}, matMacroIndex: map[string][]string{},
	}
	if k.fs == nil {
		k.fs = afero.NewOsFs()
	}
	if k.cfg.AdapterType == "" {
		k.cfg.AdapterType = m.Metadata.AdapterType
	}
	if k.cfg.DBTVersion == "" {
		k.cfg.DBTVersion = m.Metadata.DBTVersion
	}
	k.cfg.Target = keyTarget(cfg.Project)
	if k.cfg.Warehouse == nil && cfg.Dir != "" {
		if pr, err := cfg.Profile(); err == nil {
			k.cfg.Warehouse = pr.Identity(cfg.Dir)
		}
	}
	if k.cfg.Warehouse == nil {
		k.cfg.Warehouse = map[string]string{"type": k.cfg.AdapterType}
	}
	for id, mac := range m.Macros {
		k.macrosByName[mac.Name] = append(k.macrosByName[mac.Name], id)
		if rest, ok := strings.CutPrefix(mac.Name, "materialization_"); ok {
			k.matMacroIndex[rest] = append(k.matMacroIndex[rest], id)
		}
	}
	for _, ids := range k.macrosByName {
		sort.Strings(ids)
	}
	for _, ids := range k.matMacroIndex {
		sort.Strings(ids)
	}
	h := sha256.New()
	field(h, "format", keyFormat)
	field(h, "target", k.cfg.Target)
	field(h, "adapter", k.cfg.AdapterType)
	field(h, "dbt_version", k.cfg.DBTVersion)
	wh, err := canonicalJSON(stringMap(k.cfg.Warehouse))
	if err != nil {
		return nil, fmt.Errorf("cache: warehouse identity: %w", err)
	}
	field(h, "warehouse", string(wh))
	k.base = h.Sum(nil)
	if cfg.Dir != "" {
		// The root project's vars block, and each installed package's
		// (a package's defaults apply to its own nodes and macros).
		files := []string{filepath.Join(cfg.Dir, "dbt_project.yml")}
		pkgs, _ := afero.Glob(k.fs, filepath.Join(k.packagesDir(), "*", "dbt_project.yml"))
		sort.Strings(pkgs)
		files = append(files, pkgs...)
		vh := sha256.New()
		for _, f := range files {
			data, err := afero.ReadFile(k.fs, f)
			if err != nil && !errors.Is(err, os.ErrNotExist) {
				return nil, fmt.Errorf("cache: read %s: %w", f, err)
			}
			field(vh, "vars", varsBlock(string(data)))
		}
		k.projectVars = vh.Sum(nil)
	}
	return k, nil
}

// keyTarget returns the target name keys cover (see KeyConfig.Project).
func keyTarget(p dbt.Project) string {
	if p.Target != "" {
		return p.Target
	}
	if p.Dir != "" {
		pr, err := p.Profile()
		if err == nil {
			return pr.Target
		}
		var pe *dbt.ProfileError
		if errors.As(err, &pe) && errors.Is(err, dbt.ErrUnknownTarget) && !strings.Contains(pe.Target, "{{") {
			// dbt will not build on it, but the name still keeps keys
			// of different targets apart.
			return pe.Target
		}
	}
	if t, ok := p.Getenv("DBT_TARGET"); ok && t != "" {
		return t
	}
	return "default"
}

// varsBlock returns the text of the top-level "vars:" mapping of a
// dbt_project.yml (its line and every following indented, blank or comment
// line), or "" if there is none. Comments are kept: over-invalidating on a
// comment edit is safe, missing a value edit is not.
func varsBlock(yml string) string {
	lines := strings.Split(yml, "\n")
	for i, l := range lines {
		if !strings.HasPrefix(l, "vars:") {
			continue
		}
		j := i + 1
		for ; j < len(lines); j++ {
			t := lines[j]
			if t == "" || t[0] == ' ' || t[0] == '\t' || t[0] == '#' || strings.TrimSpace(t) == "" {
				continue
			}
			break
		}
		return strings.Join(lines[i:j], "\n")
	}
	return ""
}

// Config returns the Keyer's configuration with defaults filled in.
func (k *Keyer) Config() KeyConfig { return k.cfg }

// Cacheable reports whether a result for id may be stored and served:
// models (not ephemeral; incremental only with CacheIncremental), seeds,
// and snapshots with CacheSnapshots, whose key can be computed. Tests and
// unit tests never are.
func (k *Keyer) Cacheable(id string) bool {
	n := k.g.Node(id)
	if n == nil || !n.Executable() {
		return false
	}
	switch n.ResourceType {
	case manifest.Model:
		if n.Materialized == "incremental" && !k.cfg.CacheIncremental {
			return false
		}
	case manifest.Snapshot:
		if !k.cfg.CacheSnapshots {
			return false
		}
	case manifest.Seed:
	default:
		return false
	}
	_, err := k.Key(id)
	return err == nil
}

// Key returns the cache key of the node id: 64 lower-case hex digits. It
// is defined for every node of the graph (sources, ephemerals and tests
// included); whether a node may be served from the cache is Cacheable's
// answer. The error is a *KeyError.
func (k *Keyer) Key(id string) (string, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.key(id)
}

// key computes the key of id with k.mu held. The graph is acyclic, so the
// recursion over parents ends; its depth is the graph's depth.
func (k *Keyer) key(id string) (string, error) {
	if s, ok := k.keys[id]; ok {
		return s, nil
	}
	if err, ok := k.errs[id]; ok {
		return "", err
	}
	s, err := k.compute(id)
	if err != nil {
		var ke *KeyError
		if !errors.As(err, &ke) {
			err = &KeyError{NodeID: id, Err: err}
		}
		k.errs[id] = err
		return "", err
	}
	k.keys[id] = s
	return s, nil
}

func (k *Keyer) compute(id string) (string, error) {
	n := k.g.Node(id)
	if n == nil {
		return "", &KeyError{NodeID: id, Err: ErrUnknownNode}
	}
	h := sha256.New()
	h.Write(k.base)
	field(h, "id", n.UniqueID)
	field(h, "resource_type", string(n.ResourceType))
	if n.ResourceType == manifest.Source {
		field(h, "relation", n.RelationName)
		field(h, "database", n.Database)
		field(h, "schema", n.Schema)
		field(h, "identifier", n.Identifier)
		if f := k.cfg.Freshness; f != nil {
			if s, ok := f.Sources[id]; ok {
				field(h, "max_loaded_at", s.MaxLoadedAt.UTC().Format(time.RFC3339Nano))
				field(h, "freshness_error", s.Error)
			}
		}
		return hex.EncodeToString(h.Sum(nil)), nil
	}
	in := map[string]string{}
	part := func(name string, sum []byte) {
		field(h, name, string(sum))
		in[name] = hex.EncodeToString(sum[:6])
	}
	code := sha256.New()
	field(code, "language", n.Language)
	field(code, "checksum_name", n.Checksum.Name)
	if n.ResourceType == manifest.Seed {
		sum, err := k.seedDigest(n)
		if err != nil {
			return "", err
		}
		field(code, "seed_contents", string(sum))
	} else {
		field(code, "checksum", n.Checksum.Checksum)
	}
	field(code, "raw_code", n.RawCode)
	part("code", code.Sum(nil))

	conf := sha256.New()
	cfgJSON, err := canonicalJSON(n.Config.Map())
	if err != nil {
		return "", fmt.Errorf("config: %w", err)
	}
	field(conf, "config", string(cfgJSON))
	field(conf, "relation", n.RelationName)
	field(conf, "database", n.Database)
	field(conf, "schema", n.Schema)
	field(conf, "alias", n.Alias)
	field(conf, "contract", fmt.Sprintf("%t/%s", n.Contract.Enforced, n.Contract.Checksum))
	if persistsDocs(n) {
		// Descriptions become relation and column comments.
		field(conf, "description", n.Description)
		var cols struct {
			Columns json.RawMessage `json:"columns"`
		}
		if len(n.Raw) > 0 {
			if err := json.Unmarshal(n.Raw, &cols); err == nil && len(cols.Columns) > 0 {
				var v any
				if err := json.Unmarshal(cols.Columns, &v); err == nil {
					js, _ := canonicalJSON(v)
					field(conf, "columns", string(js))
				}
			}
		}
	}
	if n.TestMetadata != nil {
		kw, err := canonicalJSON(n.TestMetadata.Kwargs)
		if err != nil {
			return "", fmt.Errorf("test kwargs: %w", err)
		}
		field(conf, "test", n.TestMetadata.Namespace+"."+n.TestMetadata.Name+string(kw))
	}
	if n.ResourceType == manifest.UnitTest {
		def, err := unitTestDefinition(n)
		if err != nil {
			return "", fmt.Errorf("unit test definition: %w", err)
		}
		field(conf, "unit_test", def)
	}
	part("config", conf.Sum(nil))

	// Macros, transitively, with the materialization's.
	direct := slices.Clone(n.DependsOn.Macros)
	direct = append(direct, k.materializationMacros(n)...)
	cl := k.macroClosure(direct)
	part("macros", cl.digest)

	// Vars and env vars read by the node or its macros.
	own := scanRefs(n.RawCode + "\n" + string(cfgJSON))
	r := mergeRefs(&own, &cl.refs)
	vh := sha256.New()
	if err := k.writeVars(vh, r); err != nil {
		return "", err
	}
	part("vars", vh.Sum(nil))

	// Upstream keys. Tests (unit tests are graph parents of their model)
	// do not change what a node builds.
	for _, p := range k.g.Parents(id) {
		pn := k.g.Node(p)
		if pn == nil || pn.IsTest() {
			continue
		}
		pk, err := k.key(p)
		if err != nil {
			return "", err
		}
		sum, _ := hex.DecodeString(pk)
		part("upstream "+p, sum)
	}
	k.inputs[id] = in
	return hex.EncodeToString(h.Sum(nil)), nil
}

// unitTestFields are the fields of a unit test's manifest entry that say
// what it runs: the model (and versions) it tests, its mocked inputs, the
// rows it expects and its overrides.
var unitTestFields = []string{"model", "versions", "given", "expect", "overrides"}

// unitTestDefinition returns the canonical JSON of a unit test's
// definition (unitTestFields).
func unitTestDefinition(n *manifest.Node) (string, error) {
	var all map[string]any
	if err := json.Unmarshal(n.Raw, &all); err != nil {
		return "", err
	}
	def := map[string]any{}
	for _, f := range unitTestFields {
		def[f] = all[f]
	}
	js, err := canonicalJSON(def)
	return string(js), err
}

// UsesFixtureFile reports whether a unit test reads a fixture file
// (given or expect with a fixture name): the manifest does not hold the
// file's rows, so such a test is never cached.
func UsesFixtureFile(n *manifest.Node) bool {
	var def struct {
		Given  []struct{ Fixture *string } `json:"given"`
		Expect struct{ Fixture *string }   `json:"expect"`
	}
	if json.Unmarshal(n.Raw, &def) != nil {
		return true
	}
	if def.Expect.Fixture != nil && *def.Expect.Fixture != "" {
		return true
	}
	for _, g := range def.Given {
		if g.Fixture != nil && *g.Fixture != "" {
			return true
		}
	}
	return false
}

// Inputs returns, for the node id, a short digest of each input its key
// covers: "code", "config", "macros", "vars" and "upstream <unique_id>"
// per parent (the build-wide ingredients — target, adapter, dbt version,
// warehouse — are in every key and not listed). A Store records them
// with an entry, so that a changed key can say which input changed. Nil
// for sources and nodes whose key cannot be computed.
func (k *Keyer) Inputs(id string) map[string]string {
	if _, err := k.Key(id); err != nil {
		return nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.inputs[id]
}

// changed names the inputs of id whose digest differs from old (an
// entry's Inputs), sorted, "upstream" inputs last and at most three of
// them named; "" when old is empty or nothing listed differs (then the
// build-wide ingredients changed).
func (k *Keyer) changed(id string, old map[string]string) string {
	cur := k.Inputs(id)
	if len(old) == 0 || cur == nil {
		return ""
	}
	var own, ups []string
	add := func(name string) {
		if up, ok := strings.CutPrefix(name, "upstream "); ok {
			ups = append(ups, up)
		} else {
			own = append(own, name)
		}
	}
	for name, d := range cur {
		if old[name] != d {
			add(name)
		}
	}
	for name := range old {
		if _, ok := cur[name]; !ok {
			add(name)
		}
	}
	slices.Sort(own)
	slices.Sort(ups)
	if len(ups) > 3 {
		ups = append(ups[:3], fmt.Sprintf("and %d more", len(ups)-3))
	}
	if len(ups) > 0 {
		own = append(own, "upstream "+strings.Join(ups, ", "))
	}
	if len(own) == 0 {
		return "target, adapter, dbt version or warehouse"
	}
	return strings.Join(own, ", ")
}

// Namespace names the part of a store whose entries were built for this
// project on this warehouse: the project's name and target, and a digest
// of both with the warehouse identity and adapter. Two projects, or two
// copies of one project on two databases, never share a namespace.
func (k *Keyer) Namespace() string {
	h := sha256.New()
	field(h, "project", k.m.Metadata.ProjectName)
	field(h, "target", k.cfg.Target)
	field(h, "adapter", k.cfg.AdapterType)
	wh, _ := canonicalJSON(stringMap(k.cfg.Warehouse))
	field(h, "warehouse", string(wh))
	name := fileName(cmp.Or(k.m.Metadata.ProjectName, "project") + "-" + k.cfg.Target)
	name = strings.TrimSuffix(name, ".json")
	return name + "-" + hex.EncodeToString(h.Sum(nil)[:8])
}

func stringMap(m map[string]string) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

func (k *Keyer) writeVars(h hash.Hash, r refs) error {
	if len(r.vars) > 0 || r.dynamicVar {
		h.Write(k.projectVars)
	}
	if r.dynamicVar {
		all, err := canonicalJSON(map[string]any(k.cfg.Vars))
		if err != nil {
			return fmt.Errorf("vars: %w", err)
		}
		field(h, "all_vars", string(all))
	} else {
		for _, name := range r.vars {
			v, ok := k.cfg.Vars[name]
			if !ok {
				field(h, "var_unset", name)
				continue
			}
			js, err := canonicalJSON(v)
			if err != nil {
				return fmt.Errorf("var %s: %w", name, err)
			}
			field(h, "var", name+"="+string(js))
		}
	}
	for _, name := range r.envs {
		v, ok := k.cfg.Getenv(name)
		if !ok {
			field(h, "env_unset", name)
			continue
		}
		field(h, "env", name+"="+v)
	}
	return nil
}

// persistsDocs reports whether the node's config persists descriptions
// into the warehouse (persist_docs: {relation: true} or {columns: true}).
func persistsDocs(n *manifest.Node) bool {
	pd, _ := n.Config.Get("persist_docs").(map[string]any)
	for _, v := range pd {
		if b, _ := v.(bool); b {
			return true
		}
	}
	return false
}

// materializationMacros returns the ids of the macros that implement the
// node's materialization for the adapter, or by default, in any package.
func (k *Keyer) materializationMacros(n *manifest.Node) []string {
	mat := n.Materialized
	switch n.ResourceType {
	case manifest.Seed:
		mat = "seed"
	case manifest.Snapshot:
		mat = "snapshot"
	case manifest.Model:
	default:
		return nil
	}
	if mat == "" {
		return nil
	}
	var out []string
	for _, suffix := range []string{"_" + k.cfg.AdapterType, "_default"} {
		out = append(out, k.matMacroIndex[mat+suffix]...)
	}
	return out
}

// macroClosure returns the digest and references of the transitive
// closure of direct over macro dependencies. Every macro enters by its id
// and SQL; a macro that has same-named overrides in other packages brings
// them too, since dbt may resolve a call to any of them.
func (k *Keyer) macroClosure(direct []string) *closure {
	sorted := slices.Clone(direct)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	memo := strings.Join(sorted, "\x00")
	if c, ok := k.closures[memo]; ok {
		return c
	}
	seen := map[string]bool{}
	walk.Depth(sorted, seen, func(id string, stack []string) []string {
		if mac := k.m.Macros[id]; mac != nil {
			stack = append(stack, mac.DependsOn.Macros...)
			stack = append(stack, k.macrosByName[mac.Name]...)
		}
		return stack
	})
	ids := make([]string, 0, len(seen))
	for id := range seen {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	h := sha256.New()
	c := &closure{}
	for _, id := range ids {
		h.Write(k.macroDigest(id))
		if r := k.macroRefs(id); r != nil {
			c.refs = mergeRefs(&c.refs, r)
		}
	}
	c.digest = h.Sum(nil)
	k.closures[memo] = c
	return c
}

func (k *Keyer) macroDigest(id string) []byte {
	if d, ok := k.macroSum[id]; ok {
		return d
	}
	h := sha256.New()
	field(h, "macro", id)
	if mac := k.m.Macros[id]; mac != nil {
		field(h, "sql", mac.MacroSQL)
	} else {
		field(h, "missing", "")
	}
	d := h.Sum(nil)
	k.macroSum[id] = d
	return d
}

func (k *Keyer) macroRefs(id string) *refs {
	if r, ok := k.macroRef[id]; ok {
		return r
	}
	var r *refs
	if mac := k.m.Macros[id]; mac != nil {
		rr := scanRefs(mac.MacroSQL)
		r = &rr
	}
	k.macroRef[id] = r
	return r
}

// scanRefs finds the vars and environment variables code reads: calls
// var('name') / var("name") and env_var('NAME'). A var( whose argument is
// not a string literal reads a var we cannot name (dynamicVar).
func scanRefs(code string) refs {
	var r refs
	for i := 0; ; {
		j := strings.Index(code[i:], "var")
		if j < 0 {
			break
		}
		at := i + j
		i = at + 3
		env := at >= 4 && code[at-4:at] == "env_"
		if env {
			if at >= 5 && isWord(code[at-5]) {
				continue
			}
		} else if at > 0 && isWord(code[at-1]) {
			continue
		}
		k := skipSpace(code, i)
		if k >= len(code) || code[k] != '(' {
			continue
		}
		k = skipSpace(code, k+1)
		name, ok := quoted(code, k)
		switch {
		case ok && env:
			r.envs = append(r.envs, name)
		case ok:
			r.vars = append(r.vars, name)
		case !env:
			r.dynamicVar = true
		}
	}
	slices.Sort(r.vars)
	r.vars = slices.Compact(r.vars)
	slices.Sort(r.envs)
	r.envs = slices.Compact(r.envs)
	return r
}

func isWord(c byte) bool {
	return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
}

func skipSpace(s string, i int) int {
	for i < len(s) && (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
		i++
	}
	return i
}

// quoted returns the string literal starting at s[i], if any.
func quoted(s string, i int) (string, bool) {
	if i >= len(s) || (s[i] != '\'' && s[i] != '"') {
		return "", false
	}
	end := strings.IndexByte(s[i+1:], s[i])
	if end < 0 {
		return "", false
	}
	return s[i+1 : i+1+end], true
}

func mergeRefs(a, b *refs) refs {
	out := refs{dynamicVar: a.dynamicVar || b.dynamicVar}
	out.vars = append(slices.Clone(a.vars), b.vars...)
	slices.Sort(out.vars)
	out.vars = slices.Compact(out.vars)
	out.envs = append(slices.Clone(a.envs), b.envs...)
	slices.Sort(out.envs)
	out.envs = slices.Compact(out.envs)
	return out
}

// packagesDir returns where dbt installed the project's packages.
func (k *Keyer) packagesDir() string {
	pk := k.cfg.PackagesDir
	if pk == "" {
		pk = "dbt_packages"
	}
	if !filepath.IsAbs(pk) {
		pk = filepath.Join(k.cfg.Dir, pk)
	}
	return pk
}

// seedDigest hashes a seed's file. The file is looked for where dbt
// recorded it (a "path" checksum holds the absolute path dbt read), then
// under Project.Dir (root package) or Dir/PackagesDir/<package>.
// Without a readable file, a sha256 checksum from the manifest stands in.
func (k *Keyer) seedDigest(n *manifest.Node) ([]byte, error) {
	var candidates []string
	if n.Checksum.Name == "path" && filepath.IsAbs(n.Checksum.Checksum) {
		candidates = append(candidates, n.Checksum.Checksum)
	}
	if k.cfg.Dir != "" && n.OriginalFilePath != "" {
		if n.PackageName == k.m.Metadata.ProjectName || k.m.Metadata.ProjectName == "" {
			candidates = append(candidates, filepath.Join(k.cfg.Dir, n.OriginalFilePath))
		}
		candidates = append(candidates, filepath.Join(k.packagesDir(), n.PackageName, n.OriginalFilePath))
	}
	var firstErr error
	for _, p := range candidates {
		f, err := k.fs.Open(p)
		if err != nil {
			if firstErr == nil {
				firstErr = err
			}
			continue
		}
		h := sha256.New()
		_, err = io.Copy(h, f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read seed file %s: %w", p, err)
		}
		return h.Sum(nil), nil
	}
	if n.Checksum.Name == "sha256" && n.Checksum.Checksum != "" {
		return []byte("manifest-sha256:" + n.Checksum.Checksum), nil
	}
	if firstErr == nil {
		firstErr = errors.New("no project dir to find it in")
	}
	return nil, fmt.Errorf("seed file not readable and the manifest has no content checksum: %w", firstErr)
}

// field writes a length-prefixed name and value, so that no two
// different sequences of fields hash alike.
func field(h hash.Hash, name, value string) {
	var b [8]byte
	binary.BigEndian.PutUint32(b[:4], uint32(len(name)))
	binary.BigEndian.PutUint32(b[4:], uint32(len(value)))
	h.Write(b[:])
	h.Write([]byte(name))
	h.Write([]byte(value))
}

// canonicalJSON encodes v with map keys sorted and no HTML escaping, so
// that equal values encode alike. The JSON types (maps, slices, strings,
// numbers, booleans, nil) are written directly; anything else goes
// through encoding/json.
func canonicalJSON(v any) ([]byte, error) {
	var b bytes.Buffer
	err := writeCanonical(&b, v)
	return b.Bytes(), err
}

func writeCanonical(b *bytes.Buffer, v any) error {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case float64:
		b.WriteString(strconv.FormatFloat(v, 'g', -1, 64))
	case int:
		b.WriteString(strconv.Itoa(v))
	case string:
		writeString(b, v)
	case []any:
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			if err := writeCanonical(b, e); err != nil {
				return err
			}
		}
		b.WriteByte(']')
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		b.WriteByte('{')
		for i, k := range keys {
			if i > 0 {
				b.WriteByte(',')
			}
			writeString(b, k)
			b.WriteByte(':')
			if err := writeCanonical(b, v[k]); err != nil {
				return err
			}
		}
		b.WriteByte('}')
	default:
		enc := json.NewEncoder(b)
		enc.SetEscapeHTML(false)
		if err := enc.Encode(v); err != nil {
			return err
		}
		b.Truncate(b.Len() - 1) // Encode's newline
	}
	return nil
}

// writeString writes s as a JSON string (strconv's Go quoting is close but
// not JSON: it escapes differently), escaping only what JSON requires.
func writeString(b *bytes.Buffer, s string) {
	b.WriteByte('"')
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '"' || c == '\\':
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < 0x20:
			fmt.Fprintf(b, "\\u%04x", c)
		default:
			b.WriteByte(c)
		}
	}
	b.WriteByte('"')
}
