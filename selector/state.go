package selector

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/manifest"
)

var stateSelectors = map[string]bool{
	"new": true, "old": true, "modified": true, "unmodified": true, "modified.body": true,
	"modified.configs": true, "modified.persisted_descriptions": true, "modified.relation": true,
	"modified.macros": true, "modified.contract": true,
}

// jnode is a node's decoded JSON with its resource type.
type jnode struct {
	n *manifest.Node
	j map[string]any
}

func (x *jnode) get(keys ...string) any {
	var v any = x.j
	for _, k := range keys {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[k]
	}
	return v
}

func (x *jnode) str(keys ...string) string { s, _ := x.get(keys...).(string); return s }
func (x *jnode) rt() manifest.ResourceType { return x.n.ResourceType }

// decode returns n's decoded JSON, cached for the evaluation.
func (e *evaluator) decode(n *manifest.Node) *jnode {
	if n == nil {
		return nil
	}
	if x, ok := e.Native.jcache.Load(n); ok {
		return x.(*jnode)
	}
	x, _ := e.Native.jcache.LoadOrStore(n, decode(n))
	return x.(*jnode)
}

func decode(n *manifest.Node) *jnode {
	if n == nil {
		return nil
	}
	j := nodeJSON(n)
	if j == nil {
		j = map[string]any{}
	}
	return &jnode{n: n, j: j}
}

// stateSearch is dbt's StateSelectorMethod.search.
func (e *evaluator) stateSearch(c *criterion) (bitset, error) {
	if e.state == nil {
		return nil, fmt.Errorf("selector: %s: %w", c.raw, ErrNoState)
	}
	if !stateSelectors[c.value] {
		return nil, &ValueError{Criterion: c.raw, Method: c.method, Value: c.value,
			Msg: fmt.Sprintf("invalid state selector %q, expected one of %s", c.value, strings.Join(sortedKeys(stateSelectors), ", "))}
	}
	d := e.d
	out := newBitset(len(d.ids))
	for i, n := range d.nodes {
		hit, err := e.stateCheck(c.value, e.decode(e.state.Lookup(n.UniqueID)), e.decode(n))
		if err != nil {
			return nil, err
		}
		if hit {
			out.add(int32(i))
		}
	}
	switch c.value {
	case "modified", "unmodified", "modified.contract":
		// dbt checks removed and disabled models for contract removals,
		// which fail the selection for versioned models.
		for id, old := range e.state.Nodes {
			var removed *manifest.Node
			if dis := d.m.Disabled[id]; len(dis) > 0 {
				removed = dis[0]
			} else if _, ok := d.m.Nodes[id]; !ok {
				removed = old
			}
			if removed == nil || removed.ResourceType != manifest.Model {
				continue
			}
			if err := contractRemoved(decode(removed)); err != nil {
				return nil, err
			}
		}
	}
	return out, nil
}

func (e *evaluator) stateCheck(sel string, old, cur *jnode) (bool, error) {
	switch sel {
	case "new":
		return old == nil, nil
	case "old":
		return old != nil, nil
	case "modified":
		return e.modifiedContent(old, cur)
	case "unmodified":
		m, err := e.modifiedContent(old, cur)
		return !m, err
	case "modified.body":
		if !hasRelationMethods(cur) {
			return false, nil
		}
		return old == nil || !sameBody(old, cur), nil
	case "modified.configs":
		if !hasConfigMethod(cur) {
			return false, nil
		}
		return old == nil || !sameConfig(old, cur), nil
	case "modified.persisted_descriptions":
		if !hasRelationMethods(cur) {
			return false, nil
		}
		return old == nil || !samePersistedDescription(old, cur), nil
	case "modified.relation":
		if !hasRelationMethods(cur) && cur.rt() != manifest.Source {
			return false, nil
		}
		return old == nil || !sameDatabaseRepresentation(old, cur), nil
	case "modified.macros":
		return e.macrosModified(cur), nil
	case "modified.contract":
		if !hasRelationMethods(cur) {
			return false, nil
		}
		if old == nil {
			return true, nil
		}
		same, err := sameContract(old, cur, e.d.m.Metadata.AdapterType)
		return !same, err
	}
	return false, nil
}

// hasRelationMethods: dbt's ParsedNode subclasses (manifest.nodes) and
// functions have same_body, same_persisted_description, same_contract.
func hasRelationMethods(x *jnode) bool { return isParsed(x.n) || x.rt() == manifest.Function }

