"""dbtorch warm worker: keeps dbt imported and the project parsed, and runs
one dbt invocation per request.

Protocol (JSON lines). Requests come on stdin; replies go to the file
descriptor named by $DBTORCH_WORKER_FD (never stdout, where dbt logs):

  -> {"id": 0, "parse_args": [...], "key": "<vars>"}          (first line)
  <- {"id": 0, "type": "ready", "pid": 123, "elapsed": 3.2}
     or {"id": 0, "type": "fatal", "error": "..."} and exit 3
  -> {"id": N, "args": [...], "parse_args": [...], "key": "<vars>", "results_path": "..."}
  <- {"id": N, "type": "done", "success": true|false, "error": null|"...", "elapsed": 0.4}

"args" is a full dbt command line without the executable; "parse_args" is
the `dbt parse` command line whose manifest "args" must run against. The
worker parses once per distinct "key" (the invocation's vars) and keeps a
few manifests. When "results_path" is set, the worker writes dbt's run
results there itself (the parent then passes --no-write-json, which saves
dbt writing manifest.json in every invocation). End of stdin ends the
worker.
"""

import json
import os
import sys
import time
import traceback

MAX_MANIFESTS = 4


def cache_plugin_discovery():
    """dbt looks for plugin modules by scanning every module on sys.path in
    every invocation (~0.15 s); the installed modules do not change while
    the worker lives, so scan once."""
    try:
        from dbt.plugins.manager import PluginManager

        scan = PluginManager.get_prefixed_modules.__func__
    except (ImportError, AttributeError):
        return
    found = {}

    def get_prefixed_modules(cls):
        if "modules" not in found:
            found["modules"] = scan(cls)
        return found["modules"]

    PluginManager.get_prefixed_modules = classmethod(get_prefixed_modules)


def skip_graph_diagnostics():
    """Every invocation writes target/graph.gpickle and computes the graph
    summaries of target/graph_summary.json, diagnostics no one reads from a
    throw-away target directory (~20 ms an invocation on 150 nodes)."""
    try:
        from dbt.compilation import Compiler, Linker
    except ImportError:
        return
    if hasattr(Compiler, "write_graph_file"):
        Compiler.write_graph_file = lambda self, linker, manifest: None
    if hasattr(Linker, "get_graph_summary"):
        Linker.get_graph_summary = lambda self, manifest: {}


def main():
    fd = int(os.environ["DBTORCH_WORKER_FD"])
    os.set_inheritable(fd, False)
    out = os.fdopen(fd, "w", buffering=1, encoding="utf-8")

    def reply(msg):
        out.write(json.dumps(msg) + "\n")
        out.flush()

    from dbt.cli.main import dbtRunner

    cache_plugin_discovery()
    skip_graph_diagnostics()

    manifests = {}  # key -> Manifest, in insertion order

    def reset_compilation(manifest):
        # dbt compiles nodes in place on the manifest it is given. A node
        # compiled by an earlier request keeps extra_ctes_injected=True, and
        # compiling it again skips injecting the CTEs of the ephemeral
        # models it reads ("__dbt__cte__x does not exist"). Reset that state
        # so every request compiles from scratch, as a fresh dbt would.
        for node in manifest.nodes.values():
            if getattr(node, "extra_ctes_injected", False):
                try:
                    node.extra_ctes_injected = False
                    node.extra_ctes = []
                except AttributeError:  # node types without the fields
                    pass

    def manifest_for(key, parse_args):
        if key in manifests:
            return manifests[key]
        res = dbtRunner().invoke(list(parse_args))
        if not res.success or res.result is None:
            raise RuntimeError("dbt parse failed: %s" % (res.exception or "see dbt's log"))
        if len(manifests) >= MAX_MANIFESTS:
            manifests.pop(next(iter(manifests)))
        manifests[key] = res.result
        return res.result

    first = True
    for line in sys.stdin:
        line = line.strip()
        if not line:
            continue
        req = json.loads(line)
        start = time.monotonic()
        if first:
            first = False
            try:
                manifest_for(req.get("key", ""), req["parse_args"])
            except BaseException as e:  # noqa: BLE001 - reported to the parent
                reply({"id": req["id"], "type": "fatal", "error": "".join(traceback.format_exception_only(type(e), e)).strip()})
                sys.exit(3)
            reply({"id": req["id"], "type": "ready", "pid": os.getpid(), "elapsed": time.monotonic() - start})
            continue
        error = None
        success = False
        try:
            manifest = manifest_for(req.get("key", ""), req["parse_args"])
            reset_compilation(manifest)
            res = dbtRunner(manifest=manifest).invoke(list(req["args"]))
            success = bool(res.success)
            path = req.get("results_path")
            if path and res.result is not None and hasattr(res.result, "write"):
                os.makedirs(os.path.dirname(path), exist_ok=True)
                res.result.write(path)
            if res.exception is not None:
                error = "".join(traceback.format_exception_only(type(res.exception), res.exception)).strip()
        except BaseException as e:  # noqa: BLE001 - reported to the parent
            error = "".join(traceback.format_exception_only(type(e), e)).strip()
        sys.stdout.flush()
        reply({"id": req["id"], "type": "done", "success": success, "error": error, "elapsed": time.monotonic() - start})


if __name__ == "__main__":
    main()
