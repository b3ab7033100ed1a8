package manifest

import (
	"errors"
	"fmt"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"

	"github.com/spf13/afero"
)

// ParseError reports why a manifest could not be read, and where: the file,
// the top-level section and node id when known, the field, and the byte
// offset for malformed JSON.
type ParseError struct {
	File    string // path given to Load; empty for Parse
	Section string // top-level key, e.g. "nodes"
	NodeID  string // map key or unique_id of the offending entry
	Field   string // offending field, e.g. "unique_id"
	Offset  int64  // byte offset of a syntax error, or -1
	Err     error
}

func (e *ParseError) Error() string {
	var b strings.Builder
	b.WriteString("manifest")
	if e.File != "" {
		b.WriteString(" ")
		b.WriteString(e.File)
	}
	if e.Section != "" {
		b.WriteString(": ")
		b.WriteString(e.Section)
		if e.NodeID != "" {
			fmt.Fprintf(&b, "[%q]", e.NodeID)
		}
		if e.Field != "" {
			b.WriteString(".")
			b.WriteString(e.Field)
		}
	} else if e.Field != "" {
		b.WriteString(": ")
		b.WriteString(e.Field)
	}
	if e.Offset >= 0 {
		fmt.Fprintf(&b, " (byte %d)", e.Offset)
	}
	b.WriteString(": ")
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *ParseError) Unwrap() error { return e.Err }

// ErrMalformed is wrapped by every ParseError caused by bytes that are not
// a manifest: invalid JSON, a wrong type where an object is required, or a
// node without a unique_id.
var ErrMalformed = errors.New("malformed manifest")

// Load reads and parses the manifest.json at path on fsys. Errors are
// *ParseError values naming the file (or the fs error, wrapped).
func Load(fsys afero.Fs, path string) (*Manifest, error) {
	data, err := afero.ReadFile(fsys, path)
	if err != nil {
		return nil, fmt.Errorf("manifest: read %s: %w", path, err)
	}
	m, err := Parse(data)
	if err != nil {
		var pe *ParseError
		if errors.As(err, &pe) {
			pe.File = path
		}
		return nil, err
	}
	return m, nil
}

var schemaVersionRE = regexp.MustCompile(`/manifest/v(\d+)(?:\.json)?`)

// Parse parses manifest.json bytes of any schema version dbt has written
// (v4..v12, including v12 written by dbt's Rust engine). Unknown fields are
// ignored and missing optional fields take their zero value (config.enabled
// defaults to true); a field of an unexpected type is read as missing. The
// returned error is a *ParseError wrapping ErrMalformed when data is not a
// manifest: invalid JSON anywhere in the file, a section or node that is
// not an object, or a node without unique_id.
//
// Nodes keep slices of data (Node.Raw): do not modify data afterwards.
// Sections are split into entries sequentially while other goroutines
// decode (and validate) the entries already found.
func Parse(data []byte) (*Manifest, error) {
	m := &Manifest{Macros: map[string]*MacroDef{}, Disabled: map[string][]*Node{}}
	dst := map[string]*map[string]*Node{
		"nodes": &m.Nodes, "sources": &m.Sources, "unit_tests": &m.UnitTests,
		"exposures": &m.Exposures, "metrics": &m.Metrics, "semantic_models": &m.SemanticModels,
		"saved_queries": &m.SavedQueries, "functions": &m.Functions, "groups": &m.Groups,
	}
	for _, section := range dst {
		*section = map[string]*Node{}
	}
	s := &scanner{data: data}
	if c := s.peek(); c != '{' {
		what := s.describe()
		if err := s.skip(); err != nil {
			return nil, asParseError(err, "", "")
		}
		return nil, &ParseError{Offset: -1, Err: fmt.Errorf("%w: top level is %s, want an object", ErrMalformed, what)}
	}
	d := newDecoder(data)
	err := s.object(func(key []byte) error {
		section := string(key)
		switch {
		case section == "metadata":
			return decodeMetadata(s, &m.Metadata)
		case dst[section] != nil || section == "macros":
			return splitSection(s, section, d)
		case section == "disabled":
			return decodeDisabled(s, m.Disabled)
		case section == "selectors":
			sel, err := s.objectMap()
			m.Selectors = sel
			return err
		}
		return s.skip()
	})
	if err == nil {
		err = s.end()
	}
	batches, derr := d.wait()
	if err != nil {
		return nil, asParseError(err, "", "")
	}
	if derr != nil {
		return nil, derr
	}
	for _, b := range batches {
		for i, j := range b.entries {
			if j.section == "macros" {
				m.Macros[b.macros[i].UniqueID] = b.macros[i]
			} else {
				(*dst[j.section])[b.nodes[i].UniqueID] = b.nodes[i]
			}
		}
	}
	resolveUnitTests(m)
	// Index the ids Lookup cannot find by their prefix (filed under
	// another section: only corrupt manifests have them).
	m.All(func(n *Node) bool {
		if m.Lookup(n.UniqueID) == nil {
			if m.byID == nil {
				m.byID = map[string]*Node{}
			}
			m.byID[n.UniqueID] = n
		}
		return true
	})
	return m, nil
}

