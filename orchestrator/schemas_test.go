package orchestrator_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// schemaFake is the fake executor with executor.SchemaCreator: creating
// takes delay (or until ctx is done), schemas in bad always fail to be
// created, and every call is recorded. An Execute into a schema that was
// never created is recorded as a violation.
type schemaFake struct {
	*fakeExec
	delay time.Duration
	bad   map[string]bool
	// block makes CreateSchemas wait for ctx (and close entered first).
	block   bool
	entered chan struct{}

	mu         sync.Mutex
	creates    [][]executor.Schema
	created    map[string]bool
	inflight   map[string]int
	overlap    int      // creations of one schema that overlapped
	violations []string // nodes executed before their schema existed
	n          atomic.Int64
}

func newSchemaFake(scripts map[string]script, delay time.Duration, bad ...string) *schemaFake {
	f := &schemaFake{fakeExec: newFake(scripts), delay: delay, bad: map[string]bool{}, created: map[string]bool{},
		inflight: map[string]int{}, entered: make(chan struct{})}
	for _, b := range bad {
		f.bad[b] = true
	}
	return f
}

func (f *schemaFake) CreateSchemas(ctx context.Context, schemas []executor.Schema) error {
	n := f.n.Add(1)
	f.mu.Lock()
	f.creates = append(f.creates, slices.Clone(schemas))
	for _, s := range schemas {
		if f.inflight[s.Schema]++; f.inflight[s.Schema] > 1 {
			f.overlap++
		}
	}
	f.mu.Unlock()
	defer func() {
		f.mu.Lock()
		for _, s := range schemas {
			f.inflight[s.Schema]--
		}
		f.mu.Unlock()
	}()
	if f.block {
		if n == 1 {
			close(f.entered)
		}
		<-ctx.Done()
		return ctx.Err()
	}
	t := time.NewTimer(f.delay)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	for _, s := range schemas {
		if f.bad[s.Schema] {
			return fmt.Errorf("Database Error\n  permission denied for database db (creation %d of %s)", n, s.Schema)
		}
	}
	f.mu.Lock()
	for _, s := range schemas {
		f.created[s.Schema] = true
	}
	f.mu.Unlock()
	return nil
}

func (f *schemaFake) Execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	f.mu.Lock()
	for _, n := range req.Nodes {
		if !n.IsTest() && n.Schema != "" && !f.created[n.Schema] {
			f.violations = append(f.violations, n.UniqueID)
		}
	}
	f.mu.Unlock()
	return f.fakeExec.Execute(ctx, req)
}

// withSchemas puts every model of m into one of schemas, at random.
func withSchemas(r *rand.Rand, m *manifest.Manifest, schemas ...string) map[string]string {
	of := map[string]string{}
	for _, n := range m.Nodes {
		if n.ResourceType == manifest.Model {
			n.Database, n.Schema = "db", schemas[r.IntN(len(schemas))]
			of[n.UniqueID] = n.Schema
		}
	}
	return of
}

// wide returns a manifest of n independent models in schema.
func wide(n int, schema string) *manifest.Manifest {
	m := manifestOf(dagSpec{models: n, parents: map[int][]int{}})
	for _, x := range m.Nodes {
		x.Database, x.Schema = "db", schema
	}
	return m
}

