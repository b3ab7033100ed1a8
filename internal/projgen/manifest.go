package projgen

import (
	"crypto/md5"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"
	"strings"
)

// ManifestOptions configures WriteManifest. The same options always give the
// same bytes.
type ManifestOptions struct {
	// Models, Seed, Name, Layers and Seeds lay out the DAG exactly as the
	// same fields of Options do for Write.
	Models int
	Seed   int64
	Name   string
	Layers int
	Seeds  int
	// Macros is the number of macros in the manifest, the project's and
	// dbt's own; 0 means 300. Counts below MinMacros are raised to it, so
	// that every macro dependency resolves.
	Macros int
	// DBTVersion is metadata.dbt_version; "1.11.16" when empty.
	DBTVersion string
}

func (o ManifestOptions) shape() shape {
	return shape{models: o.Models, layers: o.Layers, seeds: o.Seeds, seed: o.Seed, name: o.Name}
}

// WriteManifest writes a manifest.json of dbt's v12 shape for the project
// Write would generate with the same layout fields, as dbt 1.11 would write
// it after `dbt compile` on DuckDB: every node with its config, columns,
// descriptions, meta, raw and compiled code, refs, sources and depends_on;
// unique and not_null tests on every built model and seed plus the
// relationships tests, with test_metadata and attached_node; the unit tests;
// the source raw with freshness; macros; parent_map and child_map.
// Models get more columns and longer SQL than Write's files, so that sizes
// are realistic: 10,000 models give a file of about 100 MB.
func WriteManifest(w io.Writer, opts ManifestOptions) error {
	p, err := newPlan(opts.shape())
	if err != nil {
		return err
	}
	if opts.Macros < 0 {
		return fmt.Errorf("projgen: Macros must not be negative")
	}
	if opts.Macros == 0 {
		opts.Macros = defaultMacros
	}
	opts.Macros = max(opts.Macros, MinMacros)
	if opts.DBTVersion == "" {
		opts.DBTVersion = defaultDBTVer
	}
	m := newManifestBuilder(p, opts)
	e := newEncoder(w)
	m.write(e)
	return e.flush()
}

// manifestBuilder renders a plan as manifest entries.
type manifestBuilder struct {
	p      *plan
	opts   ManifestOptions
	tests  map[*node][]genTest
	extras map[*node][]string // extra columns of each model
	macros []macroDef
	epoch  float64 // created_at of the first node
}

// genTest is a generic data test of the plan.
type genTest struct {
	name, kind string
	on, to     *node // to: relationships only
}

// macroDef is one macro of the manifest.
type macroDef struct {
	pkg, name, path, sql string
	deps                 []string
}

// extraColumns are the columns models may have beyond id, category, amount.
var extraColumns = [...]string{
	"created_at", "updated_at", "status", "is_active", "source_system",
	"customer_key", "region", "currency_code", "quantity", "discount_rate",
}

// extraDoc documents extraColumns.
var extraDoc = map[string]string{
	"created_at":    "Timestamp (UTC) at which the upstream system first recorded the row.",
	"updated_at":    "Timestamp (UTC) of the last change to the row in the upstream system.",
	"status":        "Lifecycle status of the row: one of active, pending, closed or archived.",
	"is_active":     "True while the row is neither closed nor archived; derived from status.",
	"source_system": "Name of the operational system the row was extracted from.",
	"customer_key":  "Surrogate key of the customer the row belongs to, when there is one.",
	"region":        "Sales region, from the customer's billing address at the time of the event.",
	"currency_code": "ISO 4217 code of the currency the amount is expressed in.",
	"quantity":      "Number of units involved; null when the row is not about goods.",
	"discount_rate": "Share of the list price given away as a discount, between 0 and 1.",
}

