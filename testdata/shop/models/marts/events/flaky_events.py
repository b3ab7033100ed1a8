"""A Python model that fails on its first attempt when asked to.

When the environment variable DBTORCH_FLAKY_COUNTER names a file, the model
reads the integer in it (a missing or empty file counts as 0), writes it back
plus one, and fails if it read 0. So the first attempt fails and every retry
succeeds. Without the variable it always succeeds. DuckDB only (see
dbt_project.yml).
"""

import os


def model(dbt, session):
    dbt.config(materialized="table")
    events = dbt.ref("stg_events")

    counter_path = os.environ.get("DBTORCH_FLAKY_COUNTER")
    if counter_path:
        try:
            with open(counter_path) as f:
                attempts = int(f.read().strip() or "0")
        except FileNotFoundError:
            attempts = 0
        with open(counter_path, "w") as f:
            f.write(str(attempts + 1))
        if attempts == 0:
            raise RuntimeError(
                "flaky_events: failing on the first attempt on purpose "
                "(DBTORCH_FLAKY_COUNTER=" + counter_path + ")"
            )

    return events
