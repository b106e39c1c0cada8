{%- set grain = ['objectId', 'fid'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the touched objects), not the
    grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in gold.yml. -#}
{{ config(meta={'grain': grain}, unique_key='objectId', keys=grain, distributed_by=['objectId'],
          post_hook="{{ order_for_lookups(['objectId']) }}") }}
{#- Grain: one row per (objectId, fid): ALeRCE's magnitude statistics over the band's detections (magpsf), the
    `_corr` ones over its corrected detections (mag_corr), saturation_rate, and dmdt_first from the band's upper
    limits more than 0.5 d before its first detection. Incremental: the touched objects are recomputed. -#}
with det as (
    select
        *,
        is_corrected and mag_corr is not null as has_corr
    from {{ ref('detection') }} {{ where_touched_objects() }}
),

ordered as (
    select
        *,
        row_number() over (partition by objectId, fid order by mjd, candid) as first_order,
        row_number() over (partition by objectId, fid order by mjd desc, candid desc) as last_order,
        row_number() over (partition by objectId, fid, has_corr order by mjd, candid) as first_corr_order,
        row_number() over (partition by objectId, fid, has_corr order by mjd desc, candid desc) as last_corr_order
    from det
),

stats as (
    select
        objectId,
        fid,
        count(*) as ndet,
        cast(sum(case when is_dubious then 1 else 0 end) as bigint) as ndubious,
        avg(magpsf) as magmean,
        {{ median('magpsf') }} as magmedian,
        max(magpsf) as magmax,
        min(magpsf) as magmin,
        stddev_pop(magpsf) as magsigma,
        max(case when first_order = 1 then magpsf end) as magfirst,
        max(case when first_order = 1 then sigmapsf end) as sigmafirst,
        max(case when last_order = 1 then magpsf end) as maglast,
        min(mjd) as firstmjd,
        max(mjd) as lastmjd,
        avg(case when has_corr then mag_corr end) as magmean_corr,
        {{ median('case when has_corr then mag_corr end') }} as magmedian_corr,
        max(case when has_corr then mag_corr end) as magmax_corr,
        min(case when has_corr then mag_corr end) as magmin_corr,
        stddev_pop(case when has_corr then mag_corr end) as magsigma_corr,
        max(case when has_corr and first_corr_order = 1 then mag_corr end) as magfirst_corr,
        max(case when has_corr and last_corr_order = 1 then mag_corr end) as maglast_corr,
        cast(sum(case when has_corr and mag_corr < {{ var('saturation_mag') }} then 1 else 0 end) as double)
            / nullif(sum(case when has_corr then 1 else 0 end), 0) as saturation_rate,
        max(case when first_order = 1 and is_corrected then 1 else 0 end) = 1 as is_corrected,
        max(case when first_order = 1 and is_stellar then 1 else 0 end) = 1 as is_stellar
    from ordered
    group by objectId, fid
),

dmdt as (
    select
        s.objectId,
        s.fid,
        s.magfirst - n.diffmaglim as dm_first,
        s.firstmjd - n.mjd as dt_first,
        (s.magfirst + s.sigmafirst - n.diffmaglim) / (s.firstmjd - n.mjd) as dmdt_first,
        n.diffmaglim as diffmaglim_first,
        row_number() over (
            partition by s.objectId, s.fid
            order by (s.magfirst + s.sigmafirst - n.diffmaglim) / (s.firstmjd - n.mjd), n.mjd desc
        ) as steepest
    from stats as s
    inner join (select * from {{ ref('non_detection') }} {{ where_touched_objects() }}) as n
        on n.objectId = s.objectId and n.fid = s.fid and s.firstmjd - n.mjd > {{ var('dmdt_min_dt_days') }}
)

select
    s.objectId,
    s.fid,
    {{ band('s.fid') }} as band,
    s.ndet,
    s.ndubious,
    s.magmean,
    s.magmedian,
    s.magmax,
    s.magmin,
    s.magsigma,
    s.magfirst,
    s.maglast,
    s.firstmjd,
    s.lastmjd,
    s.magmean_corr,
    s.magmedian_corr,
    s.magmax_corr,
    s.magmin_corr,
    s.magsigma_corr,
    s.magfirst_corr,
    s.maglast_corr,
    s.saturation_rate,
    d.dmdt_first,
    d.dm_first,
    d.dt_first,
    d.diffmaglim_first,
    s.is_corrected,
    s.is_stellar
from stats as s
left join dmdt as d on d.objectId = s.objectId and d.fid = s.fid and d.steepest = 1
