package selector

import (
	"bytes"
	"fmt"
	"os"
	"time"

	"github.com/dbtorch/dbtorch/internal/runresults"
	"github.com/dbtorch/dbtorch/manifest"
)

// RunResults is the part of a run_results.json the result: method reads.
type RunResults struct {
	Results []RunResult
}

// RunResult is one node's result: its unique_id and status ("success",
// "error", "skipped", "pass", "fail", "warn", ...).
type RunResult struct {
	UniqueID string
	Status   string
}

func (r *RunResults) statuses() map[string]string {
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
	r := &RunResults{Results: make([]RunResult, len(f.Results))}
	for i, e := range f.Results {
		r.Results[i] = RunResult{UniqueID: e.UniqueID, Status: e.Status}
	}
	return r, nil
}

// LoadRunResults reads and parses the run_results.json at path. A missing
// file is returned as an error satisfying errors.Is(err, fs.ErrNotExist).
func LoadRunResults(path string) (*RunResults, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseRunResults(data)
}

// SourceFreshness is the part of a sources.json (`dbt source freshness`)
// the source_status: method reads.
type SourceFreshness struct {
	Results []SourceFreshnessResult
}

// SourceFreshnessResult is one source's freshness. MaxLoadedAt is nil for
// a result that is a runtime error.
type SourceFreshnessResult struct {
	UniqueID    string
	Status      string
	MaxLoadedAt *time.Time
}

// ParseSourceFreshness parses sources.json bytes.
func ParseSourceFreshness(data []byte) (*SourceFreshness, error) {
	src, err := runresults.ParseSources(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("selector: %w", err)
	}
	s := &SourceFreshness{Results: make([]SourceFreshnessResult, len(src.Results))}
	for i, r := range src.Results {
		s.Results[i] = SourceFreshnessResult{UniqueID: r.UniqueID, Status: r.Status}
		if !r.MaxLoadedAt.IsZero() {
			s.Results[i].MaxLoadedAt = &r.MaxLoadedAt
		}
	}
	return s, nil
}

// LoadSourceFreshness reads and parses the sources.json at path.
func LoadSourceFreshness(path string) (*SourceFreshness, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return ParseSourceFreshness(data)
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
		if r.MaxLoadedAt != nil {
			cur[r.UniqueID] = *r.MaxLoadedAt
		} else {
			curErr[r.UniqueID] = true
		}
	}
	prev := map[string]time.Time{}
	for _, r := range e.srcPrev.Results {
		if r.MaxLoadedAt != nil {
			prev[r.UniqueID] = *r.MaxLoadedAt
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
