package artifacts

import (
	"cmp"
	"context"
	"crypto/sha1"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dbtorch/dbtorch/internal/runresults"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/cost"
)

// OpenLineage identifiers dbtorch's events carry.
const (
	// RunEventSchemaURL is the schemaURL of every event Lineage emits.
	RunEventSchemaURL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
	// DefaultProducer is the producer URI of dbtorch's events and facets.
	DefaultProducer = "https://github.com/dbtorch/dbtorch"
	// NodeRunFacetSchemaURL is the _schemaURL of the "dbtorch_node" run
	// facet: dbt's outcome of the node (status, timing, adapter response,
	// attempts). Its schema is artifacts/openlineage/DbtorchNodeRunFacet.json.
	NodeRunFacetSchemaURL = "https://github.com/dbtorch/dbtorch/blob/main/artifacts/openlineage/DbtorchNodeRunFacet.json#/$defs/DbtorchNodeRunFacet"
	// CostRunFacetSchemaURL is the _schemaURL of the "dbtorch_cost" run
	// facet of a node's COMPLETE or FAIL event: what the warehouse
	// reported for it (orchestrator.NodeResult.Cost), present when it
	// reported anything. Its schema is
	// artifacts/openlineage/DbtorchCostRunFacet.json.
	CostRunFacetSchemaURL = "https://github.com/dbtorch/dbtorch/blob/main/artifacts/openlineage/DbtorchCostRunFacet.json#/$defs/DbtorchCostRunFacet"
	// CostTotalsRunFacetSchemaURL is the _schemaURL of the
	// "dbtorch_cost_totals" run facet of the build's COMPLETE or FAIL
	// event: orchestrator.Run.Totals, what the nodes that ran cost and
	// what the cache saved.
	CostTotalsRunFacetSchemaURL = "https://github.com/dbtorch/dbtorch/blob/main/artifacts/openlineage/DbtorchCostRunFacet.json#/$defs/DbtorchCostTotalsRunFacet"
)

// Facet schema URLs of the standard facets Lineage writes.
const (
	parentFacetURL     = "https://openlineage.io/spec/facets/1-2-0/ParentRunFacet.json#/$defs/ParentRunFacet"
	errorFacetURL      = "https://openlineage.io/spec/facets/1-0-1/ErrorMessageRunFacet.json#/$defs/ErrorMessageRunFacet"
	engineFacetURL     = "https://openlineage.io/spec/facets/1-1-1/ProcessingEngineRunFacet.json#/$defs/ProcessingEngineRunFacet"
	sqlFacetURL        = "https://openlineage.io/spec/facets/1-1-0/SQLJobFacet.json#/$defs/SQLJobFacet"
	jobTypeFacetURL    = "https://openlineage.io/spec/facets/2-0-4/JobTypeJobFacet.json#/$defs/JobTypeJobFacet"
	docFacetURL        = "https://openlineage.io/spec/facets/1-1-0/DocumentationJobFacet.json#/$defs/DocumentationJobFacet"
	dataSourceFacetURL = "https://openlineage.io/spec/facets/1-0-1/DatasourceDatasetFacet.json#/$defs/DatasourceDatasetFacet"
	outputStatsURL     = "https://openlineage.io/spec/facets/1-0-2/OutputStatisticsOutputDatasetFacet.json#/$defs/OutputStatisticsOutputDatasetFacet"
)

// EventType is an OpenLineage run state transition.
type EventType string

// The event types Lineage emits.
const (
	EventStart    EventType = "START"
	EventComplete EventType = "COMPLETE"
	EventFail     EventType = "FAIL"
	EventAbort    EventType = "ABORT"
)

// RunEvent is an OpenLineage RunEvent (spec 2-0-2).
type RunEvent struct {
	EventType EventType       `json:"eventType"`
	EventTime string          `json:"eventTime"`
	Run       LineageRun      `json:"run"`
	Job       LineageJob      `json:"job"`
	Inputs    []InputDataset  `json:"inputs"`
	Outputs   []OutputDataset `json:"outputs"`
	Producer  string          `json:"producer"`
	SchemaURL string          `json:"schemaURL"`
}

