package otelobserver

import (
	"strings"

	"go.opentelemetry.io/otel/attribute"

	"github.com/dbtorch/dbtorch/orchestrator"
)

// The attribute keys of dbtorch's spans, also the field names of
// `dbtorch build --log-format json` lines, so that a log line and a span
// of the same event read alike. Durations are seconds.
const (
	// KeyRunID is the build's id (dbt's invocation_id in artifacts).
	KeyRunID = attribute.Key("dbtorch.run_id")
	// KeyUniqueID is the node's unique_id.
	KeyUniqueID = attribute.Key("dbtorch.unique_id")
	// KeyResourceType is the node's resource type (model, seed, ...).
	KeyResourceType = attribute.Key("dbtorch.resource_type")
	// KeyWave is the node's wave in the plan.
	KeyWave = attribute.Key("dbtorch.wave")
	// KeyStatus is the node's terminal status (success, error, skipped,
	// cached) or, on an attempt, the executor's status of that attempt.
	KeyStatus = attribute.Key("dbtorch.status")
	// KeyDBTStatus is dbt's own status word (pass, fail, warn, ...).
	KeyDBTStatus = attribute.Key("dbtorch.dbt_status")
	// KeyKind is the error kind of a failed node or attempt.
	KeyKind = attribute.Key("dbtorch.kind")
	// KeyError is the failure's message.
	KeyError = attribute.Key("dbtorch.error")
	// KeyAttempt is the attempt number (NodeStarted, NodeRetrying,
	// attempt spans).
	KeyAttempt = attribute.Key("dbtorch.attempt")
	// KeyAttempts is how many attempts a node took.
	KeyAttempts = attribute.Key("dbtorch.attempts")
	// KeyWaitSeconds is the time a node spent waiting for a worker, a
	// limit slot or a retry (NodeResult.WaitTime).
	KeyWaitSeconds = attribute.Key("dbtorch.wait_seconds")
	// KeyWaitReason says what a wait span waited for: "queue" (a worker
	// or a limit slot) or "retry" (the backoff before the next attempt).
	KeyWaitReason = attribute.Key("dbtorch.wait_reason")
	// KeyRetryDelaySeconds is the backoff before the next attempt.
	KeyRetryDelaySeconds = attribute.Key("dbtorch.retry_delay_seconds")
	// KeyCache is the cache decision: "hit" (served from the cache),
	// "miss" (cacheable, but run) or "none" (not cacheable, or no cache).
	KeyCache = attribute.Key("dbtorch.cache")
	// KeyCacheKey is the node's cache key.
	KeyCacheKey = attribute.Key("dbtorch.cache_key")
	// KeyInvocationID is the dbt invocation_id of the node's final attempt
	// (on an attempt span: of that attempt).
	KeyInvocationID = attribute.Key("dbtorch.invocation_id")
	// KeyCommand is the dbt command (run, seed, snapshot, test, build).
	KeyCommand = attribute.Key("dbtorch.command")
	// KeySkipReason says why a skipped node was not run.
	KeySkipReason = attribute.Key("dbtorch.skip_reason")
	// KeyFailedUpstream names the failed ancestors of a skipped node.
	KeyFailedUpstream = attribute.Key("dbtorch.failed_upstream")
	// KeyRowsAffected is dbt's rows_affected.
	KeyRowsAffected = attribute.Key("dbtorch.rows_affected")
	// KeyBytesProcessed, KeyBytesBilled, KeySlotMS and KeyQueryIDs are
	// what the warehouse reported for the node's final attempt
	// (orchestrator.NodeResult.Cost), when it reported them.
	KeyBytesProcessed = attribute.Key("dbtorch.bytes_processed")
	KeyBytesBilled    = attribute.Key("dbtorch.bytes_billed")
	KeySlotMS         = attribute.Key("dbtorch.slot_ms")
	KeyQueryIDs       = attribute.Key("dbtorch.query_ids")
	// KeyNodes and KeyWaves size the build (RunStarted).
	KeyNodes = attribute.Key("dbtorch.nodes")
	KeyWaves = attribute.Key("dbtorch.waves")
	// KeyCountPrefix prefixes the per-status node counts of a finished
	// build: dbtorch.count.success, .error, .skipped, .cached.
	KeyCountPrefix = "dbtorch.count."
	// KeyDurationSeconds is a finished node's or build's wall time.
	KeyDurationSeconds = attribute.Key("dbtorch.duration_seconds")
)

// CacheDecision returns the value of KeyCache for a finished node: "hit"
// when it was served from the cache, "miss" when it had a cache key but
// ran (or failed, or was skipped), "none" when it had no key.
func CacheDecision(r *orchestrator.NodeResult) string {
	switch {
	case r.Status == orchestrator.Cached:
		return "hit"
	case r.CacheKey != "":
		return "miss"
	}
	return "none"
}

// resourceTypeOf returns the resource type a unique_id starts with
// ("model.shop.x" is a model).
func resourceTypeOf(id string) string {
	rt, _, _ := strings.Cut(id, ".")
	return rt
}