func newManifestBuilder(p *plan, opts ManifestOptions) *manifestBuilder {
	rng := rand.New(rand.NewPCG(uint64(opts.Seed), 0xd1b54a32d192ed03))
	m := &manifestBuilder{
		p:      p,
		opts:   opts,
		tests:  map[*node][]genTest{},
		extras: map[*node][]string{},
		epoch:  1767225600, // 2026-01-01T00:00:00Z
	}
	for _, s := range p.seeds {
		m.tests[s] = []genTest{{kind: "unique", on: s}, {kind: "not_null", on: s}}
	}
	for _, n := range p.models {
		k := 2 + rng.IntN(4)
		for _, i := range rng.Perm(len(extraColumns))[:k] {
			m.extras[n] = append(m.extras[n], extraColumns[i])
		}
		if n.ephemeral() {
			continue
		}
		m.tests[n] = []genTest{{kind: "unique", on: n}, {kind: "not_null", on: n}}
		if n.relationTo != nil {
			m.tests[n] = append(m.tests[n], genTest{kind: "relationships", on: n, to: n.relationTo})
		}
	}
	for n, ts := range m.tests {
		for i := range ts {
			ts[i].name = testName(ts[i])
		}
		m.tests[n] = ts
	}
	m.macros = buildMacros(p.name, opts.Macros)
	return m
}

// testName is dbt's name for a generic test on column id.
func testName(t genTest) string {
	if t.kind == "relationships" {
		return fmt.Sprintf("relationships_%s_id__id__ref_%s_", t.on.name, t.to.name)
	}
	return t.kind + "_" + t.on.name + "_id"
}

// Unique ids.
func (m *manifestBuilder) id(n *node) string {
	if n.layer == 0 {
		return "seed." + m.p.name + "." + n.name
	}
	return "model." + m.p.name + "." + n.name
}

func (m *manifestBuilder) sourceID(seed *node) string {
	return "source." + m.p.name + ".raw." + seed.name
}

func (m *manifestBuilder) testID(t genTest) string {
	sum := sha256.Sum256([]byte(fmt.Sprint(m.opts.Seed, t.name)))
	return "test." + m.p.name + "." + t.name + "." + hex.EncodeToString(sum[:])[:10]
}

func (m *manifestBuilder) unitTestID(n *node) string {
	return "unit_test." + m.p.name + "." + n.name + "." + unitTestName(n)
}

func (m *manifestBuilder) macroID(d macroDef) string {
	return "macro." + d.pkg + "." + d.name
}

// relation is the quoted relation name of a built node.
func (m *manifestBuilder) relation(name string) string {
	return fmt.Sprintf(`"%s"."main"."%s"`, m.p.name, name)
}

// parents returns n's depends_on.nodes.
func (m *manifestBuilder) parents(n *node) []string {
	var ids []string
	if n.viaSource {
		ids = append(ids, m.sourceID(n.seed()))
	}
	for _, r := range n.refs {
		ids = append(ids, m.id(r))
	}
	return ids
}

// testParents returns t's depends_on.nodes (refs order: target, then model).
func (m *manifestBuilder) testParents(t genTest) []string {
	if t.to != nil {
		return []string{m.id(t.to), m.id(t.on)}
	}
	return []string{m.id(t.on)}
}

