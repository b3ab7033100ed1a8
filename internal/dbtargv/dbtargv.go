// Package dbtargv builds the arguments of dbt invocations that run exact
// nodes: the selector that picks exactly one node, the sub-command's flags,
// and the check that keeps user-supplied extra arguments from breaking an
// orchestrated build. It is shared by the executors of dbtorch (the local
// ones in package executor and the dbt Cloud one).
//
// Nothing here runs a shell: arguments are argv elements. ShellJoin quotes
// them for places that only take a command line (dbt Cloud job steps).
package dbtargv

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

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

// Vars returns the JSON text for --vars: vars encoded with sorted keys
// (encoding/json's map order), "" for an empty map. JSON is valid YAML, so
// dbt reads it as it reads any --vars.
func Vars(vars map[string]any) (string, error) {
	if len(vars) == 0 {
		return "", nil
	}
	b, err := json.Marshal(vars)
	if err != nil {
		return "", fmt.Errorf("dbtargv: encode vars: %w", err)
	}
	return string(b), nil
}

// MergeVars returns base overlaid with over (a new map; keys of over win).
func MergeVars(base, over map[string]any) map[string]any {
	if len(base) == 0 && len(over) == 0 {
		return nil
	}
	out := make(map[string]any, len(base)+len(over))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range over {
		out[k] = v
	}
	return out
}

// Options are the parts of a node-running dbt invocation that do not
// depend on where it runs.
type Options struct {
	// Command is dbt's sub-command: run, seed, snapshot, test or build.
	Command string
	// Nodes are selected one by one with Selector.
	Nodes []*manifest.Node
	// FullRefresh adds --full-refresh where Command accepts it and is
	// ignored elsewhere.
	FullRefresh bool
	Vars        map[string]any
	Target      string
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
	// TestsWithoutRelationCache adds --no-populate-cache to test: dbt test
	// fills the relation cache with every relation of the tested nodes'
	// schemas before running, yet data and unit tests look nothing up in
	// it, and what does (store_failures, --defer) asks the database when
	// the cache is empty. In a one-node invocation the listing costs as
	// much as the test. Off for places whose dbt may not know the flag.
	TestsWithoutRelationCache bool
}

// Build returns the sub-command and its flags (without the dbt executable
// and without paths such as --project-dir or --target-path, which depend on
// where the invocation runs):
//
//	run --select <selector>... --indirect-selection empty [--full-refresh] [--vars JSON] [--target T] [--threads N] [--state DIR] [--defer] [--defer-state DIR] [--favor-state]
//
// and for test with TestsWithoutRelationCache, --no-populate-cache at the end.
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
	args := append([]string{o.Command}, sel...)
	ind := o.IndirectSelection
	if ind == "" {
		ind = "empty"
	}
	args = append(args, "--indirect-selection", ind)
	if o.FullRefresh && AcceptsFullRefresh(o.Command) {
		args = append(args, "--full-refresh")
	}
	vars, err := Vars(o.Vars)
	if err != nil {
		return nil, err
	}
	if vars != "" {
		args = append(args, "--vars", vars)
	}
	if o.Target != "" {
		args = append(args, "--target", o.Target)
	}
	if o.Threads > 0 {
		args = append(args, "--threads", fmt.Sprint(o.Threads))
	}
	if o.State != "" {
		args = append(args, "--state", o.State)
	}
	if o.Defer {
		args = append(args, "--defer")
	}
	if o.DeferState != "" {
		args = append(args, "--defer-state", o.DeferState)
	}
	if o.FavorState {
		args = append(args, "--favor-state")
	}
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
