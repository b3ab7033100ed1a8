{{ config(materialized='view') }}

select
    segment,
    count(*) as number_of_customers,
    sum(revenue) as revenue
from {{ ref('customer_revenue') }}
group by segment
