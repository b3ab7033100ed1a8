package selector

import (
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/dbtorch/dbtorch/manifest"
)

// RunResults is the part of a run_results.json the result: method reads.
type RunResults struct {
	Results []RunResult `json:"results"`
}

// RunResult is one node's result: its unique_id and status ("success",
// "error", "skipped", "pass", "fail", "warn", ...).
type RunResult struct {
	UniqueID string `json:"unique_id"`
	Status   string `json:"status"`
}

func (r *RunResults) statuses() map[string]string {
	out := make(map[string]string, len(r.Results))
	for _, x := range r.Results {
		out[x.UniqueID] = x.Status
	}
	return out
}

// ParseRunResults parses run_results.json bytes (any schema version).
func ParseRunResults(data []byte) (*RunResults, error) {
	var r RunResults
	if err := json.Unmarshal(data, &r); err != nil {
		return nil, fmt.Errorf("selector: run_results.json: %w", err)
	}
	return &r, nil
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
	Results []SourceFreshnessResult `json:"results"`
}

// SourceFreshnessResult is one source's freshness. MaxLoadedAt is nil for
// a result that is a runtime error.
type SourceFreshnessResult struct {
	UniqueID    string     `json:"unique_id"`
	Status      string     `json:"status"`
	MaxLoadedAt *time.Time `json:"-"`
}

// UnmarshalJSON reads max_loaded_at when present.
func (r *SourceFreshnessResult) UnmarshalJSON(data []byte) error {
	var raw struct {
		UniqueID    string  `json:"unique_id"`
		Status      string  `json:"status"`
		MaxLoadedAt *string `json:"max_loaded_at"`
	}
	if err := json.Unmarshal(data, &raw); err != nil {
		return err
	}
	r.UniqueID, r.Status, r.MaxLoadedAt = raw.UniqueID, raw.Status, nil
	if raw.MaxLoadedAt != nil {
		for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04:05.999999", "2006-01-02 15:04:05.999999-07:00", "2006-01-02 15:04:05"} {
			if t, err := time.Parse(layout, *raw.MaxLoadedAt); err == nil {
				r.MaxLoadedAt = &t
				break
			}
		}
		if r.MaxLoadedAt == nil {
			return fmt.Errorf("selector: sources.json: %s: unparsable max_loaded_at %q", raw.UniqueID, *raw.MaxLoadedAt)
		}
	}
	return nil
}

// ParseSourceFreshness parses sources.json bytes.
func ParseSourceFreshness(data []byte) (*SourceFreshness, error) {
	var s SourceFreshness
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("selector: sources.json: %w", err)
	}
	return &s, nil
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
