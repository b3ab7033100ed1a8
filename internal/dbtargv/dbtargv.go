// Package dbtargv builds every dbt command line dbtorch issues: deps,
// parse, ls, source freshness, and the invocations that run exact nodes
// (the selector that picks exactly one node, the sub-command's flags), with
// the flags that place an invocation (project, profiles, target, vars,
// output directories, logging) written in one place, Global. It also holds
// the check that keeps user-supplied extra arguments from breaking an
// orchestrated build. It is shared by the executors of dbtorch (the local
// ones in package executor and the dbt Cloud one), the selector's dbt ls
// resolver and source freshness.
//
// Nothing here runs a shell: arguments are argv elements. ShellJoin quotes
// them for places that only take a command line (dbt Cloud job steps).
package dbtargv

import (
	"fmt"
	"slices"
	"strings"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/manifest"
)

// Selector returns a --select argument that picks exactly n and nothing
// else: the intersection of its fully qualified name, its resource type and
// its package, e.g.
//
//	fqn:shop.marts.core.fct_orders,resource_type:model,package:shop
//	fqn:shop.marts.core.dim_customers.v2,resource_type:model,package:shop
//	fqn:shop.marts.core.fct_orders.fct_orders_sums_payments,resource_type:unit_test,package:shop
//
// dbt's fqn method also matches nodes whose fqn merely starts with the
// given one (a folder models/x/ next to models/x.sql) and nodes whose fqn
// without its package matches; the resource type and package intersections
// rule out every such case that dbt projects can express except a folder
// named exactly like a sibling model, which Ambiguous detects.
//
// Use with --indirect-selection empty, or dbt adds the node's tests.
func Selector(n *manifest.Node) (string, error) {
	if n == nil {
		return "", fmt.Errorf("dbtargv: nil node")
	}
	if len(n.FQN) == 0 {
		return "", fmt.Errorf("dbtargv: node %s has no fqn", n.UniqueID)
	}
	if n.ResourceType == "" || n.PackageName == "" {
		return "", fmt.Errorf("dbtargv: node %s has no resource type or package", n.UniqueID)
	}
	for _, part := range n.FQN {
		if part == "" || strings.ContainsAny(part, "*?[], ") {
			return "", fmt.Errorf("dbtargv: node %s: fqn part %q cannot be selected exactly", n.UniqueID, part)
		}
	}
	return "fqn:" + strings.Join(n.FQN, ".") +
		",resource_type:" + string(n.ResourceType) +
		",package:" + n.PackageName, nil
}

// Ambiguous returns the unique_ids of the other nodes of m that
// Selector(n) would also select (same package and resource type, fqn
// starting with n's fqn). It is empty for every node of a project without a
// folder named like a sibling model.
func Ambiguous(m *manifest.Manifest, n *manifest.Node) []string {
	var out []string
	m.All(func(o *manifest.Node) bool {
		if o != n && o.UniqueID != n.UniqueID && o.ResourceType == n.ResourceType &&
			o.PackageName == n.PackageName && len(o.FQN) >= len(n.FQN) &&
			slices.Equal(o.FQN[:len(n.FQN)], n.FQN) {
			out = append(out, o.UniqueID)
		}
		return true
	})
	slices.Sort(out)
	return out
}

// Select returns "--select" followed by one Selector per node. It fails on
// an empty list: dbt would then select the whole project.
func Select(nodes []*manifest.Node) ([]string, error) {
	if len(nodes) == 0 {
		return nil, fmt.Errorf("dbtargv: no nodes to select")
	}
	args := make([]string, 0, len(nodes)+1)
	args = append(args, "--select")
	for _, n := range nodes {
		s, err := Selector(n)
		if err != nil {
			return nil, err
		}
		args = append(args, s)
	}
	return args, nil
}

