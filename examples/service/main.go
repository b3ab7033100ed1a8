// Command service embeds the dbtorch orchestrator in a long-running Go
// service: it builds one dbt project on a schedule and whenever asked over
// HTTP, and the scheduled and requested builds share one named
// concurrency limit ("warehouse") from an in-process registry, or with
// --limit-store from PostgreSQL, shared by every instance. Builds never
// build one relation twice at once (relation locks, shared likewise).
//
//	go run ./examples/service --project-dir testdata/shop --every 1h --addr 127.0.0.1:8080
//	curl -X POST '127.0.0.1:8080/builds?select=marts'
//	curl 127.0.0.1:8080/builds
//	curl 127.0.0.1:8080/builds/<id>
//
// Two instances sharing four warehouse slots:
//
//	go run ./examples/service --project-dir P --addr :8080 --warehouse-slots 4 --limit-store postgres://db/dbtorch &
//	go run ./examples/service --project-dir P --addr :8081 --warehouse-slots 4 --limit-store postgres://db/dbtorch &
//
// SIGINT or SIGTERM cancels running builds (every node gets a final
// status), waits for them and stops.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
	"github.com/dbtorch/dbtorch/orchestrator/pglimit"
	"github.com/dbtorch/dbtorch/selector"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], startWarm); err != nil {
		fmt.Fprintln(os.Stderr, "service:", err)
		os.Exit(1)
	}
}

// starter starts the executor the service builds project with (workers
// of them) and returns it, the project's manifest and the function that
// stops the executor.
type starter func(ctx context.Context, project dbt.Project, workers int, logger *slog.Logger) (executor.Executor, *manifest.Manifest, func(), error)

// startWarm starts warm dbt workers on the project and parses it.
func startWarm(ctx context.Context, project dbt.Project, workers int, logger *slog.Logger) (executor.Executor, *manifest.Manifest, func(), error) {
	ex, err := executor.NewWarm(executor.WarmConfig{Options: executor.Options{Project: project, Logger: logger}, Workers: workers})
	if err != nil {
		return nil, nil, nil, err
	}
	m, err := ex.Manifest(ctx)
	if err != nil {
		_ = ex.Close()
		return nil, nil, nil, err
	}
	return ex, m, func() { _ = ex.Close() }, nil
}

// run is the service's command line: it parses args, starts the
// executor with start, and serves until ctx is done.
func run(ctx context.Context, args []string, start starter) error {
	fs := flag.NewFlagSet("service", flag.ContinueOnError)
	projectDir := fs.String("project-dir", "", "dbt project directory (required)")
	profilesDir := fs.String("profiles-dir", "", "dbt profiles directory")
	target := fs.String("target", "", "dbt target")
	addr := fs.String("addr", "127.0.0.1:8080", "HTTP listen address")
	every := fs.Duration("every", time.Hour, "interval of scheduled builds (0: none)")
	schedSelect := fs.String("schedule-select", "", "selection of scheduled builds, comma-separated (default: everything)")
	slots := fs.Int("warehouse-slots", 4, "nodes running at once against the warehouse, across all builds")
	workers := fs.Int("workers", 4, "warm dbt workers (use 1 on DuckDB)")
	retries := fs.Int("retries", 1, "retries of transient failures")
	limitStore := fs.String("limit-store", "", "postgres:// URL: share the warehouse limit and relation locks with every instance using it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *projectDir == "" {
		return errors.New("--project-dir is required")
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))

	ex, m, stopExecutor, err := start(ctx, dbt.Project{Dir: *projectDir, ProfilesDir: *profilesDir, Target: *target}, *workers, logger)
	if err != nil {
		return err
	}
	defer stopExecutor()
	var store *pglimit.Store
	if *limitStore != "" {
		if store, err = pglimit.Open(ctx, *limitStore, pglimit.Options{Logger: logger}); err != nil {
			return err
		}
		defer store.Close()
	}
	svc, err := NewService(ServiceConfig{
		Executor: ex, Manifest: m, Registry: &orchestrator.Registry{}, WarehouseSlots: *slots, Store: store,
		ScheduledConcurrency: *slots, RequestedConcurrency: *slots,
		Retry:  orchestrator.RetryConfig{Retries: *retries, Delay: 5 * time.Second, Jitter: 0.2},
		Logger: logger,
	})
	if err != nil {
		return err
	}
	if *every > 0 {
		go svc.Schedule(ctx, *every, orchestrator.BuildOptions{Selection: selector.Options{Select: splitList(*schedSelect)}})
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: svc.Handler(ctx), ReadHeaderTimeout: 10 * time.Second}
	logger.Info("listening", "addr", ln.Addr().String(), "project", *projectDir, "nodes", len(m.Nodes))
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down: cancelling builds")
	shutdown, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	err = srv.Shutdown(shutdown)
	svc.Wait()
	return err
}
