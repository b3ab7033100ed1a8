package selector

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/dbtorch/dbtorch/internal/runresults"
	"github.com/dbtorch/dbtorch/manifest"
)

// RunResults is a parsed run_results.json, the file the result: method
// reads (each result's unique_id and status: "success", "error",
// "skipped", "pass", "fail", "warn", ...). It is the one run_results.json
// type, artifacts.RunResultsFile.
type RunResults = runresults.File

// RunResult is one node's entry in a run_results.json
// (artifacts.RunResult).
type RunResult = runresults.Result

func statuses(r *RunResults) map[string]string {
	out := make(map[string]string, len(r.Results))
	for _, x := range r.Results {
		out[x.UniqueID] = x.Status
	}
	return out
}

// ParseRunResults parses run_results.json bytes (schema v4 to v6).
func ParseRunResults(data []byte) (*RunResults, error) {
	f, err := runresults.Parse(data)
	if err != nil {
		return nil, fmt.Errorf("selector: run_results.json: %w", err)
	}
	return f, nil
}

// LoadRunResults reads and parses the run_results.json at path. A missing
// file is returned as an error satisfying errors.Is(err, fs.ErrNotExist).
func LoadRunResults(path string) (*RunResults, error) {
	return load(path, ParseRunResults)
}

// SourceFreshness is a parsed sources.json (`dbt source freshness`), the
// file the source_status: method reads. It is the one sources.json type,
// whose results are cache.SourceFreshness.
type SourceFreshness = runresults.Sources

// SourceFreshnessResult is one source's freshness. MaxLoadedAt is zero
// for a result that is a runtime error.
type SourceFreshnessResult = runresults.Source

// ParseSourceFreshness parses sources.json bytes.
func ParseSourceFreshness(data []byte) (*SourceFreshness, error) {
	src, err := runresults.ParseSources(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("selector: %w", err)
	}
	return src, nil
}

// LoadSourceFreshness reads and parses the sources.json at path. A
// missing file is returned as an error satisfying errors.Is(err,
// fs.ErrNotExist).
func LoadSourceFreshness(path string) (*SourceFreshness, error) {
	return load(path, ParseSourceFreshness)
}

// load reads the file at path and parses it with parse.
func load[T any](path string, parse func([]byte) (*T, error)) (*T, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return parse(data)
}

// sourceStatus is dbt's SourceStatusSelectorMethod: "fresher" selects the
// sources whose max_loaded_at is newer now than in the previous results
// (or that the previous results lack), except runtime errors.
func (e *evaluator) sourceStatus(c *criterion) (bitset, error) {
	if e.srcPrev == nil || e.srcCur == nil {
		return nil, fmt.Errorf("selector: %s: %w", c.raw, ErrNoSources)
	}
	cur := map[string]time.Time{}
	curErr := map[string]bool{}
	for _, r := range e.srcCur.Results {
		if !r.MaxLoadedAt.IsZero() {
			cur[r.UniqueID] = r.MaxLoadedAt
		} else {
			curErr[r.UniqueID] = true
		}
	}
	prev := map[string]time.Time{}
	for _, r := range e.srcPrev.Results {
		if !r.MaxLoadedAt.IsZero() {
			prev[r.UniqueID] = r.MaxLoadedAt
		}
	}
	matches := map[string]bool{}
	if c.value == "fresher" {
		for id, t := range cur {
			if p, ok := prev[id]; !ok || t.After(p) {
				matches[id] = true
			}
		}
		// dbt drops runtime errors (it reads both from the current results)
		for id := range matches {
			if curErr[id] {
				delete(matches, id)
			}
		}
	}
	out := newBitset(len(e.d.ids))
	for i, n := range e.d.nodes {
		if matches[n.UniqueID] {
			out.add(int32(i))
		}
	}
	return out, nil
}

var _ = manifest.Source
