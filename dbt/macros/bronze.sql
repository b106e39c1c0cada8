{#-
  Bronze access and "what is new since the last refresh".

  DuckDB (local): ateda.warehouse creates, before each run, the views bronze.alert (every data file of the
  current Iceberg snapshot) and bronze.alert_delta (the files not yet processed by a successful refresh).
  StarRocks (cluster): bronze is read through the Iceberg external catalog; new rows are those ingested after
  var('bronze_since'), which ateda.warehouse passes from its refresh state.
-#}

{#- True when the model is being updated rather than built from scratch. `dbt compile` offline cannot ask the
    warehouse, so `--vars '{ateda_assume_incremental: true|false}'` forces either branch. An ephemeral (staging)
    model is compiled once per run for all its consumers, and is_incremental() is false in it: it reads only the new
    bronze rows when every model that refs it is an incremental table that exists (and no --full-refresh), else all
    of them (a consumer that is updated in place then recomputes from all of bronze: slower, same rows). -#}
{% macro ateda_is_incremental() %}
    {%- set forced = var('ateda_assume_incremental', none) -%}
    {%- if forced is not none -%}
        {{ return(forced in (true, 'true', 'True', 1, '1')) }}
    {%- endif -%}
    {%- if model.config.materialized == 'ephemeral' -%}
        {{ return(consumers_are_incremental()) }}
    {%- endif -%}
    {{ return(is_incremental()) }}
{% endmacro %}

{% macro consumers_are_incremental() %}
    {%- if not execute or should_full_refresh() -%}
        {{ return(false) }}
    {%- endif -%}
    {%- set consumers = [] -%}
    {%- for node in graph.nodes.values() -%}
        {%- if node.resource_type == 'model' and model.unique_id in node.depends_on.nodes -%}
            {%- do consumers.append(node) -%}
        {%- endif -%}
    {%- endfor -%}
    {%- for node in consumers -%}
        {%- set relation = adapter.get_relation(node.database, node.schema, node.alias) -%}
        {%- if node.config.materialized != 'incremental' or relation is none or relation.type != 'table' -%}
            {{ return(false) }}
        {%- endif -%}
    {%- endfor -%}
    {{ return(consumers | length > 0) }}
{% endmacro %}

{#- The rows of bronze.<table> a model reads: all of them on a full build, only the new ones on an incremental run
    (DuckDB: the <table>_delta view over the files no successful refresh has processed; StarRocks: the rows whose
    arrival column is after var('bronze_since')). -#}
{% macro bronze_rows(table) %}
    {%- if ateda_is_incremental() -%}
        {{ bronze_delta(table) }}
    {%- else -%}
        {{ source('bronze', table) }}
    {%- endif -%}
{% endmacro %}

{% macro bronze_delta(table) %}
    {{- return(adapter.dispatch('bronze_delta', 'ateda')(table)) -}}
{% endmacro %}

{% macro default__bronze_delta(table) -%}
    {{ source('bronze', table ~ '_delta') }}
{%- endmacro %}

{#- bronze.crossmatch rows arrive with matched_at (appended by the crossmatch function), the others with ingested_at -#}
{% macro starrocks__bronze_delta(table) -%}
    (select * from {{ source('bronze', table) }}
     where {{ 'matched_at' if table == 'crossmatch' else 'ingested_at' }} > cast('{{ var("bronze_since") }}' as datetime))
{%- endmacro %}

{% macro bronze_alerts() %}{{ bronze_rows('alert') }}{% endmacro %}

{% macro bronze_alert_delta() %}{{ bronze_delta('alert') }}{% endmacro %}

{#- Objects with new bronze rows: what an incremental run recomputes. -#}
{% macro touched_objects() -%}
    (select distinct objectId from {{ bronze_alert_delta() }} as d where objectId is not null)
{%- endmacro %}

{#- on-run-start (one hook per bronze table read): StarRocks caches Iceberg metadata, so refresh it before reading
    bronze. ateda.warehouse creates bronze.crossmatch (empty) before a cluster run, so that it can be bound. -#}
{% macro ateda_before_run(table='alert') %}
    {{- return(adapter.dispatch('ateda_before_run', 'ateda')(table)) -}}
{% endmacro %}

{% macro default__ateda_before_run(table) -%}
{%- endmacro %}

{% macro starrocks__ateda_before_run(table) -%}
    refresh external table {{ source('bronze', table) }}
{%- endmacro %}

{#- The order that picks one bronze copy of a row among several (best first), by provenance: the copy whose jd
    agrees with the time its own id encodes (src_jd_agrees, set in staging: jd_agrees()), then an alert's own
    candidate before a copy in another alert's history, then the latest carrying alert, then the newest schema
    version, then the source object's key, member and part, then `tiebreak` (copies inside one alert: a model's own
    columns). Independent of arrival order. -#}
{% macro source_rank_order(tiebreak=none) -%}
    case when src_jd_agrees then 0 else 1 end, case when src_kind = 'alert' then 0 else 1 end,
    src_alert_jd desc, src_schema_version desc,
    src_key, coalesce(src_member, ''), src_part{% if tiebreak %}, {{ tiebreak }}{% endif %}
{%- endmacro %}

{#- The JD a ZTF processing id encodes (field notes, "ZTF candid encodes its time"): pid = DDDD FFFFF ...: days
    since JD 2457754.5 (2017-01-01) above 10^9, the fraction of that day in 1e-5 units in the next five digits. A
    candid is its pid followed by six digits. NULL for an id that is not positive. -#}
{% macro pid_encoded_jd(pid) -%}
    case when {{ pid }} > 0 then 2457754.5 + {{ int_div(pid, 1000000000) }}
        + ({{ int_div(pid, 10000) }} % 100000) * 0.00001 end
{%- endmacro %}

{#- True when `jd` is within 2e-5 d of the time its id encodes (`id_kind` 'candid' or 'pid'); false otherwise (an
    edited copy: re-serialising brokers have been seen giving every history row one jd), also when the id is
    missing. -#}
{% macro jd_agrees(jd, id, id_kind='candid') -%}
    {%- set pid = int_div(id, 1000000) if id_kind == 'candid' else id -%}
    coalesce(abs({{ jd }} - ({{ pid_encoded_jd(pid) }})) <= 0.00002, false)
{%- endmacro %}

{#- The lineage/rank columns every silver row built from bronze carries, read from the carrying alert `a`. -#}
{% macro source_columns(alias, kind) -%}
    '{{ kind }}' as src_kind,
    {{ alias }}.candid as src_alert_candid,
    {{ alias }}.jd as src_alert_jd,
    coalesce({{ try_double(alias ~ '.schemavsn') }}, 0.0) as src_schema_version,
    {{ alias }}.source_key as src_key,
    {{ alias }}.source_member as src_member,
    {{ alias }}.part as src_part,
    {{ alias }}.ingested_at as ingested_at
{%- endmacro %}

{#- src_jd_agrees is not among source_columns(): each staging model computes it from its own jd and id. -#}
{% macro source_column_list() -%}
    src_jd_agrees, src_kind, src_alert_candid, src_alert_jd, src_schema_version, src_key, src_member, src_part,
    ingested_at
{%- endmacro %}

{#- Alerts with new bronze rows (candid-scoped models). -#}
{% macro touched_candids() -%}
    (select distinct candid from {{ bronze_alert_delta() }} as d)
{%- endmacro %}

{#- `where` clause limiting an object-scoped model's input to the touched objects on an incremental run. -#}
{% macro where_touched_objects(column='objectId') -%}
    {%- if ateda_is_incremental() %} where {{ column }} in {{ touched_objects() }}{% endif -%}
{%- endmacro %}

{% macro where_touched_candids(column='candid') -%}
    {%- if ateda_is_incremental() %} where {{ column }} in {{ touched_candids() }}{% endif -%}
{%- endmacro %}

{#- The kept copy of each `grain` group (a list of columns), as a FROM item (`from {{ kept_copies(...) }} as best`):
    among the rows of `incoming` (a CTE of the model) and, on an incremental run, the rows this model already holds
    with the same `scope` value (they compete with the new copies, and flags or ranks computed over the group move
    with them), the first in `order` (default: source_rank_order() with `tiebreak` last). `columns` are the columns
    carried through. `identity` (optional, columns naming the measurement when the grain holds jd, e.g. an upper
    limit's objectId and pid): a copy whose jd disagrees with its id is dropped when a copy of the same identity
    agrees. The one place where silver chooses among copies. -#}
{% macro kept_copies(incoming, columns, grain, scope='objectId', tiebreak=none, order=none, identity=none) -%}
(
    select {{ columns | join(', ') }}
    from (
        select *, row_number() over (
            partition by {{ grain | join(', ') }} order by {{ order or source_rank_order(tiebreak) }}
        ) as copy_rank
        from (
            select {{ columns | join(', ') }}
            {%- if identity %},
                max(case when src_jd_agrees then 1 else 0 end)
                    over (partition by {{ identity | join(', ') }}) as identity_has_true_jd
            {%- endif %}
            from (
                select {{ columns | join(', ') }} from {{ incoming }}
                {%- if ateda_is_incremental() %}
                union all
                select {{ columns | join(', ') }} from {{ this }}
                where {{ scope }} in (select {{ scope }} from {{ incoming }})
                {%- endif %}
            ) as all_copies
        ) as copies
        {% if identity -%}
        {#- a copy with an edited jd sits at another grain key than its true copy: dropped when one exists #}
        where src_jd_agrees or identity_has_true_jd = 0
        {%- endif %}
    ) as ranked
    where copy_rank = 1
)
{%- endmacro %}


{% macro ztf_cleaned_columns() -%}
    {#- candidate columns whose ZTF placeholder values (-999 and below) become NULL in stg_candidate (clean()):
        the nearest reference source, Gaia, solar-system and PS1 neighbour fields (the three PS1 neighbours each) -#}
    {%- set ps1 = [] -%}
    {%- for n in [1, 2, 3] -%}
        {%- do ps1.extend(['sgmag' ~ n, 'srmag' ~ n, 'simag' ~ n, 'szmag' ~ n, 'sgscore' ~ n, 'distpsnr' ~ n]) -%}
    {%- endfor -%}
    {{ return(['magnr', 'sigmagnr', 'distnr', 'chinr', 'sharpnr', 'ranr', 'decnr', 'neargaia', 'maggaia',
               'neargaiabright', 'maggaiabright', 'ssdistnr', 'ssmagnr'] + ps1) }}
{%- endmacro %}
