"""Sleeps $DBTORCH_PROBE_SLEEP seconds (default 0) after writing its
process id to $DBTORCH_PROBE_STARTED, so a test knows dbt is running it."""

import os
import time


def model(dbt, session):
    dbt.config(materialized="table")
    marker = os.environ.get("DBTORCH_PROBE_STARTED")
    if marker:
        with open(marker, "w") as f:
            f.write(str(os.getpid()))
    time.sleep(float(os.environ.get("DBTORCH_PROBE_SLEEP") or 0))
    return session.sql("select 1 as id")