// Facets maps facet names to facet objects; every facet carries _producer
// and _schemaURL.
type Facets map[string]any

// LineageRun is an event's run: its UUID and run facets.
type LineageRun struct {
	RunID  string `json:"runId"`
	Facets Facets `json:"facets,omitempty"`
}

// LineageJob is an event's job.
type LineageJob struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Facets    Facets `json:"facets,omitempty"`
}

// Dataset is a dataset named per OpenLineage's naming conventions.
type Dataset struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
	Facets    Facets `json:"facets,omitempty"`
}

// InputDataset is a dataset a job read.
type InputDataset struct {
	Dataset
	InputFacets Facets `json:"inputFacets,omitempty"`
}

// OutputDataset is a dataset a job wrote.
type OutputDataset struct {
	Dataset
	OutputFacets Facets `json:"outputFacets,omitempty"`
}

// BaseFacet holds the fields every facet carries.
type BaseFacet struct {
	Producer  string `json:"_producer"`
	SchemaURL string `json:"_schemaURL"`
}

// JobRef names a job and one of its runs, for parent run facets.
type JobRef struct {
	Namespace string
	Name      string
	// RunID is the run's UUID.
	RunID string
}

// Lineage emits OpenLineage run events for a build. It implements
// orchestrator.Reporter.
//
// The build is a job of its own ("<project>.build" unless BuildJob says
// otherwise) with a START event at the build's start and a COMPLETE or FAIL
// event at its end. Every model, seed and snapshot that ran is a job named
// by its unique_id, with a START event when it started and a COMPLETE or
// FAIL event when it finished; its run carries a parent facet naming the
// build's run, a processing_engine facet (dbt and its version), an
// errorMessage facet when it failed, a "dbtorch_node" facet with dbt's
// status, timing, adapter response and the attempts, and a "dbtorch_cost"
// facet with what the warehouse reported (bytes processed and billed,
// slot time, rows, query ids) when it reported anything. The build's
// final event carries a "dbtorch_cost_totals" facet: the totals of the
// nodes that ran and of what the cache saved (orchestrator.Run.Totals). Its output is the
// relation it built and its inputs the relations it reads (sources, seeds,
// models and snapshots; ephemeral models are traced through), named per
// OpenLineage's naming conventions from the adapter and the relation
// (DatasetNamespace, DatasetName); rows affected become the output's
// outputStatistics facet. Skipped and cached nodes did not run and have no
// events; tests have none either.
//
// Events are handed to the Transport in time order. With an asynchronous
// transport (HTTPTransport) Report returns as soon as they are queued: call
// the transport's Close before the program exits.
type Lineage struct {
	// Transport delivers the events. Required.
	Transport Transport
	// JobNamespace is the namespace of the jobs; empty means "dbtorch".
	JobNamespace string
	// DatasetNamespace is the namespace of every dataset, which names the
	// warehouse (see DatasetNamespace the function); empty means the
	// adapter type followed by "://", which is enough for one warehouse
	// per adapter but will not match other producers' datasets.
	DatasetNamespace string
	// BuildJob names the build's job; empty means "<project>.build".
	BuildJob string
	// Parent, when set, is the run that started this build (an Airflow
	// task, a CI job); the build's run gets a parent facet naming it.
	Parent *JobRef
	// Producer is the producer URI; empty means DefaultProducer.
	Producer string
	// Logger receives the Observer's emit errors; nil discards them.
	Logger *slog.Logger
}