// TestPropertySchemas builds random DAGs whose models are spread over
// three schemas, one of which (sometimes) cannot be created, per node and
// per wave, with retries: every node ends as its scripts and its schema
// say (a model in the bad schema fails every attempt with the creation's
// error, without running; its descendants are skipped), no invocation
// runs before its schema was created, no schema is created twice at once,
// and a build whose schemas can all be created creates them in one call.
func TestPropertySchemas(t *testing.T) {
	seeds := 24
	if testing.Short() {
		seeds = 6
	}
	for seed := range seeds {
		r := rand.New(rand.NewPCG(uint64(seed), 31))
		mode := orchestrator.Mode(r.IntN(2))
		conc := 2 + r.IntN(7)
		retries := r.IntN(3)
		bad := ""
		// Per wave, a wave whose schemas cannot all be created fails as
		// one dbt build would: not modelled by expected().
		if r.IntN(2) == 0 && mode == orchestrator.PerNode {
			bad = "s2"
		}
		t.Run(fmt.Sprintf("seed%d/%s/c%d/r%d/bad=%s", seed, mode, conc, retries, bad), func(t *testing.T) {
			checkNoLeak(t)
			m := manifestOf(randomDAG(r, 80+r.IntN(120)))
			schemaOf := withSchemas(r, m, "s0", "s1", "s2")
			scripts := randomScripts(r, m, 200*time.Microsecond, 0.02)
			fake := newSchemaFake(scripts, time.Duration(r.IntN(3))*time.Millisecond)
			if bad != "" {
				fake.bad[bad] = true
				for id, s := range schemaOf {
					if s == bad {
						scripts[id] = script{failures: -1} // expected(): fails every attempt
					}
				}
			}
			o, err := orchestrator.New(orchestrator.Config{Executor: fake, Manifest: m, Mode: mode, Concurrency: conc,
				Retry: orchestrator.RetryConfig{Retries: retries, Delay: 50 * time.Microsecond}})
			require.NoError(t, err)
			run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
			require.NotNil(t, run)
			want, wantFailed := expected(run.Plan, scripts, retries)
			calls := fake.byNode()
			for _, res := range run.Results {
				id := res.UniqueID
				require.Equal(t, want[id], res.Status, "status of %s", id)
				if res.Status == orchestrator.Skipped {
					assert.Equal(t, wantFailed[id], res.FailedUpstream, id)
					assert.Empty(t, calls[id], id)
				}
				if s := schemaOf[id]; s != "" && s == bad {
					assert.Empty(t, calls[id], "%s ran although its schema was never created", id)
					if res.Status == orchestrator.Error {
						assert.Len(t, res.Attempts, retries+1, id)
						assert.Contains(t, res.Err.Message, "creating schemas db."+bad, id)
						assert.Equal(t, executor.KindDatabase, res.Err.Kind, id)
					}
				}
			}
			if run.Count(orchestrator.Error) == 0 {
				require.NoError(t, err)
			}
			fake.mu.Lock()
			defer fake.mu.Unlock()
			assert.Empty(t, fake.violations, "invocations ran before their schema was created")
			assert.Zero(t, fake.overlap, "one schema was created by two calls at once")
			if bad == "" {
				require.Len(t, fake.creates, 1, "one creation for the whole build: %v", fake.creates)
				assert.Len(t, fake.creates[0], 3)
			}
		})
	}
}

// TestSchemaFailureKeepsConcurrency: a schema that cannot be created fails
// its nodes at full concurrency: every busy worker shares one creation
// attempt (no node waits for another node's invocation), so a failing
// creation fails Concurrency nodes at once, and the build makes far fewer
// creation calls than it has nodes.
func TestSchemaFailureKeepsConcurrency(t *testing.T) {
	checkNoLeak(t)
	const n, conc = 48, 8
	m := wide(n, "bad")
	fake := newSchemaFake(map[string]script{}, 20*time.Millisecond, "bad")
	o, err := orchestrator.New(orchestrator.Config{Executor: fake, Manifest: m, Concurrency: conc})
	require.NoError(t, err)
	run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
	require.Error(t, err)
	shared := map[string]int{}
	for _, res := range run.Results {
		require.Equal(t, orchestrator.Error, res.Status)
		shared[res.Err.Message]++
	}
	most := 0
	for _, k := range shared {
		most = max(most, k)
	}
	assert.Equal(t, conc, most, "nodes failed by one creation: %v", shared)
	assert.LessOrEqual(t, int(fake.n.Load())*2, n, "creation calls")
	assert.Zero(t, fake.active.Load())
	assert.Empty(t, fake.byNode(), "nothing ran")
}

// TestSchemaCreationConcurrency: once created, invocations into a schema
// run at full concurrency; the creation's time is WaitTime, not execution,
// and does not count toward NodeTimeout.
func TestSchemaCreationConcurrency(t *testing.T) {
	checkNoLeak(t)
	const n, conc = 24, 6
	m := wide(n, "s")
	scripts := map[string]script{}
	for id := range m.Nodes {
		scripts[id] = script{dur: 10 * time.Millisecond}
	}
	fake := newSchemaFake(scripts, 80*time.Millisecond)
	o, err := orchestrator.New(orchestrator.Config{Executor: fake, Manifest: m, Concurrency: conc, NodeTimeout: 40 * time.Millisecond})
	require.NoError(t, err)
	run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, n, run.Count(orchestrator.Success))
	assert.EqualValues(t, conc, fake.peak.Load(), "peak concurrency")
	assert.EqualValues(t, 1, fake.n.Load(), "creations")
	waitedLong := 0
	for _, res := range run.Results {
		if res.WaitTime >= 80*time.Millisecond {
			waitedLong++
		}
		assert.Less(t, res.CompletedAt.Sub(res.StartedAt), 80*time.Millisecond, "%s: creation counted as execution", res.UniqueID)
	}
	assert.GreaterOrEqual(t, waitedLong, conc, "the first nodes waited for the creation")
}

