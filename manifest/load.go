package manifest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"

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
// defaults to true). The returned error is a *ParseError wrapping
// ErrMalformed when data is not a manifest.
func Parse(data []byte) (*Manifest, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, syntaxError("", "", data, err)
	}
	if top == nil {
		return nil, &ParseError{Offset: -1, Err: fmt.Errorf("%w: top level is null, want an object", ErrMalformed)}
	}
	m := &Manifest{}
	if raw, ok := top["metadata"]; ok {
		if err := decodeMetadata(raw, &m.Metadata); err != nil {
			return nil, err
		}
	}
	var err error
	sections := []struct {
		key string
		dst *map[string]*Node
	}{
		{"nodes", &m.Nodes}, {"sources", &m.Sources}, {"unit_tests", &m.UnitTests},
		{"exposures", &m.Exposures}, {"metrics", &m.Metrics}, {"semantic_models", &m.SemanticModels},
		{"saved_queries", &m.SavedQueries}, {"functions", &m.Functions}, {"groups", &m.Groups},
	}
	for _, s := range sections {
		if *s.dst, err = decodeSection(s.key, top[s.key]); err != nil {
			return nil, err
		}
	}
	if m.Macros, err = decodeMacros(top["macros"]); err != nil {
		return nil, err
	}
	if m.Disabled, err = decodeDisabled(top["disabled"]); err != nil {
		return nil, err
	}
	if raw := top["selectors"]; len(raw) > 0 && !isNull(raw) {
		if err := json.Unmarshal(raw, &m.Selectors); err != nil {
			return nil, &ParseError{Section: "selectors", Offset: -1, Err: fmt.Errorf("%w: %v", ErrMalformed, err)}
		}
	}
	resolveUnitTests(m)
	return m, nil
}

func isNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

func syntaxError(section, id string, data []byte, err error) error {
	pe := &ParseError{Section: section, NodeID: id, Offset: -1}
	var se *json.SyntaxError
	var te *json.UnmarshalTypeError
	switch {
	case errors.As(err, &se):
		pe.Offset = se.Offset
		pe.Err = fmt.Errorf("%w: invalid JSON: %v", ErrMalformed, se)
	case errors.As(err, &te):
		pe.Field = te.Field
		pe.Err = fmt.Errorf("%w: %s is JSON %s, want %s", ErrMalformed, orTop(te.Field), te.Value, kindName(te.Type.Kind().String()))
	default:
		pe.Err = fmt.Errorf("%w: %v", ErrMalformed, err)
	}
	return pe
}

func orTop(field string) string {
	if field == "" {
		return "top level"
	}
	return field
}

func kindName(k string) string {
	switch k {
	case "map", "struct":
		return "an object"
	case "slice":
		return "an array"
	}
	return k
}

type rawMetadata struct {
	DBTSchemaVersion       string            `json:"dbt_schema_version"`
	DBTVersion             string            `json:"dbt_version"`
	GeneratedAt            string            `json:"generated_at"`
	InvocationID           string            `json:"invocation_id"`
	ProjectName            string            `json:"project_name"`
	ProjectID              string            `json:"project_id"`
	AdapterType            string            `json:"adapter_type"`
	Env                    map[string]string `json:"env"`
	SendAnonymousUsageStat *bool             `json:"send_anonymous_usage_stats"`
}

func decodeMetadata(raw json.RawMessage, md *Metadata) error {
	var r rawMetadata
	if err := json.Unmarshal(raw, &r); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) || te.Field == "" {
			return syntaxError("metadata", "", raw, err)
		}
		// A field of the wrong type inside metadata: keep the rest.
	}
	*md = Metadata{
		SchemaVersion: r.DBTSchemaVersion,
		DBTVersion:    r.DBTVersion,
		GeneratedAt:   r.GeneratedAt,
		InvocationID:  r.InvocationID,
		ProjectName:   r.ProjectName,
		ProjectID:     r.ProjectID,
		AdapterType:   r.AdapterType,
		Env:           r.Env,
	}
	if r.SendAnonymousUsageStat != nil {
		md.SendAnonUsage = *r.SendAnonymousUsageStat
	}
	if sm := schemaVersionRE.FindStringSubmatch(r.DBTSchemaVersion); sm != nil {
		md.Version, _ = strconv.Atoi(sm[1])
	}
	return nil
}

