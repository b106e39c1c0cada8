{%- set grain = ['survey', 'night', 'fid'] -%}
{#- unique_key is the delete scope of an incremental run (the touched nights' rows); here it is also the
    grain, meta.grain (and StarRocks' primary key, `keys`), tested unique in gold.yml. -#}
{{ config(meta={'grain': grain}, unique_key=['survey', 'night', 'fid'], keys=grain, distributed_by=['night']) }}
{#- Grain: one row per (survey, night, fid). ZTF: alerts received, objects alerting, objects first detected in the
    band that night, detections and upper limits (from all histories), and the median depth: the median limiting
    magnitude over the night's distinct images (pid) in the band. Rubin (night = dayObs, fid = lsst_band_fid): the
    same counts from its diaSources (no upper limits; n_images = distinct visits; no depth in the alerts).
    Incremental: the nights touched by the new alerts or by any point of the touched objects are recomputed. -#}
{%- set night_filter = 'where night in (select night from touched_nights)' if ateda_is_incremental() else '' %}

with
{%- if ateda_is_incremental() %}
touched_nights as (
    select night from {{ bronze_alert_delta() }} as d
    union select night from {{ ref('detection') }} where objectId in {{ touched_objects() }}
    union select night from {{ ref('non_detection') }} where objectId in {{ touched_objects() }}
),
lsst_touched_nights as (
    select night from {{ bronze_delta('lsst_alert') }} as d
    union select night from {{ ref('lsst_dia_source') }}
          where {{ lsst_object_id('diaObjectId') }} in {{ lsst_touched_objects() }}
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
),

{%- set lsst_filter = 'and night in (select night from lsst_touched_nights)' if ateda_is_incremental() else '' %}
lsst_sources as (
    select night, {{ lsst_band_fid('band') }} as fid, diaObjectId, visit, src_is_trigger
    from {{ ref('lsst_dia_source') }}
    where band is not null {{ lsst_filter }}
),

lsst_new as (
    select night, fid, count(*) as n_new_objects
    from (
        select {{ mjd_to_day_obs('min(midpointMjdTai)') }} as night, {{ lsst_band_fid('band') }} as fid
        from {{ ref('lsst_dia_source') }}
        where diaObjectId is not null and band is not null
        group by diaObjectId, band
    ) as first_seen
    where true {{ lsst_filter }}
    group by night, fid
),

lsst_nights as (
    select
        night,
        fid,
        cast(sum(case when src_is_trigger then 1 else 0 end) as bigint) as n_alerts,
        count(distinct case when src_is_trigger then diaObjectId end) as n_objects,
        count(*) as n_detections,
        count(distinct visit) as n_images
    from lsst_sources
    group by night, fid
)

select
    'ztf' as survey,
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
union all
select
    'lsst' as survey,
    n.night,
    n.fid,
    case n.fid when 1 then 'u' when 2 then 'g' when 3 then 'r' when 4 then 'i' when 5 then 'z' when 6 then 'y' end
        as band,
    n.n_alerts,
    n.n_objects,
    coalesce(o.n_new_objects, 0) as n_new_objects,
    n.n_detections,
    cast(0 as bigint) as n_non_detections,
    n.n_images,
    cast(null as double) as median_diffmaglim
from lsst_nights as n
left join lsst_new as o on o.night = n.night and o.fid = n.fid
