package artifacts

import (
	"bytes"
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/spf13/afero"

	"github.com/dbtorch/dbtorch/manifest"
	"github.com/dbtorch/dbtorch/orchestrator"
)

// JUnit writes a JUnit XML report of a run, the format CI systems (GitHub
// Actions reporters, GitLab, Jenkins, Azure Pipelines, CircleCI) show as
// test results. It implements orchestrator.Reporter.
//
// The report has a test suite "<title>.tests" with one test case per data
// test and unit test — a "fail" is a <failure>, an "error" an <error>, a
// skipped test <skipped> — and a suite "<title>.nodes" with a test case
// per model, seed or snapshot that failed (<error>) or was skipped
// (<skipped>), or, with AllNodes, per every model, seed and snapshot.
// Warnings pass and are listed in the suite's system-out.
//
// The output validates against both the Apache Ant JUnit schema (the
// strict one, JUnit.xsd) and the Jenkins xUnit plugin's junit-10.xsd.
type JUnit struct {
	// Path is the file to write (atomically). Required by Report.
	Path string
	// Fs is the file system to write on; nil means the operating system's.
	Fs afero.Fs
	// Title prefixes the suite names; empty means "dbtorch".
	Title string
	// AllNodes adds passing test cases for the models, seeds and snapshots
	// that succeeded or were cached.
	AllNodes bool
	// Hostname is written into each suite; empty means os.Hostname().
	Hostname string
}

type junitSuites struct {
	XMLName xml.Name     `xml:"testsuites"`
	Suites  []junitSuite `xml:"testsuite"`
}

type junitSuite struct {
	Name       string          `xml:"name,attr"`
	Package    string          `xml:"package,attr"`
	ID         int             `xml:"id,attr"`
	Timestamp  string          `xml:"timestamp,attr"`
	Hostname   string          `xml:"hostname,attr"`
	Tests      int             `xml:"tests,attr"`
	Failures   int             `xml:"failures,attr"`
	Errors     int             `xml:"errors,attr"`
	Skipped    int             `xml:"skipped,attr"`
	Time       string          `xml:"time,attr"`
	Properties []junitProperty `xml:"properties>property"`
	Cases      []junitCase     `xml:"testcase"`
	SystemOut  junitText       `xml:"system-out"`
	SystemErr  junitText       `xml:"system-err"`
}

// junitText is element text written as CDATA, so multi-line messages stay
// readable in the file.
type junitText struct {
	Text string `xml:",cdata"`
}

type junitProperty struct {
	Name  string `xml:"name,attr"`
	Value string `xml:"value,attr"`
}

type junitCase struct {
	Name      string        `xml:"name,attr"`
	Classname string        `xml:"classname,attr"`
	Time      string        `xml:"time,attr"`
	Skipped   *junitMessage `xml:"skipped"`
	Error     *junitMessage `xml:"error"`
	Failure   *junitMessage `xml:"failure"`
}

type junitMessage struct {
	Type    string `xml:"type,attr,omitempty"`
	Message string `xml:"message,attr,omitempty"`
	Text    string `xml:",cdata"`
}

// Report writes the JUnit XML of run to j.Path.
func (j *JUnit) Report(ctx context.Context, run *orchestrator.Run) error {
	return writeReport(ctx, j.Fs, j.Path, "JUnit", func(w io.Writer) error { return j.Render(w, run) })
}

