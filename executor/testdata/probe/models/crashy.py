"""Kills the process running dbt (SIGKILL) when $DBTORCH_PROBE_CRASH is
set: a crash of dbt itself, as the OOM killer would cause."""

import os
import signal


def model(dbt, session):
    dbt.config(materialized="table")
    if os.environ.get("DBTORCH_PROBE_CRASH"):
        os.kill(os.getpid(), signal.SIGKILL)
    return session.sql("select 1 as id")
