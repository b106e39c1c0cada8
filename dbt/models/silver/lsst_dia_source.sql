{%- set grain = ['diaSourceId'] -%}
{{ config(meta={'grain': grain}, unique_key='diaSourceId', keys=grain, distributed_by=['diaSourceId']) }}
{#- Grain: one row per Rubin diaSource (diaSourceId), from every alert's diaSource and prvDiaSources, across
    schema versions; the kept copy: the alert's own measurement, else the latest carrying alert's (lsst_copy_order).
    Fluxes in nJy as Rubin sends them; mag/mag_err: AB magnitude of psfFlux where it is positive (NULL otherwise).
    Incremental: the new copies compete with the kept one of the same diaSourceId. -#}
{%- set columns = lsst_dia_source_fields() + ['src_is_trigger'] + lsst_lineage_columns() -%}
with incoming as (
    select * from {{ ref('stg_lsst_dia_source') }} where diaSourceId is not null
)

select
    {{ columns | join(', ') }},
    {{ tai_to_utc_mjd('midpointMjdTai') }} as mjd_utc,
    {{ njy_to_mag('psfFlux') }} as mag,
    {{ njy_to_mag_err('psfFlux', 'psfFluxErr') }} as mag_err,
    {{ mjd_to_day_obs('midpointMjdTai') }} as night
from {{ kept_copies('incoming', columns,
                    grain, scope='diaSourceId', order=lsst_copy_order()) }} as kept