func hasConfigMethod(x *jnode) bool { return x.rt() != manifest.UnitTest }

// modifiedContent is dbt's check_modified_content.
func (e *evaluator) modifiedContent(old, cur *jnode) (bool, error) {
	different := false
	switch cur.rt() {
	case manifest.Source, manifest.Exposure, manifest.Metric, manifest.SemanticModel, manifest.SavedQuery:
		different = old != nil && !sameContentsOther(old, cur)
	case manifest.UnitTest:
		different = old == nil || !pyEqual(old.get("checksum"), cur.get("checksum"))
	default:
		same, err := e.sameContentsParsed(old, cur)
		if err != nil {
			return false, err
		}
		different = !same
	}
	if different {
		return true, nil
	}
	if e.macrosModified(cur) {
		return true, nil
	}
	if old != nil && old.rt() == manifest.Model {
		same, err := sameContract(old, cur, e.d.m.Metadata.AdapterType)
		if err != nil {
			return false, err
		}
		return !same, nil
	}
	return false, nil
}

// sameContentsParsed is ParsedNode.same_contents and its overrides.
func (e *evaluator) sameContentsParsed(old, cur *jnode) (bool, error) {
	if old == nil {
		return false, nil
	}
	if cur.rt() == manifest.Test && cur.get("test_metadata") != nil {
		return sameConfig(old, cur) && sameFQN(old, cur), nil // GenericTestNode
	}
	contract, err := sameContract(old, cur, e.d.m.Metadata.AdapterType)
	if err != nil {
		return false, err
	}
	same := sameBody(old, cur) && sameConfig(old, cur) && samePersistedDescription(old, cur) &&
		sameFQN(old, cur) && sameDatabaseRepresentation(old, cur) && contract
	switch cur.rt() {
	case manifest.Model:
		same = same && pyEqual(old.get("latest_version"), cur.get("latest_version")) &&
			pyEqual(old.get("access"), cur.get("access")) &&
			pyEqual(old.get("deprecation_date"), cur.get("deprecation_date"))
	case manifest.Function:
		same = same && pyEqual(old.get("arguments"), cur.get("arguments")) && pyEqual(old.get("returns"), cur.get("returns"))
	}
	return same, nil
}

func sameFQN(old, cur *jnode) bool { return pyEqual(old.get("fqn"), cur.get("fqn")) }

func sameBody(old, cur *jnode) bool {
	if cur.rt() == manifest.Seed {
		return pyEqual(old.get("checksum"), cur.get("checksum"))
	}
	return old.str("raw_code") == cur.str("raw_code")
}

// configExcluded are the config keys dbt's config comparison skips, by
// config class.
func configExcluded(rt manifest.ResourceType) map[string]bool {
	switch rt {
	case manifest.Source, manifest.Exposure:
		return nil
	case manifest.Metric, manifest.SemanticModel, manifest.SavedQuery:
		return map[string]bool{"group": true}
	case manifest.UnitTest:
		return map[string]bool{"tags": true}
	}
	return map[string]bool{"alias": true, "schema": true, "database": true, "tags": true, "group": true}
}

var testModifiers = []string{"severity", "where", "limit", "fail_calc", "warn_if", "error_if", "store_failures", "store_failures_as"}

// sameConfig is same_config: the unrendered configs compared key by key.
func sameConfig(old, cur *jnode) bool {
	a, _ := cur.get("unrendered_config").(map[string]any)
	b, _ := old.get("unrendered_config").(map[string]any)
	cmp := func(k string) bool {
		x, okx := a[k]
		y, oky := b[k]
		if !okx || !oky {
			return okx == oky
		}
		return pyEqual(x, y)
	}
	if cur.rt() == manifest.Test {
		for _, k := range testModifiers {
			if !cmp(k) {
				return false
			}
		}
		return true
	}
	ex := configExcluded(cur.rt())
	for _, m := range []map[string]any{a, b} {
		for k := range m {
			if !ex[k] && !cmp(k) {
				return false
			}
		}
	}
	return true
}

// truthy is Python's bool() of a decoded JSON value.
func truthy(v any) bool {
	switch x := v.(type) {
	case nil:
		return false
	case bool:
		return x
	case string:
		return x != ""
	case float64:
		return x != 0
	case []any:
		return len(x) > 0
	case map[string]any:
		return len(x) > 0
	}
	return true
}

