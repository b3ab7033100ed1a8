// Command customexecutor shows how to write an executor.Executor of your
// own from the public API alone: PrefixExecutor runs dbt behind a command
// prefix (for example `docker exec my-dbt`, `kubectl exec pod --`, or just
// the dbt executable), one process per invocation, and reads the
// invocation's run_results.json from a directory both sides can see.
//
// Usage:
//
//	customexecutor --project-dir testdata/shop --manifest testdata/shop/target/manifest.json [--prefix "/path/to/dbt"]
//
// It runs every node of the manifest one invocation at a time, in plan
// order, and prints one line per node.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/executor"
	"github.com/dbtorch/dbtorch/manifest"
)

// PrefixExecutor runs `<Prefix...> <command> --select ...` for each
// request. It is safe for concurrent use: every invocation has its own
// target directory.
type PrefixExecutor struct {
	// Prefix is the argv that runs dbt, e.g. ["docker", "exec", "c", "dbt"].
	Prefix []string
	// ProjectDir is the project's directory as dbt sees it.
	ProjectDir string
	// ProfilesDir, if set, is passed as --profiles-dir.
	ProfilesDir string
	// Env is the environment of the prefix command (nil: inherit).
	Env []string
}

// Execute implements executor.Executor.
func (e *PrefixExecutor) Execute(ctx context.Context, req executor.Request) (*executor.Response, error) {
	if len(req.Nodes) == 0 {
		// Invalid request: an error, not results.
		return nil, &executor.ConfigError{Field: "Request.Nodes", Reason: "no nodes"}
	}
	// 1. Select exactly the requested nodes, and nothing else.
	args := append([]string{}, e.Prefix[1:]...)
	args = append(args, string(req.Command), "--select")
	for _, n := range req.Nodes {
		sel, err := executor.NodeSelector(n)
		if err != nil {
			return nil, &executor.ConfigError{Field: "Request.Nodes", Value: n.UniqueID, Reason: err.Error()}
		}
		args = append(args, sel)
	}
	args = append(args, "--indirect-selection", "empty")
	if req.FullRefresh && (req.Command == executor.Run || req.Command == executor.Seed || req.Command == executor.Build) {
		args = append(args, "--full-refresh")
	}
	// 2. A target directory of its own, so concurrent invocations never
	// share run_results.json.
	target, err := os.MkdirTemp("", "customexecutor-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(target)
	args = append(args, "--project-dir", e.ProjectDir, "--target-path", target, "--log-path", filepath.Join(target, "logs"))
	if e.ProfilesDir != "" {
		args = append(args, "--profiles-dir", e.ProfilesDir)
	}

	// 3. Run it; exec.CommandContext kills the process when ctx ends, and
	// WaitDelay stops waiting for output its children may still hold.
	cmd := exec.CommandContext(ctx, e.Prefix[0], args...)
	cmd.WaitDelay = time.Second
	cmd.Env = e.Env
	var output strings.Builder
	cmd.Stdout, cmd.Stderr = &output, &output
	resp := &executor.Response{Invocation: executor.Invocation{Command: req.Command, Args: args, Started: time.Now(), ExitCode: -1}}
	runErr := cmd.Run()
	resp.Invocation.Ended = time.Now()
	if cmd.ProcessState != nil {
		resp.Invocation.ExitCode = cmd.ProcessState.ExitCode()
	}
	resp.Invocation.Stderr = tail(output.String(), 2000)

	// 4. Read what dbt reported.
	var reported []executor.Result
	if data, err := os.ReadFile(filepath.Join(target, "run_results.json")); err == nil {
		results, invocationID, err := executor.ParseRunResults(data)
		if err == nil {
			resp.Invocation.InvocationID = invocationID
			reported = results
		}
	}

	// 5. One result per requested node, in request order; never a silent
	// success for a node dbt did not report: executor.Complete reports
	// such a node as cancelled when ctx ended, else with fail.
	kind := executor.ClassifyMessage(output.String())
	if kind == executor.KindUnknown {
		kind = executor.KindCrash
	}
	fail := &executor.Failure{Kind: kind, Message: fmt.Sprintf("dbt reported no result (%v):\n%s", runErr, resp.Invocation.Stderr)}
	resp.Results = executor.Complete(req.Nodes, reported, ctx.Err(), fail)
	return resp, nil
}

// tail returns the last n bytes of s.
func tail(s string, n int) string {
	if len(s) > n {
		return s[len(s)-n:]
	}
	return s
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt)
	defer stop()
	os.Exit(run(ctx, os.Args[1:], os.Stdout, os.Stderr))
}

func run(ctx context.Context, argv []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("customexecutor", flag.ContinueOnError)
	fs.SetOutput(stderr)
	projectDir := fs.String("project-dir", ".", "dbt project directory")
	manifestPath := fs.String("manifest", "", "manifest.json of the project (from `dbt parse`)")
	prefix := fs.String("prefix", "dbt", "command that runs dbt, split on spaces")
	if err := fs.Parse(argv); err != nil {
		return 2
	}
	m, err := manifest.Load(afero.NewOsFs(), *manifestPath)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	g, err := manifest.NewGraph(m)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 2
	}
	var ex executor.Executor = &PrefixExecutor{Prefix: strings.Fields(*prefix), ProjectDir: *projectDir}
	failed := 0
	for _, id := range g.Plan(nil, manifest.Immediate).Nodes() {
		n := m.Lookup(id)
		resp, err := ex.Execute(ctx, executor.Request{Command: executor.CommandFor(n.ResourceType), Nodes: []*manifest.Node{n}, Attempt: 1})
		if err != nil {
			fmt.Fprintln(stderr, err)
			return 2
		}
		r := resp.Results[0]
		fmt.Fprintf(stdout, "%-70s %-9s %s\n", r.UniqueID, r.Status, r.Kind)
		if r.Status != executor.Success {
			failed++
		}
	}
	if failed > 0 {
		return 1
	}
	return 0
}
