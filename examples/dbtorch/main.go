// Command dbtorch is a small CLI over the dbtorch library: it plans,
// lists and builds dbt projects node by node.
//
//	dbtorch plan  --manifest PATH [--select S] [--exclude S] [--test-strategy immediate|deferred|skip] [--output json|text|mermaid]
//	dbtorch ls    --manifest PATH [--select S] [--exclude S] [--resource-type T]...
//	dbtorch build --project-dir P [flags]  (see dbtorch build -h)
//	dbtorch demo  (what `make demo` runs)
//
// Exit codes: 0 success, 1 a build with failed nodes, 2 bad input.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

// command is one subcommand: it parses args itself and returns the exit
// code.
type command func(ctx context.Context, args []string, stdout, stderr io.Writer) int

func commands() map[string]command {
	return map[string]command{
		"plan":  runPlan,
		"ls":    runLs,
		"build": runBuild,
		"demo":  runDemo,
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || cmds[args[0]] == nil {
		names := make([]string, 0, len(cmds))
		for n := range cmds {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(args) == 0 {
			fmt.Fprintf(stderr, "dbtorch: missing command (one of %v)\n", names)
		} else {
			fmt.Fprintf(stderr, "dbtorch: unknown command %q (one of %v)\n", args[0], names)
		}
		return 2
	}
	return cmds[args[0]](ctx, args[1:], stdout, stderr)
}
