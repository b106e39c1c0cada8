{%- set grain = ['objectId', 'point_kind', 'fid', 'point_id'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the touched objects), not the
    grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in gold.yml. -#}
{{ config(meta={'grain': grain}, unique_key='objectId', keys=grain, distributed_by=['objectId']) }}
{#- Grain: one row per light-curve point (objectId, point_kind, fid, point_id): detections (point_id = candid),
    upper limits (point_id = mjd_ms, mag = the limiting magnitude) and forced photometry (point_id = pid).
    Incremental: the touched objects' light curves are rebuilt. -#}
select
    objectId,
    'detection' as point_kind,
    fid,
    candid as point_id,
    band,
    mjd,
    magpsf as mag,
    sigmapsf as e_mag,
    mag_corr,
    e_mag_corr,
    diffmaglim,
    isdiffpos,
    is_dubious,
    is_corrected,
    candid,
    pid
from {{ ref('detection') }} {{ where_touched_objects() }}
union all
select
    objectId,
    'upper_limit' as point_kind,
    fid,
    mjd_ms as point_id,
    band,
    mjd,
    diffmaglim as mag,
    cast(null as double) as e_mag,
    cast(null as double) as mag_corr,
    cast(null as double) as e_mag_corr,
    diffmaglim,
    cast(null as boolean) as isdiffpos,
    false as is_dubious,
    false as is_corrected,
    cast(null as bigint) as candid,
    pid
from {{ ref('non_detection') }} {{ where_touched_objects() }}
union all
select
    objectId,
    'forced' as point_kind,
    fid,
    pid as point_id,
    band,
    mjd,
    mag,
    e_mag,
    cast(null as double) as mag_corr,
    cast(null as double) as e_mag_corr,
    diffmaglim,
    isdiffpos,
    false as is_dubious,
    false as is_corrected,
    cast(null as bigint) as candid,
    pid
from {{ ref('forced_photometry') }} {{ where_touched_objects() }}
