package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/internal/proc"
)

// runDemo copies the bundled DuckDB project to a temporary directory,
// parses it with the pinned dbt, prints its plan, and builds it node by
// node with live progress and a summary.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	root, err := repoRoot()
	if err != nil {
		fmt.Fprintf(stderr, "dbtorch demo: %v\n", err)
		return 2
	}
	work, err := os.MkdirTemp("", "dbtorch-demo-")
	if err != nil {
		fmt.Fprintf(stderr, "dbtorch demo: %v\n", err)
		return 1
	}
	defer os.RemoveAll(work)
	project := filepath.Join(work, "shop")
	if err := os.CopyFS(project, os.DirFS(filepath.Join(root, "testdata", "shop"))); err != nil {
		fmt.Fprintf(stderr, "dbtorch demo: copy project: %v\n", err)
		return 1
	}
	// The profile reads the DuckDB path from the environment; the build
	// below runs dbt in this process's environment too.
	for k, v := range map[string]string{"DBTORCH_DUCKDB_PATH": filepath.Join(work, "shop.duckdb"),
		"DBT_SEND_ANONYMOUS_USAGE_STATS": "false", "DO_NOT_TRACK": "1"} {
		if err := os.Setenv(k, v); err != nil {
			fmt.Fprintf(stderr, "dbtorch demo: %v\n", err)
			return 1
		}
	}
	// dbt: $DBTORCH_DBT, else the repository's .venv/bin/dbt; the build
	// below finds it through $DBTORCH_DBT as well.
	dbtPath, err := dbt.FindDBT("", root, nil)
	if err == nil {
		err = os.Setenv("DBTORCH_DBT", dbtPath)
	}
	if err != nil {
		fmt.Fprintf(stderr, "dbtorch demo: %v\n", err)
		return 1
	}
	p := dbt.Project{DBT: dbtPath, Dir: project, ProfilesDir: project}
	for _, step := range []struct {
		name string
		argv func(dbtargv.Global) ([]string, error)
	}{{"deps", dbtargv.Deps}, {"parse", dbtargv.Parse}} {
		fmt.Fprintf(stdout, "$ dbt %s\n", step.name)
		args, err := step.argv(dbtargv.Local(p, "", ""))
		if err != nil {
			fmt.Fprintf(stderr, "dbtorch demo: dbt %s: %v\n", step.name, err)
			return 1
		}
		if res := proc.Run(ctx, proc.Spec{Path: dbtPath, Args: args, Dir: project}); res.Err != nil {
			fmt.Fprintf(stderr, "dbtorch demo: dbt %s: %v\n%s\n", step.name, res.Err, res.Tail(40))
			return 1
		}
	}
	manifestPath := filepath.Join(project, "target", "manifest.json")
	fmt.Fprintf(stdout, "\n$ dbtorch plan --manifest %s --output text\n", manifestPath)
	if code := runPlan(ctx, []string{"--manifest", manifestPath, "--output", "text"}, stdout, stderr); code != 0 {
		return code
	}
	summary := filepath.Join(work, "summary.md")
	buildArgs := []string{"--project-dir", project, "--profiles-dir", project, "--concurrency", "2",
		"--run-results", filepath.Join(work, "run_results.json"), "--summary", summary}
	fmt.Fprintf(stdout, "\n$ dbtorch build --project-dir %s --concurrency 2\n", project)
	return runBuild(ctx, buildArgs, stdout, stderr)
}

// repoRoot finds the repository root: the working directory or a parent
// holding go.mod and testdata/shop.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "testdata", "shop", "dbt_project.yml")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			_, file, _, _ := runtime.Caller(0)
			return "", fmt.Errorf("run from the dbtorch repository (testdata/shop not found above the working directory; source at %s)", file)
		}
		dir = parent
	}
}
