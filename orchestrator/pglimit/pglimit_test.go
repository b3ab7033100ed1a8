package pglimit_test

import (
	"bufio"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/internal/syncbuf"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/pglimit"
)

// Short lease times keep the tests fast; the heartbeat is a third of it.
const (
	testLease = time.Second
	testPoll  = 10 * time.Millisecond
)

// Helper processes: the test binary re-executed with helperEnv naming
// what to do (see TestMain).
const (
	helperEnv  = "PGLIMIT_TEST_HELPER"
	urlEnv     = "PGLIMIT_TEST_URL"
	outEnv     = "PGLIMIT_TEST_OUT"
	runEnv     = "PGLIMIT_TEST_RUN"
	sleepQuery = "SELECT pg_sleep($1::float8) /* pglimit-test-sleep */"
)

// nodeRuns is the table where helper processes' nodes record, on the
// database's clock, when their warehouse work started and ended.
const nodeRuns = `CREATE TABLE IF NOT EXISTS public.pglimit_node_runs (
	id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
	run     text NOT NULL,
	node    text NOT NULL,
	started timestamptz NOT NULL DEFAULT clock_timestamp(),
	ended   timestamptz)`

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "build", "relation", "relation-cached":
		if err := helperBuild(os.Getenv(helperEnv)); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	case "hold":
		if err := helperHold(); err != nil {
			fmt.Fprintln(os.Stderr, "helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	fmt.Fprintln(os.Stderr, "helper: unknown mode", os.Getenv(helperEnv))
	os.Exit(2)
}

// pgURL returns the URL of the test server's database.
func pgURL(pg dbttest.PG) string {
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable&application_name=pglimit-test", pg.User, pg.Host, pg.Port, pg.DBName)
}

func openStore(t testing.TB, url string, opts pglimit.Options) *pglimit.Store {
	t.Helper()
	if opts.Lease == 0 {
		opts.Lease = testLease
	}
	if opts.Poll == 0 {
		opts.Poll = testPoll
	}
	s, err := pglimit.Open(context.Background(), url, opts)
	require.NoError(t, err)
	t.Cleanup(func() { assert.NoError(t, s.Close()) })
	return s
}

func count(t testing.TB, pool *pgxpool.Pool, sql string, args ...any) int {
	t.Helper()
	var n int
	require.NoError(t, pool.QueryRow(context.Background(), sql, args...).Scan(&n))
	return n
}

// TestPostgres runs the limiter's tests on one real PostgreSQL server of
// the test harness.
func TestPostgres(t *testing.T) {
	pg := dbttest.StartPostgres(t)
	url := pgURL(pg)
	pool, err := pgxpool.New(context.Background(), url)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	_, err = pool.Exec(context.Background(), nodeRuns)
	require.NoError(t, err)
	_, err = pool.Exec(context.Background(), `CREATE TABLE public.pglimit_cache (run text, node text, key text, PRIMARY KEY (run, node))`)
	require.NoError(t, err)

	t.Run("ConcurrentSchemaCreation", func(t *testing.T) { testConcurrentSchema(t, url, pool) })
	t.Run("IdempotentHolder", func(t *testing.T) { testIdempotent(t, url, pool) })
	t.Run("FIFO", func(t *testing.T) { testFIFO(t, url) })
	t.Run("CancelNeverLeaks", func(t *testing.T) { testCancel(t, url, pool) })
	t.Run("Heartbeat", func(t *testing.T) { testHeartbeat(t, url) })
	t.Run("ReleaseDuringHeartbeat", func(t *testing.T) { testReleaseDuringHeartbeat(t, url) })
	t.Run("NoSessionState", func(t *testing.T) { testNoSession(t, url, pool) })
	t.Run("Processes", func(t *testing.T) { testProcesses(t, url, pool, "processes") })
	t.Run("SIGKILL", func(t *testing.T) { testSIGKILL(t, url) })
	t.Run("RelationLockProcesses", func(t *testing.T) { testRelationProcesses(t, url, pool) })
	t.Run("RelationLockCacheProcesses", func(t *testing.T) { testRelationCache(t, url, pool) })
	// Behind PgBouncer in transaction pooling mode, with fewer server
	// connections than clients: every store's consecutive transactions
	// land on whichever server session is free.
	t.Run("PgBouncer", func(t *testing.T) {
		burl := dbttest.StartPgBouncer(t, pg, 4).URL(pg, "")
		t.Run("IdempotentHolder", func(t *testing.T) { testIdempotent(t, burl, pool) })
		t.Run("FIFO", func(t *testing.T) { testFIFO(t, burl) })
		t.Run("CancelNeverLeaks", func(t *testing.T) { testCancel(t, burl, pool) })
		t.Run("Processes", func(t *testing.T) { testProcesses(t, burl, pool, "processes-pgbouncer") })
	})
}

// testConcurrentSchema opens eight stores on a new schema at once: every
// one succeeds, and the tables exist once.
func testConcurrentSchema(t *testing.T, url string, pool *pgxpool.Pool) {
	var wg sync.WaitGroup
	errs := make([]error, 8)
	for k := range errs {
		wg.Go(func() {
			s, err := pglimit.Open(context.Background(), url, pglimit.Options{Schema: "race_schema", Lease: testLease})
			if err == nil {
				err = s.Close()
			}
			errs[k] = err
		})
	}
	wg.Wait()
	for _, err := range errs {
		assert.NoError(t, err)
	}
	assert.Equal(t, 2, count(t, pool, `SELECT count(*) FROM pg_tables WHERE schemaname = 'race_schema'`))
}

// testIdempotent acquires twice under one holder id: one slot is taken,
// the other stays free, and one release frees it.
func testIdempotent(t *testing.T, url string, pool *pgxpool.Pool) {
	s := openStore(t, url, pglimit.Options{})
	l, err := s.Limit("idem", 2)
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, l.AcquireAs(ctx, "job-1"))
	require.NoError(t, l.AcquireAs(ctx, "job-1"), "a retried acquire")
	holders, err := s.Holders(ctx, "idem")
	require.NoError(t, err)
	require.Len(t, holders, 1)
	assert.Equal(t, "job-1", holders[0].Holder)
	short, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	defer cancel()
	require.NoError(t, l.AcquireAs(short, "job-2"), "the second slot is free")
	require.NoError(t, l.ReleaseAs(ctx, "job-1"))
	require.NoError(t, l.ReleaseAs(ctx, "job-2"))
	assert.Zero(t, count(t, pool, `SELECT count(*) FROM dbtorch.limit_leases WHERE limit_name = 'idem'`))

	again, err := s.Limit("idem", 2)
	require.NoError(t, err)
	assert.Same(t, l, again)
	_, err = s.Limit("idem", 3)
	assert.ErrorContains(t, err, `limit "idem" already has 2 slots, not 3`)
	_, err = s.Limit("", 1)
	assert.Error(t, err)
}

