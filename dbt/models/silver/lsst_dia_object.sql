{%- set grain = ['diaObjectId'] -%}
{{ config(meta={'grain': grain}, unique_key='diaObjectId', keys=grain, distributed_by=['diaObjectId']) }}
{#- Grain: one row per Rubin diaObject: its latest state, the diaObject record of the latest alert that carries it
    (by the alert's midpointMjdTai, then ingest time). Rubin's own aggregates (per band: mean flux, its error, sigma,
    count, min, max, max slope) are kept as sent; gold computes its own from silver.lsst_dia_source and compares. -#}
{%- set fields = lsst_dia_object_fields() -%}
{%- set columns = fields + ['src_is_trigger'] + lsst_lineage_columns() -%}
with incoming as (
    select
        {%- for f in fields %}
        a.diaObject.{{ f }} as {{ f }},
        {%- endfor %}
        true as src_is_trigger,
        {{ lsst_lineage('a') }}
    from {{ bronze_rows('lsst_alert') }} as a
    where a.diaObject is not null and a.diaObject.diaObjectId is not null
)
select {{ columns | join(', ') }}
from {{ kept_copies('incoming', columns, grain, scope='diaObjectId', order=lsst_copy_order(trigger_first=false)) }}
    as kept
