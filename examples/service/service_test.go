package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/internal/dbttest"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// sleepExec sleeps a little per request and records the peak number of
// requests running at once.
type sleepExec struct{ active, peak atomic.Int64 }

func (s *sleepExec) Execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	a := s.active.Add(1)
	defer s.active.Add(-1)
	for p := s.peak.Load(); a > p && !s.peak.CompareAndSwap(p, a); p = s.peak.Load() {
	}
	select {
	case <-time.After(3 * time.Millisecond):
	case <-ctx.Done():
	}
	resp := &executor.Response{}
	for _, n := range req.Nodes {
		resp.Results = append(resp.Results, executor.Result{UniqueID: n.UniqueID, Status: executor.Success})
	}
	return resp, nil
}

// wideManifest has n independent models.
func wideManifest(n int) *manifest.Manifest {
	m := &manifest.Manifest{Nodes: map[string]*manifest.Node{}}
	for i := range n {
		id := fmt.Sprintf("model.p.m%d", i)
		m.Nodes[id] = &manifest.Node{UniqueID: id, Name: fmt.Sprintf("m%d", i), ResourceType: manifest.Model, PackageName: "p",
			Path: "m.sql", OriginalFilePath: "models/m.sql", Enabled: true, Materialized: "table", RawCode: "select 1",
			FQN: []string{"p", fmt.Sprintf("m%d", i)}}
	}
	return m
}

func TestServiceSharesWarehouseLimit(t *testing.T) {
	ex := &sleepExec{}
	svc, err := NewService(ServiceConfig{Executor: ex, Manifest: wideManifest(40), WarehouseSlots: 3,
		ScheduledConcurrency: 3, RequestedConcurrency: 3, Logger: slog.New(slog.DiscardHandler)})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	srv := httptest.NewServer(svc.Handler(ctx))
	defer srv.Close()

	sched := svc.Start(ctx, "schedule", orchestrator.BuildOptions{})
	resp, err := http.Post(srv.URL+"/builds?select=m1+m2+m3", "", nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	var started map[string]string
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&started))
	resp.Body.Close()
	resp, err = http.Post(srv.URL+"/builds", "", nil)
	require.NoError(t, err)
	resp.Body.Close()

	resp, err = http.Post(srv.URL+"/builds?select="+url.QueryEscape("@m1+"), "", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusBadRequest, resp.StatusCode)

	svc.Wait()
	assert.LessOrEqual(t, ex.peak.Load(), int64(3), "scheduled and requested builds share three warehouse slots")
	assert.Equal(t, int64(3), ex.peak.Load())

	resp, err = http.Get(srv.URL + "/builds/" + started["id"])
	require.NoError(t, err)
	defer resp.Body.Close()
	var got struct {
		Status  string
		Results *artifacts.RunJSON
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&got))
	assert.Equal(t, "success", got.Status)
	require.NotNil(t, got.Results)
	assert.Len(t, got.Results.Results, 3)
	assert.Equal(t, "success", svc.status(sched))
}

// Helper processes: the test binary re-executed as one service instance
// (run, as main calls it, with a sleeping executor instead of dbt).
const (
	instanceEnv = "SERVICE_TEST_INSTANCE" // the instance's name
	argsEnv     = "SERVICE_TEST_ARGS"     // run's arguments, space-separated
	urlEnv      = "SERVICE_TEST_URL"      // the database the executor logs node runs in
	nodesEnv    = "SERVICE_TEST_NODES"
	nodeSleep   = 150 * time.Millisecond
)

func TestMain(m *testing.M) {
	if os.Getenv(instanceEnv) == "" {
		os.Exit(m.Run())
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	if err := run(ctx, strings.Fields(os.Getenv(argsEnv)), startSleep); err != nil {
		fmt.Fprintln(os.Stderr, "service:", err)
		os.Exit(1)
	}
}

// startSleep is the helper instance's starter: its manifest has
// SERVICE_TEST_NODES models of its own (relations named after the
// instance), and each node sleeps in the database between a start and an
// end recorded in service_node_runs on the database's clock.
func startSleep(ctx context.Context, _ dbt.Project, _ int, _ *slog.Logger) (executor.Executor, *manifest.Manifest, func(), error) {
	pool, err := pgxpool.New(ctx, os.Getenv(urlEnv))
	if err != nil {
		return nil, nil, nil, err
	}
	name := os.Getenv(instanceEnv)
	n, _ := strconv.Atoi(os.Getenv(nodesEnv))
	m := wideManifest(n)
	for _, node := range m.Nodes {
		node.RelationName = fmt.Sprintf(`"db"."%s"."%s"`, name, node.Name)
	}
	return pgSleepExec{pool: pool, instance: name}, m, pool.Close, nil
}

type pgSleepExec struct {
	pool     *pgxpool.Pool
	instance string
}

func (e pgSleepExec) Execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	resp := &executor.Response{}
	for _, n := range req.Nodes {
		var id int64
		if err := e.pool.QueryRow(ctx, `INSERT INTO service_node_runs (instance, node) VALUES ($1, $2) RETURNING id`, e.instance, n.UniqueID).Scan(&id); err != nil {
			return nil, err
		}
		if _, err := e.pool.Exec(ctx, `SELECT pg_sleep($1::float8)`, nodeSleep.Seconds()); err != nil {
			return nil, err
		}
		if _, err := e.pool.Exec(ctx, `UPDATE service_node_runs SET ended = clock_timestamp() WHERE id = $1`, id); err != nil {
			return nil, err
		}
		resp.Results = append(resp.Results, executor.Result{UniqueID: n.UniqueID, Status: executor.Success})
	}
	return resp, nil
}

