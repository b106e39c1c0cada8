{%- set grain = ['survey', 'candid', 'catalog', 'catalog_version', 'match_id'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the alerts with new matches), not the
    grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in silver.yml. -#}
{{ config(meta={'grain': grain}, unique_key='candid', keys=grain, distributed_by=['candid']) }}
{#- Grain: one row per (survey, candid, catalog, catalog_version, match_id): a match of an alert of either survey
    against a user-registered catalog (bronze.crossmatch), every catalog version kept. `survey` tells the alerts
    apart: a ZTF candid and a Rubin diaSourceId (the candid of a Rubin row) can be equal; bronze rows written before
    the column existed (NULL) are ZTF's. objectId is ZTF's objectId or the Rubin diaObjectId's digits (gold.object's
    id of it), NULL for a solar-system-only Rubin alert. A re-registered catalog with new content is a new
    version; an alert is matched against the version registered when it was committed and against every version
    registered later (the backfill of `ateda catalog add`), so an alert's matches of an older version stay and
    is_latest_version marks, per (survey, catalog, candid), the rows of the newest version matched against it
    (latest matched_at, then the version string). Repeated bronze rows (a catalog holding one id twice, an alert
    committed twice in one batch) are kept once: the nearest. match_rank orders an alert's matches of one catalog
    version by distance (1 = nearest).
    Incremental: every row of the alerts with new matches is recomputed (flags and ranks move with new rows); the
    scope is the candid, so an equal candid of the other survey is recomputed too (its rows are in `this`). -#}
{#- StarRocks: the primary-key columns come first, in `keys` order. -#}
{%- set raw = ['survey', 'candid', 'catalog', 'catalog_version', 'match_id', 'objectId', 'match_ra', 'match_dec',
               'dist_arcsec', 'night', 'matched_at'] -%}

with incoming as (
    select coalesce(x.survey, 'ztf') as survey, {{ raw[1:] | join(', ') }} from {{ bronze_rows('crossmatch') }} as x
),

kept as (
    select *
    from {{ kept_copies('incoming', raw, ['survey', 'catalog', 'catalog_version', 'candid', 'match_id'],
                        scope='candid', order='dist_arcsec, match_ra, match_dec, matched_at') }} as chosen
),

versions as (
    {{ catalog_version_ranks('kept', ['survey', 'catalog', 'candid']) }}
)

select
    k.survey,
    k.candid,
    k.catalog,
    k.catalog_version,
    k.match_id,
    k.objectId,
    k.match_ra,
    k.match_dec,
    k.dist_arcsec,
    row_number() over (
        partition by k.survey, k.catalog, k.catalog_version, k.candid order by k.dist_arcsec, k.match_id
    ) as match_rank,
    v.version_rank = 1 as is_latest_version,
    k.night,
    k.matched_at
from kept as k
join versions as v
    on v.survey = k.survey and v.catalog = k.catalog and v.candid = k.candid
   and v.catalog_version = k.catalog_version
