{%- set grain = ['objectId', 'catalog'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the touched objects), not the
    grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in gold.yml. -#}
{{ config(meta={'grain': grain}, unique_key='objectId', keys=grain, distributed_by=['objectId'],
          post_hook="{{ order_for_lookups(['objectId']) }}") }}
{#- Grain: one row per (objectId, catalog): what the user-registered catalogs (`ateda catalog add`) say about an
    object of either survey (`survey`, as in gold.object: a ZTF objectId and a Rubin diaObjectId's digits never
    collide, so the object id alone names the object; a solar-system-only Rubin alert has no object and is left
    out). From silver.crossmatch_catalog, each alert's current answer (is_latest_version); per object and catalog
    the newest version matched against any of its alerts (latest matched_at, then the larger version string).
    The source named is the one nearest the object's weighted mean position (gold.object), over every source any
    of its alerts matched in that version; dist_arcsec is that distance (the nearest alert-level distance when the
    object has no mean position). Incremental: the objects with new alerts or new matches are recomputed whole. -#}
{#- StarRocks: the primary-key columns come first, in `keys` order. -#}
with matches as (
    select survey, objectId, catalog, catalog_version, candid, match_id, match_ra, match_dec, dist_arcsec, night,
           matched_at
    from {{ ref('crossmatch_catalog') }}
    where is_latest_version and objectId is not null
    {%- if ateda_is_incremental() %}
      and (objectId in {{ touched_objects() }}
           or objectId in {{ lsst_touched_objects() }}
           or objectId in (select objectId from {{ bronze_delta('crossmatch') }} as x where objectId is not null))
    {%- endif %}
),

versions as (
    {{ catalog_version_ranks('matches', ['objectId', 'catalog']) }}
),

current_matches as (
    select m.*
    from matches as m
    join versions as v
        on v.objectId = m.objectId and v.catalog = m.catalog and v.catalog_version = m.catalog_version
    where v.version_rank = 1
),

sources as (
    select objectId, catalog, match_id, match_ra, match_dec, dist_arcsec as min_alert_dist_arcsec
    from (
        select *, row_number() over (
            partition by objectId, catalog, match_id order by dist_arcsec, candid
        ) as copy_rank
        from current_matches
    ) as copies
    where copy_rank = 1
),

distances as (
    select
        s.*,
        coalesce({{ great_circle_arcsec('o.meanra', 'o.meandec', 's.match_ra', 's.match_dec') }},
                 s.min_alert_dist_arcsec) as dist_arcsec
    from sources as s
    left join {{ ref('object') }} as o on o.objectId = s.objectId
),

ranked as (
    select
        *,
        row_number() over (partition by objectId, catalog order by dist_arcsec, match_id) as source_rank
    from distances
),

totals as (
    select
        objectId,
        catalog,
        max(survey) as survey,
        max(catalog_version) as catalog_version,
        count(distinct match_id) as n_sources,
        count(distinct candid) as n_alerts_matched,
        min(dist_arcsec) as min_alert_dist_arcsec,
        min(night) as first_matched_night,
        max(night) as last_matched_night,
        max(matched_at) as matched_at
    from current_matches
    group by objectId, catalog
)

select
    t.objectId,
    t.catalog,
    t.survey,
    t.catalog_version,
    r.match_id,
    r.match_ra,
    r.match_dec,
    r.dist_arcsec,
    t.min_alert_dist_arcsec,
    t.n_sources,
    t.n_alerts_matched,
    t.first_matched_night,
    t.last_matched_night,
    t.matched_at
from totals as t
join ranked as r on r.objectId = t.objectId and r.catalog = t.catalog and r.source_rank = 1