// instance is a service instance running as a process of its own.
type instance struct {
	cmd  *exec.Cmd
	addr string
}

// startInstance starts the test binary as the service instance name with
// args and waits for it to listen.
func startInstance(t *testing.T, name, url string, nodes int, args ...string) *instance {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), instanceEnv+"="+name, argsEnv+"="+strings.Join(args, " "), urlEnv+"="+url, nodesEnv+"="+strconv.Itoa(nodes))
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	})
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			line := sc.Text()
			if _, rest, ok := strings.Cut(line, "msg=listening addr="); ok {
				addr <- strings.Fields(rest)[0]
			}
			if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") || strings.HasPrefix(line, "service:") {
				fmt.Fprintf(os.Stderr, "%s: %s\n", name, line)
			}
		}
	}()
	select {
	case a := <-addr:
		return &instance{cmd: cmd, addr: a}
	case <-time.After(30 * time.Second):
		t.Fatalf("instance %s did not listen", name)
		return nil
	}
}

// build starts a full build over the instance's HTTP API and returns
// the build's URL.
func (in *instance) build(t *testing.T) string {
	t.Helper()
	resp, err := http.Post("http://"+in.addr+"/builds", "", nil)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, http.StatusAccepted, resp.StatusCode)
	return "http://" + in.addr + resp.Header.Get("Location")
}

// result waits for the build at u to finish and returns its results.
func result(t *testing.T, u string) *artifacts.RunJSON {
	t.Helper()
	var got struct {
		Status  string
		Results *artifacts.RunJSON
	}
	require.Eventually(t, func() bool {
		resp, err := http.Get(u)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		got.Status = ""
		return json.NewDecoder(resp.Body).Decode(&got) == nil && got.Status != "running"
	}, time.Minute, 20*time.Millisecond)
	require.Equal(t, "success", got.Status)
	require.NotNil(t, got.Results)
	return got.Results
}

// stop sends SIGTERM and expects a clean exit.
func (in *instance) stop(t *testing.T) {
	t.Helper()
	require.NoError(t, in.cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, in.cmd.Wait(), "the instance exits cleanly on SIGTERM")
}

// TestServiceInstancesSharePostgresLimit runs two service instances as
// two processes (the service's command line, run, with --limit-store on
// the test harness's PostgreSQL and --warehouse-slots 2; only the executor
// is a stand-in that sleeps in the database instead of running dbt), each
// building its own eight models over its HTTP API at once: together they
// never run more than two nodes, as the database's log of node runs (on
// its clock) and the builds' results show, and they fill both slots. With
// a limit per instance four would run at once.
func TestServiceInstancesSharePostgresLimit(t *testing.T) {
	pg := dbttest.StartPostgres(t)
	url := fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", pg.User, pg.Host, pg.Port, pg.DBName)
	pool, err := pgxpool.New(t.Context(), url)
	require.NoError(t, err)
	defer pool.Close()
	_, err = pool.Exec(t.Context(), `CREATE TABLE service_node_runs (
		id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, instance text NOT NULL, node text NOT NULL,
		started timestamptz NOT NULL DEFAULT clock_timestamp(), ended timestamptz)`)
	require.NoError(t, err)

	const nodes, slots = 8, 2
	args := []string{"--project-dir", "unused", "--addr", "127.0.0.1:0", "--every", "0",
		"--warehouse-slots", strconv.Itoa(slots), "--limit-store", url}
	a, b := startInstance(t, "a", url, nodes, args...), startInstance(t, "b", url, nodes, args...)
	ua, ub := a.build(t), b.build(t)
	var all []dbttest.Interval
	var waited float64
	for _, u := range []string{ua, ub} {
		run := result(t, u)
		require.Len(t, run.Results, nodes)
		for _, r := range run.Results {
			require.NotNil(t, r.StartedAt, r.UniqueID)
			require.NotNil(t, r.CompletedAt, r.UniqueID)
			var iv dbttest.Interval
			iv.Start, err = time.Parse(time.RFC3339Nano, *r.StartedAt)
			require.NoError(t, err)
			iv.End, err = time.Parse(time.RFC3339Nano, *r.CompletedAt)
			require.NoError(t, err)
			all = append(all, iv)
			waited += r.WaitSeconds
		}
	}
	a.stop(t)
	b.stop(t)

	rows, err := pool.Query(t.Context(), `SELECT instance, started, ended FROM service_node_runs`)
	require.NoError(t, err)
	var logged []dbttest.Interval
	per := map[string]int{}
	for rows.Next() {
		var name string
		var iv dbttest.Interval
		require.NoError(t, rows.Scan(&name, &iv.Start, &iv.End))
		logged = append(logged, iv)
		per[name]++
	}
	require.NoError(t, rows.Err())
	assert.Equal(t, map[string]int{"a": nodes, "b": nodes}, per, "each instance ran its nodes")
	assert.Equal(t, slots, dbttest.PeakOverlap(logged), "database's clock: never more than the shared slots, and both used")
	assert.Equal(t, slots, dbttest.PeakOverlap(all), "results' timestamps: never more than the shared slots")
	assert.Positive(t, waited, "nodes waited for the shared slots")
	var leases int
	require.NoError(t, pool.QueryRow(t.Context(), `SELECT count(*) FROM dbtorch.limit_leases`).Scan(&leases))
	assert.Zero(t, leases, "the instances released every slot")
}
