-- Singular test: no order may have a negative amount.
-- With --vars '{failing_test: true}' it returns every row and fails.
select
    order_id,
    amount
from {{ ref('fct_orders') }}
where amount < 0
{% if var('failing_test', false) %}
    or 1 = 1
{% endif %}
