package manifest

import (
	"encoding/json"
	"strings"
)

// ResourceType is dbt's resource_type of a node ("model", "seed", "test", ...).
type ResourceType string

// Resource types dbt writes into manifest.json.
const (
	Model         ResourceType = "model"
	Seed          ResourceType = "seed"
	Snapshot      ResourceType = "snapshot"
	Test          ResourceType = "test"
	UnitTest      ResourceType = "unit_test"
	Source        ResourceType = "source"
	Analysis      ResourceType = "analysis"
	Operation     ResourceType = "operation"
	SQLOperation  ResourceType = "sql_operation"
	RPC           ResourceType = "rpc"
	Exposure      ResourceType = "exposure"
	Metric        ResourceType = "metric"
	SemanticModel ResourceType = "semantic_model"
	SavedQuery    ResourceType = "saved_query"
	Macro         ResourceType = "macro"
	Group         ResourceType = "group"
	Function      ResourceType = "function"
)

// Checksum is dbt's file checksum. Name is the hash algorithm ("sha256"), or
// "path" for seeds too large for dbt to hash, in which case Checksum holds the
// file path and callers that need the content must hash the file themselves.
type Checksum struct {
	Name     string
	Checksum string
}

// DependsOn lists a node's direct dependencies as dbt recorded them.
type DependsOn struct {
	// Nodes are unique_ids of models, seeds, snapshots, sources, metrics, ...
	Nodes []string
	// Macros are unique_ids of the macros the node calls directly.
	Macros []string
}

// TestMetadata describes a generic test: its name ("unique",
// "relationships", ...), the macro namespace, and its keyword arguments.
type TestMetadata struct {
	Name      string
	Namespace string
	Kwargs    map[string]any
}

// Contract is a model's contract: whether it is enforced, and dbt's
// checksum of the contracted columns.
type Contract struct {
	Enforced bool
	Checksum string
}

// Time is a freshness threshold such as {count: 12, period: hour}. A zero
// Count means the threshold is not set.
type Time struct {
	Count  int
	Period string
}

// Freshness is a source's freshness rule.
type Freshness struct {
	WarnAfter  Time
	ErrorAfter Time
	Filter     string
}

// IsSet reports whether either threshold is set.
func (f *Freshness) IsSet() bool {
	return f != nil && (f.WarnAfter.Count > 0 || f.ErrorAfter.Count > 0)
}

// Node is one entry of a manifest: a model, seed, snapshot, test, unit test,
// analysis, operation, source, exposure, metric, semantic model, saved query
// or function. Fields that do not apply to a resource type are zero.
//
// Node values are owned by their Manifest and must be treated as read-only.
type Node struct {
	UniqueID         string
	Name             string
	ResourceType     ResourceType
	PackageName      string
	FQN              []string
	Path             string
	OriginalFilePath string
	PatchPath        string
	Database         string
	Schema           string
	Alias            string
	RelationName     string
	Tags             []string
	// Config is the node's resolved config as dbt wrote it, decoded on
	// demand (Config.Map, Config.Get).
	Config Config
	// Materialized is Config["materialized"], for models, seeds and snapshots.
	Materialized string
	// Enabled is Config["enabled"]; true unless dbt wrote false.
	Enabled  bool
	Checksum Checksum
	// RawCode and CompiledCode hold raw_code/compiled_code (v7+) or
	// raw_sql/compiled_sql (v4–v6).
	RawCode      string
	CompiledCode string
	Language     string
	DependsOn    DependsOn
	// TestMetadata is set for generic tests; nil for singular tests.
	TestMetadata *TestMetadata
	// AttachedNode is the node a test is attached to (v6+), if any.
	AttachedNode string
	ColumnName   string
	// Version is a versioned model's version, as text ("2", "1.5"); empty
	// for unversioned nodes. LatestVersion is the model's latest_version.
	Version       string
	LatestVersion string
	Access        string
	Group         string
	Contract      Contract
	Description   string
	// Severity is a test's configured severity ("error" or "warn",
	// lower case); empty for non-tests.
	Severity string

	// TestedNode is, for a unit test, the unique_id of the model it tests.
	TestedNode string
	// Model is, for a unit test, the name of the model it tests.
	Model string

	// Source fields.
	SourceName    string
	Identifier    string
	LoadedAtField string
	Freshness     *Freshness

	// configLoadedAt and configFreshness hold config.loaded_at_field and
	// config.freshness while a source is decoded.
	configLoadedAt  string
	configFreshness *Freshness

	// Raw is the node's JSON exactly as dbt wrote it, for the fields dbtorch
	// does not type (unrendered_config, columns, constraints, quoting, ...);
	// the selector's state: comparisons read it. Do not modify.
	Raw json.RawMessage
}

// IsEphemeral reports whether the node is a model materialized as ephemeral.
func (n *Node) IsEphemeral() bool {
	return n.ResourceType == Model && n.Materialized == "ephemeral"
}

