{{ config(materialized='ephemeral') }}
{#- Staging (ephemeral): one row per entry of an alert's `fp_hists` (forced photometry, schema 4.x) in
    bronze.alert, for alerts with an objectId, as many copies as alerts repeat them, with the carrying alert's
    lineage columns; -999 reference fields are NULL. Which measurements count is silver's rule (forced_photometry). -#}
{%- set measured = ['field', 'rcid', 'rfid', 'programid', 'procstatus', 'forcediffimflux', 'forcediffimfluxunc',
                    'magzpsci', 'magzpsciunc', 'diffmaglim', 'exptime', 'sciinpseeing'] -%}
select
    a.objectId as objectId,
    f.pid as pid,
    f.fid as fid,
    f.jd as jd,
    {%- for col in measured %}
    f.{{ col }} as {{ col }},
    {%- endfor %}
    {{ clean('f.distnr') }} as distnr,
    {{ clean('f.magnr') }} as magnr,
    {{ clean('f.sigmagnr') }} as sigmagnr,
    {{ jd_agrees('f.jd', 'f.pid', 'pid') }} as src_jd_agrees,
    {{ source_columns('a', 'fp_hist') }}
from {{ unnest_from(bronze_alerts(), 'a', 'fp_hists', 'f') }}
where a.objectId is not null
