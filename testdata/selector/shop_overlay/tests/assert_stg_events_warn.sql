-- Always returns rows at severity warn: a "warn" result.
{{ config(severity='warn') }}
select * from {{ ref('stg_events') }}
