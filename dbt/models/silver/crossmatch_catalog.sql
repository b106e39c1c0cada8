{%- set grain = ['candid', 'catalog', 'catalog_version', 'match_id'] -%}
{#- unique_key is the delete scope of an incremental run (every held row of the alerts with new matches), not the
    grain; the grain is meta.grain (and StarRocks' primary key, `keys`), tested unique in silver.yml. -#}
{{ config(meta={'grain': grain}, unique_key='candid', keys=grain, distributed_by=['candid']) }}
{#- Grain: one row per (candid, catalog, catalog_version, match_id): a match of an alert against a user-registered
    catalog (bronze.crossmatch), every catalog version kept. A re-registered catalog with new content is a new
    version; an alert is matched against the version registered when it was committed and against every version
    registered later (the backfill of `ateda catalog add`), so an alert's matches of an older version stay and is_latest_version marks, per (catalog, candid), the rows
    of the newest version matched against it (latest matched_at, then the version string). Repeated bronze rows
    (a catalog holding one id twice, an alert committed twice in one batch) are kept once: the nearest.
    match_rank orders an alert's matches of one catalog version by distance (1 = nearest).
    Incremental: every row of the alerts with new matches is recomputed (flags and ranks move with new rows). -#}
{#- StarRocks: the primary-key columns come first, in `keys` order. -#}
{%- set raw = ['candid', 'catalog', 'catalog_version', 'match_id', 'objectId', 'match_ra', 'match_dec',
               'dist_arcsec', 'night', 'matched_at'] -%}

with incoming as (
    select {{ raw | join(', ') }} from {{ bronze_rows('crossmatch') }} as x
),

kept as (
    select *
    from {{ kept_copies('incoming', raw, ['catalog', 'catalog_version', 'candid', 'match_id'], scope='candid',
                        order='dist_arcsec, match_ra, match_dec, matched_at') }} as chosen
),

versions as (
    {{ catalog_version_ranks('kept', ['catalog', 'candid']) }}
)

select
    k.candid,
    k.catalog,
    k.catalog_version,
    k.match_id,
    k.objectId,
    k.match_ra,
    k.match_dec,
    k.dist_arcsec,
    row_number() over (
        partition by k.catalog, k.catalog_version, k.candid order by k.dist_arcsec, k.match_id
    ) as match_rank,
    v.version_rank = 1 as is_latest_version,
    k.night,
    k.matched_at
from kept as k
join versions as v
    on v.catalog = k.catalog and v.candid = k.candid and v.catalog_version = k.catalog_version
