{{ config(unique_key='objectId', keys=['objectId', 'fid', 'mjd_ms'], distributed_by=['objectId']) }}
{#- Grain: one row per upper limit (objectId, fid, mjd): prv_candidates entries without a candid.
    Consecutive alerts of an object repeat them: one copy is kept (source_rank_order()). mjd_ms (the same instant
    in whole milliseconds) stands in for mjd in StarRocks' primary key, which cannot be floating point.
    An alert repeating one (objectId, fid, jd) in its own history keeps the deepest limit. -#}
{%- set raw = ['objectId', 'fid', 'jd', 'pid', 'field', 'rcid', 'diffmaglim', source_column_list()] -%}

with incoming as (
    select
        a.objectId as objectId,
        p.fid as fid,
        p.jd as jd,
        p.pid as pid,
        p.field as field,
        p.rcid as rcid,
        p.diffmaglim as diffmaglim,
        {{ source_columns('a', 'prv_candidate') }}
    from {{ unnest_from(bronze_alerts(), 'a', 'prv_candidates', 'p') }}
    where a.objectId is not null and p.candid is null and p.jd is not null and p.fid is not null
),

{{ best_copy_ctes(raw, 'objectId, fid, jd', 'diffmaglim desc, pid') }}

select
    objectId,
    fid,
    cast(round({{ mjd('jd') }} * 86400000) as bigint) as mjd_ms,
    {{ mjd('jd') }} as mjd,
    jd,
    {{ jd_to_night('jd') }} as night,
    {{ band('fid') }} as band,
    pid,
    field,
    rcid,
    diffmaglim,
    {{ source_column_list() }}
from best
