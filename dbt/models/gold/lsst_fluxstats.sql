{%- set grain = ['objectId', 'band'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the touched objects), not the grain. -#}
{{ config(meta={'grain': grain}, unique_key='objectId', keys=grain, distributed_by=['objectId'],
          post_hook="{{ order_for_lookups(['objectId']) }}") }}
{#- Grain: one row per (Rubin object, band): the flux statistics of its diaSources (silver.lsst_dia_source), Rubin's
    counterpart of ZTF's magstats, in nJy. weighted mean = sum(f/e^2)/sum(1/e^2), its error sqrt(1/sum(1/e^2));
    sigma: sample standard deviation (n - 1); chi2_ndof: sum(((f - weighted mean)/e)^2) / (n - 1); max_slope: the
    largest (f[k+1] - f[k]) / (t[k+1] - t[k]) over time-ordered pairs (nJy per day, TAI). Beside them, the same
    aggregates as Rubin sent them in the object's latest diaObject (rubin_*), where Rubin populates them.
    Incremental: the touched objects are recomputed. -#}
with src as (
    select
        {{ lsst_object_id('diaObjectId') }} as objectId,
        diaObjectId,
        band,
        midpointMjdTai,
        psfFlux,
        psfFluxErr,
        lag(psfFlux) over (partition by diaObjectId, band order by midpointMjdTai, diaSourceId) as prev_flux,
        lag(midpointMjdTai) over (partition by diaObjectId, band order by midpointMjdTai, diaSourceId) as prev_mjd
    from {{ ref('lsst_dia_source') }}
    where diaObjectId is not null and band is not null and psfFlux is not null
    {{ where_lsst_touched(keyword='and') }}
),

weighted as (
    select
        objectId,
        band,
        sum(case when psfFluxErr > 0 then psfFlux / power(psfFluxErr, 2) end)
            / sum(case when psfFluxErr > 0 then 1.0 / power(psfFluxErr, 2) end) as weighted_mean,
        sqrt(1.0 / sum(case when psfFluxErr > 0 then 1.0 / power(psfFluxErr, 2) end)) as weighted_mean_err
    from src
    group by objectId, band
),

stats as (
    select
        s.objectId,
        max(s.diaObjectId) as diaObjectId,
        s.band,
        count(*) as ndata,
        avg(s.psfFlux) as mean,
        max(w.weighted_mean) as weighted_mean,
        max(w.weighted_mean_err) as weighted_mean_err,
        stddev_samp(s.psfFlux) as sigma,
        case when count(*) > 1 then
            sum(case when s.psfFluxErr > 0 then power((s.psfFlux - w.weighted_mean) / s.psfFluxErr, 2) end)
            / (count(*) - 1) end as chi2_ndof,
        min(s.psfFlux) as min_flux,
        max(s.psfFlux) as max_flux,
        max(case when s.midpointMjdTai > s.prev_mjd
                 then (s.psfFlux - s.prev_flux) / (s.midpointMjdTai - s.prev_mjd) end) as max_slope,
        avg(s.psfFluxErr) as err_mean,
        min(s.midpointMjdTai) as first_mjd_tai,
        max(s.midpointMjdTai) as last_mjd_tai
    from src as s
    join weighted as w on w.objectId = s.objectId and w.band = s.band
    group by s.objectId, s.band
)

select
    st.*,
    o.diaObjectId is not null as has_rubin_state,
    {%- for field in ['psfFluxMean', 'psfFluxMeanErr', 'psfFluxSigma', 'psfFluxNdata', 'psfFluxMaxSlope'] %}
    case st.band
        {%- for b in lsst_bands() %}
        when '{{ b }}' then o.{{ b }}_{{ field }}
        {%- endfor %}
    end as rubin_{{ field }}{{ ',' if not loop.last }}
    {%- endfor %}
from stats as st
left join {{ ref('lsst_dia_object') }} as o on o.diaObjectId = st.diaObjectId
