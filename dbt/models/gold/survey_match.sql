{%- set grain = ['ztf_objectId', 'lsst_objectId'] -%}
{{ config(materialized='table', meta={'grain': grain}, keys=grain, distributed_by=['ztf_objectId']) }}
{#- Grain: one row per (ZTF object, Rubin diaObject) pair within var('survey_match_arcsec') (1.5") of each other in
    gold.object: one transient seen by both surveys is one row. Pruned by declination zones as tall as the radius
    (the SQL form of the crossmatch's HEALPix pruning: a match can only be in its own zone or the two beside it, so
    the join is an equi-join on the zone over three copies of one side), then the exact great-circle distance.
    Rebuilt whole on each run (a join of two object lists: linear in the objects with the zones). -#}
{%- set radius = var('survey_match_arcsec') -%}
{%- set zone_deg = radius / 3600.0 -%}
with ztf as (
    select objectId, meanra, meandec, ndet, firstmjd, floor((meandec + 90.0) / {{ zone_deg }}) as zone
    from {{ ref('object') }}
    where survey = 'ztf'
),

lsst as (
    select objectId, meanra, meandec, ndet, firstmjd, floor((meandec + 90.0) / {{ zone_deg }}) as zone
    from {{ ref('object') }}
    where survey = 'lsst'
),

lsst_zones as (
    select l.*, l.zone + d.dz as near_zone
    from lsst as l
    cross join (select -1 as dz union all select 0 as dz union all select 1 as dz) as d
),

pairs as (
    select
        z.objectId as ztf_objectId,
        l.objectId as lsst_objectId,
        3600.0 * degrees(2.0 * asin(sqrt(
            power(sin(radians(l.meandec - z.meandec) / 2.0), 2)
            + cos(radians(z.meandec)) * cos(radians(l.meandec)) * power(sin(radians(l.meanra - z.meanra) / 2.0), 2)
        ))) as dist_arcsec,
        z.meanra as ztf_meanra, z.meandec as ztf_meandec, z.ndet as ztf_ndet, z.firstmjd as ztf_firstmjd,
        l.meanra as lsst_meanra, l.meandec as lsst_meandec, l.ndet as lsst_ndet, l.firstmjd as lsst_firstmjd
    from lsst_zones as l
    join ztf as z on z.zone = l.near_zone
)

select * from pairs where dist_arcsec <= {{ radius }}
