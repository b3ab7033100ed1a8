package orchestrator

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// TestSchemaGate: until an invocation building into a schema succeeds,
// invocations on that schema run one at a time; afterwards they overlap.
// Tests (which create no schema) are never held.
func TestSchemaGate(t *testing.T) {
	var g schemaGate
	model := func(schema string) []*manifest.Node {
		return []*manifest.Node{{UniqueID: "model.p." + schema, ResourceType: manifest.Model, Database: "db", Schema: schema}}
	}
	ok := &executor.Response{Results: []executor.Result{{Status: executor.Success}}}
	failed := &executor.Response{Results: []executor.Result{{Status: executor.Error}}}

	// A failed first invocation keeps the schema exclusive.
	rel, err := g.enter(context.Background(), model("a"))
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	_, err = g.enter(ctx, model("a"))
	cancel()
	require.ErrorIs(t, err, context.DeadlineExceeded, "second invocation must wait while the first holds the schema")
	rel(failed, nil)

	// Other schemas and tests are not held by it.
	rel, err = g.enter(context.Background(), model("a"))
	require.NoError(t, err)
	relB, err := g.enter(context.Background(), model("b"))
	require.NoError(t, err)
	relT, err := g.enter(context.Background(), []*manifest.Node{{ResourceType: manifest.Test, Schema: "a"}})
	require.NoError(t, err)
	relT(ok, nil)
	relB(ok, nil)
	rel(ok, nil)

	// Once created, invocations on the schema overlap.
	var running, peak atomic.Int32
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rel, err := g.enter(context.Background(), model("a"))
			assert.NoError(t, err)
			n := running.Add(1)
			for {
				p := peak.Load()
				if n <= p || peak.CompareAndSwap(p, n) {
					break
				}
			}
			time.Sleep(20 * time.Millisecond)
			running.Add(-1)
			rel(ok, nil)
		}()
	}
	wg.Wait()
	assert.Greater(t, peak.Load(), int32(1))
}
