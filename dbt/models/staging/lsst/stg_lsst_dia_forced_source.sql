{{ config(materialized='ephemeral') }}
{#- Staging (ephemeral): one row per copy of a forced measurement (prvDiaForcedSources) in bronze.lsst_alert. -#}
select
    {%- for f in lsst_forced_source_fields() %}
    {% if f == 'diaObjectId' %}coalesce(f.diaObjectId, a.diaObjectId){% else %}f.{{ f }}{% endif %} as {{ f }},
    {%- endfor %}
    {{ lsst_lineage('a') }}
from {{ unnest_from(bronze_rows('lsst_alert'), 'a', 'prvDiaForcedSources', 'f') }}