// AcceptsFullRefresh reports whether dbt's sub-command takes --full-refresh
// (run, seed, build; not snapshot, test or ls).
func AcceptsFullRefresh(command string) bool {
	switch command {
	case "run", "seed", "build", "compile":
		return true
	}
	return false
}

// commandFlags are the flags that only some of dbt's sub-commands take,
// with the sub-commands that take them and whether the flag takes a value,
// as dbt-core 1.11 declares them (core/dbt/cli/main.py: the @p.empty,
// @p.sample, @p.event_time_start, @p.event_time_end and @p.store_failures
// of each command). dbt refuses a flag its command does not declare
// ("No such option"), so an orchestrated build passes each only where it
// is declared.
var commandFlags = map[string]struct {
	value    bool
	commands []string
}{
	"--empty":            {false, []string{"run", "build", "snapshot", "compile"}},
	"--no-empty":         {false, []string{"run", "build", "snapshot", "compile"}},
	"--sample":           {true, []string{"run", "build"}},
	"--event-time-start": {true, []string{"run", "build"}},
	"--event-time-end":   {true, []string{"run", "build"}},
	"--store-failures":   {false, []string{"build", "test"}},
}

// Accepts reports whether dbt's sub-command command takes flag. Flags
// this package does not list as command-specific are taken by every
// node-running command.
func Accepts(command, flag string) bool {
	f, ok := commandFlags[flag]
	return !ok || slices.Contains(f.commands, command)
}

// HasCommandFlags reports whether args hold a flag that only some dbt
// commands take (--empty, --no-empty, --sample, --event-time-start,
// --event-time-end, --store-failures; alone or as --flag=value).
func HasCommandFlags(args []string) bool {
	for _, a := range args {
		name, _, _ := strings.Cut(a, "=")
		if _, ok := commandFlags[name]; ok {
			return true
		}
	}
	return false
}

// ForCommand returns extra without the flags (and their values, given as
// the next argument or after "=") that command does not take: --empty and
// --no-empty reach run, build, snapshot and compile; --sample,
// --event-time-start and --event-time-end reach run and build;
// --store-failures reaches build and test. Every other argument is kept,
// in order.
func ForCommand(command string, extra []string) []string {
	out := make([]string, 0, len(extra))
	for i := 0; i < len(extra); i++ {
		a := extra[i]
		name, _, inline := strings.Cut(a, "=")
		f, ok := commandFlags[name]
		if !ok || Accepts(command, name) {
			out = append(out, a)
			if ok && f.value && !inline && i+1 < len(extra) {
				i++
				out = append(out, extra[i])
			}
			continue
		}
		if f.value && !inline {
			i++ // its value
		}
	}
	return out
}

// Global are dbt's flags that point one invocation at its project,
// profile, target and vars, at its own output directories, and that say
// how it logs. Every command line built here gets them from Global, in
// one order; a zero field is left out (dbt's default).
type Global struct {
	// Vars and Target are --vars (as JSON) and --target.
	Vars   dbt.Vars
	Target string
	// ProjectDir and ProfilesDir are --project-dir and --profiles-dir.
	ProjectDir, ProfilesDir string
	// TargetPath and LogPath are --target-path and --log-path.
	TargetPath, LogPath string
	// PartialParseFile is --partial-parse-file-path; NoFileDiff adds
	// --no-partial-parse-file-diff (dbt trusts that file without scanning
	// the project's files).
	PartialParseFile string
	NoFileDiff       bool
	// NoColors adds --no-use-colors, Quiet --quiet.
	NoColors, Quiet bool
	// CacheSelectedOnly adds --cache-selected-only: dbt's relation cache
	// is filled for the schemas of the selected nodes only.
	CacheSelectedOnly bool
	// LogLevel and LogLevelFile are --log-level and --log-level-file.
	LogLevel, LogLevelFile string
	// NoWriteJSON adds --no-write-json (no run_results.json or
	// manifest.json).
	NoWriteJSON bool
}

