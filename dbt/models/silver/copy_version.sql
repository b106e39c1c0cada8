{%- set grain = ['kind', 'conflict_key', 'variant'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the touched objects), not the grain;
    the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in silver.yml. -#}
{{ config(meta={'grain': grain}, unique_key='objectId', keys=grain, distributed_by=['objectId']) }}
{#- The versions behind silver.copy_conflict (a view of the conflicting ones): for each detection (candid), upper
    limit (objectId, fid, jd) or forced-photometry point (objectId, pid) whose copies in bronze are not all alike,
    one row per distinct version (`variant`: a hash of the compared fields, copy_fields()), represented by its best
    copy in the provenance order (source_rank_order(), the order silver's kept_copies() applies: the version with
    is_kept is the copy silver holds). `differs_from_kept` names the fields where a version and the kept one both
    have a value and the values differ (a field an older schema lacks is not a disagreement); `has_conflict` marks
    the keys with such a version. `kept_because` says why the kept copy beats the versions that differ from it:
    jd_agrees (its jd agrees with the time its id encodes, one of theirs does not), own_candidate (an alert's own
    candidate over history rows), source_order (the rest of the order).
    Incremental: the touched objects are recomputed from their new copies, the versions held here, and the copy
    silver holds before this run (detection, non_detection and forced_photometry run after this model: their
    `depends_on`), so a version that lost earlier is never forgotten and an incremental run equals a full build. -#}
{%- set all_fields = copy_fields() -%}
{%- set limit_fields = copy_fields('non_detection') -%}
{%- set detection_fields = copy_fields('detection') -%}
{%- set carried = ['objectId', 'candid'] + all_fields + [source_column_list()] -%}

with from_candidate as (
    select {{ copy_columns('detection', 'c', 'c.candid') }}
    from {{ ref('stg_candidate') }} as c
    where c.objectId is not null
),

{#- stg_prv_candidate read once (DuckDB materialises a CTE read twice): detections and upper limits in one pass -#}
from_history as (
    select
        case when c.candid is not null then 'detection' else 'non_detection' end as kind,
        case when c.candid is not null then {{ conflict_key('detection', 'c') }}
             else {{ conflict_key('non_detection', 'c') }} end as conflict_key,
        c.objectId as objectId,
        c.candid as candid,
        {%- for f in all_fields %}
        {%- if f in limit_fields %}
        c.{{ f }} as {{ f }},
        {%- elif f in detection_fields %}
        case when c.candid is not null then c.{{ f }} end as {{ f }},
        {%- else %}
        cast(null as {{ copy_field_type(f) }}) as {{ f }},
        {%- endif %}
        {%- endfor %}
        c.src_jd_agrees, c.src_kind, c.src_alert_candid, c.src_alert_jd, c.src_schema_version, c.src_key,
        c.src_member, c.src_part, c.ingested_at
    from {{ ref('stg_prv_candidate') }} as c
    where c.candid is not null or (c.jd is not null and c.fid is not null)
),

from_forced as (
    select {{ copy_columns('forced_photometry', 'c', 'cast(null as bigint)') }}
    from {{ ref('stg_fp_hist') }} as c
    where c.pid is not null
      and c.forcediffimflux is not null and c.forcediffimflux not in (0, -99999)
      and c.forcediffimfluxunc is not null and c.forcediffimfluxunc not in (0, -99999)
),

incoming as (
    select * from from_candidate
    union all
    select * from from_history
    union all
    select * from from_forced
),

copies as (
    select kind, conflict_key, {{ carried | join(', ') }} from incoming
    {% if ateda_is_incremental() -%}
    {#- the versions held here, and the copy silver holds now (before this run updates it) -#}
    union all
    select kind, conflict_key, {{ carried | join(', ') }} from {{ this }}
    where objectId in (select objectId from incoming)
    {%- for kind, model in [('detection', 'detection'), ('non_detection', 'non_detection'),
                            ('forced_photometry', 'forced_photometry')] %}
    {%- set held = api.Relation.create(database=this.database, schema=this.schema, identifier=model) %}
    union all
    select {{ copy_columns(kind, 'h', 'h.candid' if kind == 'detection' else 'cast(null as bigint)') }}
    from {{ held }} as h
    where h.objectId in (select objectId from incoming)
    {%- endfor %}
    {%- endif %}
),

versioned as (
    select
        *,
        md5(concat_ws('|', kind
            {%- for f in all_fields %}, coalesce(cast({{ f }} as varchar), '-'){% endfor %})) as variant
    from copies
),

{#- the provenance order of silver (source_rank_order()), with each kind's tiebreak inside one alert -#}
{%- set order = source_rank_order(
        "case when kind = 'non_detection' then diffmaglim end desc, case when kind = 'non_detection' then pid end, "
        ~ "case when kind = 'forced_photometry' then jd end desc, "
        ~ "case when kind = 'forced_photometry' then forcediffimfluxunc end, "
        ~ "case when kind = 'forced_photometry' then forcediffimflux end") %}
represented as (
    select * from (
        select *, row_number() over (partition by kind, conflict_key, variant order by {{ order }}) as copy_rank
        from versioned
    ) as r
    where copy_rank = 1
),

ranked as (
    select
        *,
        row_number() over (partition by kind, conflict_key order by {{ order }}) as version_rank,
        count(*) over (partition by kind, conflict_key) as n_versions
    from represented
),

with_kept as (
    select r.*,
        {%- for f in all_fields %}
        k.{{ f }} as kept_{{ f | replace('"', '') | replace('`', '') }},
        {%- endfor %}
        k.src_jd_agrees as kept_jd_agrees, k.src_kind as kept_src_kind
    from ranked as r
    join ranked as k on k.kind = r.kind and k.conflict_key = r.conflict_key and k.version_rank = 1
    where r.n_versions > 1
),

compared as (
    select *,
        case when version_rank > 1 then concat_ws(','
            {%- for f in all_fields %}{% set bare = f | replace('"', '') | replace('`', '') %},
            case when {{ f }} is not null and kept_{{ bare }} is not null and {{ f }} <> kept_{{ bare }}
                 then '{{ bare }}' end
            {%- endfor %}) end as differences
    from with_kept
),

flagged as (
    select *,
        max(case when differences <> '' then 1 else 0 end) over (partition by kind, conflict_key) as n_conflicting,
        max(case when differences <> '' and not src_jd_agrees then 1 else 0 end)
            over (partition by kind, conflict_key) as any_disagreeing_jd,
        max(case when differences <> '' and src_kind <> 'alert' then 1 else 0 end)
            over (partition by kind, conflict_key) as any_history_copy
    from compared
)

select
    kind,
    conflict_key,
    variant,
    objectId,
    candid,
    version_rank = 1 as is_kept,
    n_versions,
    n_conflicting = 1 as has_conflict,
    case when differences <> '' then differences end as differs_from_kept,
    case when kept_jd_agrees and any_disagreeing_jd = 1 then 'jd_agrees'
         when kept_src_kind = 'alert' and any_history_copy = 1 then 'own_candidate'
         else 'source_order' end as kept_because,
    {{ all_fields | join(', ') }},
    {{ source_column_list() }}
from flagged