// testFIFO queues waiters on a one-slot limit from two stores (as two
// processes would) and checks they are served in arrival order, also
// against a newcomer that arrives when the slot is freed.
func testFIFO(t *testing.T, url string) {
	a, b := openStore(t, url, pglimit.Options{Holder: "a"}), openStore(t, url, pglimit.Options{Holder: "b"})
	la, err := a.Limit("fifo", 1)
	require.NoError(t, err)
	lb, err := b.Limit("fifo", 1)
	require.NoError(t, err)
	ctx := t.Context()
	require.NoError(t, la.AcquireAs(ctx, "first"))

	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	queue := func(l *pglimit.Limit, holder string) {
		wg.Go(func() {
			if assert.NoError(t, l.AcquireAs(ctx, holder)) {
				mu.Lock()
				order = append(order, holder)
				mu.Unlock()
				time.Sleep(20 * time.Millisecond)
				assert.NoError(t, l.ReleaseAs(ctx, holder))
			}
		})
	}
	waiting := func(n int) {
		require.Eventually(t, func() bool {
			var got int
			_ = a.Pool().QueryRow(ctx, `SELECT count(*) FROM dbtorch.limit_waiters WHERE limit_name = 'fifo'`).Scan(&got)
			return got == n
		}, 5*time.Second, time.Millisecond)
	}
	// Alternate the stores, so that a store's local wake-up cannot explain
	// the order.
	for k, l := range []*pglimit.Limit{lb, la, lb, la} {
		queue(l, fmt.Sprintf("w%d", k))
		waiting(k + 1)
	}
	require.NoError(t, la.ReleaseAs(ctx, "first"))
	queue(la, "newcomer")
	wg.Wait()
	assert.Equal(t, []string{"w0", "w1", "w2", "w3", "newcomer"}, order)
}

