-- depends_on: {{ ref('raw_customer_notes') }}
select
    customer_id,
    note
from {{ source('crm', 'customer_notes') }}
