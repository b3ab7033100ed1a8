{# dbt-core 1.8 (make compat): testdata/shop's YAML snapshot as a legacy block.
   target_schema is required before 1.9; target.schema is where 1.9+ puts it. #}
{% snapshot orders_snapshot %}
{{ config(unique_key='order_id', strategy='check', check_cols=['status'], target_schema=target.schema) }}
select * from {{ ref('stg_orders') }}
{% endsnapshot %}
