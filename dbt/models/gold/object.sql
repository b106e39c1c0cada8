{%- set grain = ['objectId'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the touched objects), not the
    grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in gold.yml. -#}
{{ config(meta={'grain': grain}, unique_key='objectId', keys=grain, distributed_by=['objectId']) }}
{#- Grain: one row per object (objectId). Positions are means weighted by 1/sigma^2 with the per-band astrometric
    sigma (var position_sigma_arcsec; sigma_ra = sigma / |cos dec|), taken around the first detection's ra so that
    objects on ra = 0/360 average correctly. Incremental: the touched objects are recomputed. -#}
with det as (
    select
        *,
        row_number() over (partition by objectId order by mjd, candid) as det_order,
        first_value(ra) over (partition by objectId order by mjd, candid) as ra_ref,
        {{ position_sigma('fid') }} as sigma_dec_arcsec,
        {{ position_sigma('fid') }} / abs(cos(radians({{ dec_col() }}))) as sigma_ra_arcsec
    from {{ ref('detection') }} {{ where_touched_objects() }}
),

positions as (
    select
        objectId,
        max(ra_ref) as ra_ref,
        sum((fmod(ra - ra_ref + 540.0, 360.0) - 180.0) / power(sigma_ra_arcsec, 2))
            / sum(1.0 / power(sigma_ra_arcsec, 2)) as dra_mean,
        sum({{ dec_col() }} / power(sigma_dec_arcsec, 2)) / sum(1.0 / power(sigma_dec_arcsec, 2)) as meandec,
        sqrt(1.0 / sum(1.0 / power(sigma_ra_arcsec, 2))) as sigmara_arcsec,
        sqrt(1.0 / sum(1.0 / power(sigma_dec_arcsec, 2))) as sigmadec_arcsec,
        min(mjd) as firstmjd,
        max(mjd) as lastmjd,
        count(*) as ndet,
        cast(sum(case when is_dubious then 1 else 0 end) as bigint) as ndubious,
        max(case when det_order = 1 and is_corrected then 1 else 0 end) = 1 as is_corrected,
        max(case when det_order = 1 and is_stellar then 1 else 0 end) = 1 as is_stellar
    from det
    group by objectId
),

alerts as (
    select
        *,
        row_number() over (partition by objectId order by jd desc, candid desc) as recency
    from {{ ref('ztf_alert') }}
    where objectId is not null
    {%- if ateda_is_incremental() %} and objectId in {{ touched_objects() }}{% endif %}
),

alert_stats as (
    select
        objectId,
        count(*) as n_alerts,
        min(mjd) as first_alert_mjd,
        max(mjd) as last_alert_mjd,
        max(case when recency = 1 then candid end) as last_candid,
        max(case when recency = 1 then ndethist end) as ndethist,
        max(case when recency = 1 then ncovhist end) as ncovhist,
        max(case when recency = 1 then rb end) as last_rb,
        max(case when recency = 1 then drb end) as last_drb,
        min(ssdistnr) as min_ssdist_arcsec
    from alerts
    group by objectId
),

upper_limits as (
    select objectId, count(*) as n_non_detections
    from {{ ref('non_detection') }} {{ where_touched_objects() }}
    group by objectId
),

forced as (
    select objectId, count(*) as n_forced_photometry
    from {{ ref('forced_photometry') }} {{ where_touched_objects() }}
    group by objectId
)

select
    p.objectId,
    fmod(p.ra_ref + p.dra_mean + 360.0, 360.0) as meanra,
    p.meandec,
    p.sigmara_arcsec,
    p.sigmadec_arcsec,
    p.firstmjd,
    p.lastmjd,
    p.lastmjd - p.firstmjd as deltajd,
    p.ndet,
    p.ndubious,
    a.ndethist,
    a.ncovhist,
    p.is_corrected,
    p.is_stellar,
    coalesce(a.n_alerts, 0) as n_alerts,
    coalesce(u.n_non_detections, 0) as n_non_detections,
    coalesce(f.n_forced_photometry, 0) as n_forced_photometry,
    a.first_alert_mjd,
    a.last_alert_mjd,
    a.last_candid,
    a.last_rb,
    a.last_drb,
    a.min_ssdist_arcsec
from positions as p
left join alert_stats as a on a.objectId = p.objectId
left join upper_limits as u on u.objectId = p.objectId
left join forced as f on f.objectId = p.objectId