// TestSchemasTwoBuilds: two builds of one orchestrator at once share the
// creation in flight; neither runs a node before the schema exists.
func TestSchemasTwoBuilds(t *testing.T) {
	checkNoLeak(t)
	m := wide(12, "s")
	fake := newSchemaFake(map[string]script{}, 30*time.Millisecond)
	o, err := orchestrator.New(orchestrator.Config{Executor: fake, Manifest: m, Concurrency: 4})
	require.NoError(t, err)
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
			assert.NoError(t, err)
		}()
	}
	wg.Wait()
	assert.LessOrEqual(t, fake.n.Load(), int64(2))
	assert.Zero(t, fake.overlap)
	assert.Empty(t, fake.violations)
}

// TestSchemasCancelled: nodes waiting for a schema creation when the build
// is cancelled never ran: they are Skipped (build cancelled), per node and
// per wave, and the creation's context is cancelled.
func TestSchemasCancelled(t *testing.T) {
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		t.Run(mode.String(), func(t *testing.T) {
			checkNoLeak(t)
			m := manifestOf(randomDAG(rand.New(rand.NewPCG(3, 4)), 60))
			withSchemas(rand.New(rand.NewPCG(5, 6)), m, "a", "b")
			fake := newSchemaFake(map[string]script{}, 0)
			fake.block = true
			o, err := orchestrator.New(orchestrator.Config{Executor: fake, Manifest: m, Mode: mode, Concurrency: 8,
				Retry: orchestrator.RetryConfig{Retries: 2, Delay: time.Millisecond}})
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			go func() {
				<-fake.entered
				time.Sleep(10 * time.Millisecond)
				cancel()
			}()
			run, err := o.RunBuild(ctx, orchestrator.BuildOptions{})
			require.ErrorIs(t, err, context.Canceled)
			var be *orchestrator.BuildError
			assert.False(t, errors.As(err, &be), "no node failed: %v", err)
			for _, res := range run.Results {
				require.Equal(t, orchestrator.Skipped, res.Status, res.UniqueID)
				if !strings.HasPrefix(res.SkipReason, "upstream skipped") {
					assert.Equal(t, orchestrator.ReasonCancelled, res.SkipReason, res.UniqueID)
				}
				assert.Empty(t, res.Attempts)
			}
			assert.Empty(t, fake.byNode())
		})
	}
}

// TestPropertySchemaConcurrency: on random builds of independent models
// spread over three schemas (one of which, sometimes, cannot be created),
// schema creation never lowers concurrency: the executor runs
// Concurrency nodes at once whenever that many can run; and when the
// build is cancelled at a random point, every node that never ran is
// Skipped (or failed by its schema's creation), never an Error of its
// own.
func TestPropertySchemaConcurrency(t *testing.T) {
	for seed := range 8 {
		r := rand.New(rand.NewPCG(uint64(seed), 77))
		conc := 2 + r.IntN(5)
		bad := ""
		if r.IntN(2) == 0 {
			bad = "s2"
		}
		cancelAt := int64(0)
		if seed%2 == 1 {
			cancelAt = int64(1 + r.IntN(3*conc))
		}
		t.Run(fmt.Sprintf("seed%d/c%d/bad=%s/cancel=%d", seed, conc, bad, cancelAt), func(t *testing.T) {
			checkNoLeak(t)
			m := wide(6*conc, "s0")
			schemaOf := withSchemas(r, m, "s0", "s1", "s2")
			scripts := map[string]script{}
			good := 0
			for id, s := range schemaOf {
				scripts[id] = script{dur: 15 * time.Millisecond}
				if s != bad {
					good++
				}
			}
			fake := newSchemaFake(scripts, time.Duration(r.IntN(4))*time.Millisecond)
			if bad != "" {
				fake.bad[bad] = true
			}
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var started atomic.Int64
			fake.onStart = func(string) {
				if started.Add(1) == cancelAt {
					cancel()
				}
			}
			o, err := orchestrator.New(orchestrator.Config{Executor: fake, Manifest: m, Concurrency: conc})
			require.NoError(t, err)
			run, _ := o.RunBuild(ctx, orchestrator.BuildOptions{})
			require.NotNil(t, run)
			calls := fake.byNode()
			for _, res := range run.Results {
				if len(calls[res.UniqueID]) > 0 {
					continue
				}
				if res.Status == orchestrator.Error {
					require.NotNil(t, res.Err)
					assert.Contains(t, res.Err.Message, "creating schemas", "%s never ran yet failed", res.UniqueID)
					assert.Equal(t, bad, schemaOf[res.UniqueID], res.UniqueID)
					continue
				}
				assert.Equal(t, orchestrator.Skipped, res.Status, "%s never ran", res.UniqueID)
			}
			if cancelAt == 0 {
				assert.Equal(t, good, run.Count(orchestrator.Success))
				if good >= conc {
					assert.EqualValues(t, conc, fake.peak.Load(), "peak concurrency with schemas being created")
				}
			}
		})
	}
}