// write streams the whole manifest.
func (m *manifestBuilder) write(e *encoder) {
	p := m.p
	type edge struct {
		id      string
		parents []string
	}
	var edges []edge
	e.raw(`{"metadata": `)
	e.value(m.metadata())
	e.raw(`, "nodes": {`)
	first := true
	put := func(id string, v obj, parents []string) {
		if !first {
			e.raw(", ")
		}
		first = false
		e.str(id)
		e.raw(": ")
		e.value(v)
		edges = append(edges, edge{id, parents})
	}
	created := m.epoch
	tick := func() float64 { created += 0.0007; return created }
	for _, s := range p.seeds {
		put(m.id(s), m.seedNode(s, tick()), nil)
	}
	for _, n := range p.models {
		put(m.id(n), m.modelNode(n, tick()), m.parents(n))
	}
	for _, n := range slices.Concat(p.seeds, p.models) {
		for _, t := range m.tests[n] {
			put(m.testID(t), m.testNode(t, tick()), m.testParents(t))
		}
	}
	e.raw(`}, "sources": {`)
	first = true
	for _, s := range p.seeds {
		put(m.sourceID(s), m.sourceNode(s, tick()), nil)
	}
	e.raw(`}, "macros": {`)
	first = true
	for _, d := range m.macros {
		if !first {
			e.raw(", ")
		}
		first = false
		e.str(m.macroID(d))
		e.raw(": ")
		e.value(m.macroNode(d, tick()))
	}
	e.raw(`}, "docs": {"doc.dbt.__overview__": `)
	e.value(obj{
		{"name", "__overview__"}, {"resource_type", "doc"}, {"package_name", "dbt"},
		{"path", "overview.md"}, {"original_file_path", "docs/overview.md"},
		{"unique_id", "doc.dbt.__overview__"},
		{"block_contents", "### Welcome!\n\nWelcome to the auto-generated documentation for your dbt project!"},
	})
	e.raw(`}, "exposures": {}, "metrics": {}, "groups": {}, "selectors": {}, "disabled": {}`)

	// Unit tests join the maps after the sources, as in dbt.
	var units []*node
	for _, n := range p.models {
		if n.unitTest {
			units = append(units, n)
			edges = append(edges, edge{m.unitTestID(n), []string{m.id(n)}})
		}
	}
	children := make(map[string][]string, len(edges))
	for _, ed := range edges {
		for _, par := range ed.parents {
			children[par] = append(children[par], ed.id)
		}
	}
	writeMap := func(key string, list func(edge) []string) {
		e.raw(`, "` + key + `": {`)
		for i, ed := range edges {
			if i > 0 {
				e.raw(", ")
			}
			e.str(ed.id)
			e.raw(": ")
			l := slices.Clone(list(ed))
			slices.Sort(l)
			if l == nil {
				l = []string{}
			}
			e.value(l)
		}
		e.raw("}")
	}
	writeMap("parent_map", func(ed edge) []string { return ed.parents })
	writeMap("child_map", func(ed edge) []string { return children[ed.id] })
	e.raw(`, "group_map": {}, "saved_queries": {}, "semantic_models": {}, "unit_tests": {`)
	for i, n := range units {
		if i > 0 {
			e.raw(", ")
		}
		e.str(m.unitTestID(n))
		e.raw(": ")
		e.value(m.unitTestNode(n, tick()))
	}
	e.raw(`}, "functions": {}}`)
}

func (m *manifestBuilder) metadata() obj {
	rng := rand.New(rand.NewPCG(uint64(m.opts.Seed), 0x2545f4914f6cdd1d))
	uuid := fmt.Sprintf("%08x-%04x-4%03x-%04x-%012x", rng.Uint32(), rng.Uint32()&0xffff,
		rng.Uint32()&0xfff, 0x8000|rng.Uint32()&0x3fff, rng.Uint64()&0xffffffffffff)
	project := md5.Sum([]byte(m.p.name))
	return obj{
		{"dbt_schema_version", "https://schemas.getdbt.com/dbt/manifest/v12.json"},
		{"dbt_version", m.opts.DBTVersion},
		{"generated_at", "2026-01-01T00:00:00.000000Z"},
		{"invocation_id", uuid},
		{"invocation_started_at", "2026-01-01T00:00:00.000000Z"},
		{"env", obj{}},
		{"project_name", m.p.name},
		{"project_id", hex.EncodeToString(project[:])},
		{"user_id", nil},
		{"send_anonymous_usage_stats", false},
		{"adapter_type", "duckdb"},
		{"quoting", obj{{"database", true}, {"schema", true}, {"identifier", true}, {"column", nil}}},
		{"run_started_at", "2026-01-01T00:00:00.000000Z"},
	}
}

// emptyList is an empty JSON array.
var emptyList = []string{}

func docs() obj { return obj{{"show", true}, {"node_color", nil}} }

func sha(s string) obj {
	sum := sha256.Sum256([]byte(s))
	return obj{{"name", "sha256"}, {"checksum", hex.EncodeToString(sum[:])}}
}

func refsOf(names ...string) []obj {
	refs := make([]obj, len(names))
	for i, n := range names {
		refs[i] = obj{{"name", n}, {"package", nil}, {"version", nil}}
	}
	return refs
}

// column is a column entry.
func column(name, description string) obj {
	return obj{
		{"name", name}, {"description", description}, {"meta", obj{}}, {"data_type", nil},
		{"constraints", []obj{}}, {"quote", nil}, {"config", obj{{"meta", obj{}}, {"tags", emptyList}}},
		{"tags", emptyList}, {"granularity", nil}, {"doc_blocks", emptyList},
	}
}