// entry is one member of a node-like section: its key and the bounds of
// its (not yet validated) object.
type entry struct {
	section    string
	key        string
	start, end int
}

// splitSection hands the entries of a section to the decoder.
func splitSection(s *scanner, section string, d *decoder) error {
	if s.null() {
		return nil
	}
	if s.peek() != '{' {
		return &ParseError{Section: section, Offset: -1, Err: fmt.Errorf("%w: got %s, want an object", ErrMalformed, s.describe())}
	}
	return s.object(func(key []byte) error {
		if s.peek() != '{' {
			return &ParseError{Section: section, NodeID: string(key), Offset: -1,
				Err: fmt.Errorf("%w: got %s, want an object", ErrMalformed, s.describe())}
		}
		end := spanEnd(s.data, s.pos)
		if end < 0 {
			return s.fail("unexpected end of input in %s[%q]", section, key)
		}
		d.add(entry{section: section, key: string(key), start: s.pos, end: end})
		s.pos = end
		return nil
	})
}

// batchSize is how many entries a decoding goroutine takes at a time.
const batchSize = 128

// batch is a run of entries and, once decoded, their results.
type batch struct {
	entries []entry
	nodes   []*Node
	macros  []*MacroDef
	err     error // the first entry's error, in entry order
}

// decoder decodes entries on GOMAXPROCS goroutines while the caller keeps
// finding more.
type decoder struct {
	data    []byte
	cur     *batch
	batches []*batch
	work    chan *batch
	wg      sync.WaitGroup
}

func newDecoder(data []byte) *decoder {
	d := &decoder{data: data, work: make(chan *batch, 64)}
	for range runtime.GOMAXPROCS(0) {
		d.wg.Add(1)
		go func() {
			defer d.wg.Done()
			for b := range d.work {
				d.decode(b)
			}
		}()
	}
	return d
}

func (d *decoder) add(e entry) {
	if d.cur == nil {
		d.cur = &batch{entries: make([]entry, 0, batchSize)}
	}
	d.cur.entries = append(d.cur.entries, e)
	if len(d.cur.entries) == batchSize {
		d.flush()
	}
}

func (d *decoder) flush() {
	if d.cur != nil {
		d.batches = append(d.batches, d.cur)
		d.work <- d.cur
		d.cur = nil
	}
}

// wait decodes what is left, stops the goroutines, and returns the batches
// in entry order, or the error of the earliest entry that failed.
func (d *decoder) wait() ([]*batch, error) {
	d.flush()
	close(d.work)
	d.wg.Wait()
	for _, b := range d.batches {
		if b.err != nil {
			return nil, b.err
		}
	}
	return d.batches, nil
}

func (d *decoder) decode(b *batch) {
	b.nodes = make([]*Node, len(b.entries))
	b.macros = make([]*MacroDef, len(b.entries))
	for i, j := range b.entries {
		s := &scanner{data: d.data[:j.end], pos: j.start}
		var err error
		if j.section == "macros" {
			b.macros[i], err = decodeMacro(s, j.key)
		} else {
			b.nodes[i], err = decodeNode(s, j.section, j.key)
		}
		if err == nil && s.peek() != 0 {
			err = s.fail("invalid character %q after object", s.at())
		}
		if err != nil {
			b.err = asParseError(err, j.section, j.key)
			return
		}
	}
}

