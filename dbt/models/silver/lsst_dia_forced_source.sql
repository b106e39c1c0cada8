{%- set grain = ['diaForcedSourceId'] -%}
{{ config(meta={'grain': grain}, unique_key='diaForcedSourceId', keys=grain, distributed_by=['diaForcedSourceId']) }}
{#- Grain: one row per Rubin forced measurement (diaForcedSourceId), from every alert's prvDiaForcedSources; the
    kept copy: the latest carrying alert's. Forced photometry replaced upper limits in schema 8.0: a flux (nJy) at
    the object's position on every recent visit, detected or not; mag only where the flux is positive. -#}
{%- set columns = lsst_forced_source_fields() + lsst_lineage_columns() -%}
with incoming as (
    select * from {{ ref('stg_lsst_dia_forced_source') }} where diaForcedSourceId is not null
)

select
    {{ columns | join(', ') }},
    {{ tai_to_utc_mjd('midpointMjdTai') }} as mjd_utc,
    {{ njy_to_mag('psfFlux') }} as mag,
    {{ njy_to_mag_err('psfFlux', 'psfFluxErr') }} as mag_err,
    {{ mjd_to_day_obs('midpointMjdTai') }} as night
from {{ kept_copies('incoming', columns, grain, scope='diaForcedSourceId', order=lsst_copy_order(trigger_first=false)) }} as kept
