select * from {{ ref('customer_revenue') }}
