package executor

import (
	"context"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/dbtorch/dbtorch/internal/runresults"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestKindOf: every runresults class is the Kind of the same meaning.
func TestKindOf(t *testing.T) {
	for c, k := range map[runresults.Class]Kind{
		runresults.None:        KindNone,
		runresults.Compilation: KindCompilation,
		runresults.TestFailure: KindTestFailure,
		runresults.Database:    KindDatabase,
		runresults.Connection:  KindConnection,
		runresults.Unknown:     KindUnknown,
	} {
		assert.Equal(t, k, kindOf(c), "class %s", c)
	}
}

func TestComplete(t *testing.T) {
	a := &manifest.Node{UniqueID: "model.p.a"}
	b := &manifest.Node{UniqueID: "model.p.b"}
	ok := Result{UniqueID: "model.p.a", Status: Success, DBTStatus: "success"}
	bad := Result{UniqueID: "model.p.b", Status: Error, DBTStatus: "error", Kind: KindDatabase, Message: "Database Error"}
	crash := &Failure{Kind: KindCrash, Message: "dbt was killed by signal killed"}
	tests := []struct {
		name   string
		rr     []Result
		ctxErr error
		fail   *Failure
		status []Status
		kinds  []Kind
	}{
		{"all reported, out of order", []Result{bad, ok}, nil, nil, []Status{Success, Error}, []Kind{KindNone, KindDatabase}},
		{"one missing after a crash", []Result{ok}, nil, crash, []Status{Success, Error}, []Kind{KindNone, KindCrash}},
		{"one missing after exit 0", []Result{ok}, nil, nil, []Status{Success, Error}, []Kind{KindNone, KindInternal}},
		{"cancelled keeps successes only", []Result{ok, bad}, context.Canceled, nil, []Status{Success, Cancelled}, []Kind{KindNone, KindCancelled}},
		{"timeout", nil, fmt.Errorf("wrapped: %w", context.DeadlineExceeded), crash, []Status{Cancelled, Cancelled}, []Kind{KindTimeout, KindTimeout}},
		{"nothing reported", nil, nil, crash, []Status{Error, Error}, []Kind{KindCrash, KindCrash}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := Complete([]*manifest.Node{a, b}, tt.rr, tt.ctxErr, tt.fail)
			assert.Len(t, got, 2)
			for i, r := range got {
				assert.Equal(t, []string{"model.p.a", "model.p.b"}[i], r.UniqueID)
				assert.Equal(t, tt.status[i], r.Status, r.UniqueID)
				assert.Equal(t, tt.kinds[i], r.Kind, r.UniqueID)
				if r.Status != Success {
					assert.NotEmpty(t, r.Message, r.UniqueID)
				}
			}
		})
	}
}

func TestCrashFailure(t *testing.T) {
	assert.Equal(t, KindCrash, crashFailure("dbt was killed by signal killed", "12:00:01  1 of 1 START python table model main.crashy").Kind)
	assert.Equal(t, KindCompilation, crashFailure("dbt exited with status 2", "Encountered an error:\nCompilation Error in model x (models/x.sql)").Kind)
	assert.Equal(t, KindConnection, crashFailure("dbt exited with status 2", "Database Error\n  connection to server at \"127.0.0.1\", port 1 failed: Connection refused").Kind)
	f := crashFailure("cause", "tail")
	assert.Equal(t, "cause\ntail", f.Message)
}