// Local returns the Global flags of an invocation of a local dbt on p,
// writing into targetPath and logPath ("" leaves dbt's default): p's
// directory (absolute when Dir is empty: the current directory), profiles
// directory, target and vars, without colours.
func Local(p dbt.Project, targetPath, logPath string) Global {
	return Global{Vars: p.Vars, Target: p.Target, ProjectDir: p.Dir, ProfilesDir: p.ProfilesDir,
		TargetPath: targetPath, LogPath: logPath, NoColors: true}
}

// Args returns g's flags:
//
//	[--vars JSON] [--target T] [--project-dir D] [--profiles-dir P] [--target-path T] [--log-path L]
//	[--partial-parse-file-path F] [--no-partial-parse-file-diff] [--no-use-colors] [--quiet]
//	[--cache-selected-only] [--log-level L] [--log-level-file L] [--no-write-json]
//
// It fails only when Vars cannot be encoded.
func (g Global) Args() ([]string, error) {
	vars, err := g.Vars.JSON()
	if err != nil {
		return nil, fmt.Errorf("dbtargv: %w", err)
	}
	var a argv
	a.value("--vars", vars)
	a.value("--target", g.Target)
	a.value("--project-dir", g.ProjectDir)
	a.value("--profiles-dir", g.ProfilesDir)
	a.value("--target-path", g.TargetPath)
	a.value("--log-path", g.LogPath)
	a.value("--partial-parse-file-path", g.PartialParseFile)
	a.flag("--no-partial-parse-file-diff", g.NoFileDiff)
	a.flag("--no-use-colors", g.NoColors)
	a.flag("--quiet", g.Quiet)
	a.flag("--cache-selected-only", g.CacheSelectedOnly)
	a.value("--log-level", g.LogLevel)
	a.value("--log-level-file", g.LogLevelFile)
	a.flag("--no-write-json", g.NoWriteJSON)
	return a, nil
}

// argv is a command line being built: a flag with a value is added only
// when the value is set, a switch only when it is on.
type argv []string

// value adds name and v when v is not empty.
func (a *argv) value(name, v string) {
	if v != "" {
		*a = append(*a, name, v)
	}
}

// flag adds name when on.
func (a *argv) flag(name string, on bool) {
	if on {
		*a = append(*a, name)
	}
}

// command returns the words of a sub-command followed by g's flags and
// then rest.
func command(g Global, sub []string, rest ...string) ([]string, error) {
	flags, err := g.Args()
	if err != nil {
		return nil, err
	}
	args := make([]string, 0, len(sub)+len(flags)+len(rest))
	return append(append(append(args, sub...), flags...), rest...), nil
}

// Deps returns `deps` with g's flags, except TargetPath, which dbt deps
// does not take.
func Deps(g Global) ([]string, error) {
	g.TargetPath = ""
	return command(g, []string{"deps"})
}

// Parse returns `parse` with g's flags.
func Parse(g Global) ([]string, error) { return command(g, []string{"parse"}) }

// Ls returns `ls --output json --output-keys unique_id` with g's flags,
// then selection (--select, --exclude, ... as dbt ls takes them).
func Ls(g Global, selection []string) ([]string, error) {
	return command(g, []string{"ls", "--output", "json", "--output-keys", "unique_id"}, selection...)
}

// Show returns `show --inline sql --output json --limit -1` with g's
// flags: every row of one query, printed by dbt.
func Show(g Global, sql string) ([]string, error) {
	return command(g, []string{"show", "--inline", sql, "--output", "json", "--limit", "-1"})
}

// ShowDirect is Show with --inline-direct (dbt-core 1.9 and later): dbt
// runs sql as it is, on one connection, without Jinja and without loading
// the project's manifest.
func ShowDirect(g Global, sql string) ([]string, error) {
	return command(g, []string{"show", "--inline-direct", sql, "--output", "json", "--limit", "-1"})
}

