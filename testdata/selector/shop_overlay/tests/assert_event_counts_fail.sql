-- Fails (severity error) with --vars '{selector_fail: true}': gives the
-- recorded run_results.json a "fail" whose only downstream is an exposure.
select * from {{ ref('event_counts') }}
{% if not var('selector_fail', false) %} where 1 = 0 {% endif %}