// nodeConfig is the config of a model or seed.
func nodeConfig(materialized string, tags []string, meta obj, seed bool) obj {
	c := obj{
		{"enabled", true}, {"alias", nil}, {"schema", nil}, {"database", nil},
		{"tags", tags}, {"meta", meta}, {"group", nil}, {"static_analysis", nil},
		{"materialized", materialized}, {"incremental_strategy", nil}, {"batch_size", nil},
		{"lookback", 1}, {"begin", nil}, {"persist_docs", obj{}}, {"post-hook", []obj{}},
		{"pre-hook", []obj{}}, {"quoting", obj{}}, {"column_types", obj{}}, {"full_refresh", nil},
		{"unique_key", nil}, {"on_schema_change", "ignore"}, {"on_configuration_change", "apply"},
		{"grants", obj{}}, {"packages", emptyList}, {"docs", docs()},
		{"contract", obj{{"enforced", false}, {"alias_types", true}}},
		{"event_time", nil}, {"concurrent_batches", nil},
	}
	if seed {
		c[slices.IndexFunc(c, func(f field) bool { return f.k == "column_types" })].v = obj{{"loaded_at", "timestamp"}}
		return append(c, field{"delimiter", ","}, field{"quote_columns", nil})
	}
	return append(c, field{"access", "protected"}, field{"freshness", nil})
}

func (m *manifestBuilder) seedNode(s *node, created float64) obj {
	p := m.p
	tags := []string{"raw"}
	meta := obj{{"owner", s.owner}}
	return obj{
		{"database", p.name}, {"schema", "main"}, {"name", s.name}, {"resource_type", "seed"},
		{"package_name", p.name}, {"path", s.name + ".csv"}, {"original_file_path", "seeds/" + s.name + ".csv"},
		{"unique_id", m.id(s)}, {"fqn", []string{p.name, s.name}}, {"alias", s.name},
		{"checksum", sha(s.csv())},
		{"config", nodeConfig("seed", tags, meta, true)},
		{"tags", tags}, {"description", describe(s, p.layers)},
		{"columns", obj{{"id", column("id", columnDoc["id"])}}},
		{"meta", meta}, {"group", nil}, {"docs", docs()},
		{"patch_path", p.name + "://seeds/_seeds.yml"}, {"build_path", nil},
		{"unrendered_config", obj{{"tags", []string{"raw"}}, {"column_types", obj{{"loaded_at", "timestamp"}}}}},
		{"created_at", created}, {"relation_name", m.relation(s.name)}, {"raw_code", ""},
		{"doc_blocks", emptyList}, {"root_path", "/work/" + p.name},
		{"depends_on", obj{{"macros", emptyList}}},
	}
}

// manifestSQL is the raw code of model n in the manifest: Write's model
// widened to n's extra columns, in CTE style.
func (m *manifestBuilder) manifestSQL(n *node) string {
	var b strings.Builder
	b.WriteString(configCall(n))
	fmt.Fprintf(&b, "\n\n-- %s: layer %d of %d, generated by projgen.\n", n.name, n.layer, m.p.layers)
	fmt.Fprintf(&b, "-- Owner: %s. Reads %d upstream relation(s), joins them on id and keeps\n-- the largest amount; the other columns come from the first one.\n", n.owner, len(n.refs))
	if n.viaSource {
		fmt.Fprintf(&b, "-- depends_on: {{ ref('%s') }}\n", n.seed().name)
	}
	b.WriteString("\nwith ")
	for i, r := range n.refs {
		if i > 0 {
			b.WriteString(",\n\n")
		}
		from := "{{ ref('" + r.name + "') }}"
		if n.viaSource {
			from = "{{ source('raw', '" + r.name + "') }}"
		}
		fmt.Fprintf(&b, "r%d as (\n\n    select * from %s\n\n)", i, from)
	}
	amount := "r0.amount"
	if n.usesMacro {
		amount = "{{ gen_amount('r0.amount') }}"
	}
	if len(n.refs) > 1 {
		terms := []string{amount}
		for i := 1; i < len(n.refs); i++ {
			terms = append(terms, fmt.Sprintf("coalesce(r%d.amount, 0)", i))
		}
		amount = "greatest(\n            " + strings.Join(terms, ",\n            ") + "\n        )"
	}
	b.WriteString(",\n\njoined as (\n\n    select\n        r0.id,\n        r0.category,\n        " + amount + " as amount")
	for _, c := range m.extras[n] {
		fmt.Fprintf(&b, ",\n        r0.%s", c)
	}
	b.WriteString("\n    from r0")
	for i := 1; i < len(n.refs); i++ {
		fmt.Fprintf(&b, "\n    left join r%d\n        on r0.id = r%d.id", i, i)
	}
	b.WriteString("\n\n)\n\nselect * from joined\n")
	return b.String()
}

