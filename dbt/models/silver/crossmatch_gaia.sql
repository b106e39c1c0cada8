{%- set grain = ['candid', 'match_kind'] -%}
{#- unique_key is the delete scope of an incremental run (the held rows of the new alerts), not the
    grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in silver.yml. -#}
{{ config(meta={'grain': grain}, unique_key='candid', keys=grain, distributed_by=['candid'],
          post_hook="{{ order_for_lookups(['candid']) }}") }}
{#- Grain: one row per alert and Gaia match (candid, match_kind): 'nearest' (neargaia, maggaia) and 'bright'
    (the nearest bright star: neargaiabright, maggaiabright), from the alert's own fields (schema >= 3.2). -#}
with alerts as (
    select * from {{ ref('ztf_alert') }} {{ where_touched_candids() }}
)

select candid, 'nearest' as match_kind, objectId, neargaia as dist_arcsec, maggaia as gaia_mag
from alerts
where neargaia is not null
union all
select candid, 'bright' as match_kind, objectId, neargaiabright as dist_arcsec, maggaiabright as gaia_mag
from alerts
where neargaiabright is not null
