{# The project's hooks: on-run-start records one "start" row, on-run-end
   one "end" row per result it is given (dbt's `results`), so the audit
   table shows how often each hook ran and what it saw. #}
{% macro audit_start() %}
  create table if not exists {{ target.database }}.main.audit_log (hook varchar, unique_id varchar, status varchar);
  insert into {{ target.database }}.main.audit_log values ('start', null, null);
{% endmacro %}

{% macro audit_end(results) %}
  insert into {{ target.database }}.main.audit_log values ('end', null, null);
  {% for r in results %}
  insert into {{ target.database }}.main.audit_log values ('result', '{{ r.node.unique_id }}', '{{ r.status }}');
  {% endfor %}
{% endmacro %}
