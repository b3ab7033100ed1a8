package selector

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/internal/projgen"
	"github.com/dbtorch/dbtorch/manifest"
)

var (
	update = flag.Bool("update", false, "rebuild testdata/selector/shop_run_results.json from a real dbt build")
	full   = flag.Bool("selector-full", false, "differential tests: also run the long random suites (about 250 more expressions)")
)

// nRandom returns n with -selector-full, else short.
func nRandom(short, n int) int {
	if *full {
		return n
	}
	return short
}

// project is a parsed copy of a dbt project with the resolvers over it.
type project struct {
	dir    string
	env    []string
	m      *manifest.Manifest
	raw    []byte // manifest.json
	native *Native
	// nativeFS globs path: criteria on the project's real files
	nativeFS *Native
	dbt      *Session
}

// prepare starts a dbt worker on dir (deps and parse once) and returns
// both resolvers over the manifest it wrote.
func prepare(t testing.TB, dir string, env []string) *project {
	t.Helper()
	d := NewDBTLs(dbttest.DBT(t), dir)
	d.ProfilesDir, d.Env = dir, env
	start := time.Now()
	sess, err := d.Start(t.Context())
	require.NoError(t, err)
	t.Cleanup(func() { _ = sess.Close() })
	t.Logf("dbt worker ready on %s in %s", filepath.Base(dir), time.Since(start).Round(time.Millisecond))
	raw, err := os.ReadFile(sess.ManifestPath())
	require.NoError(t, err)
	m, err := manifest.Parse(raw)
	require.NoError(t, err)
	n := nativeOf(t, m)
	return &project{dir: dir, env: env, m: m, raw: raw, native: n, nativeFS: n.WithProjectFS(os.DirFS(dir)), dbt: sess}
}

// shopProject copies testdata/shop with the selector overlay (exposures,
// groups, access, a contract, an empty and a disabled model, an analysis,
// YAML selectors) into a temp dir.
func shopProject(t testing.TB) (string, []string) {
	t.Helper()
	dir := dbttest.CopyProject(t, "shop")
	overlay := filepath.Join(dbttest.RepoRoot(t), "testdata", "selector", "shop_overlay")
	require.NoError(t, os.CopyFS(dir, os.DirFS(overlay)))
	return dir, dbttest.Env(t, dir)
}