// compile renders raw SQL the way dbt compiles it on DuckDB, ephemeral refs
// becoming CTE names.
func (m *manifestBuilder) compile(n *node, raw string) string {
	pairs := []string{configCall(n), "", "{{ gen_amount('r0.amount') }}", "coalesce(r0.amount, 0)"}
	for _, r := range n.refs {
		target := m.relation(r.name)
		if r.ephemeral() {
			target = "__dbt__cte__" + r.name
		}
		pairs = append(pairs, "{{ ref('"+r.name+"') }}", target, "{{ source('raw', '"+r.name+"') }}", m.relation(r.name))
	}
	return strings.NewReplacer(pairs...).Replace(raw)
}

// ephemeralCTEs returns the ephemeral models n reads, directly or through
// other ephemerals, innermost first, as dbt lists them in extra_ctes.
func ephemeralCTEs(n *node, seen map[*node]bool, out []*node) []*node {
	for _, r := range n.refs {
		if !r.ephemeral() || seen[r] {
			continue
		}
		seen[r] = true
		out = ephemeralCTEs(r, seen, out)
		out = append(out, r)
	}
	return out
}

func (m *manifestBuilder) modelNode(n *node, created float64) obj {
	p := m.p
	folder := p.folder(n.layer)
	raw := m.manifestSQL(n)
	compiled := m.compile(n, raw)
	var ctes []obj
	var cteSQL []string
	for _, c := range ephemeralCTEs(n, map[*node]bool{}, nil) {
		sql := " __dbt__cte__" + c.name + " as (\n" + m.compile(c, m.manifestSQL(c)) + "\n)"
		ctes = append(ctes, obj{{"id", m.id(c)}, {"sql", sql}})
		cteSQL = append(cteSQL, sql)
	}
	if len(ctes) > 0 {
		compiled = strings.Replace(compiled, "\nwith ", "\nwith"+strings.Join(cteSQL, ",")+",\n", 1)
	} else {
		ctes = []obj{}
	}
	tags := append([]string{layerKind(n.layer, p.layers)}, n.tags...)
	meta := obj{{"owner", n.owner}}
	columns := obj{}
	for _, c := range columnOrder {
		columns = append(columns, field{c, column(c, columnDoc[c])})
	}
	for _, c := range m.extras[n] {
		columns = append(columns, field{c, column(c, extraDoc[c])})
	}
	var relation any
	primaryKey := emptyList
	if !n.ephemeral() {
		relation = m.relation(n.name)
		primaryKey = []string{"id"}
	}
	refNames := make([]string, len(n.refs))
	for i, r := range n.refs {
		refNames[i] = r.name
	}
	refs := refsOf(refNames...)
	sources := []any{}
	if n.viaSource {
		refs = refsOf(n.seed().name) // the depends_on comment
		sources = append(sources, []string{"raw", n.seed().name})
	}
	macros := emptyList
	if n.usesMacro {
		macros = []string{"macro." + p.name + ".gen_amount"}
	}
	return obj{
		{"database", p.name}, {"schema", "main"}, {"name", n.name}, {"resource_type", "model"},
		{"package_name", p.name}, {"path", folder + "/" + n.name + ".sql"},
		{"original_file_path", "models/" + folder + "/" + n.name + ".sql"},
		{"unique_id", m.id(n)}, {"fqn", []string{p.name, folder, n.name}}, {"alias", n.name},
		{"checksum", sha(raw)},
		{"config", nodeConfig(n.materialized, tags, meta, false)},
		{"tags", tags}, {"description", describe(n, p.layers)}, {"columns", columns},
		{"meta", meta}, {"group", nil}, {"docs", docs()},
		{"patch_path", p.name + "://models/" + folder + "/" + p.schemaFile(n.layer)}, {"build_path", nil},
		{"unrendered_config", obj{{"materialized", n.materialized}, {"tags", n.tags}}},
		{"created_at", created}, {"relation_name", relation}, {"raw_code", raw},
		{"doc_blocks", emptyList}, {"language", "sql"}, {"refs", refs}, {"sources", sources},
		{"metrics", []any{}}, {"functions", []any{}},
		{"depends_on", obj{{"macros", macros}, {"nodes", m.parents(n)}}},
		{"compiled_path", "target/compiled/" + p.name + "/models/" + folder + "/" + n.name + ".sql"},
		{"compiled", true}, {"compiled_code", compiled},
		{"extra_ctes_injected", true}, {"extra_ctes", ctes},
		{"contract", obj{{"enforced", false}, {"alias_types", true}, {"checksum", nil}}},
		{"access", "protected"}, {"constraints", []obj{}}, {"version", nil}, {"latest_version", nil},
		{"deprecation_date", nil}, {"primary_key", primaryKey}, {"time_spine", nil},
	}
}

