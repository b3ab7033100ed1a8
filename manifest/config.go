package manifest

import (
	"encoding/json"
)

// Config is a node's resolved config exactly as dbt wrote it: an open map,
// decoded on demand. Most of a manifest's config is never read by an
// orchestrator, so it is kept as JSON and decoded only when asked; the keys
// dbtorch branches on are lifted into Node fields when the manifest is
// loaded. The zero Config is empty. Configs are immutable.
type Config struct {
	raw []byte
}

// NewConfig returns a Config holding m (for building nodes in tests and
// tools). It panics if m cannot be encoded as JSON.
func NewConfig(m map[string]any) Config {
	if m == nil {
		return Config{}
	}
	b, err := json.Marshal(m)
	if err != nil {
		panic("manifest.NewConfig: " + err.Error())
	}
	return Config{raw: b}
}

// IsZero reports whether the node had no config object.
func (c Config) IsZero() bool { return len(c.raw) == 0 }

// JSON returns the config's JSON text as dbt wrote it (nil if absent). The
// slice is shared: do not modify it.
func (c Config) JSON() []byte { return c.raw }

// Map decodes the whole config into the types encoding/json uses for any
// (map[string]any, []any, string, float64, bool, nil). Each call decodes
// afresh; the caller owns the result. It returns nil when there is no
// config.
func (c Config) Map() map[string]any {
	if len(c.raw) == 0 {
		return nil
	}
	s := &scanner{data: c.raw}
	m, err := s.objectMap()
	if err != nil {
		return nil // unreachable: the bytes were validated when loaded
	}
	return m
}

// Get decodes the value of one top-level key, or returns nil if it is
// absent.
func (c Config) Get(key string) any {
	if len(c.raw) == 0 {
		return nil
	}
	var out any
	s := &scanner{data: c.raw}
	_ = s.fields(func(k string) error {
		if k == key && out == nil {
			v, err := s.value()
			out = v
			return err
		}
		return s.skip()
	})
	return out
}

// String returns Get(key) if it is a string, else "".
func (c Config) String(key string) string {
	v, _ := c.Get(key).(string)
	return v
}
