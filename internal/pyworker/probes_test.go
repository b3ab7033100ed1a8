package pyworker_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
)

// matchProbe looks up relations in a schema of 1,000 cached relations
// (and a mixed-case and a quoted one) with dbt's BaseAdapter._make_match,
// then with prefilter_relation_match's, and prints both answers per
// search: the relations found, or the error dbt raised.
const matchProbe = `
import json, sys
sys.path.insert(0, sys.argv[1])
import worker
from dbt.adapters.base.impl import BaseAdapter
from dbt.adapters.duckdb.relation import DuckDBRelation

class Adapter:
    class config:
        quoting = {"database": False, "schema": False, "identifier": False}
    _make_match_kwargs = BaseAdapter._make_match_kwargs

rels = [DuckDBRelation.create(database="db", schema="main", identifier="model_%04d" % i, type="table") for i in range(1000)]
rels += [DuckDBRelation.create(database="db", schema="main", identifier="MixedCase", type="view"),
         DuckDBRelation.create(database="db", schema="main", identifier='"Quoted"', type="table")]
searches = [["db", "main", "model_0500"], ["DB", "Main", "MODEL_0001"], ["db", "main", "nope"], ["db", "other", "model_0001"],
            ["db", "main", '"model_0001"'], ["db", "main", "mixedcase"], ["db", "main", "MixedCase"], ["db", "main", "quoted"],
            ["db", "main", '"Quoted"'], ["db", "main", None], ["db", "main", ""], [None, "main", "model_0002"]]

def answers(make_match):
    out = []
    for db, schema, ident in searches:
        try:
            out.append(sorted(str(r) for r in make_match(Adapter(), rels, db, schema, ident)))
        except Exception as e:
            out.append("raised " + type(e).__name__)
    return out

before = BaseAdapter._make_match
dbt = answers(before)
applied = worker.prefilter_relation_match()
print(json.dumps({"applied": applied, "replaced": BaseAdapter._make_match is not before, "dbt": dbt, "patched": answers(BaseAdapter._make_match)}))
`

// TestPrefilterRelationMatchAgrees: the patched relation lookup answers
// every search of a schema of 1,000 relations as dbt's does: exact and
// case-insensitive hits, misses, dbt's ApproximateMatchError for a search
// that differs from a relation only in case or quoting, and searches
// without an identifier (every relation of the schema).
func TestPrefilterRelationMatchAgrees(t *testing.T) {
	t.Parallel()
	py, dir := probeSetup(t)
	var got struct {
		Applied, Replaced bool
		DBT, Patched      []any
	}
	runProbe(t, &got, py, matchProbe, dir)
	require.True(t, got.Applied)
	require.True(t, got.Replaced, "BaseAdapter._make_match is the patch's")
	require.Len(t, got.DBT, 12)
	assert.Equal(t, got.DBT, got.Patched)
	assert.Equal(t, []any{`"db"."main"."model_0500"`}, got.DBT[0], "a hit")
	assert.Equal(t, "raised ApproximateMatchError", got.DBT[5], "a search differing in case only")
	assert.Len(t, got.DBT[9], 1002, "no identifier: the whole schema")
}

// runResultsProbe builds a dbt RunExecutionResult of one result (a
// secret var among its args), writes it with dbt's own write and prints
// that file next to the text of worker.run_results_encoder's function.
const runResultsProbe = `
import json, sys, os, tempfile
from datetime import datetime
from types import SimpleNamespace
sys.path.insert(0, sys.argv[1])
import worker
from dbt.artifacts.schemas.run import RunExecutionResult, RunResult
from dbt.artifacts.schemas.results import RunStatus, TimingInfo
t = TimingInfo(name="execute", started_at=datetime(2026, 1, 2, 3, 4, 5, 6), completed_at=datetime(2026, 1, 2, 3, 4, 6))
node = SimpleNamespace(unique_id="model.p.m")
r = RunResult(status=RunStatus.Success, timing=[t], thread_id="Thread-1", execution_time=1.25,
              adapter_response={"_message": "OK", "rows_affected": 3}, message="OK", failures=None, node=node, batch_results=None)
out = RunExecutionResult(results=[r], elapsed_time=2.5, generated_at=datetime(2026, 1, 2, 3, 4, 7),
                         args={"vars": {"DBT_ENV_SECRET_X": "s3cret", "a": "s3cret b"}, "invocation_command": "dbt build --vars s3cret"})
path = os.path.join(tempfile.mkdtemp(), "run_results.json")
out.write(path)
print(json.dumps({"dbt": open(path).read(), "text": worker.run_results_encoder()(out)}))
`

// TestRunResultsTextIsDBTsFile: the run_results.json a build session sends
// in its reply is, byte for byte, the file dbt writes for the same result
// (secrets scrubbed the same way).
func TestRunResultsTextIsDBTsFile(t *testing.T) {
	t.Parallel()
	py, dir := probeSetup(t)
	var got struct{ DBT, Text string }
	runProbe(t, &got, py, runResultsProbe, dir)
	require.NotEmpty(t, got.DBT)
	assert.Equal(t, got.DBT, got.Text)
	assert.NotContains(t, got.Text, "s3cret", "secret vars are scrubbed")
	assert.Contains(t, got.Text, `"unique_id": "model.p.m"`)
}