// edit applies the state: edits: body, config, relation, macro, contract,
// seed contents, a new and a removed model.
func edit(t testing.TB, dir string) {
	t.Helper()
	appendTo := func(rel, text string) {
		f, err := os.OpenFile(filepath.Join(dir, rel), os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.WriteString(text)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	replace := func(rel, old, new string) {
		p := filepath.Join(dir, rel)
		data, err := os.ReadFile(p)
		require.NoError(t, err)
		require.Contains(t, string(data), old, rel)
		require.NoError(t, os.WriteFile(p, []byte(strings.Replace(string(data), old, new, 1)), 0o644))
	}
	replace("models/semantic/_semantic.yml", "label: Total revenue", "label: Revenue")           // metric
	replace("models/semantic/_semantic.yml", "agg: count", "agg: count_distinct")                // semantic model
	appendTo("models/staging/stg_orders.sql", "\n-- edited body\n")                              // body
	replace("models/extras/_extras.yml", "tier: 1", "tier: 2\n      alias: gr_alias")            // config + relation
	replace("macros/cents_to_dollars.sql", "{%- endmacro %}", "{# edited #}{%- endmacro %}")     // macro
	replace("models/extras/_extras.yml", "data_type: varchar", "data_type: text")                // contract
	appendTo("seeds/payments.csv", "")                                                           // unchanged seed
	replace("dbt_project.yml", "+tags: [\"raw\"]", "+tags: [\"raw\"]\n    +quote_columns: true") // seed config
	require.NoError(t, os.WriteFile(filepath.Join(dir, "models/extras/brand_new.sql"),
		[]byte("select * from {{ ref('stg_orders') }}\n"), 0o644)) // new
	require.NoError(t, os.Remove(filepath.Join(dir, "models/extras/to_remove.sql"))) // removed
}

type dcase struct {
	name string
	opts Options
}

func sel(s ...string) Options { return Options{Select: s} }

// handCases are hand-written expressions for every method and operator on
// the shop project; several must fail as dbt fails.
func handCases() []dcase {
	var out []dcase
	add := func(o Options) {
		b, _ := json.Marshal(o)
		out = append(out, dcase{name: string(b), opts: o})
	}
	for _, s := range []string{
		// default method inference and fqn rules
		"stg_orders", "stg_orders+", "+fct_orders", "1+customer_revenue", "customer_revenue+1", "2+revenue_by_segment",
		"+dim_customers+", "@stg_orders", "@int_order_payments", "0+fct_orders", "fct_orders+0", "staging", "marts.core",
		"shop.marts", "shop", "shop_pkg", "stg_*", "*.stg_*", "staging.*", "shop.staging.stg_o*", "marts.*.dim_*",
		"dim_customers", "dim_customers.v1", "dim_customers_v2", "dim_customers.v2+", "v1", "marts.core.dim_customers.v1",
		"fct_orders_sums_payments", "fct_orders.fct_orders_sums_payments", "revenue_dashboard", "nope", "*", "stg_[ob]*",
		"stg_?rders", "[!s]*", "s[a-z]g_*", "*[", "models/staging", "models/staging/stg_orders.sql", "stg_orders.sql",
		"flaky_events.py", "customers.csv", "an_orders",
		// methods
		"fqn:*", "fqn:stg_orders", "fqn:shop_pkg.*", "tag:staging", "tag:marts", "tag:fin*", "tag:critical", "tag:bi",
		"tag:seed_check", "tag:nope", "group:finance_team", "group:*_team", "access:private", "access:protected",
		"access:public", "source:raw", "source:raw.events", "source:shop.crm.customer_notes", "source:*", "source:*.events",
		"source:raw+", "+source:crm", "exposure:revenue_dashboard", "exposure:shop.*", "+exposure:events_app",
		"metric:*", "semantic_model:*", "saved_query:*", "unit_test:*", "unit_test:fct_orders_sums_payments",
		"unit_test:shop.fct*", "path:models/marts", "path:models/marts/*", "path:models/**/*.yml", "path:models/staging/_staging.yml",
		"path:models/extras/_extras.yml", "path:seeds", "path:tests", "path:**", "path:models/", "path:*", "path:analyses",
		"path:dbt_project.yml", "path:models/*/stg_*.sql", "file:stg_orders.sql", "file:stg_orders", "file:_core.yml",
		"file:*.py", "file:*.csv", "package:shop", "package:this", "package:shop_pkg", "package:shop*",
		"config.materialized:view", "config.materialized:table", "config.materialized:ephemeral", "config.materialized:incremental",
		"config.tags:finance", "config.meta.owner:alice", "config.meta.tier:1", "config.severity:warn", "config.severity:ERROR",
		"config.enabled:true", "config.enabled:TRUE", "config.enabled:false", "config.contract.enforced:true",
		"config.unique_key:payment_id", "config.group:finance_team", "config:view", "config.nope:x", "config.access:private",
		"resource_type:model", "resource_type:seed", "resource_type:snapshot", "resource_type:test", "resource_type:unit_test",
		"resource_type:source", "resource_type:exposure", "resource_type:analysis", "resource_type:macro",
		"test_name:unique", "test_name:not_null", "test_name:relationships", "test_name:accepted_values",
		"test_name:fct_orders_sums_payments", "test_name:*", "test_type:generic", "test_type:singular", "test_type:unit",
		"test_type:data", "test_type:schema", "test_type:a", "test_type:un", "test_type:s", "version:latest", "version:old",
		"version:none", "version:prerelease", "fqn.x:stg_orders", "tag.x:staging",
		// set operators
		"stg_orders stg_customers", "tag:staging,config.materialized:view", "tag:marts,resource_type:model fct_orders",
		"+fct_orders,tag:staging", "@fct_orders,resource_type:test", "stg_orders+,stg_customers+", "", " ", "a  b",
		"tag:staging,", ",", "+", "@", "stg_orders++",
		// errors dbt raises too
		"bogus:x", "@stg_orders+", "resource_type:nope", "test_type:xyz", "version:newest", "source:a.b.c.d",
		"exposure:a.b.c", "unit_test:a.b.c", "state:modified", "result:error", "source_status:fresher", "path:",
		"path:/abs", "path:.", "path:mo**", "Tag:x",
		// metrics, semantic models, saved queries
		"metric:total_revenue", "metric:shop.*", "+metric:order_count", "semantic_model:orders_sm+", "saved_query:*",
		"saved_query:revenue_by_day", "+saved_query:revenue_by_day", "tag:kpi", "@metric:total_revenue",
		"resource_type:metric", "resource_type:semantic_model", "resource_type:saved_query", "fqn:total_revenue",
		"total_revenue", "orders_sm", "path:models/semantic", "file:_semantic.yml", "config.group:finance_team",
		"fct_orders+1", "metric:a.b.c", "semantic_model:x.y.z", "saved_query:1.2.3",
	} {
		add(sel(s))
	}
	// several --select, --exclude, indirect selection, resource types, YAML selectors
	add(Options{Select: []string{"stg_orders", "stg_customers+"}})
	add(Options{Exclude: []string{"tag:staging"}})
	add(Options{Select: []string{"+fct_orders"}, Exclude: []string{"stg_payments"}})
	add(Options{Select: []string{"tag:marts"}, Exclude: []string{"dim_customers", "tag:finance"}})
	add(Options{Select: []string{"fct_orders+"}, Exclude: []string{"bogus:x"}})
	for _, mode := range []IndirectMode{Eager, Cautious, Buildable, Empty} {
		for _, s := range []string{"fct_orders", "dim_customers", "stg_orders", "+fct_orders", "fct_orders dim_customers",
			"fct_orders,tag:marts", "stg_orders stg_customers", "contracted", "grouped_revenue+", "source:raw+"} {
			add(Options{Select: []string{s}, Indirect: mode})
		}
		add(Options{Select: []string{"tag:marts"}, Exclude: []string{"dim_customers"}, Indirect: mode})
		add(Options{Exclude: []string{"fct_orders"}, Indirect: mode})
		add(Options{Selector: "buildable_orders", Indirect: mode})
	}
	for _, rt := range [][]manifest.ResourceType{{"model"}, {"test", "unit_test"}, {"all"}, {"analysis"}, {"default", "analysis"}, {"source", "exposure"}} {
		add(Options{Select: []string{"+fct_orders+"}, ResourceTypes: rt})
		add(Options{ResourceTypes: rt})
	}
	add(Options{ExcludeResourceTypes: []manifest.ResourceType{"test"}})
	add(Options{ExcludeResourceTypes: []manifest.ResourceType{"default"}})
	add(Options{ResourceTypes: []manifest.ResourceType{"Model"}})
	add(Options{ResourceTypes: []manifest.ResourceType{"operation"}})
	add(Options{ResourceTypes: []manifest.ResourceType{"all"}, ExcludeResourceTypes: []manifest.ResourceType{"model", "source"}})
	for _, name := range []string{"staging_only", "marts_no_finance", "cautious_core", "nested", "with_parents", "buildable_orders", "nope"} {
		add(Options{Selector: name})
	}
	add(Options{Selector: "staging_only", Select: []string{"fct_orders"}})
	return out
}

// stateCases are state: and result: expressions for the edited project.
func stateCases(stateDir string) []dcase {
	var out []dcase
	add := func(o Options) {
		o.StatePath = stateDir
		b, _ := json.Marshal(o)
		out = append(out, dcase{name: string(b), opts: o})
	}
	for _, v := range []string{"new", "old", "modified", "unmodified", "modified.body", "modified.configs",
		"modified.persisted_descriptions", "modified.relation", "modified.macros", "modified.contract", "changed"} {
		add(sel("state:" + v))
		add(sel("state:" + v + "+"))
		add(Options{Select: []string{"state:" + v}, Indirect: Cautious})
		add(Options{Select: []string{"state:" + v + ",resource_type:model"}})
	}
	for _, v := range []string{"success", "error", "fail", "pass", "skipped", "warn", "nope"} {
		add(sel("result:" + v))
		add(sel("result:" + v + "+"))
		add(sel("+result:" + v))
	}
	add(Options{Select: []string{"state:modified+", "result:error+"}})
	add(Options{Select: []string{"state:modified+"}, Exclude: []string{"result:success"}})
	add(Options{Select: []string{"result:fail+"}, Indirect: Buildable})
	add(Options{Select: []string{"state:new state:modified.contract"}, Indirect: Empty})
	for _, s := range []string{"source_status:fresher", "source_status:fresher+", "+source_status:fresher+", "source_status:stale",
		"source_status:fresher state:modified", "source_status:fresher,tag:nope", "source_status:fresher+,resource_type:model"} {
		add(sel(s))
	}
	return out
}

// randomCases generates n expressions from the manifest's own values:
// methods x values x graph operators x set operators x exclude x indirect
// selection modes x resource types.
func randomCases(m *manifest.Manifest, seed int64, n int, extra []string) []dcase {
	r := rand.New(rand.NewSource(seed))
	var names, tags, paths, files, pkgs []string
	addU := func(dst *[]string, v string) {
		if v != "" {
			*dst = append(*dst, v)
		}
	}
	m.All(func(n *manifest.Node) bool {
		if n.ResourceType != manifest.Source {
			addU(&names, n.Name)
		}
		for _, t := range n.Tags {
			addU(&tags, t)
		}
		if n.OriginalFilePath != "" {
			addU(&paths, filepath.Dir(n.OriginalFilePath))
			addU(&files, filepath.Base(n.OriginalFilePath))
		}
		addU(&pkgs, n.PackageName)
		return true
	})
	for _, s := range []*[]string{&names, &tags, &paths, &files, &pkgs} {
		sort.Strings(*s)
		*s = slices.Compact(*s)
	}
	pick := func(s []string) string {
		if len(s) == 0 {
			return "x"
		}
		return s[r.Intn(len(s))]
	}
	atom := func() string {
		var a string
		switch r.Intn(14) {
		case 0, 1, 2:
			a = pick(names)
		case 3:
			a = "tag:" + pick(tags)
		case 4:
			a = "path:" + pick(paths)
		case 5:
			a = "file:" + pick(files)
		case 6:
			a = "package:" + pick(pkgs)
		case 7:
			a = "config.materialized:" + pick([]string{"view", "table", "ephemeral", "incremental", "seed", "test"})
		case 8:
			a = "resource_type:" + pick([]string{"model", "seed", "test", "snapshot", "source", "unit_test", "exposure"})
		case 9:
			a = "test_type:" + pick([]string{"generic", "singular", "unit", "data"})
		case 10:
			a = "source:" + pick([]string{"*", "raw", "raw.*", "*.events", "crm"})
		case 11:
			a = pick([]string{"fqn:*", "test_name:unique", "test_name:not_null", "test_name:relationships", "version:latest", "access:protected"})
		case 12:
			n := pick(names)
			if len(n) > 3 {
				a = n[:len(n)/2] + "*"
			} else {
				a = n
			}
		default:
			a = pick(extra)
		}
		switch r.Intn(8) {
		case 0:
			a = "+" + a
		case 1:
			a = fmt.Sprint(r.Intn(3)+1) + "+" + a
		case 2:
			a = "@" + a
			return a
		}
		switch r.Intn(6) {
		case 0:
			a += "+"
		case 1:
			a += "+" + fmt.Sprint(r.Intn(3)+1)
		}
		return a
	}
	expr := func() string {
		var union []string
		for i := 0; i < 1+r.Intn(3); i++ {
			var inter []string
			for j := 0; j < 1+r.Intn(2); j++ {
				inter = append(inter, atom())
			}
			union = append(union, strings.Join(inter, ","))
		}
		return strings.Join(union, " ")
	}
	modes := []IndirectMode{"", Eager, Cautious, Buildable, Empty}
	var out []dcase
	for i := 0; i < n; i++ {
		o := Options{Select: []string{expr()}, Indirect: modes[r.Intn(len(modes))]}
		if r.Intn(4) == 0 {
			o.Select = append(o.Select, expr())
		}
		if r.Intn(3) == 0 {
			o.Exclude = []string{expr()}
		}
		if r.Intn(6) == 0 {
			o.ResourceTypes = []manifest.ResourceType{manifest.ResourceType(pick([]string{"model", "test", "all", "seed"}))}
		}
		b, _ := json.Marshal(o)
		out = append(out, dcase{name: string(b), opts: o})
	}
	return out
}

// beforeDBT reports whether the dbt-core under test (make compat runs
// these tests on each supported minor version) is older than major.minor.
func beforeDBT(t testing.TB, major, minor int) bool {
	t.Helper()
	v, ok := parseVersion(dbttest.DBTVersion(t))
	require.True(t, ok, "dbt-core version")
	return !v.atLeast(major, minor, 0)
}

// withoutNoOps drops the "no-op" results (exposures, dbt-core 1.10 on) from
// run results recorded by the pinned dbt: older dbt rejects the status
// when it reads --state, and never wrote it.
func withoutNoOps(t testing.TB, data []byte) []byte {
	t.Helper()
	var rr map[string]any
	require.NoError(t, json.Unmarshal(data, &rr))
	results, _ := rr["results"].([]any)
	kept := results[:0]
	for _, r := range results {
		if r.(map[string]any)["status"] != "no-op" {
			kept = append(kept, r)
		}
	}
	rr["results"] = kept
	out, err := json.Marshal(rr)
	require.NoError(t, err)
	return out
}

// differential runs every case through dbt (one batch) and Native and
// requires identical answers: the same set, or both an error. Native may
// instead refuse (*VersionError) where its dialect for the manifest's
// dbt-core version says it does (state: on 1.8), never elsewhere.
func differential(t *testing.T, p *project, cases []dcase) {
	t.Helper()
	agree, errs, empties, refused := 0, 0, 0, 0
	mayRefuse := dialectFor(p.m.Metadata.DBTVersion).noState
	var dbtTime, nativeTime time.Duration
	for _, c := range cases {
		t0 := time.Now()
		wIDs, wErr := p.dbt.Resolve(t.Context(), c.opts)
		t1 := time.Now()
		got, gotErr := p.native.Resolve(context.Background(), c.opts)
		dbtTime += t1.Sub(t0)
		nativeTime += time.Since(t1)
		var dbtErr *DBTError
		if wErr != nil && !errors.As(wErr, &dbtErr) {
			require.NoError(t, wErr, "the dbt worker failed")
		}
		var ve *VersionError
		switch {
		case errors.As(gotErr, &ve):
			if !mayRefuse {
				t.Errorf("%s: native refuses on dbt-core %s: %v", c.name, p.m.Metadata.DBTVersion, gotErr)
			}
			refused++
		case wErr != nil && gotErr != nil:
			agree++
			errs++
		case wErr != nil:
			t.Errorf("%s: dbt fails (%.300s), native selects %d nodes", c.name, wErr, len(got))
		case gotErr != nil:
			t.Errorf("%s: native fails (%v), dbt selects %v", c.name, gotErr, wIDs)
		default:
			if withFS, err := p.nativeFS.Resolve(context.Background(), c.opts); err != nil || !cmp.Equal(wIDs, withFS) {
				t.Errorf("%s: native with the project's files differs from dbt: %v\n%s", c.name, err, cmp.Diff(wIDs, withFS))
			}
			if diff := cmp.Diff(wIDs, got); diff != "" {
				t.Errorf("%s: native differs from dbt (-dbt +native):\n%s", c.name, diff)
			} else {
				agree++
				if len(got) == 0 {
					empties++
				}
			}
		}
	}
	t.Logf("dbt-core %s: %d/%d expressions agree with dbt ls (%d: both fail, %d: both empty), %d refused by native (VersionError); dbt worker %s, native %s",
		p.m.Metadata.DBTVersion, agree, len(cases), errs, empties, refused, dbtTime.Round(time.Millisecond), nativeTime.Round(time.Microsecond))
}

func sample(cases []dcase, n int) []dcase {
	if testing.Short() && len(cases) > n {
		step := len(cases) / n
		var out []dcase
		for i := 0; i < len(cases); i += step {
			out = append(out, cases[i])
		}
		return out
	}
	return cases
}

// TestDifferentialShop checks hand-written and random expressions, then
// state: and result: expressions against an edited copy, on the shop
// project with the selector overlay.
func TestDifferentialShop(t *testing.T) {
	t.Parallel()
	dir, env := shopProject(t)
	base := prepare(t, dir, env)

	extra := []string{"exposure:*", "group:finance_team", "access:private", "tag:bi", "unit_test:*", "config.meta.owner:alice", "contracted", "grouped_revenue"}
	cases := append(handCases(), randomCases(base.m, 1, nRandom(60, 160), extra)...)
	t.Run("base", func(t *testing.T) { differential(t, base, sample(cases, 40)) })
	t.Run("one dbt ls process", func(t *testing.T) {
		cold := NewDBTLs(dbttest.DBT(t), dir)
		cold.ProfilesDir, cold.Env = dir, env
		o := Options{Select: []string{"+fct_orders"}, Exclude: []string{"stg_payments"}, Indirect: Cautious}
		want, err := cold.Resolve(t.Context(), o)
		require.NoError(t, err)
		got, err := base.native.Resolve(t.Context(), o)
		require.NoError(t, err)
		require.Empty(t, cmp.Diff(want, got))
		require.NotEmpty(t, got)
		_, err = cold.Resolve(t.Context(), sel("bogus:x"))
		var de *DBTError
		require.ErrorAs(t, err, &de)
	})

	// state: the base manifest and a recorded run's results
	stateDir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(stateDir, "manifest.json"), base.raw, 0o644))
	rr, err := os.ReadFile(filepath.Join(dbttest.RepoRoot(t), "testdata", "selector", "shop_run_results.json"))
	require.NoError(t, err, "run `make golden-selector` to record a run")
	if beforeDBT(t, 1, 10) {
		rr = withoutNoOps(t, rr)
	}
	require.NoError(t, os.WriteFile(filepath.Join(stateDir, "run_results.json"), rr, 0o644))
	copyFile := func(name, dst string) {
		data, err := os.ReadFile(filepath.Join(dbttest.RepoRoot(t), "testdata", "selector", name))
		require.NoError(t, err, "run `make golden-selector` to record")
		require.NoError(t, os.WriteFile(dst, data, 0o644))
	}
	copyFile("shop_sources_previous.json", filepath.Join(stateDir, "sources.json"))

	editedDir, editedEnv := shopProject(t)
	edit(t, editedDir)
	edited := prepare(t, editedDir, editedEnv)
	// dbt reads the current freshness results from its target directory
	curSources := filepath.Join(filepath.Dir(edited.dbt.ManifestPath()), "sources.json")
	copyFile("shop_sources_current.json", curSources)
	cur, err := LoadSourceFreshness(curSources)
	require.NoError(t, err)
	nState := nRandom(10, 40)
	sc := append(stateCases(stateDir), randomCases(edited.m, 2, nState, []string{"state:modified", "state:new", "result:error", "result:fail", "state:modified.body", "result:success"})...)
	for i := range sc {
		sc[i].opts.StatePath = stateDir
		sc[i].opts.CurrentSources = cur
	}
	t.Run("edits are seen", func(t *testing.T) {
		for sub, want := range map[string][]string{
			"modified":          {"model.shop.stg_orders", "model.shop.stg_payments", "model.shop.grouped_revenue", "model.shop.contracted", "model.shop.brand_new", "metric.shop.total_revenue", "semantic_model.shop.orders_sm", "seed.shop.payments"},
			"modified.body":     {"model.shop.stg_orders"},
			"modified.macros":   {"model.shop.stg_payments"},
			"modified.configs":  {"model.shop.grouped_revenue", "seed.shop.payments"},
			"modified.relation": {"model.shop.grouped_revenue"},
			"modified.contract": {"model.shop.contracted"},
			"new":               {"model.shop.brand_new"},
		} {
			got, err := edited.native.Resolve(t.Context(), Options{Select: []string{"state:" + sub}, StatePath: stateDir, Indirect: Empty})
			if dialectFor(edited.m.Metadata.DBTVersion).noState {
				require.ErrorIs(t, err, ErrUnsupportedVersion, "state: is refused on dbt-core %s", edited.m.Metadata.DBTVersion)
				continue
			}
			require.NoError(t, err)
			assert.Subset(t, got, want, sub)
		}
		got, err := edited.native.Resolve(t.Context(), Options{Select: []string{"result:error result:fail result:warn"}, StatePath: stateDir, Indirect: Empty})
		require.NoError(t, err)
		assert.Len(t, got, 3, "the recorded run has one error, one failure and one warning")
		got, err = edited.native.Resolve(t.Context(), Options{Select: []string{"source_status:fresher"}, StatePath: stateDir, CurrentSources: cur})
		require.NoError(t, err)
		assert.Equal(t, []string{"source.shop.raw.events"}, got, "newer rows arrived in raw.events")
	})
	t.Run("state", func(t *testing.T) { differential(t, edited, sample(sc, 20)) })
}