// testCancel runs many acquirers with random deadlines against a small
// limit: those that time out hold nothing, those that succeed release,
// and afterwards no lease or waiter is left.
func testCancel(t *testing.T, url string, pool *pgxpool.Pool) {
	s := openStore(t, url, pglimit.Options{})
	l, err := s.Limit("cancel", 2)
	require.NoError(t, err)
	var held, peak, timedOut atomic.Int64
	var wg sync.WaitGroup
	for range 40 {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(t.Context(), time.Duration(rand.IntN(40))*time.Millisecond)
			defer cancel()
			if err := l.Acquire(ctx); err != nil {
				assert.ErrorIs(t, err, context.DeadlineExceeded)
				timedOut.Add(1)
				return
			}
			h := held.Add(1)
			for p := peak.Load(); h > p && !peak.CompareAndSwap(p, h); p = peak.Load() {
			}
			time.Sleep(5 * time.Millisecond)
			held.Add(-1)
			l.Release()
		})
	}
	wg.Wait()
	assert.LessOrEqual(t, peak.Load(), int64(2))
	assert.Positive(t, timedOut.Load(), "some acquirers gave up")
	assert.Zero(t, count(t, pool, `SELECT count(*) FROM dbtorch.limit_leases WHERE limit_name = 'cancel'`), "no leaked lease")
	assert.Zero(t, count(t, pool, `SELECT count(*) FROM dbtorch.limit_waiters WHERE limit_name = 'cancel'`), "no leaked waiter")
	// Both slots must be free now: a generous bound, since what is checked
	// is that no cancelled acquirer kept a slot, not how fast a grant is
	// (behind PgBouncer under the race detector one took over 100 ms).
	short, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	require.NoError(t, l.Acquire(short))
	require.NoError(t, l.Acquire(short), "both slots are free")
	l.Release()
	l.Release()
}

// testHeartbeat holds a one-slot limit for two lease times: heartbeats
// keep the lease, so another store cannot take the slot meanwhile.
func testHeartbeat(t *testing.T, url string) {
	const lease = 600 * time.Millisecond
	a, b := openStore(t, url, pglimit.Options{Lease: lease}), openStore(t, url, pglimit.Options{Lease: lease})
	la, err := a.Limit("hb", 1)
	require.NoError(t, err)
	lb, err := b.Limit("hb", 1)
	require.NoError(t, err)
	require.NoError(t, la.Acquire(t.Context()))
	ctx, cancel := context.WithTimeout(t.Context(), 2*lease)
	defer cancel()
	assert.ErrorIs(t, lb.Acquire(ctx), context.DeadlineExceeded, "the held lease is renewed")
	la.Release()
	short, cancel2 := context.WithTimeout(t.Context(), lease/2)
	defer cancel2()
	require.NoError(t, lb.Acquire(short), "released: taken at once")
	lb.Release()
}

