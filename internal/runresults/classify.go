package runresults

import (
	"regexp"
	"strings"
)

// Outcome is the coarse meaning of a dbt status word.
type Outcome int

// Outcomes of a node in one dbt invocation.
const (
	// OK: success, pass, warn, no-op.
	OK Outcome = iota
	// Failed: error, fail, runtime error, partial success, or a status
	// this package does not know.
	Failed
	// Skipped: dbt skipped the node.
	Skipped
	// Reused: dbt did not run the node but reused its result from an
	// earlier run whose inputs were the same (dbt-core 1.12's "reused"
	// status, written by --manage-state, the dbt-state plugin and dbt v2;
	// see EntryOutcome for tests reused that way).
	Reused
)

// OutcomeOf maps a dbt status word (models: success, error, skipped,
// partial success, no-op, reused; tests: pass, fail, warn, error,
// skipped; source freshness: pass, warn, error, runtime error) to an
// Outcome. A test that warns is OK: dbt build does not skip anything
// because of it. "no-op" (dbt 1.10+: a node dbt ran that had nothing to
// execute, such as a saved query without exports) is OK; "reused" is
// Reused.
func OutcomeOf(status string) Outcome {
	switch strings.ToLower(status) {
	case "success", "pass", "warn", "no-op":
		return OK
	case "skipped":
		return Skipped
	case "reused":
		return Reused
	}
	return Failed
}

// NoOpResponse is the adapter_response message of a node dbt did not
// execute: dbt state (state-aware orchestration) reports a test it did
// not run because what it tests was reused, or whose verdict it knew
// without querying the warehouse, as "pass" with this message.
const NoOpResponse = "NO-OP"

// EntryOutcome is OutcomeOf(e.Status), except that a passing test or a
// success dbt did not execute (adapter_response "_message" NoOpResponse,
// and no "rows_affected" or query id) is Reused: dbt checked it without
// running it, so its verdict is an earlier run's.
func EntryOutcome(e *Result) Outcome {
	o := OutcomeOf(e.Status)
	if o != OK || strings.EqualFold(e.Status, "no-op") || strings.EqualFold(e.Status, "warn") {
		return o
	}
	if msg, _ := e.AdapterResponse["_message"].(string); strings.EqualFold(msg, NoOpResponse) {
		return Reused
	}
	return o
}

// Class is the kind of a dbt failure, as far as dbt's status and message
// tell it. Its values are the names executor.Kind gives the same
// failures, so that executor converts one into the other.
type Class string

// Failure classes.
const (
	// None: not a failure.
	None Class = ""
	// Compilation: parse, compile, Jinja, contract, configuration or
	// dependency errors. Deterministic.
	Compilation Class = "compilation"
	// TestFailure: a test returned failing rows. Deterministic.
	TestFailure Class = "test_failure"
	// Database: the warehouse rejected or failed the SQL. May be
	// transient.
	Database Class = "database"
	// Connection: the warehouse could not be reached, the connection was
	// lost, or (DuckDB) the database file is locked by another process.
	// Usually transient.
	Connection Class = "connection"
	// Unknown: a failure the message does not explain (for instance an
	// exception raised by a Python model).
	Unknown Class = "unknown"
)

// String returns the class's name ("none" for None).
func (c Class) String() string {
	if c == None {
		return "none"
	}
	return string(c)
}

// Classify returns the class of a node's result from dbt's status word and
// message. OK and skipped statuses are None; a failing test ("fail") is
// TestFailure; errors are classified from the message with ClassifyMessage.
func Classify(status, message string) Class {
	switch OutcomeOf(status) {
	case OK, Skipped, Reused:
		return None
	}
	if strings.EqualFold(status, "fail") {
		return TestFailure
	}
	return ClassifyMessage(message)
}

// connectionRE matches messages of drivers and dbt that mean the
// warehouse could not be reached or the connection broke.
var connectionRE = regexp.MustCompile(`(?i)` + strings.Join([]string{
	`could not connect`,
	`connection refused`,
	`connection to server`,
	`server closed the connection`,
	`could not translate host name`,
	`connection timed out`,
	`timeout expired`,
	`ssl syscall error`,
	`connection reset`,
	`broken pipe`,
	`terminating connection`,
	`failed to connect`,
	`unable to connect`,
	`network is unreachable`,
	`no route to host`,
	`connection error`,
	`connection already closed`,
	`could not set lock on file`,
	`conflicting lock is held`,
	`too many connections`,
	`remaining connection slots are reserved`,
	`the database system is (starting up|shutting down|in recovery mode)`,
}, "|"))

// compilationRE matches dbt's deterministic, pre-execution errors.
var compilationRE = regexp.MustCompile(`(?m)^\s*(Compilation Error|Parsing Error|Contract Error|Jinja|Env var required|DbtProjectError|Validation Error|Could not find profile named|Encountered an error while reading profiles|Runtime Error\s+Could not find profile)`)

// databaseRE matches dbt's database errors and the error classes DuckDB,
// PostgreSQL and other drivers print.
var databaseRE = regexp.MustCompile(`(?m)(Database Error|\b(Catalog|Binder|Parser|Conversion|Constraint|Invalid Input|Out of Range|Not implemented|Transaction|Serialization|Permission|Syntax|Type Mismatch|Invalid Type|Mismatch Type|Dependency) Error:|(?i:\b(syntax error at or near|does not exist|permission denied|violates (not-null|unique|foreign key|check) constraint|division by zero|deadlock detected|could not serialize access|canceling statement due to|duplicate key value|invalid input syntax|out of memory|disk full|no space left on device)))`)

// ClassifyMessage classifies an error message of dbt (a node's message in
// run_results.json, or the tail of dbt's log when an invocation failed
// before running any node). Connection problems win over everything else,
// then compilation errors, then database errors; anything else is Unknown.
func ClassifyMessage(message string) Class {
	switch {
	case message == "":
		return Unknown
	case connectionRE.MatchString(message):
		return Connection
	case compilationRE.MatchString(message):
		return Compilation
	case databaseRE.MatchString(message):
		return Database
	}
	return Unknown
}
