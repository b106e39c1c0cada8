{{ config(materialized='ephemeral') }}
{#- Staging (ephemeral): one row per copy of a diaSource in bronze.lsst_alert: each alert's own (triggering)
    diaSource and every entry of its prvDiaSources, with the carrying alert's lineage. -#}
select
    {%- for f in lsst_dia_source_fields() %}
    a.diaSource.{{ f }} as {{ f }},
    {%- endfor %}
    true as src_is_trigger,
    {{ lsst_lineage('a') }}
from {{ bronze_rows('lsst_alert') }} as a
union all
select
    {%- for f in lsst_dia_source_fields() %}
    s.{{ f }} as {{ f }},
    {%- endfor %}
    false as src_is_trigger,
    {{ lsst_lineage('a') }}
from {{ unnest_from(bronze_rows('lsst_alert'), 'a', 'prvDiaSources', 's') }}
