package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/dbt"
	"github.com/dbtorch/dbtorch/internal/dbtargv"
	"github.com/dbtorch/dbtorch/internal/proc"
	"github.com/dbtorch/dbtorch/internal/runresults"
	"github.com/dbtorch/dbtorch/manifest"
)

// Source freshness statuses, as dbt writes them in sources.json.
const (
	StatusPass         = runresults.StatusPass
	StatusWarn         = runresults.StatusWarn
	StatusError        = runresults.StatusError
	StatusRuntimeError = runresults.StatusRuntimeError
)

// SourceFreshness is one source's result in a `dbt source freshness`
// snapshot: unique_id, status (pass, warn, error or runtime error),
// max_loaded_at, snapshotted_at, the warn_after and error_after
// thresholds dbt applied and the error of a failed check. Its Stale and
// Expiry methods say what the cache makes of it. It is the one
// sources.json result type, shared with the selector's source_status:
// method.
type SourceFreshness = runresults.Source

// Freshness is a parsed `dbt source freshness` snapshot (sources.json).
// It is safe for concurrent use.
type Freshness struct {
	GeneratedAt time.Time
	// Sources maps a source's unique_id to its result.
	Sources map[string]SourceFreshness

	mu  sync.Mutex
	idx map[*manifest.Graph]map[string][]string // node -> source ancestors
}

// ParseSources reads a sources.json (schema v3, and the v1/v2 layouts it
// extends). Results that describe a failed check carry only unique_id,
// status and error.
func ParseSources(r io.Reader) (*Freshness, error) {
	src, err := runresults.ParseSources(r)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	f := &Freshness{GeneratedAt: src.GeneratedAt, Sources: make(map[string]SourceFreshness, len(src.Results))}
	for _, s := range src.Results {
		f.Sources[s.UniqueID] = s
	}
	return f, nil
}

// LoadSources reads and parses the sources.json at path on fsys.
func LoadSources(fsys afero.Fs, path string) (*Freshness, error) {
	file, err := fsys.Open(path)
	if err != nil {
		return nil, fmt.Errorf("cache: %w", err)
	}
	defer file.Close()
	return ParseSources(file)
}

// parseTime reads a timestamp as dbt writes it (runresults.ParseTime).
var parseTime = runresults.ParseTime

// FreshnessOptions says how to run `dbt source freshness`.
type FreshnessOptions struct {
	// Project is the dbt project: dbt is found by dbt.FindDBT when
	// Project.DBT is empty; the command runs in Project.Dir with
	// Project.Env (nil: os.Environ()).
	dbt.Project
	// Select restricts the check to these sources (dbt --select); empty
	// checks every source with a freshness rule.
	Select []string
	// Args are extra dbt arguments, appended last.
	Args []string
	// Fs is where the command's target dir is read; nil means the OS.
	Fs afero.Fs
}

// FreshnessError reports that a freshness snapshot could not be taken or
// read. Callers should report it and go on without freshness: run
// everything, serve nothing from the cache that reads a source.
type FreshnessError struct {
	// ExitCode is dbt's exit code, -1 if it did not run to completion.
	ExitCode int
	// Output is the tail of dbt's output.
	Output string
	Err    error
}

func (e *FreshnessError) Error() string {
	msg := fmt.Sprintf("cache: dbt source freshness: %v", e.Err)
	if e.ExitCode >= 0 {
		msg += fmt.Sprintf(" (exit %d)", e.ExitCode)
	}
	if e.Output != "" {
		msg += ": " + e.Output
	}
	return msg
}

func (e *FreshnessError) Unwrap() error { return e.Err }

