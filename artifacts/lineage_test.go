package artifacts_test

import (
	"bytes"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/internal/dbttest"
)

// olSchemas compiles the OpenLineage RunEvent schema and each facet schema
// (keyed by facet name), resolving every $id to the local copies.
type olSchemas struct {
	event  *jsonschema.Schema
	facets map[string]*jsonschema.Schema
}

func openLineageSchemas(t testing.TB) *olSchemas {
	t.Helper()
	dir := filepath.Join(dbttest.SharedDir(t), "reference", "openlineage")
	files := map[string]string{
		"https://openlineage.io/spec/2-0-2/OpenLineage.json":                                          "OpenLineage.json",
		"https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json":                                "facets/ParentRunFacet.json",
		"https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json":                          "facets/ErrorMessageRunFacet.json",
		"https://openlineage.io/spec/facets/1-1-1/ProcessingEngineRunFacet.json":                      "facets/ProcessingEngineRunFacet.json",
		"https://openlineage.io/spec/facets/1-1-0/SQLJobFacet.json":                                   "facets/SQLJobFacet.json",
		"https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json":                               "facets/JobTypeJobFacet.json",
		"https://openlineage.io/spec/facets/1-1-0/DocumentationJobFacet.json":                         "facets/DocumentationJobFacet.json",
		"https://openlineage.io/spec/facets/1-0-1/DatasourceDatasetFacet.json":                        "facets/DatasourceDatasetFacet.json",
		"https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json":            "facets/OutputStatisticsOutputDatasetFacet.json",
		"https://github.com/dbtorch/dbtorch/blob/main/artifacts/openlineage/DbtorchNodeRunFacet.json": "",
		"https://github.com/dbtorch/dbtorch/blob/main/artifacts/openlineage/DbtorchCostRunFacet.json": "",
	}
	c := jsonschema.NewCompiler()
	c.AssertFormat()
	for url, file := range files {
		path := filepath.Join(dir, file)
		if file == "" {
			path = filepath.Join(dbttest.RepoRoot(t), "artifacts", "openlineage", url[strings.LastIndexByte(url, '/')+1:])
		}
		require.NoError(t, c.AddResource(url, loadJSON(t, path)))
	}
	s := &olSchemas{facets: map[string]*jsonschema.Schema{}}
	var err error
	s.event, err = c.Compile("https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent")
	require.NoError(t, err)
	for name, url := range map[string]string{
		"parent": "ParentRunFacet", "errorMessage": "ErrorMessageRunFacet", "processing_engine": "ProcessingEngineRunFacet",
		"sql": "SQLJobFacet", "jobType": "JobTypeJobFacet", "documentation": "DocumentationJobFacet",
		"dataSource": "DatasourceDatasetFacet", "outputStatistics": "OutputStatisticsOutputDatasetFacet",
	} {
		for u := range files {
			if strings.HasSuffix(u, "/"+url+".json") {
				s.facets[name], err = c.Compile(u)
				require.NoError(t, err)
			}
		}
	}
	s.facets["dbtorch_node"], err = c.Compile("https://github.com/dbtorch/dbtorch/blob/main/artifacts/openlineage/DbtorchNodeRunFacet.json")
	require.NoError(t, err)
	cost, err := c.Compile("https://github.com/dbtorch/dbtorch/blob/main/artifacts/openlineage/DbtorchCostRunFacet.json")
	require.NoError(t, err)
	s.facets["dbtorch_cost"], s.facets["dbtorch_cost_totals"] = cost, cost
	return s
}

