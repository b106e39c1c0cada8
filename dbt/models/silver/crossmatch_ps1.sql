{%- set grain = ['candid', 'match_rank'] -%}
{#- unique_key is the delete scope of an incremental run (the held rows of the new alerts), not the
    grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in silver.yml. -#}
{{ config(meta={'grain': grain}, unique_key='candid', keys=grain, distributed_by=['candid'],
          post_hook="{{ order_for_lookups(['candid']) }}") }}
{#- Grain: one row per alert and Pan-STARRS1 match (candid, match_rank 1..3), from the alert's own
    objectidps/sgscore/distpsnr fields (the three nearest PS1 sources within 30 arcsec). -#}
with alerts as (
    select * from {{ ref('ztf_alert') }} {{ where_touched_candids() }}
)

{%- for n in [1, 2, 3] %}
select
    candid,
    {{ n }} as match_rank,
    objectId,
    objectidps{{ n }} as ps1_objid,
    distpsnr{{ n }} as dist_arcsec,
    sgscore{{ n }} as sgscore,
    sgmag{{ n }} as gmag,
    srmag{{ n }} as rmag,
    simag{{ n }} as imag,
    szmag{{ n }} as zmag
from alerts
where objectidps{{ n }} is not null and distpsnr{{ n }} is not null
{% if not loop.last %}union all{% endif %}
{%- endfor %}