// asParseError turns a scanner error into a *ParseError for the section
// and node being read.
func asParseError(err error, section, id string) error {
	var pe *ParseError
	if errors.As(err, &pe) {
		return pe
	}
	var se *scanError
	if errors.As(err, &se) {
		return &ParseError{Section: section, NodeID: id, Offset: int64(se.Offset),
			Err: fmt.Errorf("%w: invalid JSON: %s", ErrMalformed, se.Msg)}
	}
	return &ParseError{Section: section, NodeID: id, Offset: -1, Err: fmt.Errorf("%w: %v", ErrMalformed, err)}
}

func decodeMetadata(s *scanner, md *Metadata) error {
	if s.peek() != '{' {
		return s.skip()
	}
	return s.object(func(key []byte) error {
		var err error
		switch string(key) {
		case "dbt_schema_version":
			md.SchemaVersion, err = s.str()
			if sm := schemaVersionRE.FindStringSubmatch(md.SchemaVersion); sm != nil {
				md.Version, _ = strconv.Atoi(sm[1])
			}
		case "dbt_version":
			md.DBTVersion, err = s.str()
		case "generated_at":
			md.GeneratedAt, err = s.str()
		case "invocation_id":
			md.InvocationID, err = s.str()
		case "project_name":
			md.ProjectName, err = s.str()
		case "project_id":
			md.ProjectID, err = s.str()
		case "adapter_type":
			md.AdapterType, err = s.str()
		case "send_anonymous_usage_stats":
			md.SendAnonUsage, err = s.boolean()
		case "env":
			var env map[string]any
			env, err = s.objectMap()
			if len(env) > 0 {
				md.Env = map[string]string{}
				for k, v := range env {
					if str, ok := v.(string); ok {
						md.Env[k] = str
					}
				}
			}
		default:
			err = s.skip()
		}
		return err
	})
}

