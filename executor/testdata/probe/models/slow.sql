-- A query over $DBTORCH_PROBE_ROWS rows (default 1): with a large count it
-- runs until cancelled.
{{ config(materialized="table") }}
select count(*) as n from range({{ env_var('DBTORCH_PROBE_ROWS', '1') }}) t(i) where i % 7 = 3
