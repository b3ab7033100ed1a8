{#- Converts an integer amount in cents to a two-decimal amount in dollars. -#}
{% macro cents_to_dollars(column_name) -%}
    cast({{ column_name }} / 100.0 as numeric(16, 2))
{%- endmacro %}