// testMacros are the macros every generic test of a kind depends on.
func testMacros(kind string) []string {
	return []string{"macro.dbt.test_" + kind, "macro.dbt.get_where_subquery",
		"macro.dbt.get_limit_subquery_sql", "macro.dbt.should_store_failures", "macro.dbt.statement"}
}

func (m *manifestBuilder) testNode(t genTest, created float64) obj {
	p := m.p
	on := t.on
	yml, fqn, fileKey := "seeds/_seeds.yml", []string{p.name, t.name}, "seeds."+on.name
	if on.layer > 0 {
		folder := p.folder(on.layer)
		yml = "models/" + folder + "/" + p.schemaFile(on.layer)
		fqn = []string{p.name, folder, t.name}
		fileKey = "models." + on.name
	}
	rel := m.relation(on.name)
	kwargs := obj{{"column_name", "id"}, {"model", "{{ get_where_subquery(ref('" + on.name + "')) }}"}}
	refs := refsOf(on.name)
	var compiled string
	switch t.kind {
	case "unique":
		compiled = "\n    \n    \n\nselect\n    id as unique_field,\n    count(*) as n_records\n\nfrom " + rel +
			"\nwhere id is not null\ngroup by id\nhaving count(*) > 1\n\n\n"
	case "not_null":
		compiled = "\n    \n    \n\n\n\nselect id\nfrom " + rel + "\nwhere id is null\n\n\n"
	case "relationships":
		kwargs = obj{{"column_name", "id"}, {"to", "ref('" + t.to.name + "')"}, {"field", "id"}, kwargs[1]}
		refs = refsOf(t.to.name, on.name)
		compiled = "\n    \n    \n\nwith child as (\n    select id as from_field\n    from " + rel +
			"\n    where id is not null\n),\n\nparent as (\n    select id as to_field\n    from " + m.relation(t.to.name) +
			"\n)\n\nselect\n    from_field\n\nfrom child\nleft join parent\n    on child.from_field = parent.to_field\n\nwhere parent.to_field is null\n\n\n"
	}
	return obj{
		{"database", p.name}, {"schema", "main_dbt_test__audit"}, {"name", t.name}, {"resource_type", "test"},
		{"package_name", p.name}, {"path", t.name + ".sql"}, {"original_file_path", yml},
		{"unique_id", m.testID(t)}, {"fqn", fqn}, {"alias", t.name},
		{"checksum", obj{{"name", "none"}, {"checksum", ""}}},
		{"config", obj{
			{"enabled", true}, {"alias", nil}, {"schema", "dbt_test__audit"}, {"database", nil},
			{"tags", emptyList}, {"meta", obj{}}, {"group", nil}, {"static_analysis", nil},
			{"materialized", "test"}, {"severity", "ERROR"}, {"store_failures", nil},
			{"store_failures_as", nil}, {"where", nil}, {"limit", nil}, {"fail_calc", "count(*)"},
			{"warn_if", "!= 0"}, {"error_if", "!= 0"},
		}},
		{"tags", emptyList}, {"description", ""}, {"columns", obj{}}, {"meta", obj{}}, {"group", nil},
		{"docs", docs()}, {"patch_path", nil}, {"build_path", nil}, {"unrendered_config", obj{}},
		{"created_at", created}, {"relation_name", nil},
		{"raw_code", "{{ test_" + t.kind + "(**_dbt_generic_test_kwargs) }}"},
		{"doc_blocks", emptyList}, {"language", "sql"}, {"refs", refs}, {"sources", []any{}},
		{"metrics", []any{}}, {"functions", []any{}},
		{"depends_on", obj{{"macros", testMacros(t.kind)}, {"nodes", m.testParents(t)}}},
		{"compiled_path", "target/compiled/" + p.name + "/" + yml + "/" + t.name + ".sql"},
		{"compiled", true}, {"compiled_code", compiled}, {"extra_ctes_injected", true}, {"extra_ctes", []obj{}},
		{"contract", obj{{"enforced", false}, {"alias_types", true}, {"checksum", nil}}},
		{"column_name", "id"}, {"file_key_name", fileKey}, {"attached_node", m.id(on)},
		{"test_metadata", obj{{"name", t.kind}, {"kwargs", kwargs}, {"namespace", nil}}},
	}
}

