package artifacts_test

import (
	"bytes"
	"encoding/xml"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spf13/afero"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/dbtorch/dbtorch/artifacts"
	"github.com/dbtorch/dbtorch/internal/dbttest"
)

func renderJUnit(t *testing.T, j *artifacts.JUnit) []byte {
	t.Helper()
	var buf bytes.Buffer
	require.NoError(t, j.Render(&buf, fixtureRun(t)))
	return buf.Bytes()
}

func TestJUnitGolden(t *testing.T) {
	golden(t, "junit.xml", renderJUnit(t, &artifacts.JUnit{Hostname: "ci-runner"}))
	golden(t, "junit_all_nodes.xml", renderJUnit(t, &artifacts.JUnit{Hostname: "ci-runner", AllNodes: true}))
}

func TestJUnitValidatesAgainstXSDs(t *testing.T) {
	dir := filepath.Join(dbttest.SharedDir(t), "reference", "junit")
	tmp := t.TempDir()
	files := map[string][]byte{
		"default.xml":   renderJUnit(t, &artifacts.JUnit{Hostname: "ci-runner"}),
		"all_nodes.xml": renderJUnit(t, &artifacts.JUnit{AllNodes: true}),
	}
	for name, data := range files {
		path := filepath.Join(tmp, name)
		require.NoError(t, os.WriteFile(path, data, 0o644))
		for _, xsd := range []string{"JUnit.xsd", "junit-10.xsd"} {
			assert.Empty(t, validateXML(t, filepath.Join(dir, xsd), path), "%s against %s", name, xsd)
		}
	}
	// The check can fail: a test case without its required classname is
	// rejected by the strict schema.
	bad := strings.Replace(string(files["default.xml"]), ` classname="shop.marts"`, "", 1)
	path := filepath.Join(tmp, "bad.xml")
	require.NoError(t, os.WriteFile(path, []byte(bad), 0o644))
	assert.NotEmpty(t, validateXML(t, filepath.Join(dir, "JUnit.xsd"), path))
}

func TestJUnitContent(t *testing.T) {
	var doc struct {
		Suites []struct {
			Name     string `xml:"name,attr"`
			Tests    int    `xml:"tests,attr"`
			Failures int    `xml:"failures,attr"`
			Errors   int    `xml:"errors,attr"`
			Skipped  int    `xml:"skipped,attr"`
			Cases    []struct {
				Name    string `xml:"name,attr"`
				Failure *struct {
					Type string `xml:"type,attr"`
					Text string `xml:",chardata"`
				} `xml:"failure"`
				Error *struct {
					Type    string `xml:"type,attr"`
					Message string `xml:"message,attr"`
					Text    string `xml:",chardata"`
				} `xml:"error"`
				Skipped *struct {
					Message string `xml:"message,attr"`
				} `xml:"skipped"`
			} `xml:"testcase"`
			SystemOut string `xml:"system-out"`
		} `xml:"testsuite"`
	}
	require.NoError(t, xml.Unmarshal(renderJUnit(t, &artifacts.JUnit{Title: "ci"}), &doc))
	require.Len(t, doc.Suites, 2)
	tests, nodes := doc.Suites[0], doc.Suites[1]
	assert.Equal(t, "ci.tests", tests.Name)
	assert.Equal(t, []int{4, 1, 0, 1}, []int{tests.Tests, tests.Failures, tests.Errors, tests.Skipped})
	assert.Contains(t, tests.SystemOut, "WARN test.shop.accepted_values_stg_customers_segment.1a2b3c4d5e: Got 2 results")
	assert.Equal(t, "ci.nodes", nodes.Name)
	assert.Equal(t, []int{2, 0, 1, 1}, []int{nodes.Tests, nodes.Failures, nodes.Errors, nodes.Skipped})
	for _, c := range nodes.Cases {
		switch c.Name {
		case "customer_revenue":
			require.NotNil(t, c.Error)
			assert.Equal(t, "database", c.Error.Type)
			assert.Contains(t, c.Error.Text, `Binder Error: column "nope" <not> found & "quoted"`)
			assert.Contains(t, c.Error.Text, "attempts: 2")
		case "revenue_by_segment":
			require.NotNil(t, c.Skipped)
			assert.Equal(t, "upstream failed: model.shop.customer_revenue", c.Skipped.Message)
		default:
			t.Errorf("unexpected node case %s", c.Name)
		}
	}

	// All passing: the nodes suite is left out, the tests suite stays.
	run := fixtureRun(t)
	run.Results = run.Results[:2]
	var buf bytes.Buffer
	require.NoError(t, (&artifacts.JUnit{}).Render(&buf, run))
	assert.Equal(t, 1, strings.Count(buf.String(), "<testsuite "))
	assert.Contains(t, buf.String(), `tests="0"`)
}

func TestJUnitReportWritesFile(t *testing.T) {
	fs := afero.NewMemMapFs()
	require.NoError(t, (&artifacts.JUnit{Path: "/r/junit.xml", Fs: fs, Hostname: "h"}).Report(t.Context(), fixtureRun(t)))
	got, err := afero.ReadFile(fs, "/r/junit.xml")
	require.NoError(t, err)
	assert.Equal(t, string(renderJUnit(t, &artifacts.JUnit{Hostname: "h"})), string(got))
	require.Error(t, (&artifacts.JUnit{}).Report(t.Context(), fixtureRun(t)))
}

func TestJUnitStripsControlCharacters(t *testing.T) {
	run := fixtureRun(t)
	nr := run.Result("model.shop.customer_revenue")
	nr.Message = "\x1b[31mDatabase Error\x1b[0m in model\x00 \xff ]]> end"
	var buf bytes.Buffer
	require.NoError(t, (&artifacts.JUnit{Hostname: "h"}).Render(&buf, run))
	path := filepath.Join(t.TempDir(), "junit.xml")
	require.NoError(t, os.WriteFile(path, buf.Bytes(), 0o644))
	assert.Empty(t, validateXML(t, filepath.Join(dbttest.SharedDir(t), "reference", "junit", "JUnit.xsd"), path))
	var doc struct {
		Text []string `xml:"testsuite>testcase>error"`
	}
	require.NoError(t, xml.Unmarshal(buf.Bytes(), &doc))
	require.Len(t, doc.Text, 1)
	assert.True(t, strings.HasPrefix(doc.Text[0], "[31mDatabase Error[0m in model  ]]> end\n"), doc.Text[0])
}
