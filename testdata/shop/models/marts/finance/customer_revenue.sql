-- With --vars '{broken_model: true}' this model fails with a SQL error
-- (an unknown column), so everything downstream of it is skipped.
select
    customers.customer_id,
    customers.segment,
    count(orders.order_id) as number_of_orders,
    coalesce(sum(orders.amount), 0) as revenue
from {{ ref('dim_customers') }} as customers
left join {{ ref('fct_orders') }} as orders on customers.customer_id = orders.customer_id
{% if var('broken_model', false) %}
where orders.column_that_does_not_exist = 1
{% endif %}
group by customers.customer_id, customers.segment
