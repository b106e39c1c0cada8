{%- set grain = ['diaSourceId'] -%}
{{ config(meta={'grain': grain}, unique_key='diaSourceId', keys=grain, distributed_by=['diaSourceId']) }}
{#- Grain: one row per diaSource associated with a known solar-system object (the alert's ssSource): the ephemeris
    and geometry Rubin computed for it, with the detection's time, band and flux. An asteroid-only alert has no
    diaObject (diaObjectId NULL) and is here and in lsst_dia_source. -#}
{%- set fields = lsst_ss_source_fields() -%}
{%- set columns = ['diaSourceId'] + fields + ['midpointMjdTai', 'band', 'ra', 'dec', 'psfFlux', 'psfFluxErr',
                                               'src_is_trigger'] + lsst_lineage_columns() -%}
with incoming as (
    select
        a.diaSource.diaSourceId as diaSourceId,
        {%- for f in fields %}
        a.ssSource.{{ f }} as {{ f }},
        {%- endfor %}
        {%- for f in ['midpointMjdTai', 'band', 'ra', 'dec', 'psfFlux', 'psfFluxErr'] %}
        a.diaSource.{{ f }} as {{ f }},
        {%- endfor %}
        true as src_is_trigger,
        {{ lsst_lineage('a') }}
    from {{ bronze_rows('lsst_alert') }} as a
    where a.ssSource is not null and a.diaSource.diaSourceId is not null
)
select
    {{ columns | join(', ') }},
    {{ tai_to_utc_mjd('midpointMjdTai') }} as mjd_utc,
    {{ njy_to_mag('psfFlux') }} as mag,
    {{ mjd_to_day_obs('midpointMjdTai') }} as night
from {{ kept_copies('incoming', columns, grain, scope='diaSourceId', order=lsst_copy_order(trigger_first=false)) }}
    as kept