// decodeNode decodes the node object at s.pos. key names it in errors.
func decodeNode(s *scanner, section, key string) (*Node, error) {
	if s.peek() != '{' {
		return nil, &ParseError{Section: section, NodeID: key, Offset: -1,
			Err: fmt.Errorf("%w: got %s, want an object", ErrMalformed, s.describe())}
	}
	start := s.pos
	n := &Node{Enabled: true}
	var rawCode, rawSQL, compiledCode, compiledSQL string
	err := s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "unique_id":
			n.UniqueID, err = s.str()
		case "name":
			n.Name, err = s.str()
		case "resource_type":
			var rt string
			rt, err = s.str()
			n.ResourceType = ResourceType(rt)
		case "package_name":
			n.PackageName, err = s.str()
		case "fqn":
			n.FQN, err = s.strList()
		case "path":
			n.Path, err = s.str()
		case "original_file_path":
			n.OriginalFilePath, err = s.str()
		case "patch_path":
			n.PatchPath, err = s.str()
		case "database":
			n.Database, err = s.str()
		case "schema":
			n.Schema, err = s.str()
		case "alias":
			n.Alias, err = s.str()
		case "relation_name":
			n.RelationName, err = s.str()
		case "tags":
			n.Tags, err = s.strList()
		case "config":
			err = decodeConfig(s, n)
		case "checksum":
			err = s.fields(func(f string) error {
				var err error
				switch f {
				case "name":
					n.Checksum.Name, err = s.str()
				case "checksum":
					n.Checksum.Checksum, err = s.str()
				default:
					err = s.skip()
				}
				return err
			})
		case "raw_code":
			rawCode, err = s.str()
		case "raw_sql":
			rawSQL, err = s.str()
		case "compiled_code":
			compiledCode, err = s.str()
		case "compiled_sql":
			compiledSQL, err = s.str()
		case "language":
			n.Language, err = s.str()
		case "depends_on":
			err = s.fields(func(f string) error {
				var err error
				switch f {
				case "nodes":
					n.DependsOn.Nodes, err = s.strList()
				case "macros":
					n.DependsOn.Macros, err = s.strList()
				default:
					err = s.skip()
				}
				return err
			})
		case "test_metadata":
			if s.peek() != '{' {
				return s.skip()
			}
			tm := &TestMetadata{}
			n.TestMetadata = tm
			err = s.fields(func(f string) error {
				var err error
				switch f {
				case "name":
					tm.Name, err = s.str()
				case "namespace":
					tm.Namespace, err = s.str()
				case "kwargs":
					tm.Kwargs, err = s.objectMap()
				default:
					err = s.skip()
				}
				return err
			})
		case "attached_node":
			n.AttachedNode, err = s.str()
		case "column_name":
			n.ColumnName, err = s.str()
		case "version":
			n.Version, err = s.versionText()
		case "latest_version":
			n.LatestVersion, err = s.versionText()
		case "access":
			n.Access, err = s.str()
		case "group":
			n.Group, err = s.str()
		case "contract":
			err = s.fields(func(f string) error {
				var err error
				switch f {
				case "enforced":
					n.Contract.Enforced, err = s.boolean()
				case "checksum":
					n.Contract.Checksum, err = s.str()
				default:
					err = s.skip()
				}
				return err
			})
		case "description":
			n.Description, err = s.str()
		case "tested_node_unique_id":
			n.TestedNode, err = s.str()
		case "model":
			n.Model, err = s.str()
		case "source_name":
			n.SourceName, err = s.str()
		case "identifier":
			n.Identifier, err = s.str()
		case "loaded_at_field":
			n.LoadedAtField, err = s.str()
		case "freshness":
			n.Freshness, err = s.freshness()
		default:
			err = s.skip()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if n.UniqueID == "" {
		return nil, &ParseError{Section: section, NodeID: key, Field: "unique_id", Offset: -1,
			Err: fmt.Errorf("%w: missing", ErrMalformed)}
	}
	n.Raw = s.data[start:s.pos]
	n.RawCode = firstNonEmpty(rawCode, rawSQL)
	n.CompiledCode = firstNonEmpty(compiledCode, compiledSQL)
	if n.ResourceType == "" {
		n.ResourceType = ResourceType(strings.SplitN(n.UniqueID, ".", 2)[0])
	}
	if n.ResourceType == "sql operation" {
		n.ResourceType = SQLOperation
	}
	applyConfig(n)
	return n, nil
}

// fields iterates an object's members by name; null and other types are
// skipped (lenient).
func (s *scanner) fields(fn func(string) error) error {
	if s.peek() != '{' {
		return s.skip()
	}
	return s.object(func(k []byte) error { return fn(string(k)) })
}

// versionText reads a model version: a string, a number (kept as its
// text), or null.
func (s *scanner) versionText() (string, error) {
	switch c := s.peek(); {
	case c == '"':
		return s.str()
	case c == '-' || c >= '0' && c <= '9':
		text, err := s.number()
		return string(text), err
	}
	return "", s.skip()
}

func (s *scanner) freshness() (*Freshness, error) {
	if s.peek() != '{' {
		return nil, s.skip()
	}
	f := &Freshness{}
	threshold := func(t *Time) error {
		return s.fields(func(k string) error {
			switch k {
			case "count":
				c, err := s.optInt()
				if c != nil {
					t.Count = *c
				}
				return err
			case "period":
				p, err := s.str()
				t.Period = p
				return err
			}
			return s.skip()
		})
	}
	err := s.fields(func(k string) error {
		var err error
		switch k {
		case "warn_after":
			err = threshold(&f.WarnAfter)
		case "error_after":
			err = threshold(&f.ErrorAfter)
		case "filter":
			f.Filter, err = s.str()
		default:
			err = s.skip()
		}
		return err
	})
	if f.WarnAfter.Count == 0 {
		f.WarnAfter.Period = ""
	}
	if f.ErrorAfter.Count == 0 {
		f.ErrorAfter.Period = ""
	}
	return f, err
}

