{%- set grain = ['objectId', 'point_kind', 'fid', 'point_id'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the touched objects), not the
    grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in gold.yml. -#}
{{ config(meta={'grain': grain}, unique_key='objectId', keys=grain, distributed_by=['objectId'],
          post_hook="{{ order_for_lookups(['objectId']) }}") }}
{#- Grain: one row per light-curve point (objectId, point_kind, fid, point_id), both surveys (`survey`). ZTF:
    detections (point_id = candid), upper limits (point_id = mjd_ms, mag = the limiting magnitude) and forced
    photometry (point_id = pid). Rubin: detections (point_id = diaSourceId) and forced photometry (point_id =
    diaForcedSourceId), with flux/flux_err in nJy and mag the AB magnitude where the flux is positive (NULL
    otherwise: a faint or negative forced flux is never shown as a magnitude); Rubin sends no upper limits. mjd is
    UTC for both. fid is the band's number within its survey (lsst_band_fid). Incremental: the touched objects'
    light curves are rebuilt. -#}
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
    pid,
    cast(null as double) as flux,
    cast(null as double) as flux_err,
    'ztf' as survey
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
    pid,
    cast(null as double) as flux,
    cast(null as double) as flux_err,
    'ztf' as survey
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
    pid,
    cast(null as double) as flux,
    cast(null as double) as flux_err,
    'ztf' as survey
from {{ ref('forced_photometry') }} {{ where_touched_objects() }}
union all
select
    {{ lsst_object_id('diaObjectId') }} as objectId,
    'detection' as point_kind,
    {{ lsst_band_fid('band') }} as fid,
    diaSourceId as point_id,
    band,
    mjd_utc as mjd,
    mag,
    mag_err as e_mag,
    cast(null as double) as mag_corr,
    cast(null as double) as e_mag_corr,
    cast(null as double) as diffmaglim,
    psfFlux > 0 as isdiffpos,
    false as is_dubious,
    false as is_corrected,
    diaSourceId as candid,
    visit as pid,
    psfFlux as flux,
    psfFluxErr as flux_err,
    'lsst' as survey
from {{ ref('lsst_dia_source') }}
where diaObjectId is not null {{ where_lsst_touched(keyword='and') }}
union all
select
    {{ lsst_object_id('diaObjectId') }} as objectId,
    'forced' as point_kind,
    {{ lsst_band_fid('band') }} as fid,
    diaForcedSourceId as point_id,
    band,
    mjd_utc as mjd,
    mag,
    mag_err as e_mag,
    cast(null as double) as mag_corr,
    cast(null as double) as e_mag_corr,
    cast(null as double) as diffmaglim,
    psfFlux > 0 as isdiffpos,
    false as is_dubious,
    false as is_corrected,
    cast(null as bigint) as candid,
    visit as pid,
    psfFlux as flux,
    psfFluxErr as flux_err,
    'lsst' as survey
from {{ ref('lsst_dia_forced_source') }}
where diaObjectId is not null {{ where_lsst_touched(keyword='and') }}
