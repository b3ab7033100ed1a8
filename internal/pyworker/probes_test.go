package pyworker_test

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