// rawNode is the union of the fields dbtorch reads from any node-like
// manifest entry, across schema versions.
type rawNode struct {
	UniqueID         *string        `json:"unique_id"`
	Name             string         `json:"name"`
	ResourceType     string         `json:"resource_type"`
	PackageName      string         `json:"package_name"`
	FQN              []string       `json:"fqn"`
	Path             string         `json:"path"`
	OriginalFilePath string         `json:"original_file_path"`
	PatchPath        string         `json:"patch_path"`
	Database         string         `json:"database"`
	Schema           string         `json:"schema"`
	Alias            string         `json:"alias"`
	RelationName     string         `json:"relation_name"`
	Tags             []string       `json:"tags"`
	Config           map[string]any `json:"config"`
	Checksum         struct {
		Name     string `json:"name"`
		Checksum string `json:"checksum"`
	} `json:"checksum"`
	RawCode      string `json:"raw_code"`
	RawSQL       string `json:"raw_sql"`
	CompiledCode string `json:"compiled_code"`
	CompiledSQL  string `json:"compiled_sql"`
	Language     string `json:"language"`
	DependsOn    struct {
		Nodes  []string `json:"nodes"`
		Macros []string `json:"macros"`
	} `json:"depends_on"`
	TestMetadata *struct {
		Name      string         `json:"name"`
		Namespace string         `json:"namespace"`
		Kwargs    map[string]any `json:"kwargs"`
	} `json:"test_metadata"`
	AttachedNode  string          `json:"attached_node"`
	ColumnName    string          `json:"column_name"`
	Version       json.RawMessage `json:"version"`
	LatestVersion json.RawMessage `json:"latest_version"`
	Access        string          `json:"access"`
	Group         string          `json:"group"`
	Contract      struct {
		Enforced bool   `json:"enforced"`
		Checksum string `json:"checksum"`
	} `json:"contract"`
	Description        string        `json:"description"`
	TestedNodeUniqueID string        `json:"tested_node_unique_id"`
	Model              string        `json:"model"`
	SourceName         string        `json:"source_name"`
	Identifier         string        `json:"identifier"`
	LoadedAtField      string        `json:"loaded_at_field"`
	Freshness          *rawFreshness `json:"freshness"`
}

type rawTime struct {
	Count  *int   `json:"count"`
	Period string `json:"period"`
}

type rawFreshness struct {
	WarnAfter  *rawTime `json:"warn_after"`
	ErrorAfter *rawTime `json:"error_after"`
	Filter     string   `json:"filter"`
}

func (r *rawFreshness) convert() *Freshness {
	if r == nil {
		return nil
	}
	f := &Freshness{Filter: r.Filter}
	for _, p := range []struct {
		src *rawTime
		dst *Time
	}{{r.WarnAfter, &f.WarnAfter}, {r.ErrorAfter, &f.ErrorAfter}} {
		if p.src != nil && p.src.Count != nil {
			*p.dst = Time{Count: *p.src.Count, Period: p.src.Period}
		}
	}
	return f
}

func decodeSection(section string, raw json.RawMessage) (map[string]*Node, error) {
	out := map[string]*Node{}
	if len(raw) == 0 || isNull(raw) {
		return out, nil
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, syntaxError(section, "", raw, err)
	}
	for key, body := range entries {
		n, err := decodeNode(section, key, body)
		if err != nil {
			return nil, err
		}
		out[n.UniqueID] = n
	}
	return out, nil
}

func decodeNode(section, key string, body json.RawMessage) (*Node, error) {
	var r rawNode
	if err := json.Unmarshal(body, &r); err != nil {
		var te *json.UnmarshalTypeError
		if !errors.As(err, &te) || te.Field == "" {
			return nil, syntaxError(section, key, body, err)
		}
		// Lenient: a field of an unexpected type keeps its zero value.
	}
	if r.UniqueID == nil || *r.UniqueID == "" {
		return nil, &ParseError{Section: section, NodeID: key, Field: "unique_id", Offset: -1,
			Err: fmt.Errorf("%w: missing", ErrMalformed)}
	}
	n := &Node{
		UniqueID:         *r.UniqueID,
		Name:             r.Name,
		ResourceType:     ResourceType(r.ResourceType),
		PackageName:      r.PackageName,
		FQN:              r.FQN,
		Path:             r.Path,
		OriginalFilePath: r.OriginalFilePath,
		PatchPath:        r.PatchPath,
		Database:         r.Database,
		Schema:           r.Schema,
		Alias:            r.Alias,
		RelationName:     r.RelationName,
		Tags:             r.Tags,
		Config:           r.Config,
		Checksum:         Checksum(r.Checksum),
		RawCode:          firstNonEmpty(r.RawCode, r.RawSQL),
		CompiledCode:     firstNonEmpty(r.CompiledCode, r.CompiledSQL),
		Language:         r.Language,
		DependsOn:        DependsOn(r.DependsOn),
		AttachedNode:     r.AttachedNode,
		ColumnName:       r.ColumnName,
		Version:          versionText(r.Version),
		LatestVersion:    versionText(r.LatestVersion),
		Access:           r.Access,
		Group:            r.Group,
		Contract:         Contract(r.Contract),
		Description:      r.Description,
		TestedNode:       r.TestedNodeUniqueID,
		Model:            r.Model,
		SourceName:       r.SourceName,
		Identifier:       r.Identifier,
		LoadedAtField:    r.LoadedAtField,
		Freshness:        r.Freshness.convert(),
		Enabled:          true,
		Raw:              body,
	}
	if n.ResourceType == "" {
		n.ResourceType = ResourceType(strings.SplitN(n.UniqueID, ".", 2)[0])
	}
	if n.ResourceType == "sql operation" {
		n.ResourceType = SQLOperation
	}
	if r.TestMetadata != nil {
		n.TestMetadata = &TestMetadata{Name: r.TestMetadata.Name, Namespace: r.TestMetadata.Namespace, Kwargs: r.TestMetadata.Kwargs}
	}
	applyConfig(n)
	return n, nil
}

