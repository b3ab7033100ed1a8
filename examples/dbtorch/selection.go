package main

import (
	"errors"
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/selector"
)

// multiFlag collects a repeatable string flag.
type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

// choiceFlag is a repeatable flag whose values must be among choices, as
// dbt's click options check them (case-insensitively).
type choiceFlag struct {
	vals    *[]string
	choices []string
}

func (c choiceFlag) String() string {
	if c.vals == nil {
		return ""
	}
	return strings.Join(*c.vals, " ")
}

func (c choiceFlag) Set(v string) error {
	v = strings.ToLower(v)
	if !slices.Contains(c.choices, v) {
		return fmt.Errorf("%q is not one of %s", v, strings.Join(c.choices, ", "))
	}
	*c.vals = append(*c.vals, v)
	return nil
}

// dbt's --resource-type and --exclude-resource-type choices (dbt-core 1.11).
var (
	resourceTypes        = []string{"metric", "semantic_model", "saved_query", "source", "analysis", "function", "model", "test", "unit_test", "exposure", "snapshot", "seed", "default", "all"}
	excludeResourceTypes = []string{"metric", "semantic_model", "saved_query", "source", "analysis", "function", "model", "test", "unit_test", "exposure", "snapshot", "seed", "default"}
)

// selectionFlags are the node-selection flags build, ls and plan share,
// spelled as dbt spells them: -s/--select (and -m/--models/--model),
// --exclude, --selector, --resource-type(s), --exclude-resource-type(s),
// --indirect-selection and --state.
type selectionFlags struct {
	sel, excl, types, exclTypes []string
	selector, indirect, state   string
}

// multiValueFlags are the flags that take several values after one flag,
// as dbt's MultiOption does (`--select a b`): see expandMulti.
var multiValueFlags = map[string]bool{
	"s": true, "select": true, "m": true, "models": true, "model": true, "exclude": true,
	"resource-type": true, "resource-types": true, "exclude-resource-type": true, "exclude-resource-types": true,
}

func addSelectionFlags(fs *flag.FlagSet) *selectionFlags {
	f := &selectionFlags{}
	sel := (*multiFlag)(&f.sel)
	fs.Var(sel, "select", "dbt node selection; several values may follow one flag (`--select a b`), as in dbt")
	for _, alias := range []string{"s", "m", "models", "model"} {
		fs.Var(sel, alias, "shorthand for --select")
	}
	fs.Var((*multiFlag)(&f.excl), "exclude", "dbt node exclusion; several values may follow one flag")
	fs.StringVar(&f.selector, "selector", "", "YAML selector name (from selectors.yml)")
	types := choiceFlag{vals: &f.types, choices: resourceTypes}
	fs.Var(types, "resource-type", "keep only this resource type (repeatable; "+strings.Join(resourceTypes, ", ")+")")
	fs.Var(types, "resource-types", "same as --resource-type")
	excl := choiceFlag{vals: &f.exclTypes, choices: excludeResourceTypes}
	fs.Var(excl, "exclude-resource-type", "drop this resource type (repeatable)")
	fs.Var(excl, "exclude-resource-types", "same as --exclude-resource-type")
	fs.StringVar(&f.indirect, "indirect-selection", "", "eager (the default), cautious, buildable or empty")
	fs.StringVar(&f.state, "state", "", "directory with the comparison manifest.json (and run_results.json, sources.json) for state:, result: and source_status:")
	return f
}

// options returns the selector options; an unknown --indirect-selection is
// an error (bad input).
func (f *selectionFlags) options() (selector.Options, error) {
	switch f.indirect {
	case "eager", "cautious", "buildable", "empty", "":
	default:
		return selector.Options{}, fmt.Errorf("--indirect-selection: %q is not one of eager, cautious, buildable, empty", f.indirect)
	}
	o := selector.Options{Select: f.sel, Exclude: f.excl, Selector: f.selector, Indirect: selector.IndirectMode(f.indirect), StatePath: f.state}
	for _, t := range f.types {
		o.ResourceTypes = append(o.ResourceTypes, manifest.ResourceType(t))
	}
	for _, t := range f.exclTypes {
		o.ExcludeResourceTypes = append(o.ExcludeResourceTypes, manifest.ResourceType(t))
	}
	return o, nil
}

// manifestFlags are the flags ls and plan read their input with:
// --manifest (required) and the selection flags.
type manifestFlags struct {
	path string
	sel  *selectionFlags
}

func addManifestFlags(fs *flag.FlagSet) *manifestFlags {
	f := &manifestFlags{}
	fs.StringVar(&f.path, "manifest", "", "path to manifest.json (required)")
	f.sel = addSelectionFlags(fs)
	return f
}

// options returns the selector options; a missing --manifest or an
// invalid selection flag is an error (bad input).
func (f *manifestFlags) options() (selector.Options, error) {
	if f.path == "" {
		return selector.Options{}, errors.New("--manifest is required")
	}
	return f.sel.options()
}

// graph loads --manifest and builds its graph; an error is bad input.
func (f *manifestFlags) graph() (*manifest.Manifest, *manifest.Graph, error) {
	m, err := manifest.Load(afero.NewOsFs(), f.path)
	if err != nil {
		return nil, nil, err
	}
	g, err := manifest.NewGraph(m)
	if err != nil {
		return nil, nil, err
	}
	return m, g, nil
}

// expandMulti rewrites dbt's `--select a b` (several values after one
// flag) into `--select a --select b`, which package flag parses: every
// argument after a multi-value flag's value that does not start with "-"
// is one more value of that flag. `--flag=value` takes one value only, as
// in dbt; "--" ends flag processing.
func expandMulti(args []string) []string {
	out := make([]string, 0, len(args))
	for i := 0; i < len(args); i++ {
		a := args[i]
		out = append(out, a)
		if a == "--" {
			return append(out, args[i+1:]...)
		}
		name := strings.TrimLeft(a, "-")
		if !strings.HasPrefix(a, "-") || strings.Contains(name, "=") || !multiValueFlags[name] || i+1 == len(args) {
			continue
		}
		i++
		out = append(out, args[i])
		for i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++
			out = append(out, a, args[i])
		}
	}
	return out
}