// samePersistedDescription is HasRelationMetadata.same_persisted_description.
func samePersistedDescription(old, cur *jnode) bool {
	pd, ok := cur.get("config", "persist_docs").(map[string]any)
	if !ok {
		return true
	}
	if truthy(pd["relation"]) && !pyEqual(cur.get("description"), old.get("description")) {
		return false
	}
	if truthy(pd["columns"]) {
		descs := func(x *jnode) map[string]any {
			out := map[string]any{}
			cols, _ := x.get("columns").(map[string]any)
			for k, c := range cols {
				cm, _ := c.(map[string]any)
				out[k] = cm["description"]
			}
			return out
		}
		if !pyEqual(descs(cur), descs(old)) {
			return false
		}
	}
	return true
}

// sameDatabaseRepresentation compares the configured database, schema and
// alias (sources: database, schema and identifier as rendered).
func sameDatabaseRepresentation(old, cur *jnode) bool {
	if cur.rt() == manifest.Source {
		return pyEqual(old.get("database"), cur.get("database")) && pyEqual(old.get("schema"), cur.get("schema")) &&
			pyEqual(old.get("identifier"), cur.get("identifier"))
	}
	for _, k := range []string{"database", "schema", "alias"} {
		if !pyEqual(cur.get("unrendered_config", k), old.get("unrendered_config", k)) {
			return false
		}
	}
	return true
}

// sameContentsOther is same_contents for sources, exposures, metrics,
// semantic models and saved queries (old != nil).
func sameContentsOther(old, cur *jnode) bool {
	eq := func(keys ...string) bool { return pyEqual(old.get(keys...), cur.get(keys...)) }
	switch cur.rt() {
	case manifest.Source:
		return sameDatabaseRepresentation(old, cur) && sameFQN(old, cur) && sameConfig(old, cur) &&
			eq("quoting") && eq("freshness") && eq("loaded_at_field") && eq("external")
	case manifest.Exposure:
		return sameFQN(old, cur) && eq("type") && eq("owner") && eq("maturity") && eq("url") &&
			eq("description") && eq("label") && sameStringSet(old.get("depends_on", "nodes"), cur.get("depends_on", "nodes")) &&
			sameConfig(old, cur)
	case manifest.Metric:
		return eq("filter") && eq("metadata") && eq("type") && eq("type_params") && eq("description") &&
			eq("label") && sameConfig(old, cur)
	case manifest.SemanticModel:
		return eq("model") && eq("description") && eq("defaults") && eq("entities") && eq("dimensions") &&
			eq("measures") && sameConfig(old, cur) && eq("primary_entity") && eq("group")
	case manifest.SavedQuery:
		return eq("query_params", "metrics") && eq("query_params", "group_by") && eq("description") &&
			eq("query_params", "where") && eq("label") && sameConfig(old, cur) && eq("group") && eq("exports") && eq("tags")
	}
	return true
}

func sameStringSet(a, b any) bool {
	set := func(v any) map[string]bool {
		out := map[string]bool{}
		l, _ := v.([]any)
		for _, x := range l {
			out[pyStr(x)] = true
		}
		return out
	}
	x, y := set(a), set(b)
	if len(x) != len(y) {
		return false
	}
	for k := range x {
		if !y[k] {
			return false
		}
	}
	return true
}

// macrosModified is dbt's check_macros_modified: does the node call,
// directly or through other macros, a macro that is new, removed or whose
// SQL changed?
func (e *evaluator) macrosModified(cur *jnode) bool {
	if e.modMacro == nil {
		e.modMacro = map[string]bool{}
		for id, m := range e.d.m.Macros {
			if old, ok := e.state.Macros[id]; !ok || old.MacroSQL != m.MacroSQL {
				e.modMacro[id] = true
			}
		}
		for id := range e.state.Macros {
			if _, ok := e.d.m.Macros[id]; !ok {
				e.modMacro[id] = true
			}
		}
	}
	if len(e.modMacro) == 0 || cur.rt() == manifest.Source {
		return false
	}
	seen := map[string]bool{}
	var walk func(ids []string) bool
	walk = func(ids []string) bool {
		for _, id := range ids {
			if seen[id] {
				continue
			}
			seen[id] = true
			if e.modMacro[id] {
				return true
			}
			if m := e.d.m.Macros[id]; m != nil && walk(m.DependsOn.Macros) {
				return true
			}
		}
		return false
	}
	return walk(cur.n.DependsOn.Macros)
}

