{%- set grain = ['objectId', 'rfid'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the touched objects), not the
    grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in silver.yml. -#}
{{ config(meta={'grain': grain}, unique_key='objectId', keys=grain, distributed_by=['objectId']) }}
{#- Grain: one row per (objectId, rfid): the reference image an object's alerts were subtracted against, with the
    nearest reference-image source, as first seen (earliest alert). -#}
with alerts as (
    select * from {{ ref('ztf_alert') }}
    where objectId is not null and rfid is not null
    {%- if ateda_is_incremental() %} and objectId in {{ touched_objects() }}{% endif %}
),

ranked as (
    select *, row_number() over (partition by objectId, rfid order by jd, candid) as alert_rank
    from alerts
)

select
    objectId,
    rfid,
    candid,
    fid,
    field,
    rcid,
    magnr,
    sigmagnr,
    chinr,
    sharpnr,
    ranr,
    decnr,
    {{ mjd('jdstartref') }} as mjdstartref,
    {{ mjd('jdendref') }} as mjdendref,
    nframesref
from ranked
where alert_rank = 1
