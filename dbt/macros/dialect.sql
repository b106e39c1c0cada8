{#- Small SQL differences between DuckDB (default__) and StarRocks (starrocks__). -#}

{#- A FROM item: the rows of `relation` as `alias`, one per element of its list column `list_column`, the element
    as `col` (rows with an empty or NULL list give none). DuckDB: the unnest in a select list, a streaming operator;
    `cross join unnest(alias.list)` plus a filter on the element makes DuckDB decorrelate the lateral join into a
    delim join that holds every input row, nested lists included, in memory (20 000 alerts: ~0.5 GB per model). -#}
{% macro unnest_from(relation, alias, list_column, col) %}
    {{- return(adapter.dispatch('unnest_from', 'ateda')(relation, alias, list_column, col)) -}}
{% endmacro %}
{% macro default__unnest_from(relation, alias, list_column, col) -%}
    (select *, unnest({{ list_column }}) as {{ col }} from {{ relation }}) as {{ alias }}
{%- endmacro %}
{% macro starrocks__unnest_from(relation, alias, list_column, col) -%}
    {{ relation }} as {{ alias }}, unnest({{ alias }}.{{ list_column }}) as {{ alias }}_{{ col }}({{ col }})
{%- endmacro %}

{% macro list_length(expr) %}
    {{- return(adapter.dispatch('list_length', 'ateda')(expr)) -}}
{% endmacro %}
{% macro default__list_length(expr) -%} coalesce(len({{ expr }}), 0) {%- endmacro %}
{% macro starrocks__list_length(expr) -%} coalesce(array_length({{ expr }}), 0) {%- endmacro %}

{#- Median with interpolation between the two middle values (numpy's median). -#}
{% macro median(expr) %}
    {{- return(adapter.dispatch('median', 'ateda')(expr)) -}}
{% endmacro %}
{% macro default__median(expr) -%} median({{ expr }}) {%- endmacro %}
{% macro starrocks__median(expr) -%} percentile_cont({{ expr }}, 0.5) {%- endmacro %}

{#- A string as a number, NULL when it is not one. -#}
{% macro try_double(expr) %}
    {{- return(adapter.dispatch('try_double', 'ateda')(expr)) -}}
{% endmacro %}
{% macro default__try_double(expr) -%} try_cast({{ expr }} as double) {%- endmacro %}
{% macro starrocks__try_double(expr) -%} cast({{ expr }} as double) {%- endmacro %}

{#- The UT date of the Palomar night holding `jd` (it changes at local noon, 20:00 UTC), as bronze's `night`. -#}
{% macro jd_to_night(jd) %}
    {{- return(adapter.dispatch('jd_to_night', 'ateda')(jd)) -}}
{% endmacro %}
{% macro default__jd_to_night(jd) -%}
    cast(date '1970-01-01' + cast(floor({{ jd }} - 2440587.5 + 4.0 / 24.0) as integer) as date)
{%- endmacro %}
{% macro starrocks__jd_to_night(jd) -%}
    cast(days_add(cast('1970-01-01' as date), cast(floor({{ jd }} - 2440587.5 + 4.0 / 24.0) as int)) as date)
{%- endmacro %}

{#- Integer division of two integers (truncating). -#}
{% macro int_div(a, b) %}
    {{- return(adapter.dispatch('int_div', 'ateda')(a, b)) -}}
{% endmacro %}
{% macro default__int_div(a, b) -%} ({{ a }} // {{ b }}) {%- endmacro %}
{% macro starrocks__int_div(a, b) -%} ({{ a }} div {{ b }}) {%- endmacro %}


{#- A post-hook: the table rewritten in `columns` order, so that a point lookup by its key (the explorer's and
    `ateda object`'s `where objectId = ?`) reads one row group. DuckDB keeps a min/max per column and row group and
    skips the groups that cannot hold the value; an incremental run appends its rows at the end, so without this an
    object's rows would lie across the whole table and every lookup would scan it (docs/performance.md, "Explorer
    latency"). StarRocks sorts each tablet by its key (`keys`) itself: nothing to do there. -#}
{% macro order_for_lookups(columns) %}
    {{- return(adapter.dispatch('order_for_lookups', 'ateda')(columns)) -}}
{% endmacro %}
{% macro default__order_for_lookups(columns) -%}{%- endmacro %}
{% macro duckdb__order_for_lookups(columns) -%}
    create or replace table {{ this }} as select * from {{ this }} order by {{ columns | join(', ') }}
{%- endmacro %}