// EventAttributes returns the attributes of one build event, as the
// Observer puts them on spans and `--log-format json` writes them:
//
//   - RunStarted: run_id, nodes, waves;
//   - NodeQueued: run_id, unique_id, resource_type;
//   - NodeStarted: run_id, unique_id, resource_type, attempt;
//   - NodeRetrying: those and retry_delay_seconds, kind, error;
//   - NodeFinished: run_id, unique_id, resource_type, wave, status,
//     dbt_status, attempts, wait_seconds, duration_seconds, cache,
//     cache_key, invocation_id, command, rows_affected, bytes_processed,
//     bytes_billed, slot_ms and query_ids (as the warehouse reported
//     them), kind and error (status error), skip_reason and
//     failed_upstream (status skipped);
//   - RunFinished: run_id, duration_seconds, and a count per status.
//
// Attributes whose value is unknown (no invocation, no rows) are left out.
func EventAttributes(e orchestrator.Event) []attribute.KeyValue {
	a := []attribute.KeyValue{KeyRunID.String(e.RunID)}
	if e.Node != "" {
		rt := resourceTypeOf(e.Node)
		if e.Result != nil && e.Result.ResourceType != "" {
			rt = string(e.Result.ResourceType)
		}
		a = append(a, KeyUniqueID.String(e.Node), KeyResourceType.String(rt))
	}
	switch e.Type {
	case orchestrator.RunStarted:
		if e.Plan != nil {
			a = append(a, KeyNodes.Int(e.Plan.Len()), KeyWaves.Int(len(e.Plan.Waves())))
		}
	case orchestrator.NodeStarted:
		a = append(a, KeyAttempt.Int(e.Attempt))
	case orchestrator.NodeRetrying:
		a = append(a, KeyAttempt.Int(e.Attempt), KeyRetryDelaySeconds.Float64(e.Delay.Seconds()))
		if e.Error != nil {
			a = append(a, KeyKind.String(string(e.Error.Kind)), KeyError.String(e.Error.Message))
		}
	case orchestrator.NodeFinished:
		if e.Result != nil {
			a = append(a, resultAttributes(e.Result)...)
		}
	case orchestrator.RunFinished:
		if r := e.Run; r != nil {
			if !r.StartedAt.IsZero() && !r.CompletedAt.IsZero() {
				a = append(a, KeyDurationSeconds.Float64(r.CompletedAt.Sub(r.StartedAt).Seconds()))
			}
			for _, s := range []orchestrator.Status{orchestrator.Success, orchestrator.Error, orchestrator.Skipped, orchestrator.Cached} {
				a = append(a, attribute.Int(KeyCountPrefix+string(s), r.Count(s)))
			}
		}
	}
	return a
}

// resultAttributes are a finished node's attributes (without run_id,
// unique_id and resource_type).
func resultAttributes(r *orchestrator.NodeResult) []attribute.KeyValue {
	a := []attribute.KeyValue{
		KeyWave.Int(r.Wave),
		KeyStatus.String(string(r.Status)),
		KeyAttempts.Int(len(r.Attempts)),
		KeyWaitSeconds.Float64(r.WaitTime.Seconds()),
		KeyCache.String(CacheDecision(r)),
	}
	if r.DBTStatus != "" {
		a = append(a, KeyDBTStatus.String(r.DBTStatus))
	}
	if !r.StartedAt.IsZero() && !r.CompletedAt.Before(r.StartedAt) {
		a = append(a, KeyDurationSeconds.Float64(r.CompletedAt.Sub(r.StartedAt).Seconds()))
	}
	if r.CacheKey != "" {
		a = append(a, KeyCacheKey.String(r.CacheKey))
	}
	if inv := r.Invocation; inv != nil {
		if inv.InvocationID != "" {
			a = append(a, KeyInvocationID.String(inv.InvocationID))
		}
		if inv.Command != "" {
			a = append(a, KeyCommand.String(string(inv.Command)))
		}
	}
	if r.RowsAffected != nil {
		a = append(a, KeyRowsAffected.Int64(*r.RowsAffected))
	}
	c := r.Cost()
	for _, f := range []struct {
		k attribute.Key
		v *int64
	}{{KeyBytesProcessed, c.BytesProcessed}, {KeyBytesBilled, c.BytesBilled}, {KeySlotMS, c.SlotMS}} {
		if f.v != nil {
			a = append(a, f.k.Int64(*f.v))
		}
	}
	if len(c.QueryIDs) > 0 {
		a = append(a, KeyQueryIDs.StringSlice(c.QueryIDs))
	}
	if r.Err != nil {
		a = append(a, KeyKind.String(string(r.Err.Kind)), KeyError.String(r.Err.Message))
	}
	if r.Status == orchestrator.Skipped {
		a = append(a, KeySkipReason.String(r.SkipReason))
		if len(r.FailedUpstream) > 0 {
			a = append(a, KeyFailedUpstream.StringSlice(r.FailedUpstream))
		}
	}
	return a
}
