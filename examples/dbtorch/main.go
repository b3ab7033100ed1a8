// Command dbtorch is a small CLI over the dbtorch library: it plans,
// lists and builds dbt projects node by node.
//
//	dbtorch plan  --manifest PATH [selection flags] [--test-strategy immediate|deferred|skip] [--output json|text|mermaid]
//	dbtorch ls    --manifest PATH [selection flags]
//	dbtorch build [--project-dir P] [flags]  (see dbtorch build -h)
//	dbtorch retry --results PATH [flags]     (re-runs what failed; see dbtorch retry -h)
//	dbtorch demo  (what `make demo` runs)
//
// Exit codes: 0 success, 1 a build with failed nodes, 2 bad input (one
// line on stderr), 130 interrupted. The first SIGINT (or SIGTERM) stops
// the build: running dbt invocations get --kill-grace to cancel their
// queries. A second one stops at once.
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
		"retry": runRetry,
		"demo":  runDemo,
	}
}

func main() {
	ctx, stop := interruptContext(os.Stderr, func() { os.Exit(exitInterrupted) })
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// interruptContext returns a context cancelled by the first SIGINT or
// SIGTERM, with the signal as its cause; the second calls exit at once
// (the dbt processes started die with this one: see internal/proc). stop
// stops listening.
func interruptContext(stderr io.Writer, exit func()) (ctx context.Context, stop func()) {
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, os.Interrupt, syscall.SIGTERM)
	done := make(chan struct{})
	go func() {
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "\ndbtorch: %v: stopping (interrupt again to stop at once)\n", s)
			cancel(fmt.Errorf("%v", s))
		case <-done:
			return
		}
		select {
		case s := <-sigs:
			fmt.Fprintf(stderr, "dbtorch: %v again: stopping at once\n", s)
			exit()
		case <-done:
		}
	}()
	return ctx, func() {
		signal.Stop(sigs)
		close(done)
		cancel(nil)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	cmds := commands()
	if len(args) == 0 || cmds[args[0]] == nil {
		names := make([]string, 0, len(cmds))
		for n := range cmds {
			names = append(names, n)
		}
		sort.Strings(names)
		switch {
		case len(args) == 0:
			fmt.Fprintf(stderr, "dbtorch: missing command (one of %v)\n", names)
		case args[0] == "-h" || args[0] == "--help" || args[0] == "help":
			fmt.Fprintf(stderr, "usage: dbtorch <command> [flags]; commands: %v; dbtorch <command> -h for its flags\n", names)
			return exitOK
		default:
			fmt.Fprintf(stderr, "dbtorch: unknown command %q (one of %v)\n", args[0], names)
		}
		return exitBadInput
	}
	return cmds[args[0]](ctx, args[1:], stdout, stderr)
}