func (m *manifestBuilder) sourceNode(s *node, created float64) obj {
	p := m.p
	freshness := obj{
		{"warn_after", obj{{"count", 36500}, {"period", "day"}}},
		{"error_after", obj{{"count", 73000}, {"period", "day"}}},
		{"filter", nil},
	}
	return obj{
		{"database", p.name}, {"schema", "main"}, {"name", s.name}, {"resource_type", "source"},
		{"package_name", p.name}, {"path", "models/_sources.yml"}, {"original_file_path", "models/_sources.yml"},
		{"unique_id", m.sourceID(s)}, {"fqn", []string{p.name, "raw", s.name}},
		{"source_name", "raw"}, {"source_description", "The seeds, read back as a source by every third staging model."},
		{"loader", ""}, {"identifier", s.name},
		{"quoting", obj{{"database", nil}, {"schema", nil}, {"identifier", nil}, {"column", nil}}},
		{"loaded_at_field", "loaded_at"}, {"loaded_at_query", nil}, {"freshness", freshness},
		{"external", nil}, {"description", "Seed " + s.name + " as loaded."}, {"columns", obj{}},
		{"meta", obj{}}, {"source_meta", obj{}}, {"tags", emptyList},
		{"config", obj{
			{"enabled", true}, {"event_time", nil}, {"freshness", freshness},
			{"loaded_at_field", "loaded_at"}, {"loaded_at_query", nil}, {"meta", obj{}},
			{"tags", emptyList}, {"static_analysis", nil},
		}},
		{"patch_path", nil},
		{"unrendered_config", obj{{"loaded_at_field", "loaded_at"}, {"freshness", freshness}}},
		{"relation_name", m.relation(s.name)}, {"created_at", created},
		{"unrendered_database", nil}, {"unrendered_schema", "{{ target.schema }}"}, {"doc_blocks", emptyList},
	}
}

func (m *manifestBuilder) macroNode(d macroDef, created float64) obj {
	deps := d.deps
	if deps == nil {
		deps = emptyList
	}
	return obj{
		{"name", d.name}, {"resource_type", "macro"}, {"package_name", d.pkg}, {"path", d.path},
		{"original_file_path", d.path}, {"unique_id", m.macroID(d)}, {"macro_sql", d.sql},
		{"depends_on", obj{{"macros", deps}}}, {"description", ""}, {"meta", obj{}}, {"docs", docs()},
		{"config", obj{{"meta", obj{}}, {"docs", docs()}}}, {"patch_path", nil}, {"arguments", []obj{}},
		{"created_at", created}, {"supported_languages", nil},
	}
}

func (m *manifestBuilder) unitTestNode(n *node, created float64) obj {
	p := m.p
	folder := p.folder(n.layer)
	var given []obj
	for i, r := range n.refs {
		given = append(given, obj{
			{"input", "ref('" + r.name + "')"},
			{"rows", []obj{{{"id", 1}, {"category", categories[i]}, {"amount", 10 * (i + 1)}}}},
			{"format", "dict"}, {"fixture", nil},
		})
	}
	body := fmt.Sprint(n.name, len(n.refs))
	sum := sha256.Sum256([]byte(body))
	return obj{
		{"model", n.name},
		{"given", given},
		{"expect", obj{
			{"rows", []obj{{{"id", 1}, {"category", categories[0]}, {"amount", 10 * len(n.refs)}}}},
			{"format", "dict"}, {"fixture", nil},
		}},
		{"name", unitTestName(n)}, {"resource_type", "unit_test"}, {"package_name", p.name},
		{"path", folder + "/" + p.schemaFile(n.layer)},
		{"original_file_path", "models/" + folder + "/" + p.schemaFile(n.layer)},
		{"unique_id", m.unitTestID(n)}, {"fqn", []string{p.name, folder, n.name, unitTestName(n)}},
		{"description", "The amount is the largest of the parents' amounts."}, {"overrides", nil},
		{"depends_on", obj{{"macros", emptyList}, {"nodes", []string{m.id(n)}}}},
		{"config", obj{{"tags", emptyList}, {"meta", obj{}}, {"enabled", true}, {"static_analysis", nil}}},
		{"checksum", hex.EncodeToString(sum[:])}, {"schema", "main"}, {"created_at", created},
		{"versions", nil}, {"version", nil},
	}
}