// check validates one encoded event and each of its facets; it returns the
// errors found.
func (s *olSchemas) check(t testing.TB, line []byte) []error {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(line))
	require.NoError(t, err)
	var errs []error
	if err := s.event.Validate(doc); err != nil {
		errs = append(errs, err)
	}
	ev := doc.(map[string]any)
	var facetMaps []any
	facetMaps = append(facetMaps, ev["run"].(map[string]any)["facets"], ev["job"].(map[string]any)["facets"])
	for _, key := range []string{"inputs", "outputs"} {
		list, _ := ev[key].([]any)
		for _, d := range list {
			dm := d.(map[string]any)
			facetMaps = append(facetMaps, dm["facets"], dm["inputFacets"], dm["outputFacets"])
		}
	}
	for _, fm := range facetMaps {
		m, _ := fm.(map[string]any)
		for name, facet := range m {
			schema, ok := s.facets[name]
			if !ok {
				errs = append(errs, &unknownFacet{name})
				continue
			}
			if err := schema.Validate(map[string]any{name: facet}); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errs
}

type unknownFacet struct{ name string }

func (u *unknownFacet) Error() string { return "facet without a schema in the test: " + u.name }

func lineageLines(t *testing.T, l *artifacts.Lineage) [][]byte {
	t.Helper()
	fs := afero.NewMemMapFs()
	tr := &artifacts.FileTransport{Path: "/lineage/events.jsonl", Fs: fs}
	l.Transport = tr
	require.NoError(t, l.Report(t.Context(), fixtureRun(t)))
	require.NoError(t, tr.Close(t.Context()))
	data, err := afero.ReadFile(fs, "/lineage/events.jsonl")
	require.NoError(t, err)
	return bytes.Split(bytes.TrimSuffix(data, []byte("\n")), []byte("\n"))
}

func TestLineageEventsValidate(t *testing.T) {
	schemas := openLineageSchemas(t)
	parent := &artifacts.JobRef{Namespace: "airflow", Name: "nightly.dbt", RunID: "3f1d1b2e-8c4a-4b7e-9a51-6b0f0c2d7e11"}
	for _, l := range []*artifacts.Lineage{
		{DatasetNamespace: "duckdb:///data/shop.duckdb"},
		{DatasetNamespace: "postgres://127.0.0.1:5432", JobNamespace: "prod", Parent: parent},
	} {
		lines := lineageLines(t, l)
		require.NotEmpty(t, lines)
		for _, line := range lines {
			for _, err := range schemas.check(t, line) {
				t.Errorf("%v\nevent: %s", err, line)
			}
		}
	}
}

func TestLineageSchemaCheckCanFail(t *testing.T) {
	schemas := openLineageSchemas(t)
	line := lineageLines(t, &artifacts.Lineage{})[1]
	bad := bytes.Replace(line, []byte(`"runId":"`), []byte(`"runId":"not-a-uuid-`), 1)
	assert.NotEmpty(t, schemas.check(t, bad), "a runId that is not a UUID is rejected")
	bad = bytes.Replace(line, []byte(`"_producer":`), []byte(`"producer_":`), 1)
	assert.NotEmpty(t, schemas.check(t, bad), "a facet without _producer is rejected")
}

func TestLineageGolden(t *testing.T) {
	lines := lineageLines(t, &artifacts.Lineage{DatasetNamespace: "duckdb:///data/shop.duckdb"})
	var buf bytes.Buffer
	for _, l := range lines {
		var v any
		require.NoError(t, json.Unmarshal(l, &v))
		pretty, err := json.MarshalIndent(v, "", "  ")
		require.NoError(t, err)
		buf.Write(pretty)
		buf.WriteString("\n")
	}
	golden(t, "lineage.json", buf.Bytes())
}

func TestLineageEvents(t *testing.T) {
	run := fixtureRun(t)
	l := &artifacts.Lineage{DatasetNamespace: "duckdb:///data/shop.duckdb"}
	events, err := l.Events(run)
	require.NoError(t, err)

	build := artifacts.RunUUID(run.ID)
	assert.Equal(t, run.ID, build, "a UUID build ID is the runId as it is")
	first, last := events[0], events[len(events)-1]
	assert.Equal(t, artifacts.EventStart, first.EventType)
	assert.Equal(t, "shop.build", first.Job.Name)
	assert.Equal(t, build, first.Run.RunID)
	assert.Equal(t, artifacts.EventFail, last.EventType, "the build failed")
	assert.Equal(t, build, last.Run.RunID)
	assert.Contains(t, mustMarshal(t, last.Run.Facets["errorMessage"]), "model.shop.customer_revenue")

	type seen struct{ start, end artifacts.EventType }
	byJob := map[string]*seen{}
	var order []string
	for _, ev := range events[1 : len(events)-1] {
		s := byJob[ev.Job.Name]
		if s == nil {
			s = &seen{}
			byJob[ev.Job.Name] = s
		}
		if ev.EventType == artifacts.EventStart {
			assert.Empty(t, s.start, "one START per node")
			assert.Empty(t, s.end, "START before the end")
			s.start = ev.EventType
		} else {
			s.end = ev.EventType
		}
		order = append(order, ev.EventTime)
		assert.Equal(t, artifacts.NodeRunUUID(run.ID, ev.Job.Name), ev.Run.RunID)
		assert.Contains(t, mustMarshal(t, ev.Run.Facets["parent"]), `"runId":"`+build+`"`)
	}
	assert.IsNonDecreasing(t, order)
	assert.Equal(t, map[string]*seen{
		"seed.shop.customers":           {artifacts.EventStart, artifacts.EventComplete},
		"seed.shop.orders":              {artifacts.EventStart, artifacts.EventComplete},
		"model.shop.stg_customers":      {artifacts.EventStart, artifacts.EventComplete},
		"snapshot.shop.orders_snapshot": {artifacts.EventStart, artifacts.EventComplete},
		"model.shop.customer_revenue":   {artifacts.EventStart, artifacts.EventFail},
	}, byJob, "skipped and cached nodes and tests have no events")

	for _, ev := range events {
		switch {
		case ev.Job.Name == "model.shop.customer_revenue" && ev.EventType == artifacts.EventFail:
			var names []string
			for _, in := range ev.Inputs {
				names = append(names, in.Name)
				assert.Equal(t, "duckdb:///data/shop.duckdb", in.Namespace)
			}
			assert.Equal(t, []string{"shop.main.fct_orders", "shop.main.stg_customers", "shop.main.orders"}, names,
				"inputs sorted by unique_id, the ephemeral model traced to the seed behind it")
			require.Len(t, ev.Outputs, 1)
			assert.Equal(t, "shop.main.customer_revenue", ev.Outputs[0].Name)
			assert.Contains(t, mustMarshal(t, ev.Run.Facets["errorMessage"]), "Binder Error")
			assert.Contains(t, mustMarshal(t, ev.Run.Facets["dbtorch_node"]), `"attempts":2`)
			assert.Contains(t, mustMarshal(t, ev.Job.Facets["documentation"]), "Revenue per customer.")
		case ev.Job.Name == "model.shop.stg_customers" && ev.EventType == artifacts.EventStart:
			require.Len(t, ev.Inputs, 2)
			assert.Equal(t, "shop.main.customers", ev.Inputs[0].Name)
			assert.Equal(t, "shop.main.raw_events", ev.Inputs[1].Name, "a source is named by its identifier")
		case ev.Job.Name == "seed.shop.customers" && ev.EventType == artifacts.EventComplete:
			assert.Contains(t, mustMarshal(t, ev.Outputs[0].OutputFacets), `"rowCount":5`)
			assert.Contains(t, mustMarshal(t, ev.Run.Facets["dbtorch_node"]), `"rows_affected":5`)
		}
	}

	// A build ID that is not a UUID still gives a valid, stable runId.
	assert.Equal(t, artifacts.RunUUID("build-42"), artifacts.RunUUID("build-42"))
	assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-5[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, artifacts.RunUUID("build-42"))
	assert.NotEqual(t, artifacts.NodeRunUUID("b", "model.x.a"), artifacts.NodeRunUUID("b", "model.x.b"))

	// A successful build completes.
	run.Results = run.Results[:2]
	events, err = l.Events(run)
	require.NoError(t, err)
	assert.Equal(t, artifacts.EventComplete, events[len(events)-1].EventType)
}

func mustMarshal(t testing.TB, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

func TestDatasetNaming(t *testing.T) {
	tests := []struct {
		adapter                 string
		conn                    artifacts.Connection
		database, schema, table string
		wantNS, wantName        string
	}{
		{"postgres", artifacts.Connection{Host: "db.internal", Port: 5433}, "shop", "analytics", "orders", "postgres://db.internal:5433", "shop.analytics.orders"},
		{"postgres", artifacts.Connection{Host: "127.0.0.1"}, "shop", "main", `"orders"`, "postgres://127.0.0.1:5432", "shop.main.orders"},
		{"duckdb", artifacts.Connection{Path: "/data/shop.duckdb"}, "shop", "main", "orders", "duckdb:///data/shop.duckdb", "shop.main.orders"},
		{"snowflake", artifacts.Connection{Account: "MyOrg-MyAccount"}, "DB", "SCH", "T", "snowflake://myorg-myaccount", "DB.SCH.T"},
		{"bigquery", artifacts.Connection{}, "my-project", "dataset", "table", "bigquery", "my-project.dataset.table"},
		{"redshift", artifacts.Connection{Host: "cluster.eu-west-1"}, "dev", "public", "t", "redshift://cluster.eu-west-1:5439", "dev.public.t"},
		{"mysql", artifacts.Connection{Host: "h"}, "", "shop", "t", "mysql://h:3306", "shop.t"},
		{"trino", artifacts.Connection{Host: "h", Port: 443}, "hive", "s", "t", "trino://h:443", "hive.s.t"},
		{"sqlserver", artifacts.Connection{Host: "h"}, "db", "dbo", "t", "sqlserver://h:1433", "db.dbo.t"},
		{"postgres", artifacts.Connection{Host: "::1", Port: 5432}, "d", "s", "t", "postgres://[::1]:5432", "d.s.t"},
	}
	for _, tt := range tests {
		t.Run(tt.adapter+"/"+tt.wantNS, func(t *testing.T) {
			assert.Equal(t, tt.wantNS, artifacts.DatasetNamespace(tt.adapter, tt.conn))
			assert.Equal(t, tt.wantName, artifacts.DatasetName(tt.adapter, tt.database, tt.schema, tt.table))
		})
	}
}

func TestFileTransportAppends(t *testing.T) {
	fs := afero.NewMemMapFs()
	tr := &artifacts.FileTransport{Path: "/x/events.jsonl", Fs: fs}
	require.NoError(t, fs.MkdirAll("/x", 0o755))
	l := &artifacts.Lineage{Transport: tr}
	run := fixtureRun(t)
	require.NoError(t, l.Report(t.Context(), run))
	require.NoError(t, tr.Close(t.Context()))
	require.NoError(t, l.Report(t.Context(), run), "a closed FileTransport opens the file again")
	require.NoError(t, tr.Close(t.Context()))
	require.NoError(t, tr.Close(t.Context()), "Close is idempotent")
	data, err := afero.ReadFile(fs, "/x/events.jsonl")
	require.NoError(t, err)
	events, err := l.Events(run)
	require.NoError(t, err)
	assert.Equal(t, 2*len(events), bytes.Count(data, []byte("\n")), "two builds appended, one event per line")

	require.Error(t, (&artifacts.Lineage{}).Report(t.Context(), run), "no transport")
	bad := &artifacts.Lineage{Transport: &artifacts.FileTransport{Path: "/missing/dir/e.jsonl", Fs: afero.NewReadOnlyFs(afero.NewMemMapFs())}}
	require.Error(t, bad.Report(t.Context(), run))
}
