select
    customer_id,
    first_name,
    last_name,
    segment
from {{ ref('customers') }}
