{{ config(unique_key='candid', keys=['candid'], distributed_by=['candid']) }}
{#- Grain: one row per alert with a known solar-system object nearby (candid), from the alert's own
    ssnamenr/ssdistnr/ssmagnr (the nearest MPC object, when one is within 30 arcsec). -#}
select
    candid,
    objectId,
    ssnamenr as ss_name,
    ssdistnr as dist_arcsec,
    ssmagnr as ss_mag
from {{ ref('ztf_alert') }}
{%- if ateda_is_incremental() %}
where candid in {{ touched_candids() }} and ssnamenr is not null and ssdistnr is not null
{%- else %}
where ssnamenr is not null and ssdistnr is not null
{%- endif %}