// testReleaseDuringHeartbeat releases and takes again one holder's slot
// over and over while heartbeats run every few milliseconds: a lease
// released (or released and granted again) while a heartbeat ran is not
// reported lost, and the lease held at the end is still renewed, so it
// outlives several lease times.
func testReleaseDuringHeartbeat(t *testing.T, url string) {
	const lease = 300 * time.Millisecond
	var logs syncbuf.Buffer
	s := openStore(t, url, pglimit.Options{Lease: lease, Heartbeat: 2 * time.Millisecond,
		Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	l, err := s.Limit("churn", 1)
	require.NoError(t, err)
	ctx := t.Context()
	deadline := time.Now().Add(time.Second)
	cycles := 0
	for ; time.Now().Before(deadline); cycles++ {
		require.NoError(t, l.AcquireAs(ctx, "same"))
		time.Sleep(time.Duration(rand.IntN(2000)) * time.Microsecond) // a heartbeat may start meanwhile
		require.NoError(t, l.ReleaseAs(ctx, "same"))
	}
	require.NoError(t, l.AcquireAs(ctx, "same"))
	time.Sleep(3 * lease)
	holders, err := s.Holders(ctx, "churn")
	require.NoError(t, err)
	require.Len(t, holders, 1, "the lease held at the end is renewed")
	require.NoError(t, l.ReleaseAs(ctx, "same"))
	t.Logf("%d acquire/release cycles under a 2ms heartbeat", cycles)
	assert.NotContains(t, logs.String(), "lease lost", "a released lease is not a lost one")
}

// testNoSession checks what a transaction-pooling proxy needs: no
// advisory lock is held between statements (every one is
// transaction-level), and a lease is not tied to a connection: it
// survives the termination of every connection of its store and is
// released over a new one.
func testNoSession(t *testing.T, url string, pool *pgxpool.Pool) {
	s := openStore(t, url, pglimit.Options{})
	l, err := s.Limit("nosession", 2)
	require.NoError(t, err)
	require.NoError(t, l.AcquireAs(t.Context(), "x"))
	require.NoError(t, l.AcquireAs(t.Context(), "y"))
	assert.Zero(t, count(t, pool, `SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'`), "no advisory lock outlives its transaction")
	assert.Zero(t, count(t, s.Pool(), `SELECT count(*) FROM pg_prepared_statements`), "no named prepared statements on the store's connections")

	count(t, pool, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'pglimit-test' AND pid <> pg_backend_pid()`)
	holders, err := s.Holders(t.Context(), "nosession")
	require.NoError(t, err, "the store reconnects")
	assert.Len(t, holders, 2, "leases live in rows, not sessions")
	require.NoError(t, l.ReleaseAs(t.Context(), "x"))
	require.NoError(t, l.ReleaseAs(t.Context(), "y"))
	holders, err = s.Holders(t.Context(), "nosession")
	require.NoError(t, err)
	assert.Empty(t, holders)
}

// interval is one node's run as its result reports it.
type interval struct {
	ID         string
	Start, End time.Time
	Wait       time.Duration
	Status     orchestrator.Status
}

// dbIntervals returns the node runs that the helpers of run recorded in
// the database, on its clock.
func dbIntervals(t *testing.T, pool *pgxpool.Pool, run string) []interval {
	t.Helper()
	rows, err := pool.Query(context.Background(), `SELECT node, started, ended FROM public.pglimit_node_runs WHERE run = $1`, run)
	require.NoError(t, err)
	var out []interval
	for rows.Next() {
		var iv interval
		var ended *time.Time
		require.NoError(t, rows.Scan(&iv.ID, &iv.Start, &ended))
		require.NotNil(t, ended, "%s: node run never ended", iv.ID)
		iv.End = *ended
		out = append(out, iv)
	}
	require.NoError(t, rows.Err())
	return out
}

// peakOverlap returns the most intervals that overlap at one instant.
func peakOverlap(ivs []interval) int {
	spans := make([]dbttest.Interval, len(ivs))
	for k, iv := range ivs {
		spans[k] = dbttest.Interval{Start: iv.Start, End: iv.End}
	}
	return dbttest.PeakOverlap(spans)
}

// sampler polls the database every few milliseconds for the peak of
// sleeping helper queries (nodes in flight as the warehouse sees them) and
// of live leases of the limit.
type sampler struct {
	queries, leases atomic.Int64
	stop            chan struct{}
	done            chan struct{}
}

func startSampler(t *testing.T, pool *pgxpool.Pool, limit string) *sampler {
	s := &sampler{stop: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(s.done)
		for {
			select {
			case <-s.stop:
				return
			case <-time.After(2 * time.Millisecond):
			}
			var q, l int64
			err := pool.QueryRow(context.Background(), `SELECT
				(SELECT count(*) FROM pg_stat_activity WHERE state = 'active' AND query LIKE '%pglimit-test-sleep%' AND pid <> pg_backend_pid()),
				(SELECT count(*) FROM dbtorch.limit_leases WHERE limit_name = $1 AND expires_at >= clock_timestamp())`, limit).Scan(&q, &l)
			if err != nil {
				continue
			}
			for _, c := range []struct {
				p *atomic.Int64
				v int64
			}{{&s.queries, q}, {&s.leases, l}} {
				for p := c.p.Load(); c.v > p && !c.p.CompareAndSwap(p, c.v); p = c.p.Load() {
				}
			}
		}
	}()
	t.Cleanup(s.halt)
	return s
}

func (s *sampler) halt() {
	select {
	case <-s.stop:
	default:
		close(s.stop)
	}
	<-s.done
}

// helperCmd returns the test binary as a helper process in mode.
func helperCmd(t *testing.T, mode, url, out string, env ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode, urlEnv + "=" + url, outEnv + "=" + out}, env...)...)
	cmd.Stderr = os.Stderr
	return cmd
}

// runHelpers runs n helper processes in mode at once and returns every
// node interval they report. A build helper starts its build only when
// all n have opened their stores (barrier).
func runHelpers(t *testing.T, n int, mode, url string, env ...string) [][]interval {
	dir := t.TempDir()
	cmds := make([]*exec.Cmd, n)
	for k := range cmds {
		cmds[k] = helperCmd(t, mode, url, filepath.Join(dir, fmt.Sprintf("out%d.json", k)), append(env, "PGLIMIT_TEST_PROC="+strconv.Itoa(k), "PGLIMIT_TEST_PROCS="+strconv.Itoa(n))...)
		require.NoError(t, cmds[k].Start())
	}
	out := make([][]interval, n)
	for k, cmd := range cmds {
		require.NoError(t, cmd.Wait(), "helper %d", k)
		data, err := os.ReadFile(filepath.Join(dir, fmt.Sprintf("out%d.json", k)))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(data, &out[k]))
	}
	return out
}

// testProcesses runs three processes, each a build of eight independent
// nodes with four workers, sharing a limit of two: at no instant are more
// than two nodes in flight, as measured from the database (the node runs
// each node logs on the database's clock, and a sampler of sleeping
// queries and live leases) and from the results' timestamps.
func testProcesses(t *testing.T, url string, pool *pgxpool.Pool, run string) {
	const procs, slots, nodes = 3, 2, 8
	smp := startSampler(t, pool, "wh")
	runs := runHelpers(t, procs, "build", url, "PGLIMIT_TEST_SLOTS="+strconv.Itoa(slots), "PGLIMIT_TEST_NODES="+strconv.Itoa(nodes),
		runEnv+"="+run)
	smp.halt()
	logged := dbIntervals(t, pool, run)
	require.Len(t, logged, procs*nodes, "every node's run is in the database's log")
	assert.Equal(t, slots, peakOverlap(logged), "database's clock: never more than the limit in flight, and the limit used")
	var all []interval
	var waited time.Duration
	for _, r := range runs {
		require.Len(t, r, nodes)
		all = append(all, r...)
		for _, iv := range r {
			waited += iv.Wait
		}
	}
	assert.Equal(t, slots, peakOverlap(all), "results' timestamps: never more than the limit in flight, and the limit used")
	assert.LessOrEqual(t, smp.queries.Load(), int64(slots), "database: sleeping node queries")
	assert.LessOrEqual(t, smp.leases.Load(), int64(slots), "database: live leases")
	assert.Positive(t, smp.queries.Load(), "the sampler saw the nodes")
	assert.Greater(t, waited, time.Duration(procs*nodes/slots-1)*nodeSleep, "nodes waited for the shared slots")
}

// nodeSleep is how long a helper's node runs.
const nodeSleep = 40 * time.Millisecond

// testSIGKILL has a helper process take the only slot of a limit and get
// SIGKILLed holding it: another store takes the slot within the lease
// time, and not before the kill.
func testSIGKILL(t *testing.T, url string) {
	cmd := helperCmd(t, "hold", url, "")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	line, err := bufio.NewReader(stdout).ReadString('\n')
	require.NoError(t, err)
	require.Equal(t, "held\n", line)

	s := openStore(t, url, pglimit.Options{})
	l, err := s.Limit("kill", 1)
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(t.Context(), testLease+testLease/5)
	defer cancel()
	require.ErrorIs(t, l.Acquire(ctx), context.DeadlineExceeded, "the live helper keeps its slot past a lease time")

	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	_ = cmd.Wait()
	killed := time.Now()
	ctx, cancel = context.WithTimeout(t.Context(), 5*testLease)
	defer cancel()
	require.NoError(t, l.Acquire(ctx))
	took := time.Since(killed)
	t.Logf("slot of the SIGKILLed holder taken after %v (lease %v)", took, testLease)
	assert.Less(t, took, testLease+100*time.Millisecond, "within the lease time")
	l.Release()
}

// testRelationProcesses runs two processes building the same four
// relations with shared relation locks: for every relation the two
// builds' runs do not overlap, and the later build waited.
func testRelationProcesses(t *testing.T, url string, pool *pgxpool.Pool) {
	runs := runHelpers(t, 2, "relation", url, "PGLIMIT_TEST_NODES=4", runEnv+"=relation")
	logged := map[string][]interval{}
	for _, iv := range dbIntervals(t, pool, "relation") {
		logged[iv.ID] = append(logged[iv.ID], iv)
	}
	byNode := map[string][]interval{}
	var waited time.Duration
	for _, r := range runs {
		for _, iv := range r {
			byNode[iv.ID] = append(byNode[iv.ID], iv)
			waited += iv.Wait
		}
	}
	require.Len(t, byNode, 4)
	for id, ivs := range byNode {
		require.Len(t, ivs, 2)
		assert.Equal(t, 1, peakOverlap(ivs), "%s built by both processes at once: %+v", id, ivs)
		require.Len(t, logged[id], 2, id)
		assert.Equal(t, 1, peakOverlap(logged[id]), "database's clock: %s built by both processes at once: %+v", id, logged[id])
	}
	assert.Greater(t, waited, 3*nodeSleep, "the later build waited for the relations")
}

// testRelationCache runs two processes building the same three
// relations with shared relation locks and a cache shared through the
// database: the process that waited for a relation the other built under
// the same key is served from the cache, so every relation is built once
// (as the database's node-run log shows) and every served node waited.
func testRelationCache(t *testing.T, url string, pool *pgxpool.Pool) {
	const nodes = 3
	runs := runHelpers(t, 2, "relation-cached", url, "PGLIMIT_TEST_NODES="+strconv.Itoa(nodes), runEnv+"=relation-cached")
	built := map[string]int{}
	for _, iv := range dbIntervals(t, pool, "relation-cached") {
		built[iv.ID]++
	}
	cached := 0
	for _, r := range runs {
		require.Len(t, r, nodes)
		for _, iv := range r {
			if iv.Status == orchestrator.Cached {
				cached++
				assert.Positive(t, iv.Wait, "%s waited for the other process's build of its relation", iv.ID)
			}
		}
	}
	assert.Len(t, built, nodes)
	for id, n := range built {
		assert.Equal(t, 1, n, "%s built once across the two processes", id)
	}
	assert.Equal(t, nodes, cached, "the other process served every relation from the cache")
}

// wideManifest has n independent models.
func wideManifest(n int) *manifest.Manifest {
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}}
	for i := range n {
		id := fmt.Sprintf("model.p.m%d", i)
		m.Nodes[id] = &manifest.Node{UniqueID: id, Name: fmt.Sprintf("m%d", i), ResourceType: manifest.Model, PackageName: "p",
			Path: "m.sql", OriginalFilePath: "models/m.sql", Enabled: true, Materialized: "table", RawCode: "select 1",
			FQN: []string{"p", fmt.Sprintf("m%d", i)}, RelationName: fmt.Sprintf(`"db"."main"."m%d"`, i)}
	}
	return m
}

// sleepExec runs every node as a pg_sleep query on the database, so that
// the database sees the nodes in flight, between a row in nodeRuns
// recording its start and the row's update recording its end.
type sleepExec struct {
	pool  *pgxpool.Pool
	run   string
	sleep time.Duration // zero: nodeSleep
}

func (e sleepExec) Execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	start := time.Now()
	var id int64
	if err := e.pool.QueryRow(ctx, `INSERT INTO public.pglimit_node_runs (run, node) VALUES ($1, $2) RETURNING id`,
		e.run, req.Nodes[0].UniqueID).Scan(&id); err != nil {
		return nil, err
	}
	if _, err := e.pool.Exec(ctx, sleepQuery, cmp.Or(e.sleep, nodeSleep).Seconds()); err != nil {
		return nil, err
	}
	if _, err := e.pool.Exec(ctx, `UPDATE public.pglimit_node_runs SET ended = clock_timestamp() WHERE id = $1`, id); err != nil {
		return nil, err
	}
	return succeeded(req, start), nil
}

// succeeded is the response of an invocation that started at start, ends
// now and succeeded every node.
func succeeded(req executor.Request, start time.Time) *executor.Response {
	resp := &executor.Response{Invocation: executor.Invocation{Command: req.Command, Started: start, Ended: time.Now()}}
	for _, n := range req.Nodes {
		resp.Results = append(resp.Results, executor.Result{UniqueID: n.UniqueID, Status: executor.Success})
	}
	return resp
}

// buildWide runs one build of wideManifest(nodes) on ex with four workers
// under limits, with cache (nil: none).
func buildWide(ctx context.Context, ex executor.Executor, nodes int, cache orchestrator.Cache, limits ...orchestrator.NodeLimit) (*orchestrator.Run, error) {
	o, err := orchestrator.New(orchestrator.Config{Executor: ex, Manifest: wideManifest(nodes), Concurrency: 4, Limits: limits, Cache: cache})
	if err != nil {
		return nil, err
	}
	return o.RunBuild(ctx, orchestrator.BuildOptions{})
}

// helperBuild runs one build over the shared store: "build" with a limit
// "wh" of PGLIMIT_TEST_SLOTS slots on every node, "relation" with
// relation locks only. It writes the nodes' intervals to outEnv.
func helperBuild(mode string) error {
	ctx := context.Background()
	nodes, _ := strconv.Atoi(os.Getenv("PGLIMIT_TEST_NODES"))
	s, err := pglimit.Open(ctx, os.Getenv(urlEnv), pglimit.Options{Lease: testLease, Poll: testPoll, Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))})
	if err != nil {
		return err
	}
	defer s.Close()
	var limits []orchestrator.NodeLimit
	if mode == "build" {
		slots, _ := strconv.Atoi(os.Getenv("PGLIMIT_TEST_SLOTS"))
		wh, err := s.NodeLimit("wh", slots, nil)
		if err != nil {
			return err
		}
		limits = append(limits, wh)
	} else {
		limits = append(limits, s.RelationLocks())
	}
	ex := sleepExec{pool: s.Pool(), run: os.Getenv(runEnv)}
	var cache orchestrator.Cache
	if mode == "relation-cached" {
		// Both processes start building together, and a node runs long
		// enough for the other process to be waiting for its relation.
		cache, ex.sleep = dbCache{pool: s.Pool(), run: ex.run}, 300*time.Millisecond
	}
	// Every mode's checks that nodes waited for each other hold only when
	// the processes build together, not one after another's start-up.
	procs, _ := strconv.Atoi(os.Getenv("PGLIMIT_TEST_PROCS"))
	if err := barrier(ctx, s.Pool(), ex.run, procs); err != nil {
		return err
	}
	run, err := buildWide(ctx, ex, nodes, cache, limits...)
	if err != nil {
		return err
	}
	var out []interval
	for _, r := range run.Results {
		out = append(out, interval{ID: r.UniqueID, Start: r.StartedAt, End: r.CompletedAt, Wait: r.WaitTime, Status: r.Status})
	}
	data, err := json.Marshal(out)
	if err != nil {
		return err
	}
	return os.WriteFile(os.Getenv(outEnv), data, 0o644)
}

// barrier waits until n helper processes of run have reached it.
func barrier(ctx context.Context, pool *pgxpool.Pool, run string, n int) error {
	if _, err := pool.Exec(ctx, `INSERT INTO public.pglimit_cache (run, node, key) VALUES ($1, $2, '')`,
		run+"/ready", os.Getenv("PGLIMIT_TEST_PROC")); err != nil {
		return err
	}
	for {
		var got int
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM public.pglimit_cache WHERE run = $1`, run+"/ready").Scan(&got); err != nil {
			return err
		}
		if got >= n {
			return nil
		}
		time.Sleep(time.Millisecond)
	}
}

// dbCache is an orchestrator.Cache shared by the helper processes of one
// run through the database: every node's key is fixed, and an entry is
// a row recorded after a success.
type dbCache struct {
	pool *pgxpool.Pool
	run  string
}

func (dbCache) Key(_ context.Context, n *manifest.Node) (string, error) {
	return "k-" + n.UniqueID, nil
}

func (c dbCache) Lookup(ctx context.Context, n *manifest.Node, key string) (bool, string, error) {
	var hit bool
	err := c.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM public.pglimit_cache WHERE run = $1 AND node = $2 AND key = $3)`,
		c.run, n.UniqueID, key).Scan(&hit)
	if err != nil || !hit {
		return false, "no entry", err
	}
	return true, "unchanged", nil
}

func (c dbCache) Record(ctx context.Context, n *manifest.Node, key string, res *orchestrator.NodeResult) error {
	if res.Status != orchestrator.Success {
		return nil
	}
	_, err := c.pool.Exec(ctx, `INSERT INTO public.pglimit_cache (run, node, key) VALUES ($1, $2, $3)
		ON CONFLICT (run, node) DO UPDATE SET key = EXCLUDED.key`, c.run, n.UniqueID, key)
	return err
}

// helperHold takes the only slot of the limit "kill", says "held" and
// waits to be killed.
func helperHold() error {
	ctx := context.Background()
	s, err := pglimit.Open(ctx, os.Getenv(urlEnv), pglimit.Options{Lease: testLease, Poll: testPoll})
	if err != nil {
		return err
	}
	l, err := s.Limit("kill", 1)
	if err != nil {
		return err
	}
	if err := l.AcquireAs(ctx, "victim"); err != nil {
		return err
	}
	fmt.Println("held")
	time.Sleep(time.Minute)
	return errors.New("not killed")
}