// decodeConfig keeps the config's JSON and lifts the keys dbtorch
// branches on into typed fields.
func decodeConfig(s *scanner, n *Node) error {
	if s.peek() != '{' {
		return s.skip()
	}
	start := s.pos
	var loadedAt string
	var fresh *Freshness
	err := s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "materialized":
			n.Materialized, err = s.str()
		case "enabled":
			if c := s.peek(); c == 't' || c == 'f' {
				n.Enabled, err = s.boolean()
			} else {
				err = s.skip()
			}
		case "severity":
			var sev string
			sev, err = s.str()
			n.Severity = strings.ToLower(sev)
		case "loaded_at_field":
			loadedAt, err = s.str()
		case "freshness":
			fresh, err = s.freshness()
		case "access":
			var v string
			if v, err = s.str(); n.Access == "" {
				n.Access = v
			}
		case "group":
			var v string
			if v, err = s.str(); n.Group == "" {
				n.Group = v
			}
		default:
			err = s.skip()
		}
		return err
	})
	if err != nil {
		return err
	}
	n.Config = Config{raw: s.data[start:s.pos]}
	n.configLoadedAt, n.configFreshness = loadedAt, fresh
	return nil
}

// applyConfig fills source fields from the config when dbt wrote them
// there (dbt 1.9+) rather than on the source.
func applyConfig(n *Node) {
	if n.ResourceType == Source {
		if n.LoadedAtField == "" {
			n.LoadedAtField = n.configLoadedAt
		}
		if !n.Freshness.IsSet() && n.configFreshness.IsSet() {
			n.Freshness = n.configFreshness
		}
	}
	n.configLoadedAt, n.configFreshness = "", nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func decodeMacro(s *scanner, key string) (*MacroDef, error) {
	md := &MacroDef{}
	err := s.object(func(k []byte) error {
		var err error
		switch string(k) {
		case "unique_id":
			md.UniqueID, err = s.str()
		case "name":
			md.Name, err = s.str()
		case "package_name":
			md.PackageName, err = s.str()
		case "path":
			md.Path, err = s.str()
		case "original_file_path":
			md.OriginalFilePath, err = s.str()
		case "macro_sql":
			md.MacroSQL, err = s.str()
		case "depends_on":
			err = s.fields(func(f string) error {
				if f == "macros" {
					var err error
					md.DependsOn.Macros, err = s.strList()
					return err
				}
				return s.skip()
			})
		default:
			err = s.skip()
		}
		return err
	})
	if err != nil {
		return nil, err
	}
	if md.UniqueID == "" {
		return nil, &ParseError{Section: "macros", NodeID: key, Field: "unique_id", Offset: -1,
			Err: fmt.Errorf("%w: missing", ErrMalformed)}
	}
	return md, nil
}

// decodeDisabled reads the "disabled" map: unique_id -> list of node
// definitions (older writers put one object per key).
func decodeDisabled(s *scanner, out map[string][]*Node) error {
	if s.null() {
		return nil
	}
	if s.peek() != '{' {
		return &ParseError{Section: "disabled", Offset: -1, Err: fmt.Errorf("%w: got %s, want an object", ErrMalformed, s.describe())}
	}
	return s.object(func(k []byte) error {
		key := string(k)
		add := func() error {
			n, err := decodeNode(s, "disabled", key)
			if err != nil {
				return asParseError(err, "disabled", key)
			}
			n.Enabled = false
			out[n.UniqueID] = append(out[n.UniqueID], n)
			return nil
		}
		if s.peek() == '[' {
			return s.array(add)
		}
		return add()
	})
}

// resolveUnitTests fills TestedNode for unit tests written without
// tested_node_unique_id (dbt-core writes the model's name and lists the
// model in depends_on.nodes).
func resolveUnitTests(m *Manifest) {
	for _, u := range m.UnitTests {
		if u.TestedNode != "" {
			continue
		}
		for _, dep := range u.DependsOn.Nodes {
			if n := m.Nodes[dep]; n != nil && n.ResourceType == Model && (u.Model == "" || n.Name == u.Model) {
				u.TestedNode = dep
				break
			}
		}
		if u.TestedNode == "" && len(u.DependsOn.Nodes) > 0 {
			u.TestedNode = u.DependsOn.Nodes[0]
		}
	}
}