// RunFreshness runs `dbt source freshness` once, with a target and log
// path of its own (a temp dir, removed afterwards), and parses the
// sources.json it writes. dbt exits non-zero when a source is stale but
// still writes the file, so the exit code is not an error as long as the
// file is there and well formed. The error is a *FreshnessError.
func RunFreshness(ctx context.Context, opts FreshnessOptions) (*Freshness, error) {
	dir, err := os.MkdirTemp("", "dbtorch-freshness-")
	if err != nil {
		return nil, &FreshnessError{ExitCode: -1, Err: err}
	}
	defer os.RemoveAll(dir)
	dbtPath, err := opts.Executable()
	if err != nil {
		return nil, &FreshnessError{ExitCode: -1, Err: err}
	}
	args, err := dbtargv.SourceFreshness(dbtargv.Local(opts.Project, dir, dir), opts.Select)
	if err != nil {
		return nil, &FreshnessError{ExitCode: -1, Err: err}
	}
	args = append(args, opts.Args...)
	res := proc.Run(ctx, proc.Spec{Path: dbtPath, Args: args, Dir: opts.Dir, Env: opts.Env, TailBytes: 8 << 10})
	out := res.Tail(1000)
	exit := 0
	if res.Err != nil {
		code, exited := proc.ExitError(res.Err)
		if !exited || ctx.Err() != nil {
			return nil, &FreshnessError{ExitCode: -1, Output: tail(out), Err: errors.Join(res.Err, ctx.Err())}
		}
		exit = code
	}
	path := filepath.Join(dir, "sources.json")
	var f *Freshness
	if opts.Fs != nil {
		f, err = LoadSources(opts.Fs, path)
	} else {
		f, err = LoadSources(afero.NewOsFs(), path)
	}
	if err != nil {
		return nil, &FreshnessError{ExitCode: exit, Output: tail(out), Err: err}
	}
	return f, nil
}

func tail(s string) string {
	const max = 2000
	s = strings.TrimSpace(s)
	if len(s) > max {
		s = "…" + s[len(s)-max:]
	}
	return s
}

// sourceAncestors returns, for every node of g, the sources it reads
// directly or through any chain of nodes, sorted. It is memoized per graph.
func (f *Freshness) sourceAncestors(g *manifest.Graph) map[string][]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if idx, ok := f.idx[g]; ok {
		return idx
	}
	idx := SourceAncestors(g)
	if f.idx == nil {
		f.idx = map[*manifest.Graph]map[string][]string{}
	}
	f.idx[g] = idx
	return idx
}

// SourceAncestors returns, for every node of g, the unique_ids of the
// sources among its ancestors (its own id for a source), sorted.
func SourceAncestors(g *manifest.Graph) map[string][]string {
	out := make(map[string][]string, g.Len())
	var visit func(id string) []string
	visit = func(id string) []string {
		if s, ok := out[id]; ok {
			return s
		}
		var acc []string
		if n := g.Node(id); n != nil && n.ResourceType == manifest.Source {
			acc = []string{id}
		}
		for _, p := range g.Parents(id) {
			acc = append(acc, visit(p)...)
		}
		if len(acc) > 1 {
			slices.Sort(acc)
			acc = slices.Compact(acc)
		}
		out[id] = acc
		return acc
	}
	for _, id := range g.IDs() {
		visit(id)
	}
	return out
}

// StaleAncestors returns the stale sources (status error or runtime error)
// that id reads directly or through other nodes, sorted. Nodes with such a
// source are skipped under OnlyFreshSources; because the walk is
// transitive, so is everything downstream of them.
func (f *Freshness) StaleAncestors(g *manifest.Graph, id string) []string {
	if f == nil {
		return nil
	}
	var out []string
	for _, s := range f.sourceAncestors(g)[id] {
		if r, ok := f.Sources[s]; ok && r.Stale() {
			out = append(out, s)
		}
	}
	return out
}

// Expiry returns when a result built for id stops being trustworthy
// because of the data it reads: the earliest SourceFreshness.Expiry of
// its upstream sources in the snapshot. ok is false when no upstream
// source has a threshold.
func (f *Freshness) Expiry(g *manifest.Graph, id string) (t time.Time, ok bool) {
	if f == nil {
		return time.Time{}, false
	}
	for _, s := range f.sourceAncestors(g)[id] {
		r, found := f.Sources[s]
		if !found {
			continue
		}
		if e, has := r.Expiry(); has && (!ok || e.Before(t)) {
			t, ok = e, true
		}
	}
	return t, ok
}

// StaleSources returns the unique_ids of the stale sources in the
// snapshot, sorted.
func (f *Freshness) StaleSources() []string {
	if f == nil {
		return nil
	}
	var out []string
	for id, s := range f.Sources {
		if s.Stale() {
			out = append(out, id)
		}
	}
	sort.Strings(out)
	return out
}
