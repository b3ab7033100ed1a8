package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/dbtorch/dbtorch/selector"
)

// runLs is `dbtorch ls`: it prints the unique_ids a selection selects, one
// per line, sorted, exactly as `dbt ls --output json --output-keys
// unique_id` would list them for the same manifest.
func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	fs.SetOutput(stderr)
	mf := addManifestFlags(fs)
	projectDir := fs.String("project-dir", "", "dbt project directory: path: selection globs its real files (default: the files the manifest names)")
	if code, ok := parseFlags(fs, args, stderr); !ok {
		return code
	}
	opts, err := mf.options()
	if err != nil {
		return badInput(stderr, "ls", err)
	}
	_, g, err := mf.graph()
	if err != nil {
		return badInput(stderr, "ls", err)
	}
	resolver := selector.NewNative(g)
	if *projectDir != "" {
		resolver = resolver.WithProjectFS(os.DirFS(*projectDir))
	}
	ids, err := resolver.Resolve(ctx, opts)
	if err != nil {
		return badInput(stderr, "ls", err)
	}
	for _, id := range ids {
		if _, err := fmt.Fprintln(stdout, id); err != nil {
			return 1
		}
	}
	return 0
}
