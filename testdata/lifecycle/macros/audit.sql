{# The project's hooks: on-run-start records one "start" row, on-run-end
   one "end" row and one "result" row per result it is given (dbt's
   `results`), so the audit table shows how often each hook ran and what it
   saw. With the var fail_on_run_start, on-run-start fails after its row
   (dbt_project.yml's skip_nodes_if_on_run_start_fails, dbt 1.12's default,
   then skips every node). #}
{% macro audit_start() %}
  create table if not exists {{ target.database }}.main.audit_log (hook varchar, unique_id varchar, status varchar);
  insert into {{ target.database }}.main.audit_log values ('start', null, null);
  {% if var('fail_on_run_start', false) %}
  select * from {{ target.database }}.main.no_such_relation;
  {% endif %}
{% endmacro %}

{% macro audit_end(results) %}
  insert into {{ target.database }}.main.audit_log values ('end', null, null);
  {% for r in results %}
  insert into {{ target.database }}.main.audit_log values ('result', '{{ r.node.unique_id }}', '{{ r.status }}');
  {% endfor %}
{% endmacro %}
