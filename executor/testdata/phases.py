"""Where a warm worker's per-node invocation spends its time, phase by phase.

Runs N one-model `dbt run` and N one-test `dbt test` invocations through
dbtRunner with a kept manifest, as internal/pyworker/worker.py does, and prints the
wall time of dbt's phases per invocation (phases nest: a line includes the
lines it calls; threads are summed). With --patched the worker's
per-invocation cuts are applied first; compare the two runs to see what
each cut saves. The figures in BENCHMARKS.md's Executors section come from

    go run ./internal/cmd/dbtgen -models 50 -out /tmp/gen50
    cd /tmp/gen50 && DBTORCH_DUCKDB_PATH=/tmp/gen50.duckdb DBT_PROFILES_DIR=. \\
        <repo>/.venv/bin/dbt build          # the tables the runs replace
    DBTORCH_DUCKDB_PATH=/tmp/gen50.duckdb DBT_PROFILES_DIR=/tmp/gen50 \\
        <repo>/.venv/bin/python <repo>/executor/testdata/phases.py /tmp/gen50 [--patched]

It is a measuring tool, not a test.
"""

import argparse
import collections
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "internal", "pyworker"))
import worker  # noqa: E402  internal/pyworker/worker.py

PHASES = [
    ("dbt.cli.main", "dbtRunner.invoke"),
    ("dbt.cli.requires", "load_profile"),
    ("dbt.cli.requires", "load_project"),
    ("dbt.cli.requires", "register_adapter"),
    ("dbt.cli.requires", "generate_query_header_context"),
    ("dbt.adapters.base.connections", "BaseConnectionManager.set_query_header"),
    ("dbt.task.runnable", "GraphRunnableTask.run"),
    ("dbt.task.runnable", "GraphRunnableTask._runtime_initialize"),
    ("dbt.task.base", "ConfiguredTask.compile_manifest"),
    ("dbt.task.runnable", "GraphRunnableTask.get_graph_queue"),
    ("dbt.graph.selector", "NodeSelector.get_selected"),
    ("dbt.graph.graph", "Graph.get_subset_graph"),
    ("dbt.graph.queue", "GraphQueue.__init__"),
    ("dbt.task.runnable", "GraphRunnableTask.populate_adapter_cache"),
    ("dbt.task.runnable", "GraphRunnableTask.create_schemas"),
    ("dbt.task.run", "RunTask.safe_run_hooks"),
    ("dbt.task.runnable", "GraphRunnableTask.execute_nodes"),
    ("dbt_common.events.event_manager", "EventManager.fire_event"),
]


def timed(total, count, module, attr):
    """Wraps module.attr (a function or a plain Class.method, not a
    classmethod) to add its wall time
    to total[attr]."""
    obj = __import__(module, fromlist=["_"])
    *path, name = attr.split(".")
    for p in path:
        obj = getattr(obj, p)
    fn = getattr(obj, name)

    def wrapper(*args, **kwargs):
        start = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            total[attr] += time.perf_counter() - start
            count[attr] += 1

    setattr(obj, name, wrapper)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("project")
    ap.add_argument("-n", type=int, default=30, help="invocations of each kind")
    ap.add_argument("--patched", action="store_true", help="apply the worker's per-invocation cuts")
    ap.add_argument("--no-keep", action="store_true", help="as a worker that is not its executor's only one (no kept relation cache)")
    a = ap.parse_args()

    from dbt.cli.main import dbtRunner

    extra = {"run": [], "test": []}
    # One build on a sole worker: the relation cache is kept between
    # invocations (keep_relation_cache) unless --no-keep.
    relations = worker.Relations()
    if a.patched:
        # Every patch enabled on this dbt-core, as a worker applies them.
        builds = worker.Builds()
        worker.apply_patches(builds, relations=relations)
        builds.enter("phases")
        # What the Go side adds (executor/options.go, warm.go).
        extra = {"run": ["--log-level", "warn"], "test": ["--log-level", "warn", "--no-populate-cache"]}
    else:
        worker.cache_plugin_discovery()
        worker.skip_graph_diagnostics()
    work = tempfile.mkdtemp(prefix="phases-")
    res = dbtRunner().invoke(["parse", "--project-dir", a.project, "--quiet", "--target-path", os.path.join(work, "parse")])
    if not res.success:
        sys.exit("dbt parse failed: %s" % res.exception)
    manifest = res.result

    total, count = collections.defaultdict(float), collections.defaultdict(int)
    for module, attr in PHASES:
        timed(total, count, module, attr)

    def invoke(cmd, node, k):
        d = os.path.join(work, "inv-%s-%d" % (cmd, k))
        args = [cmd, "--select", "fqn:" + ".".join(node.fqn) + ",resource_type:" + str(node.resource_type) + ",package:" + node.package_name,
                "--indirect-selection", "empty", "--project-dir", a.project,
                "--target-path", os.path.join(d, "target"), "--log-path", os.path.join(d, "logs"),
                "--no-use-colors", "--no-write-json", "--cache-selected-only", "--log-level-file", "none"] + extra[cmd]
        worker.reset_compilation(manifest)
        relations.enter("phases", "", not a.no_keep)
        r = dbtRunner(manifest=manifest).invoke(args)
        relations.leave(r.success)
        if not r.success:
            sys.exit("%s %s failed: %s" % (cmd, node.unique_id, r.exception))

    for cmd, rtype in (("run", "model"), ("test", "test")):
        nodes = [n for n in manifest.nodes.values() if n.resource_type == rtype and n.config.materialized != "ephemeral"]
        nodes = nodes[: a.n]
        for k, n in enumerate(nodes[:3]):  # warm up
            invoke(cmd, n, k)
        total.clear()
        count.clear()
        start = time.perf_counter()
        for k, n in enumerate(nodes):
            invoke(cmd, n, 100 + k)
        wall = time.perf_counter() - start
        print("dbt %s, %d one-node invocations%s: %.1f ms each" % (cmd, len(nodes), " (patched)" if a.patched else "", wall * 1000 / len(nodes)))
        for attr, secs in sorted(total.items(), key=lambda kv: -kv[1]):
            print("  %-45s %6.1f ms" % (attr, secs * 1000 / len(nodes)))


if __name__ == "__main__":
    main()
