package artifacts_test

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/internal/dbttest"
)

// compileSchema compiles the JSON schema at path (under the shared
// reference directory); extra maps further $id URLs to local files so that
// references resolve offline.
func compileSchema(t testing.TB, path string, extra map[string]string) *jsonschema.Schema {
	t.Helper()
	c := jsonschema.NewCompiler()
	for url, file := range extra {
		doc := loadJSON(t, file)
		require.NoError(t, c.AddResource(url, doc))
	}
	abs, err := filepath.Abs(path)
	require.NoError(t, err)
	s, err := c.Compile(abs)
	require.NoError(t, err, "compile %s", path)
	return s
}

func loadJSON(t testing.TB, path string) any {
	t.Helper()
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	require.NoError(t, err, "parse %s", path)
	return doc
}

// validate fails the test if data does not validate against s.
func validate(t testing.TB, s *jsonschema.Schema, data []byte) {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	require.NoError(t, err)
	if err := s.Validate(doc); err != nil {
		t.Fatalf("schema validation failed: %v\ndocument:\n%s", err, truncate(data, 4000))
	}
}

func truncate(b []byte, n int) []byte {
	if len(b) > n {
		return append(b[:n:n], "..."...)
	}
	return b
}

func runResultsSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	return compileSchema(t, filepath.Join(dbttest.SharedDir(t), "reference", "dbt-schemas", "run-results", "v6.json"), nil)
}

// mustJSON decodes data as generic JSON.
func mustJSON(t testing.TB, data []byte) map[string]any {
	t.Helper()
	var v map[string]any
	require.NoError(t, json.Unmarshal(data, &v))
	return v
}

func schemaErr(t testing.TB, s *jsonschema.Schema, doc any) error {
	t.Helper()
	// Round-trip through JSON so numbers have the validator's types.
	data, err := json.Marshal(doc)
	require.NoError(t, err)
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(data))
	require.NoError(t, err)
	return s.Validate(v)
}