// probePrelude starts a probe script: the answer goes to the first
// stdout (dbt's output to stderr), the worker's directory (argv[1]) is
// importable, the project directory (argv[2]) is current and the
// environment has the KEY=VALUE entries of the JSON list argv[3].
const probePrelude = `
import json, os, sys
out = os.fdopen(os.dup(1), "w")
os.dup2(2, 1)
sys.path.insert(0, sys.argv[1])
os.chdir(sys.argv[2])
for kv in json.loads(sys.argv[3]):
    k, _, v = kv.partition("=")
    os.environ[k] = v
`

// schemasProbe parses the shop project, seeds it, and runs one model
// (patched when sys.argv[8] is "patched"), counting in that run how many
// relations dbt makes from nodes (BaseRelation.create_from), how many in
// its relation cache's population (BaseAdapter.set_relations_cache, dbt-postgres's linking included)
// and how many nodes its selector checks for graph membership, next to
// the number of relational nodes and whether both invocations succeeded.
const schemasProbe = probePrelude + `
deps, parse, seed, run = (json.loads(a) for a in sys.argv[4:8])
import worker
from dbt.cli.main import dbtRunner
from dbt.adapters.base.relation import BaseRelation
from dbt.adapters.base.impl import BaseAdapter
applied = []
if sys.argv[8] == "patched":
    _, applied = worker.apply_patches(worker.Builds())
from dbt.graph.selector import NodeSelector
counts = {"made": 0, "populating": 0, "members": 0}
member = NodeSelector._is_graph_member
def checked(self, uid):
    counts["members"] += 1
    return member(self, uid)
NodeSelector._is_graph_member = checked
create_from = BaseRelation.create_from.__func__
def counted(cls, *a, **k):
    counts["made"] += 1
    return create_from(cls, *a, **k)
BaseRelation.create_from = classmethod(counted)
populate = BaseAdapter.set_relations_cache
def populating(self, *a, **k):
    before = counts["made"]
    try:
        return populate(self, *a, **k)
    finally:
        counts["populating"] += counts["made"] - before
BaseAdapter.set_relations_cache = populating
assert dbtRunner().invoke(deps).success
manifest = dbtRunner().invoke(parse).result
relational = sum(1 for n in manifest.nodes.values() if n.is_relational and not n.is_ephemeral_model and not n.is_external_node)
def answer(ok, warmed=None):
    print(json.dumps({"applied": applied, "relational": relational, "ok": ok, "warmed": warmed, **counts}), file=out, flush=True)
if sys.argv[9:] != ["forked"]:
    ok = [dbtRunner(manifest=manifest).invoke(seed).success]
    counts.update(made=0, populating=0, members=0)
    ok.append(dbtRunner(manifest=manifest).invoke(run).success)
    answer(ok)
    sys.exit(0)
# As the zygote: warm, then the seed in one fork and the run, counted, in
# another, each the fork's first invocation.
import atexit
warmed = worker.warm_forks(manifest, parse)
ok = []
for args in (seed, run):
    counts.update(made=0, populating=0, members=0)
    pid = os.fork()
    if pid == 0:
        code = 0 if dbtRunner(manifest=manifest).invoke(args).success else 1
        if args is run:
            answer([True, code == 0], warmed)
        atexit._run_exitfuncs()
        os._exit(code)
    ok.append(os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) == 0)
assert ok[0], "seed failed"
`

