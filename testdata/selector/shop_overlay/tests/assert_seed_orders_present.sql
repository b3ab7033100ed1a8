{{ config(tags=['seed_check']) }}
select * from {{ ref('orders') }} where 1 = 0
