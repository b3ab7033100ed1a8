{# DuckDB has no CREATE FUNCTION ... RETURNS: a scalar SQL function is a
   macro there. dbt-duckdb 1.11 does not implement dbt 1.11's function
   materialization yet; the project does it for itself. #}
{% macro duckdb__scalar_function_sql(target_relation) %}
  {%- set args = [] -%}
  {%- for arg in model.arguments -%}{%- do args.append(arg.name) -%}{%- endfor -%}
  create or replace macro {{ target_relation.render() }}({{ args | join(', ') }}) as ({{ model.compiled_code }});
{% endmacro %}
