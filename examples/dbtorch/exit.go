package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

// Exit codes of every command (the CLI contract in the README).
const (
	exitOK          = 0   // success
	exitFailed      = 1   // a build with failed nodes, or a failure after the build started
	exitBadInput    = 2   // bad input: one line on stderr naming it, before any dbt runs
	exitInterrupted = 130 // interrupted (SIGINT or SIGTERM)
)

// usageError is bad input: the command prints it on one line and exits 2.
type usageError struct{ err error }

func (e usageError) Error() string { return e.err.Error() }
func (e usageError) Unwrap() error { return e.err }

// badInput prints err on one line, naming the command, and returns 2.
func badInput(stderr io.Writer, cmd string, err error) int {
	msg := strings.ReplaceAll(strings.TrimSpace(err.Error()), "\n", " ")
	fmt.Fprintf(stderr, "dbtorch %s: %s\n", cmd, msg)
	return exitBadInput
}

// parseFlags parses args (dbt's `--select a b` expanded first) into fs.
// -h and --help print the usage to fs's output and give exit 0; any other
// parse error is one line and exit 2. ok is true when the command goes on.
func parseFlags(fs *flag.FlagSet, args []string, stderr io.Writer) (code int, ok bool) {
	out := fs.Output()
	fs.SetOutput(io.Discard)
	err := fs.Parse(expandMulti(args))
	fs.SetOutput(out)
	switch {
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprintf(out, "Usage of dbtorch %s:\n", fs.Name())
		fs.PrintDefaults()
		return exitOK, false
	case err != nil:
		return badInput(stderr, fs.Name(), fmt.Errorf("%w (see dbtorch %s -h)", err, fs.Name())), false
	case fs.NArg() > 0:
		return badInput(stderr, fs.Name(), fmt.Errorf("unexpected argument %q (see dbtorch %s -h)", fs.Arg(0), fs.Name())), false
	}
	return 0, true
}