// constraintSupport is each adapter's CONSTRAINT_SUPPORT: whether removing
// a constraint of that type is a breaking change (enforced).
func constraintEnforced(adapter, typ string) bool {
	switch adapter {
	case "postgres", "duckdb":
		return typ == "check" || typ == "not_null" || typ == "unique" || typ == "primary_key" || typ == "foreign_key"
	}
	return typ == "not_null" || typ == "foreign_key"
}

func enforcesConstraints(x *jnode) bool {
	m := x.str("config", "materialized")
	return m == "table" || m == "incremental"
}

func normType(v any) string {
	s, ok := v.(string)
	if !ok {
		return pyStr(v)
	}
	base, _, _ := strings.Cut(s, "(")
	return strings.ToLower(strings.TrimSpace(base))
}

func containsJSON(list []any, v any) bool {
	for _, x := range list {
		if pyEqual(x, v) {
			return true
		}
	}
	return false
}

// sameContract is ModelNode.same_contract (true for other node types). A
// breaking change to a versioned model's enforced contract is an error, as
// in dbt.
func sameContract(old, cur *jnode, adapter string) (bool, error) {
	if cur.rt() != manifest.Model {
		return true, nil
	}
	oe, _ := old.get("contract", "enforced").(bool)
	ne, _ := cur.get("contract", "enforced").(bool)
	switch {
	case !oe && !ne:
		return true, nil
	case !oe && ne:
		return false, nil
	case ne && pyEqual(cur.get("contract", "checksum"), old.get("contract", "checksum")):
		return true, nil
	}
	var changes []string
	if oe && !ne {
		changes = append(changes, "contract enforcement was removed")
	}
	oldCols, _ := old.get("columns").(map[string]any)
	newCols, _ := cur.get("columns").(map[string]any)
	keys := make([]string, 0, len(oldCols))
	for k := range oldCols {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	colConstraints := false
	for _, k := range keys {
		oc, _ := oldCols[k].(map[string]any)
		nc, inNew := newCols[k].(map[string]any)
		switch {
		case !inNew:
			changes = append(changes, "column removed: "+k)
		case !pyEqual(oc["data_type"], nc["data_type"]) && normType(oc["data_type"]) != normType(nc["data_type"]):
			changes = append(changes, "column type changed: "+k)
		}
		ocons, _ := oc["constraints"].([]any)
		if len(ocons) > 0 {
			colConstraints = true
		}
		if inNew && enforcesConstraints(old) {
			ncons, _ := nc["constraints"].([]any)
			for _, c := range ocons {
				cm, _ := c.(map[string]any)
				t, _ := cm["type"].(string)
				if !containsJSON(ncons, c) && constraintEnforced(adapter, t) {
					changes = append(changes, "column constraint removed: "+k+" "+t)
				}
			}
		}
	}
	ocons, _ := old.get("constraints").([]any)
	ncons, _ := cur.get("constraints").([]any)
	if enforcesConstraints(old) {
		for _, c := range ocons {
			cm, _ := c.(map[string]any)
			t, _ := cm["type"].(string)
			if !containsJSON(ncons, c) && constraintEnforced(adapter, t) {
				changes = append(changes, "model constraint removed: "+t)
			}
		}
		if !enforcesConstraints(cur) && (len(ocons) > 0 || colConstraints) {
			changes = append(changes, "materialization changed with enforced constraints")
		}
	}
	if len(changes) > 0 && cur.get("version") != nil {
		return false, &ContractError{UniqueID: cur.n.UniqueID, Changes: changes}
	}
	return false, nil
}

// contractRemoved is ModelNode.same_contract_removed for a model that was
// deleted, renamed or disabled: an error for a versioned model whose
// contract was enforced and whose deprecation date has not passed.
func contractRemoved(old *jnode) error {
	if enforced, _ := old.get("contract", "enforced").(bool); !enforced {
		return nil
	}
	if s, ok := old.get("deprecation_date").(string); ok {
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02 15:04:05", "2006-01-02"} {
			if t, err := time.Parse(layout, s); err == nil && t.Before(time.Now()) {
				return nil
			}
		}
	}
	if old.get("version") == nil {
		return nil
	}
	return &ContractError{UniqueID: old.n.UniqueID, Changes: []string{"contracted model was deleted, renamed or disabled"}}
}