// TestDifferentialGenerated checks expressions on a generated project of a
// few hundred models.
func TestDifferentialGenerated(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "gen")
	require.NoError(t, projgen.Write(dir, projgen.Options{Models: 200, Seed: 7, Legacy: beforeDBT(t, 1, 10)}))
	p := prepare(t, dir, dbttest.Env(t, dir))
	var cases []dcase
	for _, s := range []string{"*", "tag:*", "+tag:mart*", "source:*+", "config.materialized:ephemeral+",
		"test_type:unit", "test_name:relationships", "resource_type:seed+1", "@resource_type:seed", "path:models"} {
		cases = append(cases, dcase{name: s, opts: sel(s)})
	}
	for _, mode := range []IndirectMode{Cautious, Buildable} {
		cases = append(cases, dcase{name: "marts cautious/buildable", opts: Options{Select: []string{"+tag:marts,resource_type:model"}, Indirect: mode}})
	}
	cases = append(cases, randomCases(p.m, 3, nRandom(20, 45), []string{"fqn:*", "source:raw.*"})...)
	differential(t, p, sample(cases, 20))
}

// TestRecordRunResults rebuilds testdata/selector/shop_run_results.json from
// a real `dbt build` of the shop project with a broken model and a failing
// test (run by `make golden-selector`).
func TestRecordRunResults(t *testing.T) {
	if !*update {
		t.Skip("run with -update (make golden-selector) to record")
	}
	dir, env := shopProject(t)
	dbttest.Parse(t, dir, env)
	_, _ = dbttest.Run(t, dir, env, "build", "--vars", "{broken_model: true, selector_fail: true}")
	data, err := os.ReadFile(filepath.Join(dir, "target", "run_results.json"))
	require.NoError(t, err)
	rr, err := ParseRunResults(data)
	require.NoError(t, err)
	statuses := map[string]bool{}
	for _, r := range rr.Results {
		statuses[r.Status] = true
	}
	for _, s := range []string{"success", "error", "skipped", "pass", "fail", "warn"} {
		require.True(t, statuses[s], "the recorded run has no %q result", s)
	}
	// dbt validates the whole file when it reads --state: keep it as written.
	out := filepath.Join(dbttest.RepoRoot(t), "testdata", "selector")
	require.NoError(t, os.WriteFile(filepath.Join(out, "shop_run_results.json"), data, 0o644))

	// source freshness before and after newer rows arrive in raw.events
	freshness := func(name string) {
		_, _ = dbttest.Run(t, dir, env, "source", "freshness")
		data, err := os.ReadFile(filepath.Join(dir, "target", "sources.json"))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(out, name), data, 0o644))
	}
	freshness("shop_sources_previous.json")
	f, err := os.OpenFile(filepath.Join(dir, "seeds", "raw_events.csv"), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("99,1,page_view,2024-06-01 10:00:00\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	_, err = dbttest.Run(t, dir, env, "seed", "--select", "raw_events", "--full-refresh")
	require.NoError(t, err)
	freshness("shop_sources_current.json")
}