// TestMemoCacheSchemasAndMembers: after the first invocation, with
// memo_cache_schemas, an invocation makes no relation from the project's
// nodes to find the schemas its relation cache lists (dbt makes one of
// every relational node; on PostgreSQL also with --cache-selected-only,
// to link the listed relations), and with memo_graph_members its selector checks
// no node for graph membership (dbt checks every node); the relations the
// run itself makes (its refs) are the same either way.
func TestMemoCacheSchemasAndMembers(t *testing.T) {
	t.Parallel()
	py, script := probeSetup(t)
	type counts struct {
		Applied                      []string
		Relational, Made, Populating int
		Members                      int
		OK                           []bool
		Warmed                       *bool
	}
	got := map[string]counts{}
	pg := dbttest.StartPostgres(t)
	for _, mode := range []string{"patched", "unpatched", "forked", "patched pg", "unpatched pg"} {
		dir := dbttest.CopyProject(t, "shop")
		parse, deps, _ := shopArgs(t, dir)
		env := dbttest.Env(t, dir)
		var flags []string
		if strings.HasSuffix(mode, " pg") {
			// As dbtorch's requests run: on PostgreSQL dbt still finds
			// every schema to link the relations it listed.
			env = append(env, pg.Env()...)
			parse = append(parse, "--target", "pg")
			flags = []string{"--cache-selected-only"}
		}
		// parse's global flags, as warm_forks's ls takes them.
		seed := slices.Concat([]string{"seed"}, parse[1:], flags)
		run := slices.Concat([]string{"run", "--select", "stg_customers"}, parse[1:], flags)
		var c counts
		args := []string{script, dir, jsonArg(t, env), jsonArg(t, deps), jsonArg(t, parse), jsonArg(t, seed), jsonArg(t, run), strings.TrimSuffix(mode, " pg")}
		if mode == "forked" {
			args[len(args)-1] = "patched"
			args = append(args, "forked")
		}
		runProbe(t, &c, py, schemasProbe, args...)
		got[mode] = c
	}
	p, u := got["patched"], got["unpatched"]
	require.Contains(t, p.Applied, "memo_cache_schemas")
	assert.Equal(t, []bool{true, true}, p.OK)
	assert.Equal(t, []bool{true, true}, u.OK)
	assert.Greater(t, u.Relational, 10)
	assert.GreaterOrEqual(t, u.Populating, u.Relational, "dbt makes a relation of every relational node")
	assert.Zero(t, p.Populating, "the schemas found in the first invocation")
	require.Contains(t, p.Applied, "memo_graph_members")
	assert.Greater(t, u.Members, u.Relational, "dbt checks every node of the graph")
	assert.Zero(t, p.Members, "the members found in the first invocation")
	assert.Equal(t, u.Made-u.Populating, p.Made, "the run's own relations")

	pp, up := got["patched pg"], got["unpatched pg"]
	assert.Equal(t, []bool{true, true}, pp.OK)
	assert.Equal(t, []bool{true, true}, up.OK)
	assert.GreaterOrEqual(t, up.Populating, up.Relational, "dbt-postgres makes a relation of every relational node to link the cache")
	assert.Zero(t, pp.Populating, "the schemas found in the first invocation, with --cache-selected-only")
	assert.Equal(t, up.Made-up.Populating, pp.Made, "the run's own relations")

	// In a fork of a zygote that warmed its forks (warm_forks), the fork's
	// first run finds both ready.
	f := got["forked"]
	require.NotNil(t, f.Warmed)
	assert.True(t, *f.Warmed, "the warm's ls succeeded")
	assert.Equal(t, []bool{true, true}, f.OK)
	assert.Zero(t, f.Populating, "the schemas found by the zygote")
	assert.Zero(t, f.Members, "the members found by the zygote")
	assert.Equal(t, p.Made, f.Made, "the run's own relations")
}

// jsonArg is v as a JSON command-line argument of a probe.
func jsonArg(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// behaviorProbe asks dbt_common for a behavior flag's default source from
// several callers, with dbt's _default_source and then with
// cheap_behavior_source's, and prints both answers: the script itself
// (run with -c: no file), a flag made by dbt_common's Behavior, code of a dbt module
// (its globals and its file), code whose globals name no module, and code
// whose globals name a loaded module it is not the file of.
const behaviorProbe = `
import json, sys
sys.path.insert(0, sys.argv[1])
import worker
from dbt_common.behavior_flags import Behavior, BehaviorFlagRendered
import dbt.adapters.base.impl as impl

def run(src, filename, globs):
    ns = dict(globs, B=BehaviorFlagRendered, Behavior=Behavior)
    exec(compile(src, filename, "exec"), ns)
    return ns["r"]

def answers():
    flag = [{"name": "probe_flag", "default": False, "description": "d"}]
    return [
        BehaviorFlagRendered._default_source(),
        Behavior(flag, {})._flags[0]._behavior_change_event.flag_source,
        run("def f():\n    return B._default_source()\nr = f()", impl.__file__, impl.__dict__),
        run("r = Behavior(%r, {})._flags[0]._behavior_change_event.flag_source" % flag, impl.__file__, impl.__dict__),
        run("r = B._default_source()", "<generated>", {"__name__": "no_such_module"}),
        run("r = B._default_source()", "/nonexistent/elsewhere.py", {"__name__": "json"}),
    ]

dbt = answers()
applied = worker.cheap_behavior_source()
print(json.dumps({"applied": applied, "dbt": dbt, "patched": answers()}))
`

// TestCheapBehaviorSourceAgrees: the patched default source of a
// behavior flag is dbt_common's for every caller, the module of a frame
// placed by its globals and by its file alike.
func TestCheapBehaviorSourceAgrees(t *testing.T) {
	t.Parallel()
	py, dir := probeSetup(t)
	var got struct {
		Applied      bool
		DBT, Patched []string
	}
	runProbe(t, &got, py, behaviorProbe, dir)
	require.True(t, got.Applied)
	// A probe run with -c has no file: dbt_common places none of its frames.
	assert.Equal(t, []string{"Unknown", "Unknown", "dbt.adapters.base.impl", "dbt.adapters.base.impl", "Unknown", "Unknown"}, got.DBT)
	assert.Equal(t, got.DBT, got.Patched)
}