// Render writes the JUnit XML of run to w.
func (j *JUnit) Render(w io.Writer, run *orchestrator.Run) error {
	if run == nil {
		return errors.New("artifacts: nil run")
	}
	title := j.Title
	if title == "" {
		title = "dbtorch"
	}
	host := j.Hostname
	if host == "" {
		host, _ = os.Hostname()
		if host == "" {
			host = "localhost"
		}
	}
	pkg := "dbt"
	var props []junitProperty
	if run.ID != "" {
		props = append(props, junitProperty{"dbtorch.build_id", run.ID})
	}
	if run.Manifest != nil {
		if p := run.Manifest.Metadata.ProjectName; p != "" {
			pkg = p
		}
		if v := run.Manifest.Metadata.DBTVersion; v != "" {
			props = append(props, junitProperty{"dbt.version", v})
		}
		if a := run.Manifest.Metadata.AdapterType; a != "" {
			props = append(props, junitProperty{"dbt.adapter_type", a})
		}
	}
	start := run.StartedAt
	if start.IsZero() {
		start = orNow(run.CompletedAt)
	}
	newSuite := func(name string, id int) junitSuite {
		return junitSuite{Name: title + "." + name, Package: pkg, ID: id, Timestamp: start.UTC().Format("2006-01-02T15:04:05"),
			Hostname: host, Properties: props}
	}
	tests, nodes := newSuite("tests", 0), newSuite("nodes", 1)
	var testTime, nodeTime float64
	var testWarn []string
	for i := range run.Results {
		nr := &run.Results[i]
		rt := resourceType(run, nr)
		o := OutcomeOf(rt, nr)
		isTest := isTestType(rt)
		if !isTest && !j.AllNodes && (o == OutcomeSuccess || o == OutcomeCached) {
			continue
		}
		d := execTime(nr).Seconds()
		if o == OutcomeSkipped || o == OutcomeCached {
			d = 0
		}
		c := junitCase{Name: label(run, nr), Classname: classname(run, nr, rt), Time: fmt.Sprintf("%.3f", d)}
		msg := nodeMessage(nr)
		switch o {
		case OutcomeFail:
			c.Failure = &junitMessage{Type: "fail", Message: xmlSafe(firstLine(msg, 500)), Text: xmlSafe(failureText(run, nr, msg))}
		case OutcomeError:
			kind := "error"
			if nr.Err != nil && nr.Err.Kind != "" {
				kind = string(nr.Err.Kind)
			}
			c.Error = &junitMessage{Type: kind, Message: xmlSafe(firstLine(msg, 500)), Text: xmlSafe(failureText(run, nr, msg))}
		case OutcomeSkipped:
			c.Skipped = &junitMessage{Message: xmlSafe(skipReason(nr))}
		case OutcomeWarn:
			testWarn = append(testWarn, fmt.Sprintf("WARN %s: %s", nr.UniqueID, firstLine(msg, 500)))
		}
		s, total := &nodes, &nodeTime
		if isTest {
			s, total = &tests, &testTime
		}
		s.Cases = append(s.Cases, c)
		s.Tests++
		*total += d
		switch o {
		case OutcomeFail:
			s.Failures++
		case OutcomeError:
			s.Errors++
		case OutcomeSkipped:
			s.Skipped++
		}
	}
	tests.Time, nodes.Time = fmt.Sprintf("%.3f", testTime), fmt.Sprintf("%.3f", nodeTime)
	if len(testWarn) > 0 {
		tests.SystemOut.Text = xmlSafe(strings.Join(testWarn, "\n") + "\n")
	}
	doc := junitSuites{Suites: []junitSuite{tests}}
	if len(nodes.Cases) > 0 {
		doc.Suites = append(doc.Suites, nodes)
	}
	var buf bytes.Buffer
	buf.WriteString(xml.Header)
	enc := xml.NewEncoder(&buf)
	enc.Indent("", "  ")
	if err := enc.Encode(doc); err != nil {
		return fmt.Errorf("artifacts: encode JUnit XML: %w", err)
	}
	buf.WriteString("\n")
	_, err := w.Write(buf.Bytes())
	return err
}

// classname groups test cases the way CI systems show them: the node's
// package and directories ("shop.marts.core"), from its fqn.
func classname(run *orchestrator.Run, nr *orchestrator.NodeResult, rt manifest.ResourceType) string {
	if n := lookup(run, nr.UniqueID); n != nil && len(n.FQN) > 1 {
		return strings.Join(n.FQN[:len(n.FQN)-1], ".")
	}
	parts := strings.SplitN(nr.UniqueID, ".", 3)
	if len(parts) == 3 {
		return parts[1] + "." + string(rt)
	}
	return string(rt)
}

// failureText is the body of a failure or error: the full message, the
// node's file and, when known, the attempts and the compiled SQL.
func failureText(run *orchestrator.Run, nr *orchestrator.NodeResult, msg string) string {
	var b strings.Builder
	b.WriteString(msg)
	b.WriteString("\n")
	fmt.Fprintf(&b, "\nnode: %s\n", nr.UniqueID)
	if p := filePath(run, nr.UniqueID); p != "" {
		fmt.Fprintf(&b, "file: %s\n", p)
	}
	if n := len(nr.Attempts); n > 1 {
		fmt.Fprintf(&b, "attempts: %d\n", n)
	}
	if nr.CompiledCode != "" {
		fmt.Fprintf(&b, "\ncompiled code:\n%s\n", nr.CompiledCode)
	}
	return b.String()
}

// xmlSafe removes what XML 1.0 cannot hold (control characters other than
// tab, newline and carriage return, such as the ANSI colour codes in dbt's
// logs, and invalid UTF-8).
func xmlSafe(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r == '\t' || r == '\n' || r == '\r':
			return r
		case r < 0x20, r == 0xFFFE, r == 0xFFFF, r == utf8.RuneError:
			return -1
		}
		return r
	}, s)
}