// SourceFreshness returns `source freshness` with g's flags, then
// --select with sources when there are any.
func SourceFreshness(g Global, sources []string) ([]string, error) {
	var sel []string
	if len(sources) > 0 {
		sel = append([]string{"--select"}, sources...)
	}
	return command(g, []string{"source", "freshness"}, sel...)
}

// Options are a node-running dbt invocation: the nodes, the command and
// its flags, and the Global flags that place it.
type Options struct {
	// Command is dbt's sub-command: run, seed, snapshot, test or build.
	Command string
	// Nodes are selected one by one with Selector.
	Nodes []*manifest.Node
	// FullRefresh adds --full-refresh where Command accepts it and is
	// ignored elsewhere.
	FullRefresh bool
	// Global places the invocation; a dbt Cloud job step sets only Vars
	// and Target.
	Global
	// Threads is passed as --threads when positive.
	Threads int
	// State, Defer, DeferState and FavorState map to --state, --defer,
	// --defer-state and --favor-state.
	State      string
	Defer      bool
	DeferState string
	FavorState bool
	// IndirectSelection defaults to "empty": only the nodes asked for run.
	IndirectSelection string
	// Empty adds --empty (refs and sources read as zero rows), Sample
	// --sample (dbt's sample window, such as "3 days"), EventTimeStart and
	// EventTimeEnd --event-time-start and --event-time-end (the window of
	// a microbatch model's batches, in dbt's date formats), each only where
	// Command takes it (see ForCommand).
	Empty                        bool
	Sample                       string
	EventTimeStart, EventTimeEnd string
	// TestsWithoutRelationCache adds --no-populate-cache to test: dbt test
	// fills the relation cache with every relation of the tested nodes'
	// schemas before running, yet data and unit tests look nothing up in
	// it, and what does (store_failures, --defer) asks the database when
	// the cache is empty. In a one-node invocation the listing costs as
	// much as the test. Off for places whose dbt may not know the flag.
	TestsWithoutRelationCache bool
}

// Build returns the sub-command and its flags, without the dbt executable:
//
//	run --select <selector>... --indirect-selection empty [--full-refresh] <Global flags> [--threads N] [--state DIR] [--defer] [--defer-state DIR] [--favor-state]
//	    [--empty] [--sample S] [--event-time-start T] [--event-time-end T]
//
// (the last four where Command takes them), and for test with
// TestsWithoutRelationCache, --no-populate-cache at the end.
func Build(o Options) ([]string, error) {
	switch o.Command {
	case "run", "seed", "snapshot", "test", "build":
	default:
		return nil, fmt.Errorf("dbtargv: unsupported dbt command %q", o.Command)
	}
	sel, err := Select(o.Nodes)
	if err != nil {
		return nil, err
	}
	ind := o.IndirectSelection
	if ind == "" {
		ind = "empty"
	}
	a := append(argv{o.Command}, sel...)
	a = append(a, "--indirect-selection", ind)
	a.flag("--full-refresh", o.FullRefresh && AcceptsFullRefresh(o.Command))
	return withFlags(o, a)
}

// Hooks returns the `dbt build` command line, without a selection, of a
// task that runs one phase of the project's hooks (the Python worker's
// "hooks" request): o's flags as Build gives them, its Command and Nodes
// ignored.
func Hooks(o Options) ([]string, error) {
	o.Command = "build"
	a := argv{"build"}
	a.flag("--full-refresh", o.FullRefresh)
	return withFlags(o, a)
}