// IsExternal reports whether the node was injected from another project
// (dbt-loom, dbt Mesh): it has neither original_file_path nor path.
func (n *Node) IsExternal() bool {
	return n.OriginalFilePath == "" && n.Path == ""
}

// IsTest reports whether the node is a data test or a unit test.
func (n *Node) IsTest() bool {
	return n.ResourceType == Test || n.ResourceType == UnitTest
}

// IsEmpty reports whether the node is one dbt build, run and test leave
// out as empty (dbt's CompiledNode.empty): a node of manifest.nodes other
// than a seed whose raw code is blank. dbt ls lists such nodes.
func (n *Node) IsEmpty() bool {
	switch n.ResourceType {
	case Seed, Source, Exposure, Metric, SemanticModel, SavedQuery, UnitTest, Function:
		return false
	}
	return strings.TrimSpace(n.RawCode) == ""
}

// Executable reports whether dbtorch runs the node as its own unit of work
// under some test strategy: non-ephemeral models, seeds, snapshots,
// functions (dbt 1.11's UDFs, which only dbt build builds), tests and unit
// tests that are enabled and not external.
func (n *Node) Executable() bool {
	if !n.Enabled || n.IsExternal() {
		return false
	}
	switch n.ResourceType {
	case Model:
		return n.Materialized != "ephemeral"
	case Seed, Snapshot, Function, Test, UnitTest:
		return true
	}
	return false
}

// NoOp reports whether the node is one dbt build reports without running
// anything: an enabled exposure or saved query, which dbt build lists in
// run_results.json with status "no-op" once its upstreams are done (or
// "skipped" when one of them failed). Plans include such nodes; nothing
// executes them.
func (n *Node) NoOp() bool {
	if !n.Enabled || n.IsExternal() {
		return false
	}
	return n.ResourceType == Exposure || n.ResourceType == SavedQuery
}

// MacroDef is a macro definition.
type MacroDef struct {
	UniqueID         string
	Name             string
	PackageName      string
	Path             string
	OriginalFilePath string
	MacroSQL         string
	DependsOn        DependsOn
}

// Metadata is the manifest's metadata block.
type Metadata struct {
	// SchemaVersion is the dbt_schema_version URL.
	SchemaVersion string
	// Version is the schema version number parsed from SchemaVersion (4..12).
	Version       int
	DBTVersion    string
	GeneratedAt   string
	InvocationID  string
	ProjectName   string
	ProjectID     string
	AdapterType   string
	Env           map[string]string
	SendAnonUsage bool
}

// Manifest is a parsed manifest.json. All maps are keyed by unique_id.
// A Manifest is immutable after Load returns and safe for concurrent reads.
type Manifest struct {
	Metadata Metadata
	// Nodes holds models, seeds, snapshots, tests, analyses and operations.
	Nodes          map[string]*Node
	Sources        map[string]*Node
	UnitTests      map[string]*Node
	Exposures      map[string]*Node
	Metrics        map[string]*Node
	SemanticModels map[string]*Node
	SavedQueries   map[string]*Node
	Functions      map[string]*Node
	Groups         map[string]*Node
	Macros         map[string]*MacroDef
	// Disabled holds disabled nodes by unique_id (dbt may keep several
	// disabled definitions of one id).
	Disabled map[string][]*Node
	// Selectors is the manifest's "selectors" block (YAML selectors,
	// expanded), decoded as generic JSON.
	Selectors map[string]any

	// byID indexes, for Lookup, the entries Parse found filed under a
	// section their unique_id's prefix does not name.
	byID map[string]*Node
}

// Lookup returns the node with the given unique_id from any of the
// manifest's node-like maps, or nil.
func (m *Manifest) Lookup(id string) *Node {
	prefix, _, _ := strings.Cut(id, ".")
	if n := m.section(ResourceType(prefix))[id]; n != nil {
		return n
	}
	// An id whose prefix does not name its section (only a corrupt
	// manifest has one): Parse indexed every id.
	return m.byID[id]
}

// section returns the map dbt files the ids whose prefix is t under:
// Nodes for the resource types that have no section of their own.
func (m *Manifest) section(t ResourceType) map[string]*Node {
	for _, s := range [...]struct {
		t     ResourceType
		nodes map[string]*Node
	}{
		{Source, m.Sources}, {UnitTest, m.UnitTests}, {Exposure, m.Exposures},
		{Metric, m.Metrics}, {SemanticModel, m.SemanticModels}, {SavedQuery, m.SavedQueries},
		{Function, m.Functions}, {Group, m.Groups},
	} {
		if s.t == t {
			return s.nodes
		}
	}
	return m.Nodes
}

// All calls fn for every node of every kind (nodes, sources, unit tests,
// exposures, metrics, semantic models, saved queries, functions), in no
// particular order, until fn returns false.
func (m *Manifest) All(fn func(*Node) bool) {
	for _, mp := range []map[string]*Node{m.Nodes, m.Sources, m.UnitTests, m.Exposures,
		m.Metrics, m.SemanticModels, m.SavedQueries, m.Functions} {
		for _, n := range mp {
			if !fn(n) {
				return
			}
		}
	}
}
