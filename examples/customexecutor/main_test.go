package main

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// fakeDBT is a stand-in for dbt: it writes a run_results.json into the
// --target-path it is given, reporting the first selected node as
// $FAKE_STATUS, or sleeps when FAKE_SLEEP is set.
const fakeDBT = `#!/bin/sh
target=""
while [ $# -gt 0 ]; do
  case "$1" in
    --target-path) target="$2"; shift ;;
  esac
  shift
done
if [ -n "$FAKE_SLEEP" ]; then sleep "$FAKE_SLEEP"; fi
if [ "$FAKE_STATUS" = "none" ]; then echo "Compilation Error in model a"; exit 2; fi
cat > "$target/run_results.json" <<JSON
{"metadata": {"invocation_id": "fake"}, "results": [
 {"unique_id": "model.p.a", "status": "$FAKE_STATUS", "message": "Got 2 results", "failures": 2, "adapter_response": {}}
]}
JSON
`

func TestPrefixExecutor(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "dbt")
	require.NoError(t, os.WriteFile(bin, []byte(fakeDBT), 0o755))
	a := &manifest.Node{UniqueID: "model.p.a", ResourceType: manifest.Model, PackageName: "p", FQN: []string{"p", "a"}}
	b := &manifest.Node{UniqueID: "model.p.b", ResourceType: manifest.Model, PackageName: "p", FQN: []string{"p", "b"}}
	tests := []struct {
		name, status string
		want         []executor.Status
		kinds        []executor.Kind
	}{
		{"success", "success", []executor.Status{executor.Success, executor.Error}, []executor.Kind{executor.KindNone, executor.KindCrash}},
		{"test failure", "fail", []executor.Status{executor.Error, executor.Error}, []executor.Kind{executor.KindTestFailure, executor.KindCrash}},
		{"no results", "none", []executor.Status{executor.Error, executor.Error}, []executor.Kind{executor.KindCompilation, executor.KindCompilation}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ex := &PrefixExecutor{Prefix: []string{bin}, ProjectDir: t.TempDir(), Env: []string{"FAKE_STATUS=" + tt.status, "PATH=" + os.Getenv("PATH")}}
			resp, err := ex.Execute(t.Context(), executor.Request{Command: executor.Run, Nodes: []*manifest.Node{a, b}})
			require.NoError(t, err)
			require.Len(t, resp.Results, 2)
			for i, r := range resp.Results {
				assert.Equal(t, tt.want[i], r.Status, r.UniqueID)
				assert.Equal(t, tt.kinds[i], r.Kind, r.UniqueID)
			}
		})
	}
	t.Run("timeout", func(t *testing.T) {
		ex := &PrefixExecutor{Prefix: []string{bin}, ProjectDir: t.TempDir(), Env: []string{"FAKE_STATUS=success", "FAKE_SLEEP=10", "PATH=" + os.Getenv("PATH")}}
		ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
		defer cancel()
		resp, err := ex.Execute(ctx, executor.Request{Command: executor.Run, Nodes: []*manifest.Node{a}})
		require.NoError(t, err)
		assert.Equal(t, executor.Cancelled, resp.Results[0].Status)
		assert.Equal(t, executor.KindTimeout, resp.Results[0].Kind)
	})
}
