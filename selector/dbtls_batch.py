"""Answer many `dbt ls` questions in one Python process.

Usage: python dbtls_batch.py REQUEST.json RESPONSE.json

REQUEST: {"project_dir": str, "base_args": [str], "queries": [[str]]}
RESPONSE: [{"ids": [str] | null, "error": str | null}] in query order.

The manifest is parsed once (`dbt parse` with base_args) and handed to every
`dbt ls` through dbtRunner(manifest=...). Part of github.com/dbtorch/dbtorch
selector; embedded in the Go package.
"""
import json
import sys


def main():
    with open(sys.argv[1]) as f:
        req = json.load(f)
    from dbt.cli.main import dbtRunner

    base = ["--project-dir", req["project_dir"]] + req.get("base_args", [])
    res = dbtRunner().invoke(["parse", "--quiet"] + base)
    if not res.success or res.result is None:
        raise SystemExit("dbt parse failed: %s" % (res.exception,))
    runner = dbtRunner(manifest=res.result)
    out = []
    for q in req["queries"]:
        try:
            r = runner.invoke(
                ["ls", "--quiet", "--output", "json", "--output-keys", "unique_id"] + base + q
            )
        except BaseException as exc:  # dbt raises for some malformed input
            out.append({"ids": None, "error": "%s: %s" % (type(exc).__name__, exc)})
            continue
        if not r.success or r.exception is not None:
            out.append({"ids": None, "error": "%s: %s" % (type(r.exception).__name__, r.exception)})
            continue
        ids = sorted(json.loads(line)["unique_id"] for line in (r.result or []))
        out.append({"ids": ids, "error": None})
    with open(sys.argv[2], "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()
