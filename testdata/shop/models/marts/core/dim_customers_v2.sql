-- Version 2 adds the segment and the account-manager note.
with order_stats as (
    select
        customer_id,
        count(*) as number_of_orders,
        sum(amount) as lifetime_value
    from {{ ref('fct_orders') }}
    group by customer_id
)

select
    customers.customer_id,
    customers.first_name,
    customers.last_name,
    customers.segment,
    notes.note,
    coalesce(order_stats.number_of_orders, 0) as number_of_orders,
    coalesce(order_stats.lifetime_value, 0) as lifetime_value
from {{ ref('stg_customers') }} as customers
left join order_stats on customers.customer_id = order_stats.customer_id
left join {{ ref('stg_customer_notes') }} as notes on customers.customer_id = notes.customer_id
