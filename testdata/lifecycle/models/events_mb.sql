{{ config(materialized='incremental', incremental_strategy='microbatch', event_time='event_time',
          begin='2024-01-01', batch_size='year', lookback=0) }}
select id, event_time, amount from {{ ref('events') }}