// BenchmarkSchemaFailureConcurrency: a per-node build of 64 independent
// 20 ms models at concurrency 8, half of them in a schema whose creation
// always fails (5 ms), beside the same build with every schema creatable:
// the build keeps 8 invocations running (peak) and its wall time stays
// that of the good half, instead of crawling at concurrency 1 as the old
// per-schema gate did while the schema failed.
func BenchmarkSchemaFailureConcurrency(b *testing.B) {
	const n, conc = 64, 8
	for _, bad := range []bool{false, true} {
		b.Run(fmt.Sprintf("failing-schema=%t", bad), func(b *testing.B) {
			var peak int64
			var wall time.Duration
			for range b.N {
				m := wide(n, "good")
				scripts := map[string]script{}
				k := 0
				for id, x := range m.Nodes {
					scripts[id] = script{dur: 20 * time.Millisecond}
					if bad && k%2 == 0 {
						x.Schema = "bad"
					}
					k++
				}
				fake := newSchemaFake(scripts, 5*time.Millisecond, "bad")
				o, err := orchestrator.New(orchestrator.Config{Executor: fake, Manifest: m, Concurrency: conc})
				require.NoError(b, err)
				t0 := time.Now()
				run, _ := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
				wall += time.Since(t0)
				peak = max(peak, fake.peak.Load())
				want := n
				if bad {
					want = n / 2
				}
				require.Equal(b, want, run.Count(orchestrator.Success))
			}
			b.ReportMetric(float64(peak), "peak-concurrency")
			b.ReportMetric(float64(wall.Milliseconds())/float64(b.N), "wall-ms")
		})
	}
}

// serialFake is a schemaFake whose SerialSchemas says serial
// (executor.SerialSchemaCreator), as a warm executor of one worker does.
type serialFake struct {
	*schemaFake
	serial bool
}

func (f *serialFake) SerialSchemas() bool { return f.serial }

// TestSerialSchemas: an executor whose invocations never create schemas
// at once (SerialSchemas true) is not asked to create a build's schemas
// ahead of its nodes, in either mode: its invocations create their own,
// and none waits for a creation. One that says false is asked once, as
// any SchemaCreator.
func TestSerialSchemas(t *testing.T) {
	for _, mode := range []orchestrator.Mode{orchestrator.PerNode, orchestrator.PerWave} {
		for _, serial := range []bool{true, false} {
			t.Run(fmt.Sprintf("%s/serial=%v", mode, serial), func(t *testing.T) {
				checkNoLeak(t)
				m := wide(6, "s")
				fake := &serialFake{schemaFake: newSchemaFake(map[string]script{}, 30*time.Millisecond), serial: serial}
				o, err := orchestrator.New(orchestrator.Config{Executor: fake, Manifest: m, Mode: mode, Concurrency: 3})
				require.NoError(t, err)
				run, err := o.RunBuild(context.Background(), orchestrator.BuildOptions{})
				require.NoError(t, err)
				assert.Equal(t, 6, run.Count(orchestrator.Success))
				fake.mu.Lock()
				defer fake.mu.Unlock()
				if serial {
					assert.Empty(t, fake.creates, "creations asked of a serial creator")
					for _, res := range run.Results {
						assert.Less(t, res.WaitTime, 30*time.Millisecond, "%s waited for a creation", res.UniqueID)
					}
					return
				}
				assert.Len(t, fake.creates, 1)
				assert.Empty(t, fake.violations)
			})
		}
	}
}
