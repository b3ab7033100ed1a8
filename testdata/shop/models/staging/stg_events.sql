-- depends_on: {{ ref('raw_events') }}
select
    event_id,
    customer_id,
    event_type,
    loaded_at
from {{ source('raw', 'events') }}
