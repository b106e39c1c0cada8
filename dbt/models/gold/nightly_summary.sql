{%- set grain = ['night', 'fid'] -%}
{#- unique_key is the delete scope of an incremental run (the touched nights' rows); here it is also the
    grain, meta.grain (and StarRocks' primary key, `keys`), tested unique in gold.yml. -#}
{{ config(meta={'grain': grain}, unique_key=['night', 'fid'], keys=grain, distributed_by=['night']) }}
{#- Grain: one row per (night, fid). Alerts received, objects alerting, objects first detected in the band that
    night, detections and upper limits (from all histories), and the median depth: the median limiting magnitude
    over the night's distinct images (pid) in the band. Incremental: the nights touched by the new alerts or by
    any point of the touched objects are recomputed. -#}
{%- set night_filter = 'where night in (select night from touched_nights)' if ateda_is_incremental() else '' %}

with
{%- if ateda_is_incremental() %}
touched_nights as (
    select night from {{ bronze_alert_delta() }} as d
    union select night from {{ ref('detection') }} where objectId in {{ touched_objects() }}
    union select night from {{ ref('non_detection') }} where objectId in {{ touched_objects() }}
),
{%- endif %}
alerts as (
    select night, fid, count(*) as n_alerts, count(distinct objectId) as n_objects
    from {{ ref('ztf_alert') }} {{ night_filter }}
    group by night, fid
),

detections as (
    select night, fid, count(*) as n_detections
    from {{ ref('detection') }} {{ night_filter }}
    group by night, fid
),

upper_limits as (
    select night, fid, count(*) as n_non_detections
    from {{ ref('non_detection') }} {{ night_filter }}
    group by night, fid
),

images as (
    select night, fid, {{ median('diffmaglim') }} as median_diffmaglim, count(*) as n_images
    from (
        select distinct night, fid, pid, diffmaglim from {{ ref('detection') }} {{ night_filter }}
        union
        select distinct night, fid, pid, diffmaglim from {{ ref('non_detection') }} {{ night_filter }}
    ) as i
    where diffmaglim is not null
    group by night, fid
),

new_objects as (
    select night, fid, count(*) as n_new_objects
    from (select {{ jd_to_night('firstmjd + 2400000.5') }} as night, fid from {{ ref('magstats') }}) as m
    {{ night_filter }}
    group by night, fid
),

nights as (
    select night, fid from alerts
    union select night, fid from detections
    union select night, fid from upper_limits
)

select
    k.night,
    k.fid,
    {{ band('k.fid') }} as band,
    coalesce(a.n_alerts, 0) as n_alerts,
    coalesce(a.n_objects, 0) as n_objects,
    coalesce(o.n_new_objects, 0) as n_new_objects,
    coalesce(d.n_detections, 0) as n_detections,
    coalesce(u.n_non_detections, 0) as n_non_detections,
    coalesce(i.n_images, 0) as n_images,
    i.median_diffmaglim
from nights as k
left join alerts as a on a.night = k.night and a.fid = k.fid
left join detections as d on d.night = k.night and d.fid = k.fid
left join upper_limits as u on u.night = k.night and u.fid = k.fid
left join images as i on i.night = k.night and i.fid = k.fid
left join new_objects as o on o.night = k.night and o.fid = k.fid