// withFlags appends o's flags to a, the sub-command and its selection.
func withFlags(o Options, a argv) ([]string, error) {
	flags, err := o.Args()
	if err != nil {
		return nil, err
	}
	a = append(a, flags...)
	if o.Threads > 0 {
		a.value("--threads", fmt.Sprint(o.Threads))
	}
	a.value("--state", o.State)
	a.flag("--defer", o.Defer)
	a.value("--defer-state", o.DeferState)
	a.flag("--favor-state", o.FavorState)
	a.flag("--empty", o.Empty)
	a.value("--sample", o.Sample)
	a.value("--event-time-start", o.EventTimeStart)
	a.value("--event-time-end", o.EventTimeEnd)
	args := ForCommand(o.Command, a)
	if o.Command == "test" && o.TestsWithoutRelationCache {
		args = append(args, "--no-populate-cache")
	}
	return args, nil
}

// forbidden maps flags an orchestrator sets itself (or that would change
// what is selected or where results go) to the reason they are refused.
var forbidden = map[string]string{
	"--select":                  "dbtorch selects the nodes of each invocation",
	"-s":                        "dbtorch selects the nodes of each invocation",
	"--models":                  "dbtorch selects the nodes of each invocation",
	"--model":                   "dbtorch selects the nodes of each invocation",
	"-m":                        "dbtorch selects the nodes of each invocation",
	"--exclude":                 "dbtorch selects the nodes of each invocation",
	"--selector":                "dbtorch selects the nodes of each invocation",
	"--resource-type":           "dbtorch selects the nodes of each invocation",
	"--resource-types":          "dbtorch selects the nodes of each invocation",
	"--exclude-resource-type":   "dbtorch selects the nodes of each invocation",
	"--exclude-resource-types":  "dbtorch selects the nodes of each invocation",
	"--indirect-selection":      "dbtorch selects the nodes of each invocation",
	"--inline":                  "dbtorch selects the nodes of each invocation",
	"--target-path":             "each invocation gets its own target directory",
	"--log-path":                "each invocation gets its own log directory",
	"--partial-parse-file-path": "the executor shares one partial-parse file",
	"--write-json":              "results are read from run_results.json",
	"--no-write-json":           "results are read from run_results.json",
	"--project-dir":             "set the project directory in the executor's configuration",
	"--profiles-dir":            "set the profiles directory in the executor's configuration",
	"--target":                  "set the target in the executor's configuration",
	"-t":                        "set the target in the executor's configuration",
	"--vars":                    "set vars in the executor's configuration or the request",
	"--threads":                 "set threads in the executor's configuration",
	"--state":                   "set the state directory in the executor's configuration",
	"--defer":                   "set defer in the executor's configuration",
	"--no-defer":                "set defer in the executor's configuration",
	"--defer-state":             "set the defer state in the executor's configuration",
	"--favor-state":             "set favor-state in the executor's configuration",
	"--no-favor-state":          "set favor-state in the executor's configuration",
	"--full-refresh":            "full refresh is a per-request option",
	"-f":                        "full refresh is a per-request option",
	"--help":                    "would not run anything",
	"-h":                        "would not run anything",
	"--version":                 "would not run anything",
}

// CheckExtra returns the first argument of extra that an orchestrated
// invocation must not receive, with the reason, or ok=true. Flags are
// recognised alone and in the --flag=value form.
func CheckExtra(extra []string) (flag, reason string, ok bool) {
	for _, a := range extra {
		name := a
		if strings.HasPrefix(a, "--") {
			name, _, _ = strings.Cut(a, "=")
		}
		if r, bad := forbidden[name]; bad {
			return a, r, false
		}
	}
	return "", "", true
}

// ShellJoin quotes args for a POSIX shell command line (single quotes where
// needed), for dbt Cloud job steps, which are command lines.
func ShellJoin(args []string) string {
	out := make([]string, len(args))
	for i, a := range args {
		out[i] = shellQuote(a)
	}
	return strings.Join(out, " ")
}

func shellQuote(s string) string {
	if s == "" {
		return "''"
	}
	safe := true
	for _, r := range s {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
			strings.ContainsRune("_-.,:/+=@%", r)) {
			safe = false
			break
		}
	}
	if safe {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'"'"'`) + "'"
}
