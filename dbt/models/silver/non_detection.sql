{%- set grain = ['objectId', 'fid', 'mjd_ms'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the touched objects), not the grain;
    the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in silver.yml. -#}
-- depends_on: {{ ref('copy_version') }} (copy_version reads this model's held rows before this run updates them)
{{ config(meta={'grain': grain}, unique_key='objectId', keys=grain, distributed_by=['objectId']) }}
{#- Grain: one row per upper limit (objectId, fid, mjd): prv_candidates entries without a candid.
    Consecutive alerts of an object repeat them: one copy is kept (source_rank_order()). mjd_ms (the same instant
    in whole milliseconds) stands in for mjd in StarRocks' primary key, which cannot be floating point.
    An alert repeating one (objectId, fid, jd) in its own history keeps the deepest limit. A copy whose jd
    disagrees with the time its pid encodes is left out when a copy of the same (objectId, pid) agrees (a
    re-serialiser's edited jd would otherwise be an upper limit of its own). -#}
{%- set raw = ['objectId', 'fid', 'jd', 'pid', 'field', 'rcid', 'diffmaglim', source_column_list()] -%}

with incoming as (
    select {{ raw | join(', ') }}
    from {{ ref('stg_prv_candidate') }}
    where candid is null and jd is not null and fid is not null
),

best as (
    select * from {{ kept_copies('incoming', raw, ['objectId', 'fid', 'jd'], tiebreak='diffmaglim desc, pid',
                                 identity=['objectId', 'pid']) }} as kept
)

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