// applyConfig lifts the config keys dbtorch branches on into typed fields.
func applyConfig(n *Node) {
	c := n.Config
	if c == nil {
		return
	}
	if v, ok := c["materialized"].(string); ok {
		n.Materialized = v
	}
	if v, ok := c["enabled"].(bool); ok {
		n.Enabled = v
	}
	if v, ok := c["severity"].(string); ok {
		n.Severity = strings.ToLower(v)
	}
	if n.ResourceType == Source {
		if n.LoadedAtField == "" {
			if v, ok := c["loaded_at_field"].(string); ok {
				n.LoadedAtField = v
			}
		}
		if !n.Freshness.IsSet() {
			if raw, ok := c["freshness"].(map[string]any); ok {
				if f := freshnessFromMap(raw); f.IsSet() {
					n.Freshness = f
				}
			}
		}
	}
	if n.Access == "" {
		if v, ok := c["access"].(string); ok {
			n.Access = v
		}
	}
	if n.Group == "" {
		if v, ok := c["group"].(string); ok {
			n.Group = v
		}
	}
}

func freshnessFromMap(m map[string]any) *Freshness {
	f := &Freshness{}
	f.Filter, _ = m["filter"].(string)
	for key, dst := range map[string]*Time{"warn_after": &f.WarnAfter, "error_after": &f.ErrorAfter} {
		t, ok := m[key].(map[string]any)
		if !ok {
			continue
		}
		if c, ok := t["count"].(float64); ok {
			dst.Count = int(c)
		}
		dst.Period, _ = t["period"].(string)
	}
	return f
}

func versionText(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || bytes.Equal(raw, []byte("null")) {
		return ""
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return s
		}
		return ""
	}
	return string(raw)
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

type rawMacro struct {
	UniqueID         *string `json:"unique_id"`
	Name             string  `json:"name"`
	PackageName      string  `json:"package_name"`
	Path             string  `json:"path"`
	OriginalFilePath string  `json:"original_file_path"`
	MacroSQL         string  `json:"macro_sql"`
	DependsOn        struct {
		Macros []string `json:"macros"`
	} `json:"depends_on"`
}

func decodeMacros(raw json.RawMessage) (map[string]*MacroDef, error) {
	out := map[string]*MacroDef{}
	if len(raw) == 0 || isNull(raw) {
		return out, nil
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, syntaxError("macros", "", raw, err)
	}
	for key, body := range entries {
		var r rawMacro
		if err := json.Unmarshal(body, &r); err != nil {
			var te *json.UnmarshalTypeError
			if !errors.As(err, &te) || te.Field == "" {
				return nil, syntaxError("macros", key, body, err)
			}
		}
		if r.UniqueID == nil || *r.UniqueID == "" {
			return nil, &ParseError{Section: "macros", NodeID: key, Field: "unique_id", Offset: -1,
				Err: fmt.Errorf("%w: missing", ErrMalformed)}
		}
		out[*r.UniqueID] = &MacroDef{
			UniqueID: *r.UniqueID, Name: r.Name, PackageName: r.PackageName, Path: r.Path,
			OriginalFilePath: r.OriginalFilePath, MacroSQL: r.MacroSQL,
			DependsOn: DependsOn{Macros: r.DependsOn.Macros},
		}
	}
	return out, nil
}

func decodeDisabled(raw json.RawMessage) (map[string][]*Node, error) {
	out := map[string][]*Node{}
	if len(raw) == 0 || isNull(raw) {
		return out, nil
	}
	var entries map[string]json.RawMessage
	if err := json.Unmarshal(raw, &entries); err != nil {
		return nil, syntaxError("disabled", "", raw, err)
	}
	for key, body := range entries {
		body = bytes.TrimSpace(body)
		var items []json.RawMessage
		if len(body) > 0 && body[0] == '[' {
			if err := json.Unmarshal(body, &items); err != nil {
				return nil, syntaxError("disabled", key, body, err)
			}
		} else {
			items = []json.RawMessage{body} // v4 wrote one object per key in some builds
		}
		for _, it := range items {
			n, err := decodeNode("disabled", key, it)
			if err != nil {
				return nil, err
			}
			n.Enabled = false
			out[n.UniqueID] = append(out[n.UniqueID], n)
		}
	}
	return out, nil
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
