"""A long-lived `dbt ls` worker: parse once, answer many selections.

Usage: python dbtls_worker.py CONFIG_JSON

CONFIG_JSON: {"project_dir": str, "base_args": [str], "deps": bool}

The worker runs `dbt deps` (when asked) and `dbt parse` once, then writes
{"ready": true} or {"error": str} as one JSON line to file descriptor 3. After
that, every line on standard input is a JSON list of `dbt ls` selection
arguments; the answer is one JSON line on descriptor 3:
{"ids": [str] | null, "error": str | null}. dbt's own logging goes to
standard output and error. The worker exits at end of input.

Part of github.com/dbtorch/dbtorch's selector package (embedded there).
"""
import json
import os
import sys


def main():
    cfg = json.loads(sys.argv[1])
    reply = os.fdopen(3, "w", buffering=1)

    def send(obj):
        reply.write(json.dumps(obj) + "\n")
        reply.flush()

    from dbt.cli.main import dbtRunner

    base = ["--project-dir", cfg["project_dir"]] + cfg.get("base_args", [])
    if cfg.get("deps"):
        res = dbtRunner().invoke(["deps", "--quiet"] + base)
        if not res.success:
            send({"error": "dbt deps failed: %s" % (res.exception,)})
            return
    res = dbtRunner().invoke(["parse", "--quiet"] + base)
    if not res.success or res.result is None:
        send({"error": "dbt parse failed: %s" % (res.exception,)})
        return
    runner = dbtRunner(manifest=res.result)
    send({"ready": True})
    for line in sys.stdin:
        if not line.strip():
            continue
        args = json.loads(line)
        try:
            r = runner.invoke(
                ["ls", "--quiet", "--output", "json", "--output-keys", "unique_id"] + base + args
            )
        except BaseException as exc:  # dbt raises for some malformed input
            send({"ids": None, "error": "%s: %s" % (type(exc).__name__, exc)})
            continue
        if not r.success or r.exception is not None:
            send({"ids": None, "error": "%s: %s" % (type(r.exception).__name__, r.exception)})
            continue
        ids = sorted(json.loads(x)["unique_id"] for x in (r.result or []))
        send({"ids": ids, "error": None})


if __name__ == "__main__":
    main()