// MinMacros is the smallest number of macros WriteManifest writes: the
// project's macro and dbt's macros with their default__ implementations.
const MinMacros = 1 + 2*len(dbtMacros)

// dbtMacros are names of macros of dbt's global project; buildMacros adds
// adapter-dispatched variants and numbered helpers to reach the count asked.
var dbtMacros = [...]string{
	"statement", "noop_statement", "run_query", "is_incremental", "should_full_refresh",
	"should_store_failures", "get_where_subquery", "get_limit_subquery_sql", "test_unique",
	"test_not_null", "test_relationships", "test_accepted_values", "generate_schema_name",
	"generate_alias_name", "generate_database_name", "create_table_as", "create_view_as",
	"get_create_table_as_sql", "get_create_view_as_sql", "drop_relation", "truncate_relation",
	"rename_relation", "get_columns_in_relation", "list_relations_without_caching", "current_timestamp",
	"dateadd", "datediff", "date_trunc", "safe_cast", "type_string", "type_timestamp", "type_int",
	"type_numeric", "hash", "concat", "split_part", "listagg", "any_value", "bool_or", "cast_bool_to_text",
	"get_merge_sql", "get_delete_insert_merge_sql", "get_insert_overwrite_merge_sql", "snapshot_check_strategy",
	"snapshot_timestamp_strategy", "build_snapshot_table", "persist_docs", "alter_column_comment",
	"load_csv_rows", "reset_csv_table", "collect_freshness", "get_show_grant_sql", "apply_grants",
	"materialization_table_default", "materialization_view_default", "materialization_incremental_default",
	"materialization_seed_default", "materialization_snapshot_default", "materialization_test_default",
	"materialization_unit_default",
}

// buildMacros returns count macros: the project's gen_amount, dbt's, their
// default__ and duckdb__ implementations, then numbered helpers.
func buildMacros(project string, count int) []macroDef {
	defs := []macroDef{{pkg: project, name: "gen_amount", path: "macros/gen_amount.sql", sql: strings.TrimSpace(macroSQL)}}
	add := func(d macroDef) bool {
		if len(defs) >= count {
			return false
		}
		defs = append(defs, d)
		return true
	}
	for _, prefix := range []string{"", "default__", "duckdb__"} {
		for _, name := range dbtMacros {
			full := prefix + name
			var deps []string
			sql := fmt.Sprintf("{%% macro %s(relation, kwargs) -%%}\n  {{ return(adapter.dispatch('%s', 'dbt')(relation, kwargs)) }}\n{%%- endmacro %%}", full, name)
			if prefix == "" {
				deps = []string{"macro.dbt.default__" + name}
			} else {
				sql = fmt.Sprintf("{%% macro %s(relation, kwargs) -%%}\n  {%% set sql -%%}\n    select * from {{ relation }} -- %s\n  {%%- endset %%}\n  {{ return(run_query(sql)) }}\n{%%- endmacro %%}", full, name)
			}
			if !add(macroDef{pkg: "dbt", name: full, path: "macros/" + name + ".sql", sql: sql, deps: deps}) {
				return defs
			}
		}
	}
	for i := 1; len(defs) < count; i++ {
		name := fmt.Sprintf("helper_%03d", i)
		defs = append(defs, macroDef{pkg: "dbt", name: name, path: "macros/helpers/" + name + ".sql",
			sql: "{% macro " + name + "() %}{{ return(none) }}{% endmacro %}"})
	}
	return defs
}
