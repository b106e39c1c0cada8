{%- set grain = ['objectId'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the touched objects), not the
    grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in gold.yml. -#}
{{ config(meta={'grain': grain}, unique_key='objectId', keys=grain, distributed_by=['objectId'],
          post_hook="{{ order_for_lookups(['objectId']) }}") }}
{#- Grain: one row per object (objectId), both surveys (`survey`: ztf, lsst; a Rubin diaObjectId as its decimal
    digits, lsst_object_id(): never a ZTF id). ZTF positions are means weighted by 1/sigma^2 with the per-band
    astrometric sigma (var position_sigma_arcsec; sigma_ra = sigma / |cos dec|), Rubin's plain means of its
    diaSources; both taken around the first detection's ra so that objects on ra = 0/360 average correctly.
    ZTF-only columns (ALeRCE's flags, histories, PS1/solar-system distances) are NULL for Rubin.
    Incremental: the touched objects are recomputed. -#}
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
),

lsst_det as (
    select
        {{ lsst_object_id('diaObjectId') }} as objectId,
        *,
        first_value(ra) over (partition by diaObjectId order by midpointMjdTai, diaSourceId) as ra_ref,
        row_number() over (partition by diaObjectId order by midpointMjdTai desc, diaSourceId desc) as recency
    from {{ ref('lsst_dia_source') }}
    where diaObjectId is not null {{ where_lsst_touched(keyword='and') }}
),

lsst_objects as (
    select
        objectId,
        max(ra_ref) as ra_ref,
        avg(fmod(ra - ra_ref + 540.0, 360.0) - 180.0) as dra_mean,
        avg(dec) as meandec,
        min(mjd_utc) as firstmjd,
        max(mjd_utc) as lastmjd,
        count(*) as ndet,
        cast(sum(case when src_is_trigger then 1 else 0 end) as bigint) as n_alerts,
        min(case when src_is_trigger then mjd_utc end) as first_alert_mjd,
        max(case when src_is_trigger then mjd_utc end) as last_alert_mjd,
        max(case when recency = 1 then diaSourceId end) as last_candid,
        max(case when recency = 1 then reliability end) as last_rb
    from lsst_det
    group by objectId
),

lsst_forced as (
    select {{ lsst_object_id('diaObjectId') }} as objectId, count(*) as n_forced_photometry
    from {{ ref('lsst_dia_forced_source') }}
    where diaObjectId is not null {{ where_lsst_touched(keyword='and') }}
    group by diaObjectId
)

select
    'ztf' as survey,
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
union all
select
    'lsst' as survey,
    l.objectId,
    fmod(l.ra_ref + l.dra_mean + 360.0, 360.0) as meanra,
    l.meandec,
    cast(null as double) as sigmara_arcsec,
    cast(null as double) as sigmadec_arcsec,
    l.firstmjd,
    l.lastmjd,
    l.lastmjd - l.firstmjd as deltajd,
    l.ndet,
    cast(null as bigint) as ndubious,
    cast(null as bigint) as ndethist,
    cast(null as bigint) as ncovhist,
    cast(null as boolean) as is_corrected,
    cast(null as boolean) as is_stellar,
    l.n_alerts,
    cast(0 as bigint) as n_non_detections,
    coalesce(f.n_forced_photometry, 0) as n_forced_photometry,
    l.first_alert_mjd,
    l.last_alert_mjd,
    l.last_candid,
    l.last_rb,
    cast(null as double) as last_drb,
    cast(null as double) as min_ssdist_arcsec
from lsst_objects as l
left join lsst_forced as f on f.objectId = l.objectId
