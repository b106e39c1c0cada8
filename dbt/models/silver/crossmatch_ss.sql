{%- set grain = ['candid'] -%}
{#- unique_key is the delete scope of an incremental run (the held rows of the new alerts), not the
    grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in silver.yml. -#}
{{ config(meta={'grain': grain}, unique_key='candid', keys=grain, distributed_by=['candid']) }}
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
