select
    event_type,
    count(*) as number_of_events,
    max(loaded_at) as last_loaded_at
from {{ ref('stg_events') }}
group by event_type
