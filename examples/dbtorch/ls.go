package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/selector"
)

// runLs is `dbtorch ls`: it prints the unique_ids a selection selects, one
// per line, sorted, exactly as `dbt ls --output json --output-keys
// unique_id` would list them for the same manifest.
func runLs(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("ls", flag.ContinueOnError)
	fs.SetOutput(stderr)
	manifestPath := fs.String("manifest", "", "path to manifest.json (required)")
	var sel, excl, types, exclTypes multiFlag
	fs.Var(&sel, "select", "dbt node selection (repeatable)")
	fs.Var(&sel, "s", "shorthand for --select")
	fs.Var(&excl, "exclude", "dbt node exclusion (repeatable)")
	fs.Var(&types, "resource-type", "keep only this resource type (repeatable; all, default)")
	fs.Var(&exclTypes, "exclude-resource-type", "drop this resource type (repeatable)")
	selectorName := fs.String("selector", "", "YAML selector name")
	indirect := fs.String("indirect-selection", "eager", "eager, cautious, buildable or empty")
	state := fs.String("state", "", "directory with the comparison manifest.json (and run_results.json, sources.json)")
	projectDir := fs.String("project-dir", "", "dbt project directory: path: selection globs its real files (default: the files the manifest names)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		return badInput(stderr, "ls", fmt.Errorf("unexpected argument %q", fs.Arg(0)))
	}
	if *manifestPath == "" {
		return badInput(stderr, "ls", errors.New("--manifest is required"))
	}
	m, err := manifest.Load(afero.NewOsFs(), *manifestPath)
	if err != nil {
		return badInput(stderr, "ls", err)
	}
	opts := selector.Options{
		Select:    sel,
		Exclude:   excl,
		Selector:  *selectorName,
		Indirect:  selector.IndirectMode(*indirect),
		StatePath: *state,
	}
	for _, t := range types {
		opts.ResourceTypes = append(opts.ResourceTypes, manifest.ResourceType(t))
	}
	for _, t := range exclTypes {
		opts.ExcludeResourceTypes = append(opts.ExcludeResourceTypes, manifest.ResourceType(t))
	}
	g, err := manifest.NewGraph(m)
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