// Report builds the events of run and hands them to l.Transport, returning
// the transport's errors joined.
func (l *Lineage) Report(ctx context.Context, run *orchestrator.Run) error {
	if l.Transport == nil {
		return errors.New("artifacts: Lineage.Transport is nil")
	}
	events, err := l.Events(run)
	if err != nil {
		return err
	}
	var errs []error
	for _, ev := range events {
		if err := ctx.Err(); err != nil {
			return errors.Join(append(errs, err)...)
		}
		if err := l.Transport.Emit(ctx, ev); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// Events returns the run's events in the order Report emits them.
func (l *Lineage) Events(run *orchestrator.Run) ([]*RunEvent, error) {
	if run == nil {
		return nil, errors.New("artifacts: nil run")
	}
	e := l.emitter(run)
	var out []*RunEvent
	buildStart := run.StartedAt
	if buildStart.IsZero() {
		buildStart = orNow(run.CompletedAt)
	}
	buildEnd := orNow(run.CompletedAt)
	out = append(out, e.buildEvent(EventStart, buildStart, nil))

	type timed struct {
		ev *RunEvent
		at time.Time
	}
	var nodes []timed
	for i := range run.Results {
		nr := &run.Results[i]
		rt := resourceType(run, nr)
		if rt != manifest.Model && rt != manifest.Seed && rt != manifest.Snapshot {
			continue
		}
		if nr.Status != orchestrator.Success && nr.Status != orchestrator.Error {
			continue
		}
		start, end := nr.StartedAt, nr.CompletedAt
		if start.IsZero() {
			start = buildStart
		}
		if end.IsZero() || end.Before(start) {
			end = start
		}
		nodes = append(nodes, timed{e.nodeEvent(EventStart, start, nr, rt), start})
		typ := EventComplete
		if nr.Status == orchestrator.Error {
			typ = EventFail
		}
		nodes = append(nodes, timed{e.nodeEvent(typ, end, nr, rt), end})
	}
	slices.SortStableFunc(nodes, func(a, b timed) int { return a.at.Compare(b.at) })
	for _, n := range nodes {
		out = append(out, n.ev)
	}
	if failed := failedNodes(run); len(failed) > 0 {
		out = append(out, e.buildEvent(EventFail, buildEnd, failed))
	} else {
		out = append(out, e.buildEvent(EventComplete, buildEnd, nil))
	}
	return out, nil
}

// failedNodes lists the nodes of run that ended in Error: models, seeds and
// snapshots first, then tests, each in run order.
func failedNodes(run *orchestrator.Run) []string {
	var nodes, tests []string
	for i := range run.Results {
		nr := &run.Results[i]
		if nr.Status != orchestrator.Error {
			continue
		}
		if isTestType(resourceType(run, nr)) {
			tests = append(tests, nr.UniqueID)
		} else {
			nodes = append(nodes, nr.UniqueID)
		}
	}
	return append(nodes, tests...)
}

// emitter holds what every event of one run shares.
type emitter struct {
	l          *Lineage
	run        *orchestrator.Run
	producer   string
	jobNS      string
	datasetNS  string
	adapter    string
	dbtVersion string
	buildJob   string
	buildRunID string
}

func (l *Lineage) emitter(run *orchestrator.Run) *emitter {
	e := &emitter{l: l, run: run, producer: cmp.Or(l.Producer, DefaultProducer), jobNS: cmp.Or(l.JobNamespace, "dbtorch")}
	project := "dbt"
	if run.Manifest != nil {
		e.adapter = run.Manifest.Metadata.AdapterType
		e.dbtVersion = run.Manifest.Metadata.DBTVersion
		project = cmp.Or(run.Manifest.Metadata.ProjectName, project)
	}
	e.datasetNS = cmp.Or(l.DatasetNamespace, cmp.Or(e.adapter, "dbt")+"://")
	e.buildJob = cmp.Or(l.BuildJob, project+".build")
	e.buildRunID = RunUUID(run.ID)
	return e
}

func (e *emitter) base(url string) BaseFacet { return BaseFacet{Producer: e.producer, SchemaURL: url} }

func (e *emitter) event(typ EventType, at time.Time, runID string, job LineageJob) *RunEvent {
	return &RunEvent{
		EventType: typ,
		EventTime: formatTime(at),
		Run:       LineageRun{RunID: runID, Facets: Facets{}},
		Job:       job,
		Inputs:    []InputDataset{},
		Outputs:   []OutputDataset{},
		Producer:  e.producer,
		SchemaURL: RunEventSchemaURL,
	}
}

func (e *emitter) jobType(kind string) any {
	return struct {
		BaseFacet
		ProcessingType string `json:"processingType"`
		Integration    string `json:"integration"`
		JobType        string `json:"jobType"`
	}{e.base(jobTypeFacetURL), "BATCH", "DBT", kind}
}

func (e *emitter) engine() any {
	return struct {
		BaseFacet
		Version string `json:"version"`
		Name    string `json:"name"`
	}{e.base(engineFacetURL), cmp.Or(e.dbtVersion, "unknown"), "dbt"}
}

type runRef struct {
	RunID string `json:"runId"`
}

type jobRef struct {
	Namespace string `json:"namespace"`
	Name      string `json:"name"`
}

type parentFacet struct {
	BaseFacet
	Run  runRef `json:"run"`
	Job  jobRef `json:"job"`
	Root *struct {
		Run runRef `json:"run"`
		Job jobRef `json:"job"`
	} `json:"root,omitempty"`
}

func (e *emitter) parent(p JobRef, root *JobRef) any {
	f := parentFacet{BaseFacet: e.base(parentFacetURL), Run: runRef{p.RunID}, Job: jobRef{p.Namespace, p.Name}}
	if root != nil {
		f.Root = &struct {
			Run runRef `json:"run"`
			Job jobRef `json:"job"`
		}{runRef{root.RunID}, jobRef{root.Namespace, root.Name}}
	}
	return f
}

func (e *emitter) errorMessage(msg string) any {
	return struct {
		BaseFacet
		Message             string `json:"message"`
		ProgrammingLanguage string `json:"programmingLanguage"`
	}{e.base(errorFacetURL), msg, "SQL"}
}

func (e *emitter) buildEvent(typ EventType, at time.Time, failed []string) *RunEvent {
	ev := e.event(typ, at, e.buildRunID, LineageJob{Namespace: e.jobNS, Name: e.buildJob, Facets: Facets{"jobType": e.jobType("JOB")}})
	ev.Run.Facets["processing_engine"] = e.engine()
	if p := e.l.Parent; p != nil {
		ev.Run.Facets["parent"] = e.parent(JobRef{p.Namespace, p.Name, RunUUID(p.RunID)}, nil)
	}
	if len(failed) > 0 {
		ev.Run.Facets["errorMessage"] = e.errorMessage(fmt.Sprintf("%d node(s) failed: %s", len(failed), strings.Join(failed, ", ")))
	}
	if typ != EventStart {
		ev.Run.Facets["dbtorch_cost_totals"] = struct {
			BaseFacet
			orchestrator.RunTotals
		}{e.base(CostTotalsRunFacetSchemaURL), e.run.Totals()}
	}
	return ev
}

// nodeRunFacet is the "dbtorch_node" run facet.
type nodeRunFacet struct {
	BaseFacet
	UniqueID        string         `json:"unique_id"`
	ResourceType    string         `json:"resource_type"`
	Status          string         `json:"status"`
	BuildID         string         `json:"build_id"`
	InvocationID    string         `json:"invocation_id,omitempty"`
	Attempts        int            `json:"attempts"`
	ExecutionTime   float64        `json:"execution_time"`
	Timing          []TimingInfo   `json:"timing"`
	AdapterResponse map[string]any `json:"adapter_response"`
	RowsAffected    *int64         `json:"rows_affected,omitempty"`
	ErrorKind       string         `json:"error_kind,omitempty"`
}

func (e *emitter) nodeEvent(typ EventType, at time.Time, nr *orchestrator.NodeResult, rt manifest.ResourceType) *RunEvent {
	node := lookup(e.run, nr.UniqueID)
	job := LineageJob{Namespace: e.jobNS, Name: nr.UniqueID, Facets: Facets{"jobType": e.jobType(strings.ToUpper(string(rt)))}}
	if nr.CompiledCode != "" {
		job.Facets["sql"] = struct {
			BaseFacet
			Query   string `json:"query"`
			Dialect string `json:"dialect,omitempty"`
		}{e.base(sqlFacetURL), nr.CompiledCode, e.adapter}
	}
	if node != nil && node.Description != "" {
		job.Facets["documentation"] = struct {
			BaseFacet
			Description string `json:"description"`
		}{e.base(docFacetURL), node.Description}
	}
	ev := e.event(typ, at, NodeRunUUID(e.run.ID, nr.UniqueID), job)
	build := JobRef{e.jobNS, e.buildJob, e.buildRunID}
	root := &build
	if p := e.l.Parent; p != nil {
		root = &JobRef{p.Namespace, p.Name, RunUUID(p.RunID)}
	}
	ev.Run.Facets["parent"] = e.parent(build, root)
	ev.Run.Facets["processing_engine"] = e.engine()

	if node != nil {
		for _, in := range e.inputs(node) {
			ev.Inputs = append(ev.Inputs, InputDataset{Dataset: e.dataset(in)})
		}
		out := OutputDataset{Dataset: e.dataset(node)}
		if typ == EventComplete && nr.RowsAffected != nil && *nr.RowsAffected >= 0 {
			out.OutputFacets = Facets{"outputStatistics": struct {
				BaseFacet
				RowCount int64 `json:"rowCount"`
			}{e.base(outputStatsURL), *nr.RowsAffected}}
		}
		ev.Outputs = append(ev.Outputs, out)
	}
	if typ == EventStart {
		return ev
	}
	f := nodeRunFacet{
		BaseFacet: e.base(NodeRunFacetSchemaURL), UniqueID: nr.UniqueID, ResourceType: string(rt),
		Status: DBTStatus(rt, nr, "success"), BuildID: e.run.ID, Attempts: max(1, len(nr.Attempts)),
		ExecutionTime: execTime(nr).Seconds(), Timing: []TimingInfo{}, AdapterResponse: map[string]any{},
		RowsAffected: nr.RowsAffected,
	}
	if nr.Invocation != nil {
		f.InvocationID = nr.Invocation.InvocationID
	}
	for _, t := range nr.Timing {
		f.Timing = append(f.Timing, runresults.NewTiming(t.Name, t.StartedAt, t.CompletedAt))
	}
	for k, v := range nr.AdapterResponse {
		f.AdapterResponse[k] = v
	}
	if nr.Err != nil {
		f.ErrorKind = string(nr.Err.Kind)
	}
	ev.Run.Facets["dbtorch_node"] = f
	if c := nr.Cost(); !c.IsZero() {
		ev.Run.Facets["dbtorch_cost"] = struct {
			BaseFacet
			cost.Cost
		}{e.base(CostRunFacetSchemaURL), c}
	}
	if typ == EventFail {
		ev.Run.Facets["errorMessage"] = e.errorMessage(cmp.Or(nodeMessage(nr), "failed"))
	}
	return ev
}

// inputs returns the relations node reads: its dependencies that are
// sources, seeds, snapshots or non-ephemeral models, with ephemeral models
// replaced by their own inputs, sorted by unique_id.
func (e *emitter) inputs(node *manifest.Node) []*manifest.Node {
	seen := map[string]bool{}
	var out []*manifest.Node
	var walk func(n *manifest.Node)
	walk = func(n *manifest.Node) {
		for _, id := range n.DependsOn.Nodes {
			if seen[id] {
				continue
			}
			seen[id] = true
			dep := lookup(e.run, id)
			switch {
			case dep == nil:
			case dep.IsEphemeral():
				walk(dep)
			case dep.ResourceType == manifest.Model, dep.ResourceType == manifest.Seed,
				dep.ResourceType == manifest.Snapshot, dep.ResourceType == manifest.Source:
				out = append(out, dep)
			}
		}
	}
	walk(node)
	slices.SortFunc(out, func(a, b *manifest.Node) int { return strings.Compare(a.UniqueID, b.UniqueID) })
	return out
}

func (e *emitter) dataset(n *manifest.Node) Dataset {
	table := n.Alias
	if n.ResourceType == manifest.Source {
		table = cmp.Or(n.Identifier, n.Name)
	}
	table = cmp.Or(table, n.Name)
	return Dataset{
		Namespace: e.datasetNS,
		Name:      DatasetName(e.adapter, n.Database, n.Schema, table),
		Facets: Facets{"dataSource": struct {
			BaseFacet
			Name string `json:"name"`
			URI  string `json:"uri"`
		}{e.base(dataSourceFacetURL), e.datasetNS, e.datasetNS}},
	}
}

// DatasetName returns the OpenLineage dataset name of a relation for a dbt
// adapter: "{database}.{schema}.{table}" for most warehouses (Postgres,
// Snowflake, Redshift, DuckDB, Trino's catalog, BigQuery's project),
// "{schema}.{table}" where the warehouse has no separate database level
// (MySQL, Hive, Spark, Teradata, where dbt's schema is the database; Azure
// Synapse), and without the parts that are empty. Quotes are not part of
// the name.
func DatasetName(adapter, database, schema, table string) string {
	switch strings.ToLower(adapter) {
	case "mysql", "hive", "spark", "teradata", "synapse", "oceanbase":
		database = ""
	}
	var parts []string
	for _, p := range []string{database, schema, table} {
		if p = strings.Trim(p, "\"`[]"); p != "" {
			parts = append(parts, p)
		}
	}
	return strings.Join(parts, ".")
}

// Connection is what DatasetNamespace needs to know about a warehouse
// connection (the fields of the dbt profile's output).
type Connection struct {
	Host string
	Port int
	// Path is DuckDB's database file.
	Path string
	// Account is Snowflake's account identifier (orgname-accountname).
	Account string
}

// DatasetNamespace returns the OpenLineage dataset namespace of a dbt
// adapter's warehouse per OpenLineage's naming conventions:
// postgres://{host}:{port}, redshift://{host}:{port}, mysql://{host}:{port},
// sqlserver://{host}:{port}, trino://{host}:{port}, snowflake://{account},
// bigquery, duckdb://{path} (as OpenLineage's dbt integration names DuckDB
// files), and {adapter}://{host}:{port} for other adapters. Default ports
// are filled in where the adapter has one.
func DatasetNamespace(adapter string, c Connection) string {
	adapter = strings.ToLower(adapter)
	defaults := map[string]int{"postgres": 5432, "redshift": 5439, "mysql": 3306, "sqlserver": 1433, "trino": 8080}
	switch adapter {
	case "bigquery":
		return "bigquery"
	case "snowflake":
		return "snowflake://" + strings.ToLower(c.Account)
	case "duckdb":
		return "duckdb://" + c.Path
	case "fabric", "synapse":
		adapter = "sqlserver"
	}
	port := c.Port
	if port == 0 {
		port = defaults[adapter]
	}
	host := cmp.Or(c.Host, "localhost")
	if port == 0 {
		return adapter + "://" + host
	}
	return adapter + "://" + net.JoinHostPort(host, strconv.Itoa(port))
}

var uuidRe = regexp.MustCompile(`^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)

// RunUUID returns id if it is a UUID (lower-cased), else a name-based UUID
// (version 5 layout, SHA-1) derived from it, so that any build ID can serve
// as an OpenLineage runId and the same ID always gives the same UUID.
func RunUUID(id string) string {
	if uuidRe.MatchString(id) {
		return strings.ToLower(id)
	}
	return nameUUID("dbtorch-build:" + id)
}

// NodeRunUUID returns the runId of a node's run within a build: a
// name-based UUID of the build ID and the node's unique_id, stable across
// calls, so that START and COMPLETE events of a node match.
func NodeRunUUID(buildID, uniqueID string) string {
	return nameUUID("dbtorch-node:" + buildID + "\x00" + uniqueID)
}

func nameUUID(name string) string {
	sum := sha1.Sum([]byte(name))
	b := sum[:16]
	b[6] = b[6]&0x0f | 0x50
	b[8] = b[8]&0x3f | 0x80
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}
