-- A package model that refs a model of the root project.
select
    status,
    count(*) as number_of_orders
from {{ ref('shop', 'stg_orders') }}
group by status
