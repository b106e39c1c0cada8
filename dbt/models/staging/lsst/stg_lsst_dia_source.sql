{{ config(materialized='ephemeral') }}
{#- Staging (ephemeral): one row per copy of a diaSource in bronze.lsst_alert: each alert's own (triggering)
    diaSource and every entry of its prvDiaSources, with the carrying alert's lineage. A diaSource without
    diaObjectId in an alert that carries a diaObject is that object's (bronze's promoted diaObjectId). -#}
select
    {%- for f in lsst_dia_source_fields() %}
    {% if f == 'diaObjectId' %}coalesce(a.diaSource.diaObjectId, a.diaObjectId){% else %}a.diaSource.{{ f }}{% endif %} as {{ f }},
    {%- endfor %}
    true as src_is_trigger,
    {{ lsst_lineage('a') }}
from {{ bronze_rows('lsst_alert') }} as a
union all
select
    {%- for f in lsst_dia_source_fields() %}
    {% if f == 'diaObjectId' %}coalesce(s.diaObjectId, a.diaObjectId){% else %}s.{{ f }}{% endif %} as {{ f }},
    {%- endfor %}
    false as src_is_trigger,
    {{ lsst_lineage('a') }}
from {{ unnest_from(bronze_rows('lsst_alert'), 'a', 'prvDiaSources', 's') }}
