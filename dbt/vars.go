package dbt

import (
	"encoding/json"
	"fmt"
	"strings"

	"go.yaml.in/yaml/v3"
)

// ParseVars parses a --vars argument as dbt takes it: a YAML mapping
// (JSON is YAML), for example `{broken_model: true}` or
// `{"limit": 3}`. An empty or blank string is no vars.
func ParseVars(s string) (Vars, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	var raw any
	if err := yaml.Unmarshal([]byte(s), &raw); err != nil {
		return nil, fmt.Errorf("--vars %q: not YAML: %w", s, err)
	}
	if raw == nil {
		return nil, nil
	}
	m, ok := normalize(raw).(map[string]any)
	if !ok {
		return nil, fmt.Errorf("--vars %q: not a mapping of names to values", s)
	}
	return Vars(m), nil
}

// JSON returns v as the JSON text dbt's --vars takes; "" for no vars.
// Keys are sorted (encoding/json's map order), so equal vars give equal
// text.
func (v Vars) JSON() (string, error) {
	if len(v) == 0 {
		return "", nil
	}
	b, err := json.Marshal(map[string]any(v))
	if err != nil {
		return "", fmt.Errorf("vars: %w", err)
	}
	return string(b), nil
}

// normalize turns YAML's map[any]any-free output into JSON-compatible
// values (yaml.v3 already decodes mappings as map[string]any where keys
// are strings; other keys are formatted).
func normalize(v any) any {
	switch t := v.(type) {
	case map[string]any:
		for k, e := range t {
			t[k] = normalize(e)
		}
		return t
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, e := range t {
			out[fmt.Sprint(k)] = normalize(e)
		}
		return out
	case []any:
		for i, e := range t {
			t[i] = normalize(e)
		}
		return t
	default:
		return v
	}
}
